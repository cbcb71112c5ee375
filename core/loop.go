// Package core is goloop's event loop: a readiness poller, the timer heap
// and the ready queue, driven on the thread that calls Run. It knows nothing
// of Python: the items it schedules are opaque values of type T, and what
// running, cancelling or releasing one means is left to the Hooks.
//
// Sockets are serviced by the core itself, on the loop thread, through a
// second kind of watcher (IO): Stream, Listener and Datagram do the
// non-blocking I/O, buffering and flow control of asyncio's selector
// transports and report to sinks the embedder implements.
//
// Threading: every method except Wake must be called by the thread running
// the loop or while the caller holds a lock the running thread also holds
// whenever it touches the loop (the bridge uses the GIL, which the loop
// thread releases only inside Hooks.Poll).
package core

import (
	"errors"
	"fmt"
	"math"

	"golang.org/x/sys/unix"
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
	// queued behind it; the batch slice stays valid meanwhile. RunBatch
	// may set the slots of consumed items to the zero value (Each reports
	// them so until the batch returns).
	RunBatch(items []T) (int, error)
	// Cancelled reports whether a timer or watcher item was cancelled.
	Cancelled(item T) bool
	// Retain takes one more reference to an item that is queued twice (a
	// watcher's callback each time its fd is ready).
	Retain(item T)
	// Release gives up the loop's reference to an item dropped unrun.
	Release(item T)
	// Poll makes a poll that may block (msec not 0): epoll_wait(2) on epfd
	// into events, returning what it returns (err a unix.Errno), with the
	// embedder's lock given up for the wait and taken back before it
	// returns. The bridge does that in one C function (release the GIL,
	// wait, retake it): one cgo crossing instead of three, which was a
	// tenth of the instructions of a 1 KiB echo round trip.
	Poll(epfd int, events []unix.EpollEvent, msec int) (n int, err error)
	// Signalled receives the bytes written to SignalFD (signal numbers);
	// an error stops the loop as from Run.
	Signalled(sig []byte) error
}

// IO is a descriptor the core services itself (a Stream, Listener or
// Datagram) rather than by queueing the embedder's items: the second kind of
// watcher, next to AddReader/AddWriter.
type IO interface {
	// Ready is called on the loop thread in the ready phase, in the order
	// of the callbacks, as a reader or writer handle queued by the poll
	// would run: after the callbacks queued before the poll, so that one
	// ready when the data came (a task about to create the future that
	// data_received resolves, one that pauses or closes a transport or a
	// server) runs first, as asyncio's _process_events orders them. It
	// gets the events the poll reported among those the descriptor is
	// still registered for then, and is not called if none are left (an
	// IO unregistered meanwhile, as asyncio's remove_reader cancels a
	// handle _ready holds). It may register, modify and unregister any
	// descriptor, its own included. A non-nil error ends Run as a
	// callback's does.
	Ready(ev Events) error
}

// InUseError reports a descriptor that is watched in the other way: by an
// IO when items were to be added, or by items (or another IO) when an IO
// was to be registered. asyncio raises RuntimeError for the same clash.
type InUseError struct {
	FD    int
	Owner IO // the IO that has the descriptor; nil if AddReader/AddWriter items watch it
}

