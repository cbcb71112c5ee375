package core

// ready is the FIFO of callbacks that run in the current or next tick: a ring
// buffer that grows by doubling and never shrinks, so a steady stream of
// call_soon costs no allocation (CPython uses collections.deque for _ready).
type ready[T any] struct {
	buf  []T
	head int    // index of the oldest item
	n    int    // number of items
	out  uint64 // items ever popped: with n, a position in the stream of items
}

func (q *ready[T]) len() int { return q.n }

func (q *ready[T]) push(v T) {
	if q.n == len(q.buf) {
		q.grow()
	}
	q.buf[(q.head+q.n)&(len(q.buf)-1)] = v
	q.n++
}

// pushFront puts v before the oldest item (Loop.first).
func (q *ready[T]) pushFront(v T) {
	if q.n == len(q.buf) {
		q.grow()
	}
	q.head = (q.head - 1) & (len(q.buf) - 1)
	q.buf[q.head] = v
	q.n++
}

// pop removes the oldest item; the caller checks len first.
func (q *ready[T]) pop() T {
	var zero T
	v := q.buf[q.head]
	q.buf[q.head] = zero // drop the reference for the garbage collector
	q.head = (q.head + 1) & (len(q.buf) - 1)
	q.n--
	q.out++
	return v
}

// pushed counts the items ever pushed: a task deferred now runs once the
// items pushed before it have been consumed (see Loop.runReady).
func (q *ready[T]) pushed() uint64 { return q.out + uint64(q.n) }

// peek returns the oldest item; the caller checks len first.
func (q *ready[T]) peek() T { return q.buf[q.head] }

// at returns the i-th oldest item; the caller checks len first.
func (q *ready[T]) at(i int) T { return q.buf[(q.head+i)&(len(q.buf)-1)] }

// front returns up to n of the oldest items as one contiguous run of the
// ring, without removing them (discard does, once they are consumed).
func (q *ready[T]) front(n int) []T {
	n = min(n, q.n, len(q.buf)-q.head)
	return q.buf[q.head : q.head+n]
}

// discard removes the k oldest items.
func (q *ready[T]) discard(k int) {
	for i := 0; i < k; i++ {
		q.pop()
	}
}

// segments returns the queued items, oldest first, as the two contiguous
// runs of the ring (the second is empty unless the queue wraps).
func (q *ready[T]) segments() (a, b []T) {
	end := q.head + q.n
	if end <= len(q.buf) {
		return q.buf[q.head:end], nil
	}
	return q.buf[q.head:], q.buf[:end-len(q.buf)]
}

func (q *ready[T]) grow() {
	size := 2 * len(q.buf)
	if size == 0 {
		size = 64
	}
	buf := make([]T, size) // a power of two, so indexes wrap with a mask
	for i := 0; i < q.n; i++ {
		buf[i] = q.buf[(q.head+i)&(len(q.buf)-1)]
	}
	q.buf, q.head = buf, 0
}
