// Package core is goloop's event loop: a readiness poller, the timer heap
// and the ready queue, driven on the thread that calls Run. It knows nothing
// of Python: the items it schedules are opaque values of type T, and what
// running, cancelling or releasing one means is left to the Hooks.
//
// Threading: every method except Wake must be called by the thread running
// the loop or while the caller holds a lock the running thread also holds
// whenever it touches the loop (the bridge uses the GIL, which the loop
// thread releases only inside Hooks.BeforePoll/AfterPoll).
package core

import (
	"errors"
	"math"
)

// Hooks is what the embedder provides.
type Hooks[T any] interface {
	// Collect is called at the start of each tick and right after the poll:
	// the embedder moves items it queued outside the loop (without a call
	// per item) in with CallSoon, CallAt and TimersCancelled.
	Collect()
	// RunBatch runs ready items in order, giving up the loop's reference
	// to each it runs, and returns how many it consumed. Batches let the
	// bridge cross into C once per run of the ready queue instead of once
	// per callback. A non-nil error stops the loop at once: Loop.Run
	// returns it, and the items after the failing one stay queued for the
	// next Run, as in asyncio. Items scheduled while a batch runs are
	// queued behind it; the batch slice stays valid meanwhile.
	RunBatch(items []T) (int, error)
	// Cancelled reports whether a timer or watcher item was cancelled.
	Cancelled(item T) bool
	// Retain takes one more reference to an item that is queued twice (a
	// watcher's callback each time its fd is ready).
	Retain(item T)
	// Release gives up the loop's reference to an item dropped unrun.
	Release(item T)
	// BeforePoll and AfterPoll bracket a poll that may block (timeout
	// not 0); the bridge releases and retakes the GIL there.
	BeforePoll()
	AfterPoll()
	// Signalled receives the bytes written to SignalFD (signal numbers);
	// an error stops the loop as from Run.
	Signalled(sig []byte) error
}

// ErrClosed is returned by operations on a closed loop.
var ErrClosed = errors.New("event loop is closed")

// ErrRunning is returned by Run on a loop that is already running.
var ErrRunning = errors.New("event loop is already running")

const (
	// maxTimeout caps one poll, as asyncio's MAXIMUM_SELECT_TIMEOUT (24 h)
	// does, so a far-future timer cannot overflow epoll's int milliseconds.
	maxTimeout = 24 * 3600.0
	// clockResolution is added to "now" when collecting due timers, as
	// asyncio adds time.get_clock_info('monotonic').resolution (1 ns on Linux).
	clockResolution = 1e-9
	// asyncio's _MIN_SCHEDULED_TIMER_HANDLES and
	// _MIN_CANCELLED_TIMER_HANDLES_FRACTION: rebuild the heap without the
	// cancelled timers once there are more than 100 and they are over half.
	minScheduledTimers    = 100
	minCancelledTimerFrac = 0.5
	// skipPollFor bounds how long a busy loop with no watched descriptors
	// goes without polling, which bounds the delay of signal handlers
	// registered with add_signal_handler.
	skipPollFor = 1e-3
)

type polledFD struct {
	fd int
	ev Events
}

type watcher[T any] struct {
	events         Events // registered with the poller
	reader, writer T
}

// Loop is one event loop.
type Loop[T any] struct {
	hooks     Hooks[T]
	poller    *poller
	ready     ready[T]
	timers    timerHeap[T]
	cancelled int // cancelled timers still in the heap (asyncio's _timer_cancelled_count)
	watchers  map[int]*watcher[T]
	scratch   []T     // reused by Each
	lastPoll  float64 // when the poller was last asked (Now)
	// polled holds what the poll reported until dispatch, which must wait
	// for AfterPoll: its hooks (Cancelled, Retain, Release) need the lock
	// that BeforePoll gave up, and while it is given up another thread may
	// be using the ready queue and the watchers.
	polled   []polledFD
	stopping bool
	running  bool
	closed   bool
}

// New creates a loop with its own poller.
func New[T any](hooks Hooks[T]) (*Loop[T], error) {
	p, err := newPoller()
	if err != nil {
		return nil, err
	}
	return &Loop[T]{hooks: hooks, poller: p, watchers: make(map[int]*watcher[T])}, nil
}

// CallSoon queues item to run on the next tick; the loop takes over the
// caller's reference.
func (l *Loop[T]) CallSoon(item T) { l.ready.push(item) }

// CallAt schedules item at monotonic time when (seconds); the loop takes
// over the caller's reference. Equal times run in scheduling order.
func (l *Loop[T]) CallAt(when float64, item T) { l.timers.push(when, item) }

// TimersCancelled records that n scheduled timers were cancelled, so the
// heap can be compacted once enough of it is dead.
func (l *Loop[T]) TimersCancelled(n int) { l.cancelled += n }

