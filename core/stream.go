package core

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// StreamSink receives a Stream's events, on the loop thread. See
// transport.go for what an error returned from any of its methods means.
type StreamSink interface {
	TransportSink
	// Data is called with the bytes of one read (asyncio's
	// data_received). b is the loop's shared read buffer, valid only
	// during the call: copy what must be kept. Not called on a
	// BufferedStreamSink.
	Data(b []byte) error
	// EOF is called when the peer has shut down its sending side
	// (eof_received). keepOpen true stops reading for good and leaves the
	// stream open for writing; false closes it as Close does.
	EOF() (keepOpen bool, err error)
}

// BufferedStreamSink is a StreamSink that provides the memory reads go
// into (asyncio.BufferedProtocol); the stream checks for it in NewStream
// and SetSink. The bridge can return a []byte over C memory (a Python
// buffer's, through unsafe.Slice), and the socket is read straight into
// it: no Go buffer and no copy. The same serves a plain Protocol, reading
// into a fresh bytes object before handing it to data_received.
type BufferedStreamSink interface {
	StreamSink
	// GetBuffer returns where the next read goes (one read, of up to
	// len(buf) bytes). hint is -1, as asyncio passes: no size suggested.
	// Returning an empty buffer fails the stream with ErrEmptyBuffer;
	// asyncio reports that as a fatal protocol error, so the sink should
	// rather raise it itself (then ForceClose and return a nil buffer).
	GetBuffer(hint int) ([]byte, error)
	// BufferUpdated is called exactly once after each GetBuffer that
	// returned a non-empty buffer and no error, with the number of bytes
	// read into it. n == 0 means nothing was (the socket had nothing, is
	// at EOF — EOF follows — or failed): the sink must only release the
	// buffer then, not call protocol.buffer_updated. The buffer is not
	// touched after this call.
	BufferUpdated(n int) error
}

// ReadingStreamSink is a BufferedStreamSink that can also make the read
// itself: ReadInto is GetBuffer(-1) and, when the stream is still open
// after it (not closing), the read of fd into that buffer and
// BufferUpdated, all in one call. The bridge makes it one crossing into C
// instead of two. The outcome says how far the sink went; err is a
// GetBuffer's or BufferUpdated's, and ends the read there.
type ReadingStreamSink interface {
	BufferedStreamSink
	ReadInto(fd int) (ReadOutcome, error)
}

// ReadOutcome is how far a ReadingStreamSink or a StreamReader took a
// stream's read, for the stream to finish it. Read: the read was made and
// its N bytes delivered, or it failed with Err (N 0 and Err nil: EOF).
// Else the sink called GetBuffer, which lent Lent, not read into yet (nil:
// GetBuffer failed the stream).
type ReadOutcome struct {
	Read bool
	N    int
	Err  error
	Lent []byte
}

// LendingStreamSink is a plain StreamSink (not a BufferedStreamSink) that
// can also give a read memory of its own. The stream asks for it only when
// the last read was large (largeRead) and the socket holds at least that
// much now: then copying out of the loop's read buffer costs more than the
// sink's allocation, and the bridge reads straight into a new bytes object,
// the one data_received gets, so the bytes are never copied in user space.
// Small reads keep the shared buffer, where one copy of a few KiB is
// cheaper than an allocation.
//
// The memory asked for is what the socket holds (FIONREAD, capped at
// maxRead), not maxRead: glibc maps an allocation of 256 KiB afresh each
// time (above its mmap threshold, which a block cut down to the read's size
// before it is freed never raises), and the page faults of touching it cost
// the kernel more than the copy saves: 27 faults a 100 KiB echo, half the
// requests per second of reading into the shared buffer.
type LendingStreamSink interface {
	StreamSink
	// LendBuffer returns memory for one read of up to len(buf) bytes, or
	// nil to use the loop's buffer this time.
	LendBuffer(size int) ([]byte, error)
	// LentData is called exactly once after a LendBuffer that returned
	// memory, with the number of bytes read into it: n > 0 delivers them
	// as Data would; n == 0 (nothing read, EOF or an error, which follow as
	// usual) only takes the memory back.
	LentData(n int) error
}

