package main

// The stream half of goloop._SocketTransport (stream.c): the exports only a
// stream has, and the sink methods that turn a core.Stream's reads into
// protocol calls through stream.c's helpers. What it shares with the
// datagram transport, ownership included, is in transport.go.

/*
#include "bridge.h"
*/
import "C"

import (
	"errors"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"goloop/core"
)

// drainWait is _make_empty_waiter's wait for the write buffer to empty. The
// core reports only crossings of the water marks, so the limits are set to
// (0, 0) for the wait, which makes ResumeWriting mean "empty"; the pause and
// resume that only the lowered marks cause are not passed on to the
// protocol. Writing is refused while sendfile runs, so the buffer only
// shrinks meanwhile.
type drainWait struct {
	low, high int // the limits to restore
}

var _ core.StreamSink = (*pyTransport)(nil)
var _ core.ReadingStreamSink = bufferedSink{}
var _ core.LendingStreamSink = (*pyTransport)(nil)

// bufferedSink is the sink of a stream whose protocol is an
// asyncio.BufferedProtocol: reads go straight into get_buffer()'s memory.
// It is the same stream, with GetBuffer and BufferUpdated; being one
// pointer, it converts to core.StreamSink without an allocation.
type bufferedSink struct{ *pyTransport }

// GoloopStreamNew makes fd (the socket of self, a transport object) a
// stream of the loop, registered but not read until GoloopTransportStart.
//
//export GoloopStreamNew
func GoloopStreamNew(loopID C.int, fd C.int, self *C.PyObject, buffered C.int, ws *C.goloop_wstate) (rc C.int) {
	defer guard(&rc, nil)
	l := loopOf(loopID)
	if m := l.streams; int(fd) >= int(m.len) && C.goloop_streams_grow(m, fd) < 0 {
		return -1
	}
	p := &pyTransport{loop: l, self: self, ws: ws, slot: -1}
	s, err := core.NewStream(l.core, int(fd), p.sinkFor(buffered != 0))
	if err != nil {
		return fail(err)
	}
	p.s = s
	p.mapStream(true)
	return l.adopt(p)
}

// mapStream puts the transport object in the loop's map of streams, which
// goloop_poll_read reads, or takes it out: in from creation until the
// stream starts closing (ClosingSink), is detached, released, or lends its
// fd for a sendfile. While it is in, the core has the fd registered for
// this stream, so no other transport can take the slot. GoloopStreamNew
// grew the map to hold the fd.
func (p *pyTransport) mapStream(in bool) {
	if in == p.mapped {
		return
	}
	p.mapped = in
	slot := &unsafe.Slice(p.loop.streams.t, p.loop.streams.len)[p.s.Fd()]
	if in {
		*slot = p.self
	} else {
		*slot = nil
	}
}

func (p *pyTransport) sinkFor(buffered bool) core.StreamSink {
	if buffered {
		return bufferedSink{p}
	}
	return p
}

// GoloopStreamOf returns the transport object whose stream owns fd on the
// loop (borrowed), or NULL: what asyncio's loop._transports tells its
// _ensure_fd_no_transport, without an entry per connection.
//
//export GoloopStreamOf
func GoloopStreamOf(loopID C.int, fd C.int) *C.PyObject {
	var rc C.int
	defer guard(&rc, nil)
	s, _ := loopOf(loopID).core.Owner(int(fd)).(*core.Stream)
	if s == nil {
		return nil
	}
	return selfOf(s)
}

// selfOf is the transport object of a stream of the bridge's, or NULL.
func selfOf(s *core.Stream) *C.PyObject {
	switch sink := s.Sink().(type) {
	case *pyTransport:
		return sink.self
	case bufferedSink:
		return sink.self
	}
	return nil
}

//export GoloopStreamSetProtocol
func GoloopStreamSetProtocol(id C.int, buffered C.int) (rc C.int) {
	defer guard(&rc, nil)
	p := transportOf(id)
	if p.s != nil {
		p.s.SetSink(p.sinkFor(buffered != 0))
		p.sync()
	}
	return 0
}

// writeResult turns a write's outcome into the export's return value: 0, 1
// for a write dropped after the connection was lost that asyncio would log,
// -2 for a write after write_eof (C raises it: its wording depends on the
// method), -1 with an exception set.
func (p *pyTransport) writeResult(err error, lostBefore int) C.int {
	p.sync()
	switch {
	case err == nil:
	case errors.Is(err, core.ErrWriteAfterEOF):
		return -2
	default:
		return fail(err)
	}
	if lostWriteWarns(lostBefore, p.s.LostWrites()) {
		return 1
	}
	return 0
}

