package core_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"goloop/core"
)

// The test embedder. Items are *item; the recorder implements Hooks[*item],
// writes down every hook call in order and counts the references the loop
// holds to each item, so that every test also checks the reference balance:
// each item handed to the loop is, in the end, Run or Released exactly once
// for that hand-over and once for every Retain.

// testTimeout bounds every wait on the loop. It is only reached when a test
// fails; a passing test never waits for it.
const testTimeout = 10 * time.Second

type item struct {
	name      string
	cancelled bool
	run       func() error // called by Run unless cancelled; may be nil

	refs                        int // references the loop holds now
	given, retained, ran, freed int
}

type recorder struct {
	t   *testing.T
	l   *core.Loop[*item]
	log []string

	items []*item
	sigs  [][]byte

	before, after func()
	collect       func()
	signalled     func([]byte) error

	// unlocked is true while Poll waits, where the bridge
	// has given up the GIL: no other hook may be called then.
	unlocked bool

	// abandoned is set when a Run never returned: the loop still belongs
	// to its goroutine, so the cleanup must not touch it.
	abandoned bool
}

func newLoop(t *testing.T) *recorder {
	t.Helper()
	r := &recorder{t: t}
	l, err := core.New[*item](r)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	r.l = l
	t.Cleanup(func() {
		if r.abandoned {
			return
		}
		if err := l.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		r.checkBalance()
	})
	return r
}

// checkBalance reports an item the loop still holds or gave up too often.
func (r *recorder) checkBalance() {
	r.t.Helper()
	for _, it := range r.items {
		if it.refs != 0 || it.ran+it.freed != it.given+it.retained {
			r.t.Errorf("item %q: handed over %d times and retained %d, but run %d times and released %d (%d references left)",
				it.name, it.given, it.retained, it.ran, it.freed, it.refs)
		}
	}
}

// item makes an item; run may be nil.
func (r *recorder) item(name string, run func() error) *item {
	it := &item{name: name, run: run}
	r.items = append(r.items, it)
	return it
}

// stopper makes an item that stops the loop.
func (r *recorder) stopper(name string) *item {
	return r.item(name, func() error { r.l.Stop(); return nil })
}

// give records that the caller hands one reference to it over to the loop.
func (r *recorder) give(it *item) *item {
	it.refs++
	it.given++
	return it
}

func (r *recorder) soon(it *item)             { r.l.CallSoon(r.give(it)) }
func (r *recorder) at(when float64, it *item) { r.l.CallAt(when, r.give(it)) }

// cancelTimer cancels a scheduled timer as the bridge does: mark the item,
// then tell the loop.
func (r *recorder) cancelTimer(it *item) {
	it.cancelled = true
	r.l.TimersCancelled(1)
}

func (r *recorder) addReader(fd int, it *item) error { return r.l.AddReader(fd, r.give(it)) }
func (r *recorder) addWriter(fd int, it *item) error { return r.l.AddWriter(fd, r.give(it)) }

// locked reports a hook called while the poll's lock is given up.
func (r *recorder) locked(hook string) {
	if r.unlocked {
		r.t.Errorf("%s called while Poll waits, without the lock", hook)
	}
}

func (r *recorder) drop(it *item, why string) {
	if it.refs <= 0 {
		r.t.Errorf("%s %q: the loop gave up a reference it did not hold", why, it.name)
	}
	it.refs--
}

// RunBatch runs the items one by one, as the bridge's C loop does.
func (r *recorder) RunBatch(items []*item) (int, error) {
	for i, it := range items {
		if err := r.run1(it); err != nil {
			return i + 1, err
		}
	}
	return len(items), nil
}

func (r *recorder) run1(it *item) error {
	r.locked("RunBatch")
	r.drop(it, "Run")
	it.ran++
	if it.cancelled {
		// The embedder's Run skips a cancelled item, as asyncio's
		// _run_once skips a cancelled handle in _ready.
		r.log = append(r.log, "skip:"+it.name)
		return nil
	}
	r.log = append(r.log, "run:"+it.name)
	if it.run != nil {
		return it.run()
	}
	return nil
}

func (r *recorder) Cancelled(it *item) bool {
	r.locked("Cancelled")
	return it.cancelled
}