// largeRead is the read size from which the next read goes into a
// LendingStreamSink's memory: at 64 KiB a copy costs several times the
// allocation it saves, while messages of a few KiB never reach it.
const largeRead = 64 << 10

// Stream is a connected SOCK_STREAM socket, TCP or Unix, serviced by the
// loop: asyncio's _SelectorSocketTransport without its Python. It reads up
// to 256 KiB per readiness, writes at once when nothing is buffered and
// copies what the socket does not take into its write buffer, which it
// sends with sendmsg (up to 1024 iovecs) on writability, with flow control
// through the sink.
//
// Ownership: the embedder owns fd (in the bridge, Python's socket object
// does) and the stream never closes it. NewStream registers fd with the
// loop; the stream unregisters it once done with it, which is before Lost
// is called, and as Abort or ForceClose returns. From then the embedder may
// close it. Closing fd any other way leaves the loop watching a stale
// number (Loop.Owner keeps reporting it as taken).
//
// Every method is called on the loop thread, or with the lock the loop
// thread holds outside its poll (the bridge's GIL).
//
// An idle stream is this struct and the loop's watcher, nothing else: the
// read buffer and the sendmsg iovecs are the loop's, and the write buffer
// exists only while something is queued.
type Stream struct {
	transport
	sink     StreamSink
	wb       *writeBuf // nil while nothing is queued
	eof      bool      // WriteEOF called
	readInto bool      // sink is a BufferedStreamSink
	large    bool      // the last read was at least largeRead bytes
}

var _ IO = (*Stream)(nil)

// NewStream makes fd, a connected non-blocking stream socket, a transport
// of loop: registered (so no add_reader can take it) but not read until
// Start.
func NewStream(loop IOLoop, fd int, sink StreamSink) (*Stream, error) {
	s := &Stream{}
	s.SetSink(sink)
	if err := s.init(loop, fd, s, sink); err != nil {
		return nil, err
	}
	return s, nil
}

// SetSink replaces the sink (asyncio's set_protocol, which start_tls
// uses); the next read uses the new one's mode. A no-op after Lost.
func (s *Stream) SetSink(sink StreamSink) {
	if s.done {
		return
	}
	s.sink, s.transport.sink = sink, sink
	_, s.readInto = sink.(BufferedStreamSink)
}

// Sink returns the sink, nil once Lost has been delivered.
func (s *Stream) Sink() StreamSink { return s.sink }

// Write sends b, or the part of it the socket does not take at once from a
// copy later. It may call PauseWriting. A fatal socket error does not fail
// the Write: it closes the stream (Lost(err) is scheduled), as asyncio's
// write() does. Writes after that are counted (LostWrites) and dropped.
func (s *Stream) Write(b []byte) error {
	if s.eof {
		return ErrWriteAfterEOF
	}
	if len(b) == 0 {
		return nil
	}
	if s.lost {
		s.lostWrites++
		return nil
	}
	if s.wb == nil {
		// Try now: most writes go out whole without ever polling.
		n, fatal, err := s.sendNow(append(s.loop.iovecs(), iovec(b)))
		if fatal {
			return err
		}
		if b = b[n:]; len(b) == 0 {
			return nil
		}
	}
	s.queue(b)
	if err := s.sync(); err != nil {
		return err
	}
	return s.maybePause()
}