// GoloopStreamWrite writes n bytes at buf (memory of a Python buffer, lent
// for the call; the core copies what it keeps).
//
//export GoloopStreamWrite
func GoloopStreamWrite(id C.int, buf *C.char, n C.long) (rc C.int) {
	defer guard(&rc, nil)
	p := transportOf(id)
	if p.s == nil {
		return 0
	}
	// Callbacks queued so far run before a Lost this write may schedule,
	// as in asyncio's single ready queue.
	p.loop.collect()
	before := p.s.LostWrites()
	var b []byte
	if n > 0 {
		b = unsafe.Slice((*byte)(unsafe.Pointer(buf)), int(n))
	}
	return p.writeResult(p.s.Write(b), before)
}

// GoloopStreamWriteLines writes n buffers (lent for the call) as one.
//
//export GoloopStreamWriteLines
func GoloopStreamWriteLines(id C.int, bufs *C.goloop_buf, n C.long) (rc C.int) {
	defer guard(&rc, nil)
	p := transportOf(id)
	if p.s == nil {
		return 0
	}
	p.loop.collect()
	lines := p.loop.lines[:0]
	if n > 0 {
		for _, b := range unsafe.Slice(bufs, int(n)) {
			if b.len > 0 {
				lines = append(lines, unsafe.Slice((*byte)(unsafe.Pointer(b.buf)), int(b.len)))
			} else {
				lines = append(lines, nil)
			}
		}
	}
	before := p.s.LostWrites()
	err := p.s.WriteLines(lines)
	clear(lines) // keep no pointer into Python's buffers
	p.loop.lines = lines[:0]
	return p.writeResult(err, before)
}

//export GoloopStreamWriteEOF
func GoloopStreamWriteEOF(id C.int) (rc C.int) {
	defer guard(&rc, nil)
	p := transportOf(id)
	if p.s == nil {
		return 0
	}
	if !p.s.IsClosing() {
		p.eof = true // as the core's own flag: not set on a closing stream
	}
	p.sync()
	return status(p.s.WriteEOF())
}

// GoloopStreamSendFailed reports the errno of a send() that stream.c's
// fast path made: the stream fails with it as with a failed write in Go.
//
//export GoloopStreamSendFailed
func GoloopStreamSendFailed(id C.int, code C.int) (rc C.int) {
	defer guard(&rc, nil)
	p := transportOf(id)
	if p.s == nil {
		return 0
	}
	p.loop.collect()
	err := p.s.ForceClose(os.NewSyscallError("sendmsg", syscall.Errno(code)))
	p.sync()
	return status(err)
}

// GoloopStreamDrainWait starts _make_empty_waiter's wait: it returns 1 if
// the buffer is empty already, else 0, and goloop_transport_drained is called
// once it empties.
//
//export GoloopStreamDrainWait
func GoloopStreamDrainWait(id C.int) (rc C.int) {
	defer guard(&rc, nil)
	p := transportOf(id)
	if p.s == nil || p.s.GetWriteBufferSize() == 0 {
		return 1
	}
	if p.drain != nil {
		return 0
	}
	low, high := p.s.WriteBufferLimits()
	p.drain = &drainWait{low: low, high: high}
	return status(p.s.SetWriteBufferLimits(0, 0))
}

// setDrainLimits is set_write_buffer_limits during a drain wait: the new
// limits are the ones to restore when the wait ends. They are set for a
// moment (outside the wait, so a pause they cause reaches the protocol),
// then lowered again.
func (p *pyTransport) setDrainLimits(high, low int) error {
	d := p.drain
	p.drain = nil
	err := p.s.SetWriteBufferLimits(high, low)
	if err == nil {
		d.low, d.high = p.s.WriteBufferLimits()
	}
	p.drain = d
	if serr := p.s.SetWriteBufferLimits(0, 0); err == nil {
		err = serr
	}
	return err
}

// endDrain restores the limits a drain wait lowered.
func (p *pyTransport) endDrain() error {
	d := p.drain
	if d == nil {
		return nil
	}
	p.drain = nil
	return p.s.SetWriteBufferLimits(d.high, d.low)
}

// GoloopStreamLendFD unregisters the fd from the core for a sendfile on
// the socket (asyncio's sock_sendfile watches it with add_writer). The
// stream must be idle: not reading, nothing buffered.
//
//export GoloopStreamLendFD
func GoloopStreamLendFD(id C.int) (rc C.int) {
	defer guard(&rc, nil)
	p := transportOf(id)
	if p.s == nil || p.lent || p.s.IsClosing() {
		return 0
	}
	if p.s.IsReading() || p.s.GetWriteBufferSize() > 0 {
		return fail(errors.New("goloop: the transport must not be reading or writing while sendfile runs"))
	}
	p.mapStream(false)
	if err := p.loop.core.Unregister(p.s.Fd()); err != nil {
		return fail(err)
	}
	p.lent = true
	p.sync()
	return 0
}

