package core_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"goloop/core"
)

// fakeIO is an IO that writes its calls into the recorder's log.
type fakeIO struct {
	r     *recorder
	name  string
	ready func(ev core.Events) error
}

func (f *fakeIO) Ready(ev core.Events) error {
	f.r.locked("IO.Ready")
	f.r.log = append(f.r.log, fmt.Sprintf("io:%s:%d", f.name, ev))
	if f.ready != nil {
		return f.ready(ev)
	}
	return nil
}

func (r *recorder) io(name string, ready func(core.Events) error) *fakeIO {
	return &fakeIO{r: r, name: name, ready: ready}
}

// drainFD reads whatever fd holds, so a level-triggered IO goes quiet.
func drainFD(fd int) {
	var buf [4096]byte
	for {
		if n, err := unix.Read(fd, buf[:]); n <= 0 || err != nil {
			return
		}
	}
}

// TestIOReadyInReadyPhase: an IO is called in the ready phase, behind the
// items queued before the poll, and what it queues runs in the next tick.
func TestIOReadyInReadyPhase(t *testing.T) {
	r := newLoop(t)
	a, b := socketpair(t)
	io := r.io("a", func(core.Events) error {
		drainFD(a)
		r.soon(r.stopper("x"))
		return nil
	})
	if err := r.l.Register(a, io, core.Read); err != nil {
		t.Fatalf("Register: %v", err)
	}
	if got := r.l.Watching(a); got != core.Read {
		t.Errorf("Watching = %v, want Read", got)
	}
	r.soon(r.item("before", nil))
	write(t, b, "hi")
	r.runExpecting("run:before", "io:a:1", "run:x")
	r.l.Clear()
}

// TestIOOwnership: a descriptor is watched by items or by one IO, never
// both, and each side is told who has it.
func TestIOOwnership(t *testing.T) {
	r := newLoop(t)
	a, b := socketpair(t)
	io := r.io("a", nil)

	if err := r.addReader(a, r.item("rd", nil)); err != nil {
		t.Fatalf("AddReader: %v", err)
	}
	var inUse *core.InUseError
	if err := r.l.Register(a, io, core.Read); !errors.As(err, &inUse) || inUse.Owner != nil || inUse.FD != a {
		t.Errorf("Register over a reader = %v, want InUseError without owner", err)
	}
	if r.l.Owner(a) != nil {
		t.Errorf("Owner of a reader's fd = %v, want nil", r.l.Owner(a))
	}

	if err := r.l.Register(b, io, 0); err != nil {
		t.Fatalf("Register(b, 0): %v", err)
	}
	if r.l.Owner(b) != io {
		t.Errorf("Owner(b) = %v, want the IO", r.l.Owner(b))
	}
	if err := r.l.Register(b, r.io("other", nil), core.Read); !errors.As(err, &inUse) || inUse.Owner != io {
		t.Errorf("second Register = %v, want InUseError owned by the first IO", err)
	}
	err := r.addWriter(b, r.item("wr", nil)) // released by the loop on failure
	if !errors.As(err, &inUse) || inUse.Owner != io {
		t.Errorf("AddWriter on an IO's fd = %v, want InUseError owned by the IO", err)
	} else if want := fmt.Sprintf("File descriptor %d is used by transport", b); err.Error() != want {
		t.Errorf("message %q, want %q", err.Error(), want)
	}
	if ok, err := r.l.RemoveReader(b); ok || !errors.As(err, &inUse) {
		t.Errorf("RemoveReader on an IO's fd = %v, %v; want false, InUseError", ok, err)
	}
	if err := r.l.Modify(a, core.Write); err == nil {
		t.Errorf("Modify of a reader's fd succeeded")
	}
	if err := r.l.Unregister(a); err != nil || r.l.Watching(a) != core.Read {
		t.Errorf("Unregister of a reader's fd = %v and left %v, want nil and Read", err, r.l.Watching(a))
	}
	if err := r.l.Register(r.l.WakeFD(), r.io("wake", nil), core.Read); err == nil {
		t.Errorf("Register of the loop's own eventfd succeeded")
	}

	if err := r.l.Unregister(b); err != nil {
		t.Fatalf("Unregister: %v", err)
	}
	if err := r.addReader(b, r.item("rd2", nil)); err != nil {
		t.Errorf("AddReader after Unregister: %v", err)
	}
	if diff := cmp.Diff([]string{"release:wr"}, r.takeLog()); diff != "" {
		t.Errorf("log (-want +got):\n%s", diff)
	}
}