// Ready returns the number of queued items (those of a batch being run
// included); Timers the number of timers in the heap, cancelled ones
// included.
func (l *Loop[T]) Ready() int  { return l.ready.len() }
func (l *Loop[T]) Timers() int { return l.timers.len() }

// Stop makes Run return after the current tick.
func (l *Loop[T]) Stop() { l.stopping = true }

// Wake interrupts a poll in progress. It is the one method safe from any
// goroutine.
func (l *Loop[T]) Wake() error { return l.poller.wake() }

// WakeFD is the eventfd behind Wake, for an embedder that wakes the loop
// from code that cannot call Go cheaply: writing an 8-byte count to it
// interrupts a poll. Such writers coalesce their own wake-ups.
func (l *Loop[T]) WakeFD() int { return l.poller.wakefd }

// SignalFD is the write end of the signal pipe.
func (l *Loop[T]) SignalFD() int { return l.poller.signalFD() }

// Running reports whether Run is active; Closed whether Close was called.
func (l *Loop[T]) Running() bool { return l.running }
func (l *Loop[T]) Closed() bool  { return l.closed }

// Run runs ticks until Stop is called or a hook returns an error.
func (l *Loop[T]) Run() error {
	if l.closed {
		return ErrClosed
	}
	if l.running {
		return ErrRunning
	}
	l.running = true
	defer func() { l.running, l.stopping = false, false }()
	for {
		if err := l.tick(); err != nil {
			return err
		}
		if l.stopping {
			return nil
		}
	}
}

// tick is one iteration, in the order of asyncio's BaseEventLoop._run_once:
//  0. collect what the embedder queued (Hooks.Collect);
//  1. drop cancelled timers (all of them if they are many, else those at
//     the head of the heap);
//  2. poll: not at all if callbacks are ready or the loop is stopping,
//     until the first timer if there is one, else until an event;
//  3. queue the callbacks of ready descriptors;
//  4. queue the timers due by now (plus the clock resolution);
//  5. run exactly the callbacks queued at this point; those they schedule
//     wait for the next tick.
func (l *Loop[T]) tick() error {
	l.hooks.Collect()
	if n := l.timers.len(); n > minScheduledTimers && float64(l.cancelled)/float64(n) > minCancelledTimerFrac {
		l.timers.filter(func(item T) bool {
			if l.hooks.Cancelled(item) {
				l.hooks.Release(item)
				return false
			}
			return true
		})
		l.cancelled = 0
	} else {
		for l.timers.len() > 0 && l.hooks.Cancelled(l.timers.head().item) {
			l.cancelled--
			l.hooks.Release(l.timers.pop())
		}
	}

	msec := -1
	if l.ready.len() > 0 || l.stopping {
		msec = 0
	} else if l.timers.len() > 0 {
		timeout := l.timers.head().when - Now()
		switch {
		case timeout > maxTimeout:
			timeout = maxTimeout
		case timeout < 0:
			timeout = 0
		}
		// Round up, as selectors does: sleeping 0 ms for a timer due in
		// 0.4 ms would spin until it is due.
		msec = int(math.Ceil(timeout * 1e3))
	}

	if msec == 0 && len(l.watchers) == 0 && Now()-l.lastPoll < skipPollFor {
		// Nothing but the loop's own wake-up and signal descriptors is
		// watched, and a busy loop need not ask the kernel about those on
		// every tick: other threads' callbacks arrive through Collect, and
		// CPython runs signal handlers from the eval loop. Skipping the
		// epoll_wait(0) halves the cost of a tick that runs one task step.
		return l.runReady()
	}
	l.lastPoll = Now()
	if msec != 0 {
		l.hooks.BeforePoll()
	}
	_, sig, err := l.poller.wait(msec, l.collect)
	if msec != 0 {
		l.hooks.AfterPoll()
	}
	if err != nil {
		return err
	}
	// Callbacks another thread queued while this one slept run in this tick,
	// as asyncio's call_soon_threadsafe appends straight to _ready.
	l.hooks.Collect()
	for _, p := range l.polled {
		l.dispatch(p.fd, p.ev)
	}
	l.polled = l.polled[:0]
	if sig != nil {
		if err := l.hooks.Signalled(sig); err != nil {
			return err
		}
	}

	return l.runReady()
}

// runReady queues the due timers and runs the callbacks ready now.
func (l *Loop[T]) runReady() error {
	end := Now() + clockResolution
	for l.timers.len() > 0 && l.timers.head().when < end {
		l.ready.push(l.timers.pop())
	}

	for n := l.ready.len(); n > 0; {
		done, err := l.hooks.RunBatch(l.ready.front(n))
		l.ready.discard(done)
		n -= done
		if err != nil {
			return err
		}
	}
	return nil
}

// collect records a ready descriptor for dispatch after the poll.
func (l *Loop[T]) collect(fd int, ev Events) { l.polled = append(l.polled, polledFD{fd, ev}) }

