package core

// StreamReader reads a run of streams for the loop, one call for all of
// them: the streams made ready by one poll, read in turn, each right after
// the previous one's bytes were handed over. The bridge implements it in
// C, where it spares a Go-to-C crossing per stream, and reads the socket
// there as its write fast path sends (Loop.SetStreamReader).
type StreamReader interface {
	// ReadStreams reads streams[0], streams[1], ... into buf, one read
	// each, delivering the bytes to the stream's sink as Stream.read
	// would, and goes on while a read delivers fewer than largeRead bytes
	// or finds nothing (EAGAIN). It stops at the first stream it finds
	// closing, paused, or no longer a plain sink's (a callback before it
	// in the run may have done that), leaving it unread (read false); or
	// at the first read that ends in EOF or an error, or delivers
	// largeRead bytes or more (read true, with the read's n and rerr, the
	// bytes already delivered): the stream finishes that read. done is
	// the number of streams before that one; err, a sink's error, ends
	// the run at once, with done counting the stream it came from.
	ReadStreams(streams []*Stream, buf []byte) (done int, read bool, n int, rerr error, err error)
}

// maxBatch bounds one run handed to the StreamReader.
const maxBatch = 64

// SetStreamReader makes the loop hand runs of ready streams to r.
func (l *Loop[T]) SetStreamReader(r StreamReader) { l.reader = r }

// readStreams hands the run of ready streams at the head of the task FIFO
// to the StreamReader: consecutive watchers of plain streams ready only for
// reading, with no item queued between them, within the d tasks of this
// tick. It returns how many tasks it consumed; 0 leaves the head to run as
// usual (fewer than two such streams, where a run gains nothing).
func (l *Loop[T]) readStreams(d int) (int, error) {
	head := l.tasks.peek()
	batch := l.batch[:0]
	for i := 0; i < min(d, maxBatch, l.tasks.len()); i++ {
		q := l.tasks.at(i)
		w, ok := q.r.(*watcher[T])
		if !ok || q.at != head.at || w.pending != Read {
			break
		}
		s, ok := w.io.(*Stream)
		if !ok || !s.plainReadable() {
			break
		}
		batch = append(batch, s)
	}
	l.batch = batch
	if len(batch) < 2 {
		clear(batch)
		return 0, nil
	}
	done, read, n, rerr, err := l.reader.ReadStreams(batch, l.readBuffer())
	var last *Stream
	if read && err == nil {
		last = batch[done]
		last.large = n >= largeRead
		done++
	}
	clear(batch)
	for i := 0; i < done; i++ {
		l.tasks.pop().r.(*watcher[T]).pending = 0
	}
	if err != nil || last == nil {
		return done, err
	}
	return done, last.afterRead(n, rerr)
}