// GoloopStreamReclaimFD ends a drain wait and takes the fd back after a
// sendfile (_reset_empty_waiter). An idle stream polls for nothing, which
// is what it is registered with again; one closed meanwhile stays out.
//
//export GoloopStreamReclaimFD
func GoloopStreamReclaimFD(id C.int) (rc C.int) {
	defer guard(&rc, nil)
	p := transportOf(id)
	if p.s == nil {
		return 0
	}
	if err := p.endDrain(); err != nil {
		return fail(err)
	}
	if !p.lent {
		return 0
	}
	p.lent = false
	if p.s.IsClosing() {
		return 0
	}
	if err := p.loop.core.Register(p.s.Fd(), p.s, 0); err != nil {
		return fail(err)
	}
	p.mapStream(true)
	p.sync()
	return 0
}

// The stream's own sink methods, which call into Python through stream.c
// (the rest are transport.go's).

func (p *pyTransport) Data(b []byte) error {
	return p.returned(C.goloop_stream_data(p.self, (*C.char)(unsafe.Pointer(&b[0])), C.long(len(b))))
}

// ReadStreams is core.StreamReader's: the run of ready streams goes to C
// in one crossing (stream.c, goloop_streams_read), which reads each socket
// and calls data_received, or get_buffer and buffer_updated, in turn.
func (l *pyLoop) ReadStreams(streams []*core.Stream, buf []byte) (int, bool, core.ReadOutcome, error) {
	run := l.run[:0]
	for _, s := range streams {
		run = append(run, C.goloop_ready_stream{self: selfOf(s), fd: C.int(s.Fd())})
	}
	l.run = run
	r := C.goloop_streams_read(&run[0], C.long(len(run)), (*C.char)(unsafe.Pointer(&buf[0])), C.long(len(buf)))
	clear(run)
	l.collect()
	if r.rc < 0 {
		return int(r.done), false, core.ReadOutcome{}, errPython
	}
	return int(r.done), r.began != 0, outcome(r.out), nil
}

// PollRead is core.PollReader's: the blocking poll, and the reads of the
// streams it found ready, in one crossing (stream.c, goloop_poll_read).
// What their callbacks queued stays in the intake for the next tick's
// Collect, as the PollReader contract has it.
func (l *pyLoop) PollRead(epfd int, events []unix.EpollEvent, msec int, due float64, buf []byte) (core.PolledRun, error) {
	r := C.goloop_poll_read(l.self, C.int(epfd), (*C.struct_epoll_event)(unsafe.Pointer(&events[0])),
		C.int(len(events)), C.int(msec), C.double(due), (*C.char)(unsafe.Pointer(&buf[0])), C.long(len(buf)))
	if r.n < 0 {
		return core.PolledRun{}, syscall.Errno(-r.n)
	}
	run := core.PolledRun{N: int(r.n), Read: r.read != 0}
	switch {
	case r.rc < 0:
		run.Err = errPython
	case r.began >= 0:
		run.Began, run.Out = transportOf(r.began).s, outcome(r.out)
	}
	return run, nil
}

// outcome is the core's ReadOutcome of a C read (goloop_read_outcome).
func outcome(o C.goloop_read_outcome) core.ReadOutcome {
	switch {
	case o.read == 0 && o.lent == nil:
		return core.ReadOutcome{}
	case o.read == 0:
		return core.ReadOutcome{Lent: unsafe.Slice((*byte)(unsafe.Pointer(o.lent)), int(o.len))}
	case o.err != 0:
		return core.ReadOutcome{Read: true, Err: syscall.Errno(o.err)}
	}
	return core.ReadOutcome{Read: true, N: int(o.n)}
}

// LendBuffer and LentData make a plain Protocol's stream a
// core.LendingStreamSink: a large read goes into a bytes object.
func (p *pyTransport) LendBuffer(size int) ([]byte, error) {
	buf := C.goloop_stream_lend(p.self, C.long(size))
	if buf == nil {
		return nil, nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(buf)), size), nil
}

func (p *pyTransport) LentData(n int) error {
	return p.returned(C.goloop_stream_lent_data(p.self, C.long(n)))
}

func (p *pyTransport) EOF() (bool, error) {
	rc := C.goloop_stream_eof(p.self)
	p.loop.collect()
	if rc < 0 {
		return false, errPython
	}
	return rc == 1, nil
}

func (b bufferedSink) GetBuffer(hint int) ([]byte, error) {
	r := C.goloop_stream_get_buffer(b.self)
	b.loop.collect()
	switch {
	case r.rc < 0:
		return nil, errPython
	case r.buf == nil:
		return nil, nil // the protocol failed and the stream is force-closed
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(r.buf)), int(r.len)), nil
}

// ReadInto makes get_buffer(), the read and buffer_updated() one crossing
// (stream.c, goloop_stream_read_buffered).
func (b bufferedSink) ReadInto(fd int) (core.ReadOutcome, error) {
	r := C.goloop_stream_read_buffered(b.self, C.int(fd))
	b.loop.collect()
	if r.rc < 0 {
		return core.ReadOutcome{}, errPython
	}
	return outcome(r.out), nil
}

func (b bufferedSink) BufferUpdated(n int) error {
	return b.returned(C.goloop_stream_buffer_updated(b.self, C.long(n)))
}