// dispatch queues the callbacks watching fd, as asyncio's _process_events:
// a cancelled watcher is removed instead of run.
func (l *Loop[T]) dispatch(fd int, ev Events) {
	w := l.watchers[fd]
	if w == nil {
		return
	}
	if ev&Read != 0 && w.events&Read != 0 {
		if l.hooks.Cancelled(w.reader) {
			l.RemoveReader(fd)
		} else {
			l.hooks.Retain(w.reader)
			l.ready.push(w.reader)
		}
	}
	if ev&Write != 0 && w.events&Write != 0 {
		if l.hooks.Cancelled(w.writer) {
			l.RemoveWriter(fd)
		} else {
			l.hooks.Retain(w.writer)
			l.ready.push(w.writer)
		}
	}
}

// AddReader makes item run whenever fd is readable, replacing (and
// releasing) a previous reader. The loop takes over the caller's reference.
func (l *Loop[T]) AddReader(fd int, item T) error { return l.watch(fd, Read, item) }

// AddWriter is AddReader for writability.
func (l *Loop[T]) AddWriter(fd int, item T) error { return l.watch(fd, Write, item) }

// RemoveReader stops watching fd for reading; it reports whether a reader
// was registered.
func (l *Loop[T]) RemoveReader(fd int) (bool, error) { return l.unwatch(fd, Read) }

// RemoveWriter is RemoveReader for writing.
func (l *Loop[T]) RemoveWriter(fd int) (bool, error) { return l.unwatch(fd, Write) }

// Watching reports which events fd is watched for.
func (l *Loop[T]) Watching(fd int) Events {
	if w := l.watchers[fd]; w != nil {
		return w.events
	}
	return 0
}

func (l *Loop[T]) watch(fd int, ev Events, item T) error {
	if l.closed {
		l.hooks.Release(item)
		return ErrClosed
	}
	w := l.watchers[fd]
	if w == nil {
		w = &watcher[T]{}
	}
	if w.events&ev == 0 {
		if err := l.poller.ctl(fd, w.events, w.events|ev); err != nil {
			l.hooks.Release(item)
			return err
		}
		l.watchers[fd] = w
	} else if ev == Read {
		l.hooks.Release(w.reader)
	} else {
		l.hooks.Release(w.writer)
	}
	w.events |= ev
	if ev == Read {
		w.reader = item
	} else {
		w.writer = item
	}
	return nil
}

func (l *Loop[T]) unwatch(fd int, ev Events) (bool, error) {
	w := l.watchers[fd]
	if w == nil || w.events&ev == 0 {
		return false, nil
	}
	var zero T
	err := l.poller.ctl(fd, w.events, w.events&^ev)
	w.events &^= ev
	if ev == Read {
		l.hooks.Release(w.reader)
		w.reader = zero
	} else {
		l.hooks.Release(w.writer)
		w.writer = zero
	}
	if w.events == 0 {
		delete(l.watchers, fd)
	}
	return true, err
}

// Each calls f on every item the loop holds (ready, timers, watchers), in
// a few contiguous slices, for a garbage collector that must see the
// references the loop owns: the bridge crosses into C once per slice, not
// once per item. The slices are valid only during the call.
func (l *Loop[T]) Each(f func([]T)) {
	a, b := l.ready.segments()
	for _, s := range [][]T{a, b} {
		if len(s) > 0 {
			f(s)
		}
	}
	scratch := l.scratch[:0]
	for i := range l.timers.h {
		scratch = append(scratch, l.timers.h[i].item)
	}
	for _, w := range l.watchers {
		if w.events&Read != 0 {
			scratch = append(scratch, w.reader)
		}
		if w.events&Write != 0 {
			scratch = append(scratch, w.writer)
		}
	}
	if len(scratch) > 0 {
		f(scratch)
	}
	clear(scratch)
	l.scratch = scratch[:0]
}

// Clear releases every item the loop holds without running it, as asyncio's
// close() clears _ready and _scheduled. The loop stays usable.
func (l *Loop[T]) Clear() {
	for l.ready.len() > 0 {
		l.hooks.Release(l.ready.pop())
	}
	for l.timers.len() > 0 {
		l.hooks.Release(l.timers.pop())
	}
	l.cancelled = 0
	for fd, w := range l.watchers {
		l.poller.ctl(fd, w.events, 0) // the fd may be closed already: nothing to report
		if w.events&Read != 0 {
			l.hooks.Release(w.reader)
		}
		if w.events&Write != 0 {
			l.hooks.Release(w.writer)
		}
		delete(l.watchers, fd)
	}
}

// Close releases everything and closes the poller. Closing twice is a no-op.
func (l *Loop[T]) Close() error {
	if l.closed {
		return nil
	}
	if l.running {
		return errors.New("cannot close a running event loop")
	}
	l.Clear()
	l.closed = true
	return l.poller.close()
}
