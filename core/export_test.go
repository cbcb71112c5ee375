package core

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// This file lets the external tests (package core_test) reach the loop's
// internals, as Go's own packages do: it is compiled only with the tests.

// MaxEvents is the most descriptors one poll reports.
const MaxEvents = maxEvents

// Ring wraps the ready queue.
type Ring[T any] struct{ q ready[T] }

func (r *Ring[T]) Push(v T)      { r.q.push(v) }
func (r *Ring[T]) PushFront(v T) { r.q.pushFront(v) }
func (r *Ring[T]) Pop() T        { return r.q.pop() }
func (r *Ring[T]) Len() int      { return r.q.len() }

// Cap is the size of the ring's buffer.
func (r *Ring[T]) Cap() int { return len(r.q.buf) }

// Head is the buffer index of the oldest item.
func (r *Ring[T]) Head() int { return r.q.head }

// Segments returns the ring's two contiguous runs.
func (r *Ring[T]) Segments() (a, b []T) { return r.q.segments() }

// Items lists the queued items, oldest first, through segments.
func (r *Ring[T]) Items() []T {
	a, b := r.q.segments()
	if len(a)+len(b) == 0 {
		return nil
	}
	return append(append([]T(nil), a...), b...)
}

// Slots is the whole buffer, free slots included.
func (r *Ring[T]) Slots() []T { return r.q.buf }

// Heap wraps the timer heap.
type Heap[T any] struct{ h timerHeap[T] }

func (h *Heap[T]) Push(when float64, item T) { h.h.push(when, item) }
func (h *Heap[T]) Pop() T                    { return h.h.pop() }
func (h *Heap[T]) Len() int                  { return h.h.len() }
func (h *Heap[T]) HeadWhen() float64         { return h.h.head().when }
func (h *Heap[T]) Filter(keep func(T) bool)  { h.h.filter(keep) }

// Spare is the part of the backing array past the heap's length, which
// pop and filter must have zeroed so the items can be collected.
func (h *Heap[T]) Spare() []T {
	var out []T
	for _, e := range h.h.h[len(h.h.h):cap(h.h.h)] {
		out = append(out, e.item)
	}
	return out
}

// Check reports the first place the heap property is broken.
func (h *Heap[T]) Check() error {
	for i := 1; i < len(h.h.h); i++ {
		if p := (i - 1) / 2; h.h.less(i, p) {
			return fmt.Errorf("h[%d] = (%v, %d) sorts before its parent h[%d] = (%v, %d)",
				i, h.h.h[i].when, h.h.h[i].seq, p, h.h.h[p].when, h.h.h[p].seq)
		}
	}
	return nil
}

// PollOnce runs one poll of the loop's poller, outside of Run, blocking in
// unix.EpollWait with no lock to give up.
func (l *Loop[T]) PollOnce(msec int, fn func(fd int, ev Events)) (woken bool, sig []byte, err error) {
	return l.poller.wait(msec, unix.EpollWait, fn)
}

// WakePending reports whether a wake-up is recorded as pending.
func (l *Loop[T]) WakePending() bool { return l.poller.pending.Load() != 0 }

// ForceWake writes the eventfd without looking at the pending flag, so a
// test that finds the loop stuck in a poll can still end it.
func (l *Loop[T]) ForceWake() error {
	one := [8]byte{1}
	_, err := unix.Write(l.poller.wakefd, one[:])
	return err
}

// ScratchHeld counts the items Each's reused buffer still points to, which
// would keep them from the garbage collector.
func (l *Loop[T]) ScratchHeld(isZero func(T) bool) int {
	n := 0
	for _, v := range l.scratch[:cap(l.scratch)] {
		if !isZero(v) {
			n++
		}
	}
	return n
}

// Tick runs one iteration of the loop, as Run does, outside of Run.
func (l *Loop[T]) Tick() error { return l.tick() }

// CancelledCount is the loop's count of cancelled timers in the heap.
func (l *Loop[T]) CancelledCount() int { return l.cancelled }

// Soon and Later expose the core's task queue to the tests.
func (l *Loop[T]) Soon(fn func() error) error { return l.soon(fn) }

// Later returns a cancel function.
func (l *Loop[T]) Later(delay float64, fn func() error) (cancel func(), err error) {
	t, err := l.later(delay, fn)
	if err != nil {
		return nil, err
	}
	return func() { t.cancelled = true }, nil
}

// Tasks counts the deferred tasks and task timers pending.
func (l *Loop[T]) Tasks() (soon, timers int) { return l.tasks.len(), l.taskTimers.len() }

// SetRetryDelay shortens a listener's wait after EMFILE for the tests.
func (ln *Listener) SetRetryDelay(secs float64) { ln.delay = secs }

// HasWriteBuffer reports whether the stream holds a write buffer now.
func (s *Stream) HasWriteBuffer() bool { return s.wb != nil }