func (r *recorder) Retain(it *item) {
	r.locked("Retain")
	it.refs++
	it.retained++
	r.log = append(r.log, "retain:"+it.name)
}

func (r *recorder) Release(it *item) {
	r.locked("Release")
	r.drop(it, "Release")
	it.freed++
	r.log = append(r.log, "release:"+it.name)
}

// Poll logs "before" once it has given up the lock and "after" once it
// has it back, around the wait.
func (r *recorder) Poll(epfd int, events []unix.EpollEvent, msec int) (int, error) {
	r.locked("Poll")
	r.unlocked = true
	r.log = append(r.log, "before")
	if r.before != nil {
		r.before()
	}
	n, err := unix.EpollWait(epfd, events, msec)
	r.unlocked = false
	r.log = append(r.log, "after")
	if r.after != nil {
		r.after()
	}
	return n, err
}

// Collect is where an embedder moves in items queued outside the loop;
// the tests mostly queue directly, and set collect when they do not.
func (r *recorder) Collect() {
	r.locked("Collect")
	if r.collect != nil {
		r.collect()
	}
}

func (r *recorder) Signalled(sig []byte) error {
	r.locked("Signalled")
	r.log = append(r.log, fmt.Sprintf("signal:%v", sig))
	r.sigs = append(r.sigs, slices.Clone(sig))
	if r.signalled != nil {
		return r.signalled(sig)
	}
	return nil
}

// start runs the loop on a goroutine of its own; wait collects the result.
// Between the two the test goroutine may only call Wake: the channel hands
// the loop back, with everything the hooks wrote, when Run returns.
func (r *recorder) start() <-chan error {
	done := make(chan error, 1)
	go func() { done <- r.l.Run() }()
	return done
}

func (r *recorder) wait(done <-chan error) error {
	r.t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(testTimeout):
		r.abandoned = true
		r.t.Fatalf("Run did not return within %v", testTimeout)
		return nil
	}
}

// run is Run bounded by testTimeout, so a loop that wrongly blocks fails
// the test instead of hanging it.
func (r *recorder) run() error {
	r.t.Helper()
	return r.wait(r.start())
}

// takeLog returns the log so far and starts a new one.
func (r *recorder) takeLog() []string {
	log := r.log
	r.log = nil
	return log
}

// withoutPolls drops the before/after entries of Poll. How many polls a
// blocking wait takes is not fixed (EINTR returns early), so tests about
// other things leave them out.
func withoutPolls(log []string) []string {
	return slices.DeleteFunc(slices.Clone(log), func(s string) bool { return s == "before" || s == "after" })
}

// squashPolls replaces each before/after pair of Poll by "poll" and a run of
// polls by one, and reports an unpaired hook.
func squashPolls(t *testing.T, log []string) []string {
	t.Helper()
	var out []string
	for i := 0; i < len(log); i++ {
		switch log[i] {
		case "before":
			if i+1 == len(log) || log[i+1] != "after" {
				t.Errorf("before at %d not followed by after in %q", i, log)
				continue
			}
			i++
			if len(out) == 0 || out[len(out)-1] != "poll" {
				out = append(out, "poll")
			}
		case "after":
			t.Errorf("after at %d without before in %q", i, log)
		default:
			out = append(out, log[i])
		}
	}
	return out
}

// pipe returns a non-blocking pipe closed at the end of the test.
func pipe(t *testing.T) (r, w int) {
	t.Helper()
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		t.Fatalf("pipe2: %v", err)
	}
	t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
	return fds[0], fds[1]
}

// rawPipe returns a non-blocking pipe the test closes itself, for tests
// that close an end early: a cleanup closing it again could hit a reused
// descriptor number.
func rawPipe(t *testing.T) (r, w int) {
	t.Helper()
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		t.Fatalf("pipe2: %v", err)
	}
	return fds[0], fds[1]
}

// socketpair returns a connected non-blocking pair closed at the end of the
// test.
func socketpair(t *testing.T) (a, b int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("socketpair: %v", err)
	}
	t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
	return fds[0], fds[1]
}

func write(t *testing.T, fd int, s string) {
	t.Helper()
	if n, err := unix.Write(fd, []byte(s)); err != nil || n != len(s) {
		t.Fatalf("write(%d, %q) = %d, %v", fd, s, n, err)
	}
}