// WriteLines is Write of the buffers' concatenation (writelines), in one
// sendmsg when nothing is buffered.
func (s *Stream) WriteLines(bufs [][]byte) error {
	if s.eof {
		return ErrWriteAfterEOF
	}
	iov := s.loop.iovecs()
	for _, b := range bufs {
		if len(b) > 0 && len(iov) < maxIovecs {
			iov = append(iov, iovec(b))
		}
	}
	if len(iov) == 0 {
		return nil
	}
	if s.lost {
		s.loop.putIovecs(iov)
		s.lostWrites++
		return nil
	}
	if s.wb == nil {
		n, fatal, err := s.sendNow(iov)
		if fatal {
			return err
		}
		for len(bufs) > 0 && n >= len(bufs[0]) {
			n -= len(bufs[0])
			bufs = bufs[1:]
		}
		if len(bufs) > 0 {
			s.queue(bufs[0][n:])
			bufs = bufs[1:]
		}
	} else {
		s.loop.putIovecs(iov)
	}
	for _, b := range bufs {
		s.queue(b)
	}
	if s.wb == nil {
		return nil
	}
	if err := s.sync(); err != nil {
		return err
	}
	return s.maybePause()
}

// WriteEOF shuts down the sending side (SHUT_WR) once the buffer is
// flushed: at once if it is empty, when an error is returned to the
// caller; later, when an error fails the stream. A no-op when closing or
// called twice.
func (s *Stream) WriteEOF() error {
	if s.closing || s.eof {
		return nil
	}
	s.eof = true
	if s.wb == nil {
		return s.shutdown()
	}
	return nil
}

// queue copies b, which the socket did not take, into the write buffer.
func (s *Stream) queue(b []byte) {
	if len(b) == 0 {
		return
	}
	if s.wb == nil {
		s.wb = &writeBuf{}
	}
	s.wb.append(b)
}

// Ready reads, then writes, in the ready phase (see IO): the order of
// asyncio's _process_events.
func (s *Stream) Ready(ev Events) error {
	if ev&Read != 0 && s.interest&Read != 0 {
		var err error
		if s.readInto {
			err = s.readIntoSink()
		} else {
			err = s.read()
		}
		if err != nil {
			return err
		}
	}
	// Reading may have closed the stream or emptied the buffer.
	if ev&Write != 0 && s.interest&Write != 0 {
		return s.flush()
	}
	return nil
}

// batchable reports whether the stream's next readiness can be read by a
// StreamReader: reading, into a plain sink whose last read was not large
// (a large one is followed by the sink's lending), or into a
// ReadingStreamSink.
func (s *Stream) batchable() bool {
	if s.interest&Read == 0 {
		return false
	}
	if s.readInto {
		_, ok := s.sink.(ReadingStreamSink)
		return ok
	}
	return !s.large
}

// read is _read_ready__data_received: one read per readiness, so that one
// busy connection cannot starve the others; the poll is level-triggered,
// so what is left is read on the next tick.
func (s *Stream) read() error {
	if ls, ok := s.sink.(LendingStreamSink); ok && s.large {
		if avail, err := inQueue(s.fd); err == nil && avail >= largeRead {
			buf, err := ls.LendBuffer(min(avail, maxRead))
			if err != nil {
				return err
			}
			if buf != nil {
				return s.readLent(buf, ls.LentData)
			}
		}
	}
	buf := s.loop.readBuffer()
	n, err := read(s.fd, buf)
	switch {
	case err != nil:
		return s.readFailed(err)
	case n == 0:
		return s.eofReceived()
	}
	s.large = n >= largeRead
	return s.sink.Data(buf[:n])
}

// readIntoSink is _read_ready__get_buffer.
func (s *Stream) readIntoSink() error {
	bs := s.sink.(BufferedStreamSink)
	if rs, ok := bs.(ReadingStreamSink); ok {
		o, err := rs.ReadInto(s.fd)
		if err != nil {
			return err
		}
		return s.finishRead(o)
	}
	buf, err := bs.GetBuffer(-1)
	if err != nil {
		return err
	}
	return s.finishRead(ReadOutcome{Lent: buf})
}

