package core

// fdTable is the loop's watchers by descriptor: a slice indexed by fd, as
// libuv's loop->watchers, rather than a map. Descriptors are small and
// dense, and the poll's dispatch looks each ready one up twice, which cost
// a map about 5% of a 1 KiB echo round trip. Only descriptors that the
// poller accepted are stored, so the slice is bounded by the process's fd
// limit; lookups of any int are safe.
type fdTable[T any] struct {
	w []*watcher[T]
	n int // non-nil entries
}

func (t *fdTable[T]) get(fd int) *watcher[T] {
	if uint(fd) < uint(len(t.w)) {
		return t.w[fd]
	}
	return nil
}

func (t *fdTable[T]) set(fd int, w *watcher[T]) {
	if fd >= len(t.w) {
		t.w = append(t.w, make([]*watcher[T], fd+1-len(t.w)+len(t.w)/2)...)
	}
	if t.w[fd] == nil {
		t.n++
	}
	t.w[fd] = w
}

func (t *fdTable[T]) del(fd int) {
	if t.get(fd) != nil {
		t.w[fd] = nil
		t.n--
	}
}

func (t *fdTable[T]) len() int { return t.n }
