package core_test

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"goloop/core"
)

// readByte reads one byte from a non-blocking fd, or reports EOF/EAGAIN as
// "".
func readByte(t *testing.T, fd int) string {
	t.Helper()
	var b [1]byte
	n, err := unix.Read(fd, b[:])
	if err != nil && err != unix.EAGAIN {
		t.Errorf("read(%d): %v", fd, err)
	}
	if n <= 0 {
		return ""
	}
	return string(b[:n])
}

// TestReaderIsLevelTriggered: a reader that takes one byte per run is run
// again while data remains, one Retain per run.
func TestReaderIsLevelTriggered(t *testing.T) {
	r := newLoop(t)
	rd, w := pipe(t)
	write(t, w, "abc")
	var got string
	if err := r.addReader(rd, r.item("rd", func() error {
		got += readByte(t, rd)
		if len(got) == 3 {
			if ok, err := r.l.RemoveReader(rd); !ok || err != nil {
				t.Errorf("RemoveReader = %v, %v; want true, nil", ok, err)
			}
			r.l.Stop()
		}
		return nil
	})); err != nil {
		t.Fatalf("AddReader: %v", err)
	}
	if r.l.Watching(rd) != core.Read {
		t.Errorf("Watching = %v, want Read", r.l.Watching(rd))
	}
	if err := r.run(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got != "abc" {
		t.Errorf("read %q, want %q", got, "abc")
	}
	want := []string{"retain:rd", "run:rd", "retain:rd", "run:rd", "retain:rd", "run:rd", "release:rd"}
	if diff := cmp.Diff(want, withoutPolls(r.takeLog())); diff != "" {
		t.Errorf("log (-want +got):\n%s", diff)
	}
	if r.l.Watching(rd) != 0 {
		t.Errorf("Watching = %v after RemoveReader", r.l.Watching(rd))
	}
}

func TestWriterRuns(t *testing.T) {
	r := newLoop(t)
	rd, w := pipe(t)
	if err := r.addWriter(w, r.item("wr", func() error {
		write(t, w, "hi")
		if ok, err := r.l.RemoveWriter(w); !ok || err != nil {
			t.Errorf("RemoveWriter = %v, %v; want true, nil", ok, err)
		}
		r.l.Stop()
		return nil
	})); err != nil {
		t.Fatalf("AddWriter: %v", err)
	}
	if r.l.Watching(w) != core.Write {
		t.Errorf("Watching = %v, want Write", r.l.Watching(w))
	}
	if err := r.run(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	var buf [8]byte
	if n, _ := unix.Read(rd, buf[:]); string(buf[:n]) != "hi" {
		t.Errorf("pipe holds %q, want %q", buf[:n], "hi")
	}
	if diff := cmp.Diff([]string{"retain:wr", "run:wr", "release:wr"}, withoutPolls(r.takeLog())); diff != "" {
		t.Errorf("log (-want +got):\n%s", diff)
	}
}

// TestReaderAndWriterOnOneFD: both directions of one descriptor share a
// watcher; one poll queues the reader, then the writer.
func TestReaderAndWriterOnOneFD(t *testing.T) {
	r := newLoop(t)
	a, b := socketpair(t)
	write(t, b, "x")
	r.addReader(a, r.stopper("rd"))
	r.addWriter(a, r.item("wr", nil))
	if r.l.Watching(a) != core.Read|core.Write {
		t.Fatalf("Watching = %v, want Read|Write", r.l.Watching(a))
	}
	if err := r.run(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	want := []string{"retain:rd", "retain:wr", "run:rd", "run:wr"}
	if diff := cmp.Diff(want, withoutPolls(r.takeLog())); diff != "" {
		t.Errorf("log (-want +got):\n%s", diff)
	}

	for _, step := range []struct {
		name     string
		remove   func(int) (bool, error)
		want     bool
		watching core.Events
		log      []string
	}{
		{"RemoveReader", r.l.RemoveReader, true, core.Write, []string{"release:rd"}},
		{"RemoveReader again", r.l.RemoveReader, false, core.Write, nil},
		{"RemoveWriter", r.l.RemoveWriter, true, 0, []string{"release:wr"}},
		{"RemoveWriter again", r.l.RemoveWriter, false, 0, nil},
	} {
		ok, err := step.remove(a)
		if ok != step.want || err != nil {
			t.Errorf("%s = %v, %v; want %v, nil", step.name, ok, err, step.want)
		}
		if r.l.Watching(a) != step.watching {
			t.Errorf("after %s: Watching = %v, want %v", step.name, r.l.Watching(a), step.watching)
		}
		if diff := cmp.Diff(step.log, r.takeLog()); diff != "" {
			t.Errorf("%s (-want +got):\n%s", step.name, diff)
		}
	}
}

func TestRemoveUnwatched(t *testing.T) {
	r := newLoop(t)
	rd, _ := pipe(t)
	for name, remove := range map[string]func(int) (bool, error){
		"RemoveReader": r.l.RemoveReader, "RemoveWriter": r.l.RemoveWriter,
	} {
		if ok, err := remove(rd); ok || err != nil {
			t.Errorf("%s of an unwatched fd = %v, %v; want false, nil", name, ok, err)
		}
	}
	r.addReader(rd, r.item("rd", nil))
	if ok, err := r.l.RemoveWriter(rd); ok || err != nil {
		t.Errorf("RemoveWriter of a read-only watcher = %v, %v; want false, nil", ok, err)
	}
	if r.l.Watching(rd) != core.Read || len(r.log) != 0 {
		t.Errorf("RemoveWriter disturbed the reader: Watching %v, log %q", r.l.Watching(rd), r.log)
	}
}

func TestReplaceReaderReleasesOld(t *testing.T) {
	r := newLoop(t)
	rd, w := pipe(t)
	old := r.item("old", nil)
	r.addReader(rd, old)
	if err := r.addReader(rd, r.stopper("new")); err != nil {
		t.Fatalf("second AddReader: %v", err)
	}
	if diff := cmp.Diff([]string{"release:old"}, r.takeLog()); diff != "" {
		t.Errorf("replacing (-want +got):\n%s", diff)
	}
	if r.l.Watching(rd) != core.Read {
		t.Errorf("Watching = %v, want Read", r.l.Watching(rd))
	}
	write(t, w, "x")
	if err := r.run(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if diff := cmp.Diff([]string{"retain:new", "run:new"}, withoutPolls(r.takeLog())); diff != "" {
		t.Errorf("log (-want +got):\n%s", diff)
	}
	if old.ran != 0 {
		t.Errorf("the replaced reader ran")
	}
}

func TestReplaceWriterReleasesOld(t *testing.T) {
	r := newLoop(t)
	_, w := pipe(t)
	r.addWriter(w, r.item("old", nil))
	r.addWriter(w, r.stopper("new"))
	if err := r.run(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	want := []string{"release:old", "retain:new", "run:new"}
	if diff := cmp.Diff(want, withoutPolls(r.takeLog())); diff != "" {
		t.Errorf("log (-want +got):\n%s", diff)
	}
}

// TestCancelledWatcherRemoved: as asyncio's _process_events, a cancelled
// watcher whose fd turns ready is unregistered and released, not run.
func TestCancelledWatcherRemoved(t *testing.T) {
	r := newLoop(t)
	rd, w := pipe(t)
	write(t, w, "x")
	reader := r.item("rd", nil)
	writer := r.item("wr", nil)
	r.addReader(rd, reader)
	r.addWriter(w, writer)
	reader.cancelled = true
	writer.cancelled = true
	// A ready callback makes the first poll non-blocking; the two fds are
	// ready already, so it reports them.
	r.soon(r.stopper("stop"))
	if err := r.run(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	log := r.takeLog()
	sort.Strings(log)
	if diff := cmp.Diff([]string{"release:rd", "release:wr", "run:stop"}, log); diff != "" {
		t.Errorf("log (-want +got):\n%s", diff)
	}
	if r.l.Watching(rd) != 0 || r.l.Watching(w) != 0 {
		t.Errorf("Watching = %v, %v; want both removed", r.l.Watching(rd), r.l.Watching(w))
	}
}

// TestHangUpAndErrorWakeBothWays: EOF makes a reader ready and a closed
// read end makes a writer ready (EPOLLHUP/EPOLLERR), so the callback's own
// read or write sees the condition.
func TestHangUpAndErrorWakeBothWays(t *testing.T) {
	r := newLoop(t)
	rd1, w1 := rawPipe(t)
	rd2, w2 := rawPipe(t)
	defer unix.Close(rd1)
	defer unix.Close(w2)
	// Fill pipe 2, so only its reader's going away can make it writable.
	for {
		if _, err := unix.Write(w2, make([]byte, 4096)); err != nil {
			break
		}
	}
	unix.Close(w1)
	unix.Close(rd2)
	left := 2
	done := func(remove func(int) (bool, error), fd int) func() error {
		return func() error {
			remove(fd)
			if left--; left == 0 {
				r.l.Stop()
			}
			return nil
		}
	}
	r.addReader(rd1, r.item("rd", done(r.l.RemoveReader, rd1)))
	r.addWriter(w2, r.item("wr", done(r.l.RemoveWriter, w2)))
	guard := r.item("guard", func() error { t.Error("neither EOF nor the closed reader woke the loop"); r.l.Stop(); return nil })
	r.at(core.Now()+testTimeout.Seconds()/2, guard)
	if err := r.run(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	log := withoutPolls(r.takeLog())
	sort.Strings(log)
	want := []string{"release:rd", "release:wr", "retain:rd", "retain:wr", "run:rd", "run:wr"}
	if diff := cmp.Diff(want, log); diff != "" {
		t.Errorf("log (-want +got):\n%s", diff)
	}
}

// TestManyReadyDescriptors: more ready fds than one epoll_wait returns are
// all served, the rest on the following ticks.
func TestManyReadyDescriptors(t *testing.T) {
	r := newLoop(t)
	n := 2*core.MaxEvents + 10
	left := n
	for i := range n {
		rd, w := pipe(t)
		write(t, w, "x")
		r.addReader(rd, r.item(fmt.Sprint("rd", i), func() error {
			readByte(t, rd)
			r.l.RemoveReader(rd)
			if left--; left == 0 {
				r.l.Stop()
			}
			return nil
		}))
	}
	if err := r.run(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	for _, it := range r.items {
		if it.ran != 1 {
			t.Errorf("%s ran %d times, want 1", it.name, it.ran)
		}
	}
}

func TestWatchErrors(t *testing.T) {
	r := newLoop(t)
	it := r.item("own", nil)
	if err := r.addReader(r.l.SignalFD(), it); err == nil {
		t.Errorf("AddReader(SignalFD) succeeded; the loop's own fds must be refused")
	}
	rd, w := rawPipe(t)
	unix.Close(rd)
	unix.Close(w)
	if err := r.addReader(rd, r.item("closed", nil)); !errors.Is(err, unix.EBADF) {
		t.Errorf("AddReader(closed fd) = %v, want EBADF", err)
	}
	if r.l.Watching(r.l.SignalFD()) != 0 || r.l.Watching(rd) != 0 {
		t.Errorf("a failed AddReader left a watcher")
	}
	if diff := cmp.Diff([]string{"release:own", "release:closed"}, r.takeLog()); diff != "" {
		t.Errorf("a refused item must be released (-want +got):\n%s", diff)
	}
}

// TestRemoveAfterFDClosed: closing a watched fd drops it from epoll, so
// removing the watcher afterwards is not an error (selectors' behaviour).
func TestRemoveAfterFDClosed(t *testing.T) {
	r := newLoop(t)
	rd, w := rawPipe(t)
	r.addReader(rd, r.item("rd", nil))
	unix.Close(rd)
	unix.Close(w)
	if ok, err := r.l.RemoveReader(rd); !ok || err != nil {
		t.Errorf("RemoveReader after close = %v, %v; want true, nil", ok, err)
	}
	if diff := cmp.Diff([]string{"release:rd"}, r.takeLog()); diff != "" {
		t.Errorf("log (-want +got):\n%s", diff)
	}
}

func TestSignalFDBytesReachSignalled(t *testing.T) {
	r := newLoop(t)
	sigs := []byte{byte(unix.SIGINT), byte(unix.SIGTERM), byte(unix.SIGCHLD)}
	if _, err := unix.Write(r.l.SignalFD(), sigs); err != nil {
		t.Fatalf("write(SignalFD): %v", err)
	}
	r.signalled = func([]byte) error { r.l.Stop(); return nil }
	if err := r.run(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if diff := cmp.Diff([][]byte{sigs}, r.sigs); diff != "" {
		t.Errorf("Signalled (-want +got):\n%s", diff)
	}
}

func TestSignalledErrorStopsRun(t *testing.T) {
	r := newLoop(t)
	sigErr := errors.New("KeyboardInterrupt")
	r.soon(r.stopper("a"))
	unix.Write(r.l.SignalFD(), []byte{byte(unix.SIGINT)})
	r.signalled = func([]byte) error { return sigErr }
	if err := r.run(); !errors.Is(err, sigErr) {
		t.Fatalf("Run = %v, want %v", err, sigErr)
	}
	if diff := cmp.Diff([]string{"signal:[2]"}, r.takeLog()); diff != "" {
		t.Errorf("log (-want +got):\n%s", diff)
	}
	if r.l.Ready() != 1 {
		t.Errorf("Ready = %d, want the callback still queued", r.l.Ready())
	}
	r.signalled = nil
	if err := r.run(); err != nil {
		t.Fatalf("second Run: %v", err)
	}
	if diff := cmp.Diff([]string{"run:a"}, r.takeLog()); diff != "" {
		t.Errorf("second Run (-want +got):\n%s", diff)
	}
}

// threadsafe is call_soon_threadsafe in miniature: other goroutines append
// to inbox and Wake the loop; the after hook, on the loop, moves the inbox to
// the ready queue. This is the only way the tests touch a running loop from
// another goroutine.
type threadsafe struct {
	mu    sync.Mutex
	inbox []string
}

func (ts *threadsafe) send(l *core.Loop[*item], name string) error {
	ts.mu.Lock()
	ts.inbox = append(ts.inbox, name)
	ts.mu.Unlock()
	return l.Wake()
}

func (ts *threadsafe) take() []string {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	in := ts.inbox
	ts.inbox = nil
	return in
}

func (ts *threadsafe) pending() bool {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return len(ts.inbox) > 0
}

// TestCollectRunsWhatWokeThePoll: a callback posted from another goroutine
// during the poll is collected right after it and runs in that same tick.
// The after hook asks to stop once the post is there, so Run ends with that tick:
// a loop that collected only as the next tick started would return without
// running it.
func TestCollectRunsWhatWokeThePoll(t *testing.T) {
	r := newLoop(t)
	var ts threadsafe
	polling := make(chan struct{}, 1)
	r.before = func() {
		select {
		case polling <- struct{}{}:
		default:
		}
	}
	r.after = func() {
		if ts.pending() {
			r.l.Stop()
		}
	}
	r.collect = func() {
		for _, name := range ts.take() {
			r.soon(r.item(name, nil))
		}
	}
	done := r.start()
	select {
	case <-polling:
	case err := <-done:
		t.Fatalf("Run returned %v before it was woken", err)
	case <-time.After(testTimeout):
		t.Fatal("the loop never reached its poll")
	}
	if err := ts.send(r.l, "posted"); err != nil {
		t.Fatalf("Wake: %v", err)
	}
	if err := r.wait(done); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if diff := cmp.Diff([]string{"run:posted"}, withoutPolls(r.takeLog())); diff != "" {
		t.Errorf("log (-want +got):\n%s", diff)
	}
}

// TestWakeInterruptsBlockingPoll: the loop blocks (forever, or until a far
// timer) and only a Wake from another goroutine can end the poll.
func TestWakeInterruptsBlockingPoll(t *testing.T) {
	for _, far := range []bool{false, true} {
		t.Run(fmt.Sprint("far timer ", far), func(t *testing.T) {
			r := newLoop(t)
			if far {
				r.at(core.Now()+1e9, r.item("far", nil)) // past maxTimeout
			}
			var ts threadsafe
			polling := make(chan struct{}, 1)
			r.before = func() {
				select {
				case polling <- struct{}{}:
				default:
				}
			}
			r.after = func() {
				for _, name := range ts.take() {
					r.soon(r.stopper(name))
				}
			}
			done := r.start()
			select {
			case <-polling:
			case err := <-done:
				t.Fatalf("Run returned %v before it was woken", err)
			case <-time.After(testTimeout):
				t.Fatal("the loop never reached its poll")
			}
			if err := ts.send(r.l, "woken"); err != nil {
				t.Fatalf("Wake: %v", err)
			}
			if err := r.wait(done); err != nil {
				t.Fatalf("Run: %v", err)
			}
			if diff := cmp.Diff([]string{"run:woken"}, withoutPolls(r.takeLog())); diff != "" {
				t.Errorf("log (-want +got):\n%s", diff)
			}
		})
	}
}

// TestWakeFromManyGoroutines sends callbacks from several goroutines at
// once; every one arrives, each sender's in its order.
func TestWakeFromManyGoroutines(t *testing.T) {
	r := newLoop(t)
	const senders, each = 4, 300
	var ts threadsafe
	got := map[int][]int{}
	total := 0
	// Collect, not the after hook: the after hook runs as Poll returns,
	// before the poller drains the wake-up descriptor, and a post made
	// between the two would wait for a wake-up that was drained.
	r.collect = func() {
		for _, name := range ts.take() {
			var s, i int
			fmt.Sscanf(name, "%d.%d", &s, &i)
			r.soon(r.item(name, func() error {
				got[s] = append(got[s], i)
				if total++; total == senders*each {
					r.l.Stop()
				}
				return nil
			}))
		}
	}
	done := r.start()
	var wg sync.WaitGroup
	errs := make(chan error, senders)
	for s := range senders {
		wg.Go(func() {
			for i := range each {
				if err := ts.send(r.l, fmt.Sprintf("%d.%d", s, i)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Wake: %v", err)
	}
	if err := r.wait(done); err != nil {
		t.Fatalf("Run: %v", err)
	}
	for s := range senders {
		if diff := cmp.Diff(seq(0, each), got[s]); diff != "" {
			t.Errorf("sender %d (-want +got):\n%s", s, diff)
		}
	}
}

// TestWakeNeverLost hammers Wake from two goroutines while the loop does
// nothing but block in its poll: each poll must end. A wake-up recorded as
// pending but drained from the eventfd would leave the loop asleep for good
// (the bug fixed in poller.wait: clearing the flag before draining).
func TestWakeNeverLost(t *testing.T) {
	r := newLoop(t)
	// Before the fix this hung within a few hundred polls; 20000 take
	// about a second under -race.
	polls := 20000
	if testing.Short() {
		polls = 2000
	}
	n := 0
	r.after = func() {
		if n++; n == polls {
			r.l.Stop()
		}
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for !stop.Load() {
				r.l.Wake()
			}
		})
	}
	done := r.start()
	select {
	case err := <-done:
		stop.Store(true)
		wg.Wait()
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(testTimeout):
		stop.Store(true)
		wg.Wait()
		pending := r.l.WakePending()
		r.abandoned = true
		r.l.ForceWake() // let the goroutine go on; it may block again
		t.Fatalf("the loop slept through every Wake (pending flag %v)", pending)
	}
}

// TestWakeCoalescedAndDrained works the poller directly: many Wakes make
// one wake-up, which the next poll drains.
func TestWakeCoalescedAndDrained(t *testing.T) {
	r := newLoop(t)
	poll := func(msec int) bool {
		t.Helper()
		woken, sig, err := r.l.PollOnce(msec, func(fd int, ev core.Events) {
			t.Errorf("unexpected user fd %d ready (%v)", fd, ev)
		})
		if err != nil || sig != nil {
			t.Fatalf("poll: sig %v err %v", sig, err)
		}
		return woken
	}
	if r.l.WakePending() || poll(0) {
		t.Fatalf("a new loop is woken")
	}
	for range 3 {
		if err := r.l.Wake(); err != nil {
			t.Fatalf("Wake: %v", err)
		}
	}
	if !r.l.WakePending() {
		t.Errorf("no wake-up pending after Wake")
	}
	// A timeout, not -1: if the wake-up were lost this returns unwoken
	// instead of hanging.
	if !poll(int(testTimeout.Milliseconds())) {
		t.Fatalf("poll after Wake not woken")
	}
	if r.l.WakePending() {
		t.Errorf("wake-up still pending after the poll saw it")
	}
	if poll(0) {
		t.Errorf("second poll woken: the eventfd was not drained")
	}
	r.l.Wake()
	if !r.l.WakePending() || !poll(int(testTimeout.Milliseconds())) {
		t.Errorf("a Wake after a drained one did not wake the poll")
	}
}

// TestSignalPipeDrained: one poll returns every byte in the signal pipe,
// however many reads of the 64-byte buffer that takes.
func TestSignalPipeDrained(t *testing.T) {
	r := newLoop(t)
	for _, n := range []int{1, 63, 64, 65, 128, 200, 1000} {
		want := make([]byte, n)
		for i := range want {
			want[i] = byte(1 + i%64)
		}
		if _, err := unix.Write(r.l.SignalFD(), want); err != nil {
			t.Fatalf("write %d bytes: %v", n, err)
		}
		woken, sig, err := r.l.PollOnce(0, func(int, core.Events) {})
		if woken || err != nil {
			t.Fatalf("%d bytes: woken %v err %v", n, woken, err)
		}
		if diff := cmp.Diff(want, sig); diff != "" {
			t.Errorf("%d bytes (-want +got):\n%s", n, diff)
		}
		if _, sig, _ := r.l.PollOnce(0, func(int, core.Events) {}); sig != nil {
			t.Errorf("%d bytes: %d left for the next poll", n, len(sig))
		}
	}
}

// TestPollReportsEvents checks the epoll mask translation directly.
func TestPollReportsEvents(t *testing.T) {
	r := newLoop(t)
	readable, w1 := pipe(t)
	write(t, w1, "x")
	_, writable := pipe(t)
	eof, w3 := rawPipe(t)
	defer unix.Close(eof)
	unix.Close(w3)
	idle, _ := pipe(t)
	sa, sb := socketpair(t)
	write(t, sb, "x")
	r.addReader(readable, r.item("a", nil))
	r.addWriter(writable, r.item("b", nil))
	r.addReader(eof, r.item("c", nil))
	r.addReader(idle, r.item("d", nil))
	r.addReader(sa, r.item("e", nil))
	r.addWriter(sa, r.item("f", nil))
	type ready struct {
		FD int
		Ev core.Events
	}
	var got []ready
	if _, _, err := r.l.PollOnce(0, func(fd int, ev core.Events) { got = append(got, ready{fd, ev}) }); err != nil {
		t.Fatalf("poll: %v", err)
	}
	want := []ready{
		{readable, core.Read},
		{writable, core.Write},
		{eof, core.Read | core.Write}, // EPOLLHUP wakes both ways
		{sa, core.Read | core.Write},
	}
	less := func(a, b ready) int { return a.FD - b.FD }
	slices.SortFunc(got, less)
	slices.SortFunc(want, less)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ready fds (-want +got):\n%s", diff)
	}
	if len(r.log) != 0 {
		t.Errorf("a bare poll touched references: %q", r.log)
	}
}