func (e *InUseError) Error() string {
	if e.Owner != nil {
		return fmt.Sprintf("File descriptor %d is used by transport", e.FD)
	}
	return fmt.Sprintf("File descriptor %d is watched by add_reader() or add_writer()", e.FD)
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

type polledFD[T any] struct {
	fd int
	ev Events
	w  *watcher[T] // the watcher fd had when dispatch began (see tick)
}

// watchKind tells the two kinds of watcher apart.
type watchKind uint8

const (
	// watchItems: the embedder's reader and writer items are queued when
	// the descriptor is ready (AddReader, AddWriter).
	watchItems watchKind = iota
	// watchIO: the core's own IO is called (Register).
	watchIO
)

// watcher is one watched descriptor, of either kind.
type watcher[T any] struct {
	kind   watchKind
	events Events // registered with the poller
	// pending: the events polls reported for an IO that the ready phase
	// has yet to handle; the watcher is queued in the task FIFO from when
	// pending stops being empty until it runs.
	pending        Events
	reader, writer T  // watchItems
	io             IO // watchIO
}

// run calls an IO's Ready with what is still pending: nothing
// if it was unregistered, and only what it is still registered for.
func (w *watcher[T]) run() error {
	ev := w.pending
	w.pending = 0
	if ev == 0 {
		return nil
	}
	return w.io.Ready(ev)
}

// Loop is one event loop.
type Loop[T any] struct {
	hooks     Hooks[T]
	poller    *poller
	ready     ready[T]
	timers    timerHeap[T]
	cancelled int // cancelled timers still in the heap (asyncio's _timer_cancelled_count)
	watchers  fdTable[T]
	scratch   []T     // reused by Each
	lastPoll  float64 // when the poller was last asked (Now)
	// polled holds what the poll reported until dispatch, which must wait
	// for Poll to return: its hooks (Cancelled, Retain, Release) need the lock
	// that Poll gives up, and while it is given up another thread may
	// be using the ready queue and the watchers.
	polled []polledFD[T]
	// tasks are Go calls deferred by IOs (a transport's connection-lost
	// notification) and the watchers of ready IOs, run in FIFO order
	// with the ready items, and taskTimers Go calls scheduled for later
	// (a listener's accept retry); see deferred.go.
	tasks      ready[queued]
	taskTimers timerHeap[*task]
	rbuf       []byte       // the read buffer IOs share (readBuffer)
	reader     StreamReader // reads runs of ready streams (batch.go); nil: each its own
	pollReader PollReader   // reader, if it also polls
	polledRun  PolledRun    // what the last PollRead read
	streams    int          // registered Streams
	batch      []*Stream    // the run readStreams hands over
	iov        []unix.Iovec // the sendmsg iovecs streams share (iovecs)
	stopping   bool
	running    bool
	closed     bool
}

// New creates a loop with its own poller.
func New[T any](hooks Hooks[T]) (*Loop[T], error) {
	p, err := newPoller()
	if err != nil {
		return nil, err
	}
	return &Loop[T]{hooks: hooks, poller: p}, nil
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
//     until the first timer if there is one, else until an event (a
//     PollReader's poll may read the streams it finds ready, and the tick
//     ends there: they were all its ready phase had to run);
//  3. for each ready descriptor, queue its items' callbacks, or its IO
//     (a transport, which reads and writes in step 5, or a listener,
//     which accepts there, where asyncio runs the reader and writer
//     handles);
//  4. queue the timers due by now (plus the clock resolution), the
//     embedder's and the core's own;
//  5. run exactly the callbacks queued at this point, the embedder's items
//     and the core's tasks (deferred.go) in the order they were queued;
//     those they schedule wait for the next tick.
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

	for l.taskTimers.len() > 0 && l.taskTimers.head().item.cancelled {
		l.taskTimers.pop()
	}

	msec := -1
	if l.ready.len() > 0 || l.tasks.len() > 0 || l.stopping {
		msec = 0
	} else if when, ok := l.nextTimer(); ok {
		timeout := when - Now()
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

	if msec == 0 && l.watchers.len() == 0 && Now()-l.lastPoll < skipPollFor {
		// Nothing but the loop's own wake-up and signal descriptors is
		// watched, and a busy loop need not ask the kernel about those on
		// every tick: other threads' callbacks arrive through Collect, and
		// CPython runs signal handlers from the eval loop. Skipping the
		// epoll_wait(0) halves the cost of a tick that runs one task step.
		return l.runReady()
	}
	if l.watchers.len() == 0 {
		// Only the skip above reads lastPoll. Left stale while
		// descriptors are watched, it can only make the loop poll once
		// more when they are gone: one clock read saved per tick.
		l.lastPoll = Now()
	}
	_, sig, err := l.poller.wait(msec, l.blocker(), l.collect)
	if err != nil {
		return err
	}
	if l.polledRun.Read {
		return l.endPolledRun()
	}
	// Callbacks another thread queued while this one slept run in this tick,
	// as asyncio's call_soon_threadsafe appends straight to _ready.
	l.hooks.Collect()
	// An IO's Ready runs user code, which may close descriptors reported
	// in this same poll and open new ones under the same numbers. So each
	// fd is looked up once, before anything runs, and dispatched only if
	// that watcher is still the one registered: a stale event never
	// reaches a watcher registered after the poll.
	for i := range l.polled {
		l.polled[i].w = l.watchers.get(l.polled[i].fd)
	}
	var failed error
	for _, p := range l.polled {
		if failed = l.dispatch(p); failed != nil {
			break
		}
	}
	clear(l.polled) // drop the watcher pointers
	l.polled = l.polled[:0]
	if sig != nil {
		// The signal bytes were drained from the pipe: deliver them even
		// when an IO failed, or the signals would be lost.
		if err := l.hooks.Signalled(sig); err != nil && failed == nil {
			failed = err
		}
	}
	if failed != nil {
		return failed
	}

	return l.runReady()
}

// nextTimer returns when the earliest timer (the embedder's or the core's
// own) is due.
func (l *Loop[T]) nextTimer() (float64, bool) {
	switch {
	case l.timers.len() > 0 && l.taskTimers.len() > 0:
		return min(l.timers.head().when, l.taskTimers.head().when), true
	case l.timers.len() > 0:
		return l.timers.head().when, true
	case l.taskTimers.len() > 0:
		return l.taskTimers.head().when, true
	}
	return 0, false
}

// runReady queues the due timers and runs the callbacks ready now: the
// embedder's items and the core's tasks, each task after the items that
// were queued before it (as if both were in asyncio's one _ready deque).
func (l *Loop[T]) runReady() error {
	if l.timers.len() > 0 || l.taskTimers.len() > 0 {
		end := Now() + clockResolution
		for l.timers.len() > 0 && l.timers.head().when < end {
			l.ready.push(l.timers.pop())
		}
		l.dueTasks(end)
	}

	n, d := l.ready.len(), l.tasks.len()
	for n > 0 || d > 0 {
		k := n // items to run before the next task
		if d > 0 {
			k = min(n, int(int64(l.tasks.peek().at)-int64(l.ready.out)))
		}
		if k <= 0 {
			if l.reader != nil {
				done, err := l.readStreams(d)
				if d -= done; err != nil {
					return err
				}
				if done > 0 {
					continue
				}
			}
			d--
			if err := l.tasks.pop().r.run(); err != nil {
				return err
			}
			continue
		}
		done, err := l.hooks.RunBatch(l.ready.front(k))
		l.ready.discard(done)
		n -= done
		if err != nil {
			return err
		}
	}
	return nil
}

// collect records a ready descriptor for dispatch after the poll.
func (l *Loop[T]) collect(fd int, ev Events) {
	l.polled = append(l.polled, polledFD[T]{fd: fd, ev: ev})
}

// dispatch is where readiness is routed, for both kinds of watcher. Items
// are queued, as asyncio's _process_events does (a cancelled item is removed
// instead), and so is an IO, its watcher in the task FIFO.
func (l *Loop[T]) dispatch(p polledFD[T]) error {
	w, fd, ev := p.w, p.fd, p.ev
	if w == nil || l.watchers.get(fd) != w {
		return nil // unwatched, or closed and reused, since the poll
	}
	if w.kind == watchIO {
		// Only what it still wants: an earlier IO in this batch may have
		// paused it.
		if ev &= w.events; ev == 0 {
			return nil
		}
		// Queued once: a readiness left pending by a Run that a callback
		// cut short is queued already, ahead.
		if w.pending == 0 {
			l.tasks.push(queued{r: w, at: l.ready.pushed()})
		}
		w.pending |= ev
		return nil
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
	return nil
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

// Watching reports which events fd is watched for, by items or by an IO.
func (l *Loop[T]) Watching(fd int) Events {
	if w := l.watchers.get(fd); w != nil {
		return w.events
	}
	return 0
}

// Watcher returns the item AddReader (ev Read) or AddWriter (ev Write)
// registered for fd, if any: the embedder cancels it before replacing or
// removing it, as asyncio's selector loop cancels the old handle.
func (l *Loop[T]) Watcher(fd int, ev Events) (T, bool) {
	var zero T
	w := l.watchers.get(fd)
	if w == nil || w.kind != watchItems || w.events&ev == 0 {
		return zero, false
	}
	if ev == Read {
		return w.reader, true
	}
	return w.writer, true
}

// Register makes the loop call io.Ready when fd is ready for any of ev
// (which may be 0: the IO then owns fd without polling it). The fd must not
// be watched already, by items or by an IO (InUseError), nor be one of the
// loop's own. The loop holds io until Unregister, Clear or Close; it never
// closes fd.
func (l *Loop[T]) Register(fd int, io IO, ev Events) error {
	if l.closed {
		return ErrClosed
	}
	if io == nil {
		return errors.New("core: Register with a nil IO")
	}
	if w := l.watchers.get(fd); w != nil {
		return &InUseError{FD: fd, Owner: w.io}
	}
	if err := l.poller.ctl(fd, 0, ev); err != nil {
		return err
	}
	l.watchers.set(fd, &watcher[T]{kind: watchIO, events: ev, io: io})
	l.countStream(io, 1)
	return nil
}

// countStream keeps the count of registered Streams (see blocker).
func (l *Loop[T]) countStream(io IO, delta int) {
	if _, ok := io.(*Stream); ok {
		l.streams += delta
	}
}

// Modify changes the events an IO's fd is polled for. On a closed loop it
// fails only when asked to poll (ErrClosed), as asyncio's _add_reader
// raises and _remove_reader does not.
func (l *Loop[T]) Modify(fd int, ev Events) error {
	w := l.watchers.get(fd)
	if w == nil || w.kind != watchIO {
		if l.closed {
			if ev != 0 {
				return ErrClosed
			}
			return nil
		}
		return fmt.Errorf("core: fd %d is not registered by an IO", fd)
	}
	if ev == w.events {
		return nil
	}
	if err := l.poller.ctl(fd, w.events, ev); err != nil {
		return err
	}
	// A readiness no longer polled for is not handled either, as asyncio's
	// remove_reader and remove_writer cancel the handle _ready may hold.
	w.events, w.pending = ev, w.pending&ev
	return nil
}

// Unregister forgets the IO registered for fd, before its owner closes it
// (the poller drops a closed descriptor by itself, but the loop would go on
// believing fd is taken). A fd with no IO is left alone.
func (l *Loop[T]) Unregister(fd int) error {
	w := l.watchers.get(fd)
	if w == nil || w.kind != watchIO {
		return nil
	}
	l.watchers.del(fd)
	l.countStream(w.io, -1)
	w.pending = 0 // see Modify; an IO registered later has a watcher of its own
	return l.poller.ctl(fd, w.events, 0)
}

// Owner returns the IO registered for fd, or nil: what asyncio's
// _ensure_fd_no_transport asks before add_reader and friends.
func (l *Loop[T]) Owner(fd int) IO {
	if w := l.watchers.get(fd); w != nil && w.kind == watchIO {
		return w.io
	}
	return nil
}

func (l *Loop[T]) watch(fd int, ev Events, item T) error {
	if l.closed {
		l.hooks.Release(item)
		return ErrClosed
	}
	w := l.watchers.get(fd)
	if w == nil {
		w = &watcher[T]{kind: watchItems}
	} else if w.kind == watchIO {
		l.hooks.Release(item)
		return &InUseError{FD: fd, Owner: w.io}
	}
	if w.events&ev == 0 {
		if err := l.poller.ctl(fd, w.events, w.events|ev); err != nil {
			l.hooks.Release(item)
			return err
		}
		l.watchers.set(fd, w)
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
	w := l.watchers.get(fd)
	if w != nil && w.kind == watchIO {
		return false, &InUseError{FD: fd, Owner: w.io}
	}
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
		l.watchers.del(fd)
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
	for _, w := range l.watchers.w {
		if w == nil || w.kind == watchIO {
			continue
		}
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
// close() clears _ready and _scheduled. It also forgets the registered IOs
// (without telling them: as when asyncio closes its selector under open
// transports) and drops the core's pending tasks, so a transport whose
// Lost was scheduled never gets it. The loop stays usable.
func (l *Loop[T]) Clear() {
	for l.ready.len() > 0 {
		l.hooks.Release(l.ready.pop())
	}
	for l.timers.len() > 0 {
		l.hooks.Release(l.timers.pop())
	}
	l.cancelled = 0
	for l.tasks.len() > 0 {
		l.tasks.pop()
	}
	l.taskTimers = timerHeap[*task]{}
	for fd, w := range l.watchers.w {
		if w == nil {
			continue
		}
		l.poller.ctl(fd, w.events, 0) // the fd may be closed already: nothing to report
		if w.kind == watchIO {
			l.watchers.del(fd)
			l.countStream(w.io, -1)
			continue
		}
		if w.events&Read != 0 {
			l.hooks.Release(w.reader)
		}
		if w.events&Write != 0 {
			l.hooks.Release(w.writer)
		}
		l.watchers.del(fd)
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