// TestIOStaleEventAfterReuse: two descriptors are ready in one poll, and
// whichever IO runs first replaces the other's watcher with a new IO on the
// same number. Neither the replaced IO nor its replacement may see the
// event reported for the old one.
func TestIOStaleEventAfterReuse(t *testing.T) {
	r := newLoop(t)
	a, a2 := socketpair(t)
	b, b2 := socketpair(t)
	write(t, a2, "x")
	write(t, b2, "x")
	var ios [2]*fakeIO
	fds := [2]int{a, b}
	for i := range ios {
		other := fds[1-i]
		ios[i] = r.io(fmt.Sprint(i), func(core.Events) error {
			if err := r.l.Unregister(other); err != nil {
				t.Errorf("Unregister: %v", err)
			}
			if err := r.l.Register(other, r.io("new", nil), core.Read); err != nil {
				t.Errorf("Register: %v", err)
			}
			r.l.Stop()
			return nil
		})
		if err := r.l.Register(fds[i], ios[i], core.Read); err != nil {
			t.Fatalf("Register: %v", err)
		}
	}
	if err := r.run(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	log := withoutPolls(r.takeLog())
	if len(log) != 1 || !strings.HasPrefix(log[0], "io:") || log[0] == "io:new:1" {
		t.Errorf("log %q, want exactly one call of an original IO", log)
	}
}

// TestIOModifiedInBatch: an IO that stops polling another in the same
// batch keeps it from being called.
func TestIOModifiedInBatch(t *testing.T) {
	r := newLoop(t)
	a, a2 := socketpair(t)
	b, b2 := socketpair(t)
	write(t, a2, "x")
	write(t, b2, "x")
	mk := func(name string, other int) *fakeIO {
		return r.io(name, func(core.Events) error {
			if err := r.l.Modify(other, 0); err != nil {
				t.Errorf("Modify: %v", err)
			}
			r.l.Stop()
			return nil
		})
	}
	if err := r.l.Register(a, mk("a", b), core.Read); err != nil {
		t.Fatal(err)
	}
	if err := r.l.Register(b, mk("b", a), core.Read); err != nil {
		t.Fatal(err)
	}
	if err := r.run(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if log := withoutPolls(r.takeLog()); len(log) != 1 {
		t.Errorf("log %q, want one IO call", log)
	}
}

// TestIOReadyErrorEndsRun: Run returns an IO's error at once, as a
// callback's; what was queued behind it stays queued for the next Run.
func TestIOReadyErrorEndsRun(t *testing.T) {
	r := newLoop(t)
	a, b := socketpair(t)
	boom := errors.New("boom")
	r.soon(r.item("queued", nil))
	calls := 0
	if err := r.l.Register(a, r.io("a", func(core.Events) error {
		calls++
		if calls == 1 {
			r.soon(r.item("after", nil))
			return boom
		}
		drainFD(a)
		r.l.Stop()
		return nil
	}), core.Read); err != nil {
		t.Fatal(err)
	}
	write(t, b, "x")
	// The first tick has an item ready, so it polls without blocking.
	if err := r.run(); err != boom {
		t.Fatalf("Run = %v, want %v", err, boom)
	}
	if diff := cmp.Diff([]string{"run:queued", "io:a:1"}, withoutPolls(r.takeLog())); diff != "" {
		t.Errorf("log (-want +got):\n%s", diff)
	}
	if err := r.run(); err != nil {
		t.Fatalf("second Run: %v", err)
	}
	if diff := cmp.Diff([]string{"run:after", "io:a:1"}, withoutPolls(r.takeLog())); diff != "" {
		t.Errorf("second run (-want +got):\n%s", diff)
	}
}

// TestTasksInterleaveWithItems: a task runs after the items queued before
// it and before those queued after it; tasks queued while a tick runs wait
// for the next one.
func TestTasksInterleaveWithItems(t *testing.T) {
	r := newLoop(t)
	task := func(name string, then func()) func() error {
		return func() error {
			r.locked("task")
			r.log = append(r.log, "task:"+name)
			if then != nil {
				then()
			}
			return nil
		}
	}
	r.soon(r.item("a", nil))
	r.l.Soon(task("1", func() { r.l.Soon(task("late", nil)) }))
	r.l.Soon(task("2", nil))
	r.soon(r.item("b", func() error { r.l.Soon(task("3", nil)); return nil }))
	r.soon(r.stopper("c"))
	r.l.Soon(task("4", nil))
	if err := r.run(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	want := []string{"run:a", "task:1", "task:2", "run:b", "run:c", "task:4"}
	if diff := cmp.Diff(want, withoutPolls(r.takeLog())); diff != "" {
		t.Errorf("first tick (-want +got):\n%s", diff)
	}
	r.soon(r.stopper("stop"))
	if err := r.run(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	want = []string{"task:late", "task:3", "run:stop"}
	if diff := cmp.Diff(want, withoutPolls(r.takeLog())); diff != "" {
		t.Errorf("second tick (-want +got):\n%s", diff)
	}
}

// TestTaskErrorEndsRun: a failing task ends Run; the tasks behind it stay.
func TestTaskErrorEndsRun(t *testing.T) {
	r := newLoop(t)
	boom := errors.New("boom")
	r.l.Soon(func() error { return boom })
	ran := false
	r.l.Soon(func() error { ran = true; r.l.Stop(); return nil })
	if err := r.run(); err != boom {
		t.Fatalf("Run = %v, want %v", err, boom)
	}
	if soon, _ := r.l.Tasks(); ran || soon != 1 {
		t.Fatalf("after the error: second task ran %v, %d queued; want false, 1", ran, soon)
	}
	if err := r.run(); err != nil || !ran {
		t.Fatalf("second Run = %v, ran %v; want nil, true", err, ran)
	}
}

// TestTaskTimers: a task timer wakes a sleeping loop when due, not before,
// and a cancelled one never runs nor keeps the loop awake.
func TestTaskTimers(t *testing.T) {
	r := newLoop(t)
	start := core.Now()
	var at float64
	cancel, err := r.l.Later(0.02, func() error { t.Error("cancelled task ran"); return nil })
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := r.l.Later(0.05, func() error { at = core.Now(); r.l.Stop(); return nil }); err != nil {
		t.Fatal(err)
	}
	if err := r.run(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if at-start < 0.05 {
		t.Errorf("task ran after %.4fs, want >= 0.05", at-start)
	}
	if got := squashPolls(t, r.takeLog()); len(got) != 1 || got[0] != "poll" {
		t.Errorf("log %q, want only polls", got)
	}
	if soon, timers := r.l.Tasks(); soon+timers != 0 {
		t.Errorf("%d tasks and %d timers left", soon, timers)
	}
}

// TestClearForgetsIOs: Clear drops IOs and pending tasks; Close makes
// Register and Modify fail.
func TestClearForgetsIOs(t *testing.T) {
	r := newLoop(t)
	a, _ := socketpair(t)
	if err := r.l.Register(a, r.io("a", nil), core.Read); err != nil {
		t.Fatal(err)
	}
	r.l.Soon(func() error { t.Error("dropped task ran"); return nil })
	r.l.Later(1, func() error { return nil })
	r.l.Clear()
	if r.l.Owner(a) != nil || r.l.Watching(a) != 0 {
		t.Errorf("after Clear: Owner %v Watching %v", r.l.Owner(a), r.l.Watching(a))
	}
	if soon, timers := r.l.Tasks(); soon+timers != 0 {
		t.Errorf("after Clear: %d tasks and %d timers", soon, timers)
	}
	if err := r.l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.l.Register(a, r.io("a", nil), core.Read); err != core.ErrClosed {
		t.Errorf("Register after Close = %v, want ErrClosed", err)
	}
	if err := r.l.Modify(a, core.Read); err != core.ErrClosed {
		t.Errorf("Modify(Read) after Close = %v, want ErrClosed", err)
	}
	if err := r.l.Modify(a, 0); err != nil {
		t.Errorf("Modify(0) after Close = %v, want nil", err)
	}
	if err := r.l.Soon(func() error { return nil }); err != core.ErrClosed {
		t.Errorf("Soon after Close = %v, want ErrClosed", err)
	}
}
