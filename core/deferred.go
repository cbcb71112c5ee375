package core

import "golang.org/x/sys/unix"

// The core's own callbacks. A transport must sometimes notify its embedder
// later rather than from inside the call that caused it: asyncio delivers
// connection_lost through call_soon after abort() or a fatal error, so that
// protocol code never runs re-entrantly inside transport.write(), and the
// listener retries accept() through call_later after EMFILE. The embedder's
// items are opaque to the core, so these are Go functions (tasks) kept in a
// FIFO and a heap of their own, run by the tick in the same phase as the
// items: a task deferred while k items had been pushed runs once those k
// items have been consumed and before the items pushed after it, which is
// the order one shared _ready deque would give. Tasks run on the loop
// thread with the embedder's lock held, like the items.
//
// The FIFO also holds the watchers of IOs, whose readiness waits for the
// ready phase (see IO), each queued as itself
// when the poll reports it: that happens on every readiness of every
// connection, so it costs neither an allocation nor any memory an idle
// connection carries.

// runner is what the FIFO runs: a task, or a watcher (loop.go).
type runner interface{ run() error }

// queued is one entry of the FIFO.
type queued struct {
	r  runner
	at uint64 // the ready queue's pushed() count when it was queued
}

// task is one deferred Go call.
type task struct {
	fn        func() error
	cancelled bool // a cancelled timer is skipped (Listener.Stop)
}

func (t *task) run() error {
	if t.cancelled {
		return nil
	}
	t.cancelled = true // a timer's owner may still hold it: make cancel a no-op
	return t.fn()
}

// IOLoop is what the core's transports need from a loop: any *Loop[T]
// satisfies it, whatever T, and only a *Loop[T] can (its unexported methods
// keep it sealed).
type IOLoop interface {
	Register(fd int, io IO, ev Events) error
	Modify(fd int, ev Events) error
	Unregister(fd int) error
	Owner(fd int) IO
	soon(fn func() error) error
	first(fn func() error)
	later(delay float64, fn func() error) (*task, error)
	readBuffer() []byte
	iovecs() []unix.Iovec
	putIovecs(iov []unix.Iovec)
}

var _ IOLoop = (*Loop[int])(nil)

// maxRead is the most one read takes: asyncio's _SelectorTransport.max_size
// (256 KiB), which is also the size of uvloop's per-loop receive buffer.
const maxRead = 256 << 10

// readBuffer returns the loop's one read buffer, shared by all its IOs:
// one per loop rather than per connection, as in uvloop, since a read is
// handed to the sink and done with before the next IO runs.
func (l *Loop[T]) readBuffer() []byte {
	if l.rbuf == nil {
		l.rbuf = make([]byte, maxRead)
	}
	return l.rbuf
}

// iovecs returns the loop's iovec slice, empty, for one sendmsg; putIovecs
// gives it back once the call is made. One per loop rather than per stream,
// for the same reason as the read buffer: nothing runs between building a
// sendmsg's iovecs and sending them.
func (l *Loop[T]) iovecs() []unix.Iovec { return l.iov[:0] }

// putIovecs keeps iov's array, grown as it may have been, for the next
// sendmsg, without pointers into the caller's memory or sent blocks.
func (l *Loop[T]) putIovecs(iov []unix.Iovec) {
	clear(iov)
	l.iov = iov[:0]
}

// soon runs fn in the next ready phase; it fails only on a closed loop, as
// asyncio's call_soon raises RuntimeError('Event loop is closed').
func (l *Loop[T]) soon(fn func() error) error {
	if l.closed {
		return ErrClosed
	}
	l.tasks.push(queued{r: &task{fn: fn}, at: l.ready.pushed()})
	return nil
}

// first runs fn in the next ready phase before anything else queued: a
// round of accepts that an error ending Run cut short goes on from there
// when the loop runs again, as asyncio's Tasks for the connections stay at
// the head of _ready behind the one that raised. Only a task that is
// running calls it, so the loop is not closed.
func (l *Loop[T]) first(fn func() error) {
	l.tasks.pushFront(queued{r: &task{fn: fn}, at: l.ready.out})
}

// later runs fn once delay seconds have passed, unless the returned task is
// cancelled first.
func (l *Loop[T]) later(delay float64, fn func() error) (*task, error) {
	if l.closed {
		return nil, ErrClosed
	}
	t := &task{fn: fn}
	l.taskTimers.push(Now()+delay, t)
	return t, nil
}

// dueTasks moves the task timers due before end to the task FIFO, behind
// the items queued so far (the due embedder timers among them).
func (l *Loop[T]) dueTasks(end float64) {
	for l.taskTimers.len() > 0 && l.taskTimers.head().when < end {
		t := l.taskTimers.pop()
		if !t.cancelled {
			l.tasks.push(queued{r: t, at: l.ready.pushed()})
		}
	}
}
