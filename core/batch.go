package core

import (
	"math"

	"golang.org/x/sys/unix"
)

// StreamReader reads a run of streams for the loop, one call for all of
// them: the streams made ready by one poll, read in turn, each right after
// the previous one's bytes were handed over. The bridge implements it in
// C, where it spares a Go-to-C crossing per stream, and reads the socket
// there as its write fast path sends (Loop.SetStreamReader).
type StreamReader interface {
	// ReadStreams reads streams[0], streams[1], ... one read each: a
	// plain sink's into buf, its bytes then delivered as Stream.read
	// would; a ReadingStreamSink's as its ReadInto would. It goes on
	// while a read finds nothing (EAGAIN) or delivers bytes, fewer than
	// largeRead into a plain sink. It stops at the first stream it finds
	// closing, paused, or no longer a batchable sink's (a callback before
	// it in the run may have done that), leaving it untouched (began
	// false); or at the first whose read it began but cannot finish: at
	// EOF, an error, a large plain read, a buffer lent but not read into
	// (began true, with the outcome for the stream to finish). done is
	// the number of streams before that one; err, a sink's error, ends
	// the run at once, with done counting the stream it came from.
	ReadStreams(streams []*Stream, buf []byte) (done int, began bool, o ReadOutcome, err error)
}

// PollReader is a StreamReader that also makes the loop's blocking poll,
// in place of Hooks.Poll while streams are registered, and reads in the
// same call the streams it found ready. A busy server's tick then crosses
// into the embedder once instead of twice (the poll, then the reads), and
// skips the core's dispatch.
type PollReader interface {
	StreamReader
	// PollRead is Hooks.Poll, with epoll_wait's count in N. It may also
	// read the streams the poll found ready, in the order reported, when
	// every event is a stream's, ready only for reading (no other
	// descriptor, no error or hang-up), and nothing is to run before
	// them: no callback queued by another thread during the wait, no
	// timer due (due is when the first one is, +Inf if there is none). It
	// reads them as ReadStreams reads a run, except that a stream a
	// callback before it paused or closed is skipped, as the ready phase
	// would skip it, and that a read it began but cannot finish is handed
	// back in Began and Out (a sink's error in Err). Then it sets Read
	// and zeroes the Events of every event it returned. Those after a
	// Began or an Err are dropped: the poll is level-triggered and reports
	// them again, while their descriptors may have been closed and reused
	// by the callbacks already run.
	//
	// Such a tick ends with the reads, so what their callbacks queued
	// runs on the next one, as asyncio runs it on the iteration after the
	// one that ran the reader handles. If they queued nothing and called
	// nothing of the loop's or its IOs' (the next tick would only block
	// in the same poll again), PollRead may go on and poll again, within
	// the same call, until due: each poll is then a tick of its own, and
	// the last one's events and outcome are what it returns.
	PollRead(epfd int, events []unix.EpollEvent, msec int, due float64, buf []byte) (PolledRun, error)
}

// PolledRun is what a PollRead read; see there.
type PolledRun struct {
	N     int
	Read  bool
	Began *Stream
	Out   ReadOutcome
	Err   error
}

// maxBatch bounds one run handed to the StreamReader.
const maxBatch = 64

// SetStreamReader makes the loop hand runs of ready streams to r, and
// its blocking polls too if r is a PollReader.
func (l *Loop[T]) SetStreamReader(r StreamReader) {
	l.reader = r
	l.pollReader, _ = r.(PollReader)
}

// blockingPoll is the poll the loop blocks in: PollRead while streams are
// registered, which is when it can find any to read.
func (l *Loop[T]) blocker() blockingPoll {
	if l.pollReader != nil && l.streams > 0 {
		return l.pollRead
	}
	return l.hooks.Poll
}

func (l *Loop[T]) pollRead(epfd int, events []unix.EpollEvent, msec int) (int, error) {
	due, ok := l.nextTimer()
	if !ok {
		due = math.Inf(1)
	}
	r, err := l.pollReader.PollRead(epfd, events, msec, due, l.readBuffer())
	l.polledRun = r
	return r.N, err
}

// endPolledRun ends a tick whose poll read the streams it found ready.
func (l *Loop[T]) endPolledRun() error {
	r := l.polledRun
	l.polledRun = PolledRun{}
	switch {
	case r.Err != nil:
		return r.Err
	case r.Began != nil:
		return r.Began.finishRead(r.Out)
	}
	return nil
}

// readStreams hands the run of ready streams at the head of the task FIFO
// to the StreamReader: consecutive watchers of batchable streams ready
// only for reading, with no item queued between them, within the d tasks
// of this tick. It returns how many tasks it consumed; 0 leaves the head
// to run as usual (fewer than two such streams, where a run gains
// nothing).
func (l *Loop[T]) readStreams(d int) (int, error) {
	at := l.tasks.peek().at
	m := min(d, maxBatch, l.tasks.len())
	if m < 2 || l.readable(1, at) == nil {
		return 0, nil // the common case of one ready stream, told cheaply
	}
	batch := l.batch[:0]
	for i := 0; i < m; i++ {
		s := l.readable(i, at)
		if s == nil {
			break
		}
		batch = append(batch, s)
	}
	l.batch = batch
	if len(batch) < 2 {
		clear(batch)
		return 0, nil
	}
	done, began, o, err := l.reader.ReadStreams(batch, l.readBuffer())
	var last *Stream
	if began && err == nil {
		last = batch[done]
		done++
	}
	clear(batch)
	for i := 0; i < done; i++ {
		l.tasks.pop().r.(*watcher[T]).pending = 0
	}
	if err != nil || last == nil {
		return done, err
	}
	return done, last.finishRead(o)
}

// readable returns the stream whose watcher is task i if it is ready only
// for reading, batchable, and was queued with no item between it and the
// head (at); else nil.
func (l *Loop[T]) readable(i int, at uint64) *Stream {
	q := l.tasks.at(i)
	w, ok := q.r.(*watcher[T])
	if !ok || q.at != at || w.pending != Read {
		return nil
	}
	if s, ok := w.io.(*Stream); ok && s.batchable() {
		return s
	}
	return nil
}