// finishRead finishes a read that a sink or a StreamReader began.
func (s *Stream) finishRead(o ReadOutcome) error {
	if o.Read {
		s.large = !s.readInto && o.N >= largeRead
		return s.afterRead(o.N, o.Err)
	}
	if len(o.Lent) == 0 {
		if !s.lost {
			return s.ForceClose(ErrEmptyBuffer)
		}
		return nil
	}
	bs := s.sink.(BufferedStreamSink)
	if s.lost { // the sink failed the stream, yet lent a buffer
		return bs.BufferUpdated(0)
	}
	return s.readLent(o.Lent, bs.BufferUpdated)
}

// readLent reads into memory the sink lent and gives it back through
// done with the count: 0 when nothing was read, the error or EOF then
// following, as asyncio calls buffer_updated only with data.
func (s *Stream) readLent(buf []byte, done func(n int) error) error {
	n, rerr := read(s.fd, buf)
	if rerr != nil {
		n = 0
	}
	s.large = n >= largeRead
	if err := done(n); err != nil {
		return err
	}
	return s.afterRead(n, rerr)
}

// afterRead follows a read whose bytes were delivered: the error or EOF.
func (s *Stream) afterRead(n int, rerr error) error {
	switch {
	case rerr != nil:
		return s.readFailed(rerr)
	case n == 0:
		return s.eofReceived()
	}
	return nil
}

func (s *Stream) readFailed(err error) error {
	if again(err) {
		return nil
	}
	if s.lost { // the sink failed the stream during BufferUpdated(0)
		return nil
	}
	return s.ForceClose(wrap("read", err))
}

// eofReceived is _read_ready__on_eof.
func (s *Stream) eofReceived() error {
	if s.lost {
		return nil
	}
	keepOpen, err := s.sink.EOF()
	if err != nil || s.lost {
		return err
	}
	if keepOpen {
		s.readDone = true
		return s.sync()
	}
	return s.Close()
}

// flush is _write_sendmsg: send what the socket takes, then resume the
// writer, and once the buffer is empty drop it, stop polling and finish a
// Close or a WriteEOF.
func (s *Stream) flush() error {
	iov := s.wb.iovecs(s.loop.iovecs())
	n, fatal, err := s.sendNow(iov)
	if fatal {
		return err
	}
	if s.wb.consume(n); s.wb.size() == 0 {
		s.wb = nil
	}
	if err := s.maybeResume(); err != nil { // it may write, or close
		return err
	}
	if s.lost || s.wb != nil {
		return nil
	}
	if err := s.sync(); err != nil {
		return err
	}
	switch {
	case s.closing:
		return s.lostNow(nil)
	case s.eof:
		if err := s.shutdown(); err != nil {
			return s.ForceClose(err)
		}
	}
	return nil
}

// sendNow sends what the socket takes of iov. A fatal error closes the
// stream; fatal reports it, with ForceClose's own error.
func (s *Stream) sendNow(iov []unix.Iovec) (n int, fatal bool, err error) {
	n, serr := sendmsg(s.fd, iov)
	s.loop.putIovecs(iov)
	switch {
	case serr == nil:
		return n, false, nil
	case again(serr):
		return 0, false, nil
	}
	return 0, true, s.ForceClose(wrap("sendmsg", serr))
}

func (s *Stream) shutdown() error {
	if err := unix.Shutdown(s.fd, unix.SHUT_WR); err != nil {
		return wrap("shutdown", err)
	}
	return nil
}

func iovec(b []byte) unix.Iovec {
	return unix.Iovec{Base: unsafe.SliceData(b), Len: uint64(len(b))}
}

// transportImpl.
func (s *Stream) bufferSize() int {
	if s.wb == nil {
		return 0
	}
	return s.wb.size()
}
func (s *Stream) buffered() bool { return s.wb != nil }
func (s *Stream) dropBuffer()    { s.wb = nil }
func (s *Stream) forgetSink()    { s.sink = nil }
