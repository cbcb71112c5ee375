package core_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"goloop/core"
)

func TestCallSoonRunsInOrder(t *testing.T) {
	r := newLoop(t)
	for _, name := range []string{"a", "b", "c", "d", "e"} {
		r.soon(r.item(name, nil))
	}
	r.soon(r.stopper("stop"))
	if r.l.Ready() != 6 {
		t.Errorf("Ready = %d, want 6", r.l.Ready())
	}
	if err := r.run(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	want := []string{"run:a", "run:b", "run:c", "run:d", "run:e", "run:stop"}
	if diff := cmp.Diff(want, r.takeLog()); diff != "" {
		t.Errorf("log (-want +got):\n%s", diff)
	}
	if r.l.Ready() != 0 || r.l.Running() {
		t.Errorf("after Run: Ready %d Running %v, want 0 false", r.l.Ready(), r.l.Running())
	}
}

// TestScheduledDuringTickRunNextTick checks that a tick runs exactly the
// callbacks queued when it started: each Run below stops after one tick,
// so what it ran is what that tick ran.
func TestScheduledDuringTickRunNextTick(t *testing.T) {
	r := newLoop(t)
	z := r.stopper("z")
	x := r.item("x", func() error { r.soon(z); return nil })
	y := r.stopper("y")
	r.soon(r.item("a", func() error { r.soon(x); return nil }))
	r.soon(r.item("b", func() error { r.soon(y); return nil }))
	r.soon(r.stopper("c"))

	for i, want := range [][]string{
		{"run:a", "run:b", "run:c"},
		{"run:x", "run:y"},
		{"run:z"},
	} {
		if err := r.run(); err != nil {
			t.Fatalf("Run %d: %v", i, err)
		}
		if diff := cmp.Diff(want, r.takeLog()); diff != "" {
			t.Errorf("tick %d (-want +got):\n%s", i, diff)
		}
	}
	if r.l.Ready() != 0 {
		t.Errorf("Ready = %d after the last tick, want 0", r.l.Ready())
	}
}

// TestSelfReschedulingChainsInterleave runs two callbacks that each schedule
// their successor: FIFO order makes them alternate, one step each per tick.
func TestSelfReschedulingChainsInterleave(t *testing.T) {
	r := newLoop(t)
	const steps = 200
	var chain func(name string, i int) *item
	chain = func(name string, i int) *item {
		return r.item(fmt.Sprint(name, i), func() error {
			if i+1 < steps {
				r.soon(chain(name, i+1))
			} else if name == "b" {
				r.l.Stop()
			}
			return nil
		})
	}
	r.soon(chain("a", 0))
	r.soon(chain("b", 0))
	if err := r.run(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	var want []string
	for i := range steps {
		want = append(want, fmt.Sprint("run:a", i), fmt.Sprint("run:b", i))
	}
	if diff := cmp.Diff(want, r.takeLog()); diff != "" {
		t.Errorf("log (-want +got):\n%s", diff)
	}
}

func TestStopFinishesTheTick(t *testing.T) {
	r := newLoop(t)
	d := r.stopper("d")
	r.soon(r.item("a", nil))
	r.soon(r.stopper("b"))
	r.soon(r.item("c", func() error { r.soon(d); return nil }))
	if err := r.run(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if diff := cmp.Diff([]string{"run:a", "run:b", "run:c"}, r.takeLog()); diff != "" {
		t.Errorf("first Run (-want +got):\n%s", diff)
	}
	if r.l.Ready() != 1 || r.l.Running() {
		t.Fatalf("after Stop: Ready %d Running %v, want 1 false", r.l.Ready(), r.l.Running())
	}
	if err := r.run(); err != nil {
		t.Fatalf("second Run: %v", err)
	}
	if diff := cmp.Diff([]string{"run:d"}, r.takeLog()); diff != "" {
		t.Errorf("second Run (-want +got):\n%s", diff)
	}
}

// TestStopBeforeRun: as asyncio documents for stop() before run_forever(),
// the loop polls once without blocking, runs what is ready and returns.
func TestStopBeforeRun(t *testing.T) {
	t.Run("nothing ready", func(t *testing.T) {
		r := newLoop(t)
		r.l.Stop()
		if err := r.run(); err != nil {
			t.Fatalf("Run: %v", err)
		}
		if diff := cmp.Diff([]string(nil), r.takeLog()); diff != "" {
			t.Errorf("log (-want +got):\n%s", diff)
		}
	})
	t.Run("callbacks ready", func(t *testing.T) {
		r := newLoop(t)
		b := r.item("b", nil)
		r.soon(r.item("a", func() error { r.soon(b); return nil }))
		r.l.Stop()
		if err := r.run(); err != nil {
			t.Fatalf("Run: %v", err)
		}
		if diff := cmp.Diff([]string{"run:a"}, r.takeLog()); diff != "" {
			t.Errorf("log (-want +got):\n%s", diff)
		}
		// The stop request is used up: the next Run runs until stopped again.
		r.soon(r.stopper("c"))
		if err := r.run(); err != nil {
			t.Fatalf("second Run: %v", err)
		}
		if diff := cmp.Diff([]string{"run:b", "run:c"}, r.takeLog()); diff != "" {
			t.Errorf("second Run (-want +got):\n%s", diff)
		}
	})
}

func TestRunErrorStopsAtOnce(t *testing.T) {
	r := newLoop(t)
	boom := errors.New("boom")
	r.soon(r.item("a", nil))
	r.soon(r.item("b", func() error { return boom }))
	r.soon(r.item("c", nil))
	r.soon(r.stopper("d"))
	if err := r.run(); !errors.Is(err, boom) {
		t.Fatalf("Run = %v, want %v", err, boom)
	}
	if diff := cmp.Diff([]string{"run:a", "run:b"}, r.takeLog()); diff != "" {
		t.Errorf("first Run (-want +got):\n%s", diff)
	}
	if r.l.Ready() != 2 || r.l.Running() {
		t.Fatalf("after the error: Ready %d Running %v, want 2 false", r.l.Ready(), r.l.Running())
	}
	if err := r.run(); err != nil {
		t.Fatalf("second Run: %v", err)
	}
	if diff := cmp.Diff([]string{"run:c", "run:d"}, r.takeLog()); diff != "" {
		t.Errorf("second Run runs what the error left queued (-want +got):\n%s", diff)
	}
}

// TestRunErrorForgetsStop: a Stop pending when a callback fails does not
// leak into the next Run.
func TestRunErrorForgetsStop(t *testing.T) {
	r := newLoop(t)
	boom := errors.New("boom")
	c := r.stopper("c")
	r.soon(r.item("a", func() error { r.l.Stop(); return boom }))
	r.soon(r.item("b", func() error { r.soon(c); return nil }))
	if err := r.run(); !errors.Is(err, boom) {
		t.Fatalf("Run = %v, want %v", err, boom)
	}
	if err := r.run(); err != nil {
		t.Fatalf("second Run: %v", err)
	}
	if diff := cmp.Diff([]string{"run:a", "run:b", "run:c"}, r.takeLog()); diff != "" {
		t.Errorf("log (-want +got):\n%s", diff)
	}
}

func TestRunningLoopRefusesRunAndClose(t *testing.T) {
	r := newLoop(t)
	var running bool
	var runErr, closeErr error
	r.soon(r.item("a", func() error {
		running = r.l.Running()
		runErr = r.l.Run()
		closeErr = r.l.Close()
		r.l.Stop()
		return nil
	}))
	if err := r.run(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !running {
		t.Errorf("Running() = false inside a callback")
	}
	if !errors.Is(runErr, core.ErrRunning) {
		t.Errorf("Run inside Run = %v, want ErrRunning", runErr)
	}
	if closeErr == nil || r.l.Closed() {
		t.Errorf("Close inside Run = %v, Closed %v; want an error and the loop open", closeErr, r.l.Closed())
	}
	if r.l.Running() {
		t.Errorf("Running() = true after Run returned")
	}
}

// timed is an item that records when it ran.
type timed struct {
	name      string
	when, ran float64
}

func TestTimersFireInOrderAndNotEarly(t *testing.T) {
	r := newLoop(t)
	base := core.Now()
	offsets := []struct {
		name string
		ms   float64
	}{
		{"t30", 30}, {"t10a", 10}, {"t20a", 20}, {"t10b", 10}, {"now", 0},
		{"past", -5}, {"t20b", 20}, {"t1", 1}, {"t25", 25},
	}
	var got []*timed
	for _, o := range offsets {
		tt := &timed{name: o.name, when: base + o.ms/1e3}
		r.at(tt.when, r.item(o.name, func() error {
			tt.ran = core.Now()
			got = append(got, tt)
			if len(got) == len(offsets) {
				r.l.Stop()
			}
			return nil
		}))
	}
	if r.l.Timers() != len(offsets) {
		t.Errorf("Timers = %d, want %d", r.l.Timers(), len(offsets))
	}
	if err := r.run(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	var names []string
	for _, tt := range got {
		names = append(names, tt.name)
		if tt.ran < tt.when {
			t.Errorf("timer %s ran %.6fs before its time", tt.name, tt.when-tt.ran)
		}
	}
	want := []string{"past", "now", "t1", "t10a", "t10b", "t20a", "t20b", "t25", "t30"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("timer order (-want +got):\n%s", diff)
	}
	if r.l.Timers() != 0 {
		t.Errorf("Timers = %d after all fired", r.l.Timers())
	}
}

// TestTimersFireWhileBusy: a callback that always reschedules itself keeps
// the ready queue non-empty, yet due timers are still collected each tick.
func TestTimersFireWhileBusy(t *testing.T) {
	r := newLoop(t)
	done := false
	spins := 0
	var spin func() *item
	spin = func() *item {
		return r.item("spin", func() error {
			spins++
			if !done {
				r.soon(spin())
			}
			return nil
		})
	}
	r.soon(spin())
	r.at(core.Now()+0.005, r.item("timer", func() error {
		done = true
		r.l.Stop()
		return nil
	}))
	if err := r.run(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !done || spins < 2 {
		t.Errorf("timer fired %v after %d spins; want it to fire while the loop spins", done, spins)
	}
	if slices.Contains(r.log, "before") {
		t.Errorf("Poll blocked although a callback was always ready")
	}
}

func TestCancelledTimers(t *testing.T) {
	t.Run("at the head: released, not run", func(t *testing.T) {
		r := newLoop(t)
		now := core.Now()
		b := r.item("b", nil)
		r.at(now-1, r.item("first", func() error { r.cancelTimer(b); return nil }))
		r.at(now+3600, b)
		r.at(now, r.stopper("c"))
		if err := r.run(); err != nil {
			t.Fatalf("Run: %v", err)
		}
		if diff := cmp.Diff([]string{"run:first", "run:c"}, withoutPolls(r.takeLog())); diff != "" {
			t.Errorf("first Run (-want +got):\n%s", diff)
		}
		if r.l.Timers() != 1 || r.l.CancelledCount() != 1 {
			t.Fatalf("Timers %d, cancelled %d; want the cancelled timer still in the heap",
				r.l.Timers(), r.l.CancelledCount())
		}
		// The next tick starts by dropping the cancelled head.
		r.l.Stop()
		if err := r.run(); err != nil {
			t.Fatalf("second Run: %v", err)
		}
		if diff := cmp.Diff([]string{"release:b"}, r.takeLog()); diff != "" {
			t.Errorf("second Run (-want +got):\n%s", diff)
		}
		if r.l.Timers() != 0 || r.l.CancelledCount() != 0 {
			t.Errorf("Timers %d, cancelled %d; want 0 0", r.l.Timers(), r.l.CancelledCount())
		}
	})
	t.Run("cancelled before Run starts", func(t *testing.T) {
		r := newLoop(t)
		when := core.Now() + 0.002
		for _, n := range []string{"a", "b", "c"} {
			r.at(when, r.item(n, nil))
		}
		r.at(when+0.001, r.stopper("stop"))
		for _, it := range r.items {
			if it.name != "stop" {
				r.cancelTimer(it)
			}
		}
		if err := r.run(); err != nil {
			t.Fatalf("Run: %v", err)
		}
		// All three are at the head of the heap when the first tick starts.
		want := []string{"release:a", "release:b", "release:c", "run:stop"}
		if diff := cmp.Diff(want, withoutPolls(r.takeLog())); diff != "" {
			t.Errorf("log (-want +got):\n%s", diff)
		}
	})
	t.Run("due behind a live timer: Run skips it", func(t *testing.T) {
		// asyncio moves every due timer to _ready and skips the cancelled
		// ones there; here that skip is the embedder's Run.
		r := newLoop(t)
		when := core.Now() + 0.002
		r.at(when, r.item("a", nil))
		b := r.item("b", nil)
		r.at(when, b)
		r.at(when, r.stopper("c"))
		r.cancelTimer(b)
		if err := r.run(); err != nil {
			t.Fatalf("Run: %v", err)
		}
		want := []string{"run:a", "skip:b", "run:c"}
		if diff := cmp.Diff(want, withoutPolls(r.takeLog())); diff != "" {
			t.Errorf("log (-want +got):\n%s", diff)
		}
	})
}

// TestTimerCompaction checks asyncio's rule: the heap is rebuilt without
// its cancelled timers when it holds more than 100 and over half are
// cancelled; otherwise only cancelled timers at its head are dropped.
func TestTimerCompaction(t *testing.T) {
	for _, tc := range []struct {
		n, cancelled, want int
	}{
		{n: 100, cancelled: 99, want: 100}, // not more than 100 timers
		{n: 150, cancelled: 75, want: 150}, // exactly half is not over half
		{n: 101, cancelled: 51, want: 50},
		{n: 150, cancelled: 101, want: 49},
		{n: 1000, cancelled: 999, want: 1},
	} {
		t.Run(fmt.Sprintf("%d of %d", tc.cancelled, tc.n), func(t *testing.T) {
			r := newLoop(t)
			base := core.Now() + 3600
			var timers []*item
			for i := range tc.n {
				it := r.item(fmt.Sprint("t", i), nil)
				timers = append(timers, it)
				r.at(base+float64(i), it)
			}
			// Timer 0, the head, stays live, so that without compaction
			// nothing is dropped.
			for _, it := range timers[1 : 1+tc.cancelled] {
				r.cancelTimer(it)
			}
			r.soon(r.stopper("stop"))
			if err := r.run(); err != nil {
				t.Fatalf("Run: %v", err)
			}
			if r.l.Timers() != tc.want {
				t.Errorf("Timers = %d after a tick, want %d", r.l.Timers(), tc.want)
			}
			var released []string
			for _, s := range r.takeLog() {
				if name, ok := strings.CutPrefix(s, "release:"); ok {
					released = append(released, name)
				}
			}
			var want []string
			wantCancelled := tc.cancelled
			if tc.want < tc.n {
				for _, it := range timers[1 : 1+tc.cancelled] {
					want = append(want, it.name)
				}
				wantCancelled = 0
			}
			sort.Strings(released)
			sort.Strings(want)
			if diff := cmp.Diff(want, released); diff != "" {
				t.Errorf("released (-want +got):\n%s", diff)
			}
			if r.l.CancelledCount() != wantCancelled {
				t.Errorf("cancelled count = %d, want %d", r.l.CancelledCount(), wantCancelled)
			}
		})
	}
}

// TestCompactionKeepsOrder cancels most of a batch of near timers at random;
// the heap is compacted before the first poll and the rest fire in order.
func TestCompactionKeepsOrder(t *testing.T) {
	r := newLoop(t)
	rng := rand.New(rand.NewPCG(9, 10))
	base := core.Now() + 0.005
	const n = 150
	const cancelled = 110
	var ran []string
	var timers []*item
	for i := range n {
		name := fmt.Sprint("t", i)
		it := r.item(name, func() error {
			ran = append(ran, name)
			if len(ran) == n-cancelled {
				r.l.Stop()
			}
			return nil
		})
		timers = append(timers, it)
		// Deadlines fall as i rises, in pairs of equal ones.
		r.at(base+float64((n-i)/2)*1e-4, it)
	}
	for _, i := range rng.Perm(n)[:cancelled] {
		r.cancelTimer(timers[i])
	}
	want := orderByDeadline(timers, n)
	// The heap is compacted as the first tick starts. The probe is the
	// first callback that tick runs; the timers that came due by then are
	// queued behind it, so Timers()+Ready() counts every live timer. The
	// probe itself leaves the queue only once its batch is done.
	held := -1
	r.soon(r.item("probe", func() error { held = r.l.Timers() + r.l.Ready() - 1; return nil }))
	if err := r.run(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if held != n-cancelled {
		t.Errorf("%d timers held after the first compaction, want %d", held, n-cancelled)
	}
	if diff := cmp.Diff(want, ran); diff != "" {
		t.Errorf("run order (-want +got):\n%s", diff)
	}
}

// orderByDeadline lists the live timers of TestCompactionKeepsOrder in the
// order they must run: timer i is due at (n-i)/2, ties in scheduling order.
func orderByDeadline(timers []*item, n int) []string {
	idx := make([]int, 0, n)
	for i := range n {
		if !timers[i].cancelled {
			idx = append(idx, i)
		}
	}
	sort.SliceStable(idx, func(a, b int) bool {
		da, db := (n-idx[a])/2, (n-idx[b])/2
		if da != db {
			return da < db
		}
		return idx[a] < idx[b]
	})
	var out []string
	for _, i := range idx {
		out = append(out, timers[i].name)
	}
	return out
}

// TestCollectAtTickStart: what Collect schedules as a tick starts counts
// as queued before that tick, so it runs in it; a Stop before Run allows
// exactly that one tick.
func TestCollectAtTickStart(t *testing.T) {
	r := newLoop(t)
	inbox := []*item{r.item("a", nil), r.item("b", nil)}
	r.collect = func() {
		for _, it := range inbox {
			r.soon(it)
		}
		inbox = nil
	}
	r.l.Stop()
	if err := r.run(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if diff := cmp.Diff([]string{"run:a", "run:b"}, r.takeLog()); diff != "" {
		t.Errorf("log (-want +got):\n%s", diff)
	}
}

// TestPollHooksOnlyWhenBlocking: Poll makes only the
// poll that may block, where the bridge lets go of the GIL.
func TestPollHooksOnlyWhenBlocking(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(r *recorder)
		want  []string
	}{
		{
			name:  "callback ready",
			setup: func(r *recorder) { r.soon(r.stopper("a")) },
			want:  []string{"run:a"},
		},
		{
			name: "callback scheduled by a callback",
			setup: func(r *recorder) {
				b := r.stopper("b")
				r.soon(r.item("a", func() error { r.soon(b); return nil }))
			},
			want: []string{"run:a", "run:b"},
		},
		{
			name:  "timer already due",
			setup: func(r *recorder) { r.at(core.Now()-1, r.stopper("t")) },
			want:  []string{"run:t"},
		},
		{
			name:  "stopping",
			setup: func(r *recorder) { r.l.Stop() },
			want:  nil,
		},
		{
			name: "timer in the future",
			// Far enough ahead to be in the future when the first tick
			// computes its timeout.
			setup: func(r *recorder) { r.at(core.Now()+0.05, r.stopper("t")) },
			want:  []string{"poll", "run:t"},
		},
		{
			name: "descriptor ready, nothing else",
			setup: func(r *recorder) {
				rd, w := pipe(r.t)
				write(r.t, w, "x")
				r.addReader(rd, r.item("rd", func() error {
					r.l.RemoveReader(rd)
					r.l.Stop()
					return nil
				}))
			},
			want: []string{"poll", "retain:rd", "run:rd", "release:rd"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newLoop(t)
			tc.setup(r)
			if err := r.run(); err != nil {
				t.Fatalf("Run: %v", err)
			}
			if diff := cmp.Diff(tc.want, squashPolls(t, r.takeLog())); diff != "" {
				t.Errorf("log (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCloseReleasesEverything(t *testing.T) {
	r := newLoop(t)
	rd, w := pipe(t)
	r.soon(r.item("a", nil))
	r.soon(r.item("b", nil))
	r.at(core.Now()+3600, r.item("c", nil))
	d := r.item("d", nil)
	r.at(core.Now()+3600, d)
	r.cancelTimer(d)
	if err := r.addReader(rd, r.item("e", nil)); err != nil {
		t.Fatal(err)
	}
	if err := r.addWriter(w, r.item("f", nil)); err != nil {
		t.Fatal(err)
	}
	if err := r.l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	log := r.takeLog()
	sort.Strings(log)
	want := []string{"release:a", "release:b", "release:c", "release:d", "release:e", "release:f"}
	if diff := cmp.Diff(want, log); diff != "" {
		t.Errorf("Close (-want +got):\n%s", diff)
	}
	r.checkBalance()
	if !r.l.Closed() || r.l.Ready() != 0 || r.l.Timers() != 0 || r.l.Watching(rd) != 0 || r.l.Watching(w) != 0 {
		t.Errorf("after Close: Closed %v Ready %d Timers %d Watching %v %v",
			r.l.Closed(), r.l.Ready(), r.l.Timers(), r.l.Watching(rd), r.l.Watching(w))
	}

	if err := r.l.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	if err := r.l.Run(); !errors.Is(err, core.ErrClosed) {
		t.Errorf("Run after Close = %v, want ErrClosed", err)
	}
	if err := r.addReader(rd, r.item("g", nil)); !errors.Is(err, core.ErrClosed) {
		t.Errorf("AddReader after Close = %v, want ErrClosed", err)
	}
	if err := r.addWriter(w, r.item("h", nil)); !errors.Is(err, core.ErrClosed) {
		t.Errorf("AddWriter after Close = %v, want ErrClosed", err)
	}
	if diff := cmp.Diff([]string{"release:g", "release:h"}, r.takeLog()); diff != "" {
		t.Errorf("after Close (-want +got):\n%s", diff)
	}
}

// TestClearKeepsLoopUsable: Clear releases everything, unregisters the
// descriptors (so they can be added again) and leaves the loop open.
func TestClearKeepsLoopUsable(t *testing.T) {
	r := newLoop(t)
	rd, w := pipe(t)
	r.soon(r.item("a", nil))
	r.at(core.Now()+3600, r.item("b", nil))
	r.addReader(rd, r.item("c", nil))
	r.l.Clear()
	log := r.takeLog()
	sort.Strings(log)
	if diff := cmp.Diff([]string{"release:a", "release:b", "release:c"}, log); diff != "" {
		t.Errorf("Clear (-want +got):\n%s", diff)
	}
	if r.l.Closed() || r.l.Ready() != 0 || r.l.Timers() != 0 || r.l.Watching(rd) != 0 {
		t.Fatalf("after Clear: Closed %v Ready %d Timers %d Watching %v",
			r.l.Closed(), r.l.Ready(), r.l.Timers(), r.l.Watching(rd))
	}
	write(t, w, "x")
	if err := r.addReader(rd, r.item("d", func() error { r.l.Stop(); return nil })); err != nil {
		t.Fatalf("AddReader after Clear: %v", err)
	}
	if err := r.run(); err != nil {
		t.Fatalf("Run after Clear: %v", err)
	}
	if diff := cmp.Diff([]string{"retain:d", "run:d"}, withoutPolls(r.takeLog())); diff != "" {
		t.Errorf("Run after Clear (-want +got):\n%s", diff)
	}
}

// each collects what Each passes, and how many slices it took.
func each(l *core.Loop[*item]) (names []string, calls int) {
	l.Each(func(s []*item) {
		calls++
		if len(s) == 0 {
			calls += 1000 // an empty slice is a wasted crossing
		}
		for _, it := range s {
			names = append(names, it.name)
		}
	})
	sort.Strings(names)
	return names, calls
}

func TestEachVisitsAllHeldItems(t *testing.T) {
	r := newLoop(t)
	if names, calls := each(r.l); names != nil || calls != 0 {
		t.Errorf("Each on an empty loop: %q in %d calls, want nothing", names, calls)
	}
	rd, w := pipe(t)
	r.soon(r.item("a", nil))
	r.soon(r.item("b", nil))
	r.at(core.Now()+3600, r.item("c", nil))
	d := r.item("d", nil)
	r.at(core.Now()+1800, d)
	r.cancelTimer(d)
	r.addReader(rd, r.item("e", nil))
	r.addWriter(w, r.item("f", nil))
	sa, _ := socketpair(t)
	r.addReader(sa, r.item("g", nil))
	r.addWriter(sa, r.item("h", nil))
	r.l.RemoveReader(sa) // releases g
	names, calls := each(r.l)
	if diff := cmp.Diff([]string{"a", "b", "c", "d", "e", "f", "h"}, names); diff != "" {
		t.Errorf("Each (-want +got):\n%s", diff)
	}
	// One slice for the ready queue (it does not wrap here), one for the
	// rest.
	if calls != 2 {
		t.Errorf("Each made %d calls, want 2", calls)
	}
	if diff := cmp.Diff([]string{"release:g"}, r.takeLog()); diff != "" {
		t.Errorf("Each must not touch references (-want +got):\n%s", diff)
	}
	if n := r.l.ScratchHeld(func(it *item) bool { return it == nil }); n != 0 {
		t.Errorf("Each's buffer still points to %d items after it returned", n)
	}
}

// TestEachWrappedReadyQueue: a ready queue that wraps in its ring is
// passed as two slices, in order.
func TestEachWrappedReadyQueue(t *testing.T) {
	r := newLoop(t)
	for i := range 60 {
		r.soon(r.item(fmt.Sprint("old", i), nil))
	}
	// A Stop before Run makes one tick: it runs the 60, leaving the
	// ring's head at 60 of 64.
	r.l.Stop()
	if err := r.run(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	var want []string
	for i := range 10 {
		name := fmt.Sprint("new", i)
		r.soon(r.item(name, nil))
		want = append(want, name)
	}
	var got []string
	calls := 0
	r.l.Each(func(s []*item) {
		calls++
		for _, it := range s {
			got = append(got, it.name)
		}
	})
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Each over a wrapped queue (-want +got):\n%s", diff)
	}
	if calls != 2 {
		t.Errorf("Each made %d calls for a wrapped queue, want 2", calls)
	}
}

// TestReferenceBalanceRandom drives the loop with a random mix of
// callbacks, timers, cancellations and descriptors; the cleanup's balance
// check then proves each item was run or released exactly once per
// reference.
func TestReferenceBalanceRandom(t *testing.T) {
	for seed := range uint64(5) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			r := newLoop(t)
			rng := rand.New(rand.NewPCG(seed, 99))
			var timers []*item
			n := 0
			var newItem func(depth int) *item
			schedule := func(depth int) {
				it := newItem(depth)
				switch rng.IntN(3) {
				case 0:
					r.soon(it)
				default:
					r.at(core.Now()+rng.Float64()*0.005, it)
					timers = append(timers, it)
				}
			}
			newItem = func(depth int) *item {
				n++
				return r.item(fmt.Sprint("i", n), func() error {
					if depth < 3 {
						for range rng.IntN(3) {
							schedule(depth + 1)
						}
					}
					if len(timers) > 0 && rng.IntN(4) == 0 {
						if it := timers[rng.IntN(len(timers))]; !it.cancelled && it.ran+it.freed == 0 {
							r.cancelTimer(it)
						}
					}
					return nil
				})
			}
			for range 40 {
				schedule(0)
			}
			for _, it := range timers {
				if rng.IntN(5) == 0 {
					r.cancelTimer(it)
				}
			}
			// Readers that drain their pipe a byte per run, some cancelled
			// along the way, some replaced.
			for i := range 5 {
				rd, w := pipe(t)
				write(t, w, "abcd"[:1+rng.IntN(4)])
				var reader *item
				reader = r.item(fmt.Sprint("rd", i), func() error {
					var b [1]byte
					if k, _ := unix.Read(rd, b[:]); k <= 0 {
						r.l.RemoveReader(rd)
					} else if rng.IntN(4) == 0 {
						reader.cancelled = true
					}
					return nil
				})
				r.addReader(rd, reader)
				if rng.IntN(3) == 0 {
					r.addReader(rd, r.item(fmt.Sprint("rd", i, "b"), nil))
				}
			}
			r.at(core.Now()+0.03, r.stopper("stop"))
			if err := r.run(); err != nil {
				t.Fatalf("Run: %v", err)
			}
			// The cleanup closes the loop and checks the balance.
		})
	}
}
