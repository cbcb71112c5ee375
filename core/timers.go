package core

// timer is one scheduled callback. seq breaks ties between equal deadlines so
// that timers due at the same time run in the order they were scheduled.
type timer[T any] struct {
	when float64
	seq  uint64
	item T
}

// timerHeap is a binary min-heap of timers ordered by (when, seq). It is
// written out rather than built on container/heap: the interface calls and
// boxing there cost more than the whole push on a busy loop.
type timerHeap[T any] struct {
	h   []timer[T]
	seq uint64
}

func (t *timerHeap[T]) len() int { return len(t.h) }

func (t *timerHeap[T]) less(i, j int) bool {
	a, b := &t.h[i], &t.h[j]
	if a.when != b.when {
		return a.when < b.when
	}
	return a.seq < b.seq
}

func (t *timerHeap[T]) push(when float64, item T) {
	t.seq++
	t.h = append(t.h, timer[T]{when: when, seq: t.seq, item: item})
	t.up(len(t.h) - 1)
}

// head returns the earliest timer; the caller checks len first.
func (t *timerHeap[T]) head() *timer[T] { return &t.h[0] }

func (t *timerHeap[T]) pop() T {
	item := t.h[0].item
	last := len(t.h) - 1
	t.h[0] = t.h[last]
	t.h[last] = timer[T]{}
	t.h = t.h[:last]
	if last > 0 {
		t.down(0)
	}
	return item
}

// filter keeps the timers for which keep returns true and restores the heap
// property in O(n), as asyncio's _run_once rebuilds _scheduled with heapify.
func (t *timerHeap[T]) filter(keep func(T) bool) {
	kept := t.h[:0]
	for _, e := range t.h {
		if keep(e.item) {
			kept = append(kept, e)
		}
	}
	clear(t.h[len(kept):])
	t.h = kept
	for i := len(t.h)/2 - 1; i >= 0; i-- {
		t.down(i)
	}
}

func (t *timerHeap[T]) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !t.less(i, p) {
			return
		}
		t.h[i], t.h[p] = t.h[p], t.h[i]
		i = p
	}
}

func (t *timerHeap[T]) down(i int) {
	n := len(t.h)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && t.less(r, l) {
			m = r
		}
		if !t.less(m, i) {
			return
		}
		t.h[i], t.h[m] = t.h[m], t.h[i]
		i = m
	}
}
