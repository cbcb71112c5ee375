package main

// The Go half of goloop._SocketTransport (stream.c): one core.Stream per
// transport, the exports its C methods call, and the sink that turns the
// stream's events into protocol calls through stream.c's helpers.
//
// Ownership (see also goloop.h, TransportObject):
//   - C keeps only the stream's registry id, never a Go pointer.
//   - Go keeps the transport object (self) as a borrowed pointer, plus one
//     reference it owns while the stream is "held": from GoloopStreamNew until
//     Lost is delivered, the loop is closed or cleared, or the finalizer of an
//     unclosed transport detaches it. That reference is what keeps a reading
//     transport alive, as asyncio's selector keeps its read handle; the loop's
//     traverse reports it (GoloopTraverse).
//   - The Python socket object owns the fd. The core unregisters the fd
//     before Lost, and stream.c's Lost helper then closes the socket.

/*
#include "bridge.h"
*/
import "C"

import (
	"errors"
	"math"
	"os"
	"syscall"
	"unsafe"

	"goloop/core"
)

// lostWritesWarning is asyncio's constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES:
// from the fifth write after the connection was lost, each one logs
// 'socket.send() raised exception.'.
const lostWritesWarning = 5

// errProtocol stands for the Python exception held in pyStream.fatal: the
// one _force_close(exc) (or a failed protocol callback) closed the stream
// with, which Lost hands to connection_lost.
var errProtocol = errors.New("goloop: protocol exception")

// pyStream is kept small, as every idle connection has one: what only
// some streams need for a while (a drain wait) is allocated then, and what
// one stream uses at a time (writelines' slices) is the loop's.
type pyStream struct {
	loop *pyLoop
	s    *core.Stream // nil once detached by the finalizer
	self *C.PyObject  // the transport object (borrowed; see held)
	// fatal is the exception given to the stream's ForceClose as
	// errProtocol (an owned reference), until Lost passes it on.
	fatal *C.PyObject
	// ws is C memory in the transport object, the write fast path's state
	// (bridge.h); nil once the object is freed.
	ws    *C.goloop_wstate
	drain *drainWait // while _make_empty_waiter's wait is on
	slot  int32      // index in loop.streams while the loop holds self, else -1
	// toldPaused: the protocol got pause_writing() and not yet
	// resume_writing(). It differs from the core's own paused state only
	// while drain is set.
	toldPaused bool
	lent       bool // the fd is unregistered for the length of a sendfile
	eof        bool // write_eof() called
}

// drainWait is _make_empty_waiter's wait for the write buffer to empty. The
// core reports only crossings of the water marks, so the limits are set to
// (0, 0) for the wait, which makes ResumeWriting mean "empty"; the pause and
// resume that only the lowered marks cause are not passed on to the
// protocol. Writing is refused while sendfile runs, so the buffer only
// shrinks meanwhile.
type drainWait struct {
	low, high int // the limits to restore
}

var _ core.StreamSink = (*pyStream)(nil)
var _ core.ClosingSink = (*pyStream)(nil)
var _ core.BufferedStreamSink = bufferedSink{}

// bufferedSink is the sink of a stream whose protocol is an
// asyncio.BufferedProtocol: reads go straight into get_buffer()'s memory.
// It is the same stream, with GetBuffer and BufferUpdated; being one
// pointer, it converts to core.StreamSink without an allocation.
type bufferedSink struct{ *pyStream }

// The stream registry: ids for C, reused, touched only with the GIL held.
var streams struct {
	list []*pyStream
	free []int
}

func registerStream(p *pyStream) int {
	if n := len(streams.free); n > 0 {
		id := streams.free[n-1]
		streams.free = streams.free[:n-1]
		streams.list[id] = p
		return id
	}
	streams.list = append(streams.list, p)
	return len(streams.list) - 1
}

func streamOf(id C.int) *pyStream { return streams.list[id] }

// hold takes the loop's reference to the transport object.
func (l *pyLoop) hold(p *pyStream) {
	C.goloop_incref(p.self)
	p.slot = int32(len(l.streams))
	l.streams = append(l.streams, p)
}

// release drops the exception held for Lost and the loop's reference to
// the transport object, which may free it (and run GoloopStreamFree).
func (p *pyStream) release() {
	if p.fatal != nil {
		exc := p.fatal
		p.fatal = nil
		C.goloop_decref(exc)
	}
	if p.slot < 0 {
		return
	}
	l := p.loop
	last := len(l.streams) - 1
	l.streams[p.slot] = l.streams[last]
	l.streams[p.slot].slot = p.slot
	l.streams[last] = nil
	l.streams = l.streams[:last]
	p.slot = -1
	C.goloop_decref(p.self)
}

// releaseStreams lets go of every transport the loop holds: the core has
// forgotten their fds (Close, Clear), so no Lost will come.
func (l *pyLoop) releaseStreams() {
	if len(l.streams) == 0 {
		return
	}
	// Releasing may run finalizers that make or close other transports.
	held := append([]*pyStream(nil), l.streams...)
	for _, p := range held {
		p.release()
	}
}

// fail raises err; -1 is the export's return value.
func fail(err error) C.int {
	setError(err)
	return -1
}

// GoloopStreamNew makes fd (the socket of self, a transport object) a
// stream of the loop, registered but not read until GoloopStreamStart.
//
//export GoloopStreamNew
func GoloopStreamNew(loopID C.int, fd C.int, self *C.PyObject, buffered C.int, ws *C.goloop_wstate) (rc C.int) {
	defer guard(&rc, nil)
	l := loopOf(loopID)
	p := &pyStream{loop: l, self: self, slot: -1}
	s, err := core.NewStream(l.core, int(fd), p.sinkFor(buffered != 0))
	if err != nil {
		return fail(err)
	}
	p.s = s
	p.ws = ws
	p.syncIdle()
	l.hold(p)
	return C.int(registerStream(p))
}

// syncIdle tells stream.c whether write() may go straight to the socket.
// Every change away from idle goes through here or Closing, before
// anything that could close the socket; a change back to idle that
// happens inside the core (a flush emptying the buffer) is noticed at the
// next write that goes through Go.
func (p *pyStream) syncIdle() {
	if p.ws == nil {
		return
	}
	s := p.s
	if s == nil {
		*p.ws = C.goloop_wstate{closing: 1}
		return
	}
	p.ws.idle = cbool(!p.eof && !p.lent && !s.IsClosing() && s.GetWriteBufferSize() == 0)
	p.ws.closing = cbool(s.IsClosing())
	p.ws.reading = cbool(s.IsReading())
}

func cbool(b bool) C.char {
	if b {
		return 1
	}
	return 0
}

// Closing is core.ClosingSink's: the stream is closing, whatever the cause.
// Only the core closes a stream (the bridge's own exports call syncIdle
// after), so this keeps is_closing() and is_reading() exact too.
func (p *pyStream) Closing() {
	if p.ws != nil {
		*p.ws = C.goloop_wstate{closing: 1}
	}
}

func (p *pyStream) sinkFor(buffered bool) core.StreamSink {
	if buffered {
		return bufferedSink{p}
	}
	return p
}

// GoloopStreamFree is called from the transport's dealloc.
//
//export GoloopStreamFree
func GoloopStreamFree(id C.int) (rc C.int) {
	defer guard(&rc, nil)
	p := streamOf(id)
	if p.s != nil {
		p.s.SetSink(nil) // nothing may call into a freed object
	}
	p.ws = nil
	p.release() // the held exception; the loop holds no reference by now
	streams.list[id] = nil
	streams.free = append(streams.free, int(id))
	return 0
}

// GoloopStreamDetach is the finalizer's: an unclosed transport takes its fd
// back from the core before its socket is closed, and the stream is never
// used again (the fd number may be reused at once).
//
//export GoloopStreamDetach
func GoloopStreamDetach(id C.int) (rc C.int) {
	defer guard(&rc, nil)
	p := streamOf(id)
	if s := p.s; s != nil {
		p.s = nil
		p.syncIdle()
		s.SetSink(nil)
		if p.loop.core.Owner(s.Fd()) == core.IO(s) {
			if err := p.loop.core.Unregister(s.Fd()); err != nil {
				p.release()
				return fail(err)
			}
		}
	}
	p.release()
	return 0
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
	switch sink := s.Sink().(type) {
	case *pyStream:
		return sink.self
	case bufferedSink:
		return sink.self
	}
	return nil
}

//export GoloopStreamSetProtocol
func GoloopStreamSetProtocol(id C.int, buffered C.int) (rc C.int) {
	defer guard(&rc, nil)
	p := streamOf(id)
	if p.s != nil {
		p.s.SetSink(p.sinkFor(buffered != 0))
	}
	return 0
}

// GoloopStreamStart begins reading (after connection_made).
//
//export GoloopStreamStart
func GoloopStreamStart(id C.int) (rc C.int) {
	defer guard(&rc, nil)
	p := streamOf(id)
	if p.s == nil {
		return 0
	}
	if err := p.s.Start(); err != nil {
		return fail(err)
	}
	return 0
}

// writeResult turns a write's outcome into the export's return value: 0, 1
// for a write dropped after the connection was lost that asyncio would log,
// -2 for a write after write_eof (C raises it: its wording depends on the
// method), -1 with an exception set.
func (p *pyStream) writeResult(err error, lostBefore int) C.int {
	p.syncIdle()
	switch {
	case err == nil:
	case errors.Is(err, core.ErrWriteAfterEOF):
		return -2
	default:
		return fail(err)
	}
	if n := p.s.LostWrites(); n > lostBefore && n >= lostWritesWarning {
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
	p := streamOf(id)
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
	p := streamOf(id)
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
	p := streamOf(id)
	if p.s == nil {
		return 0
	}
	if !p.s.IsClosing() {
		p.eof = true // as the core's own flag: not set on a closing stream
	}
	p.syncIdle()
	if err := p.s.WriteEOF(); err != nil {
		return fail(err)
	}
	return 0
}

// GoloopStreamSendFailed reports the errno of a send() that stream.c's
// fast path made: the stream fails with it as with a failed write in Go.
//
//export GoloopStreamSendFailed
func GoloopStreamSendFailed(id C.int, code C.int) (rc C.int) {
	defer guard(&rc, nil)
	p := streamOf(id)
	if p.s == nil {
		return 0
	}
	p.loop.collect()
	err := p.s.ForceClose(os.NewSyscallError("sendmsg", syscall.Errno(code)))
	p.syncIdle()
	if err != nil {
		return fail(err)
	}
	return 0
}

//export GoloopStreamClose
func GoloopStreamClose(id C.int) (rc C.int) {
	defer guard(&rc, nil)
	p := streamOf(id)
	if p.s == nil {
		return 0
	}
	p.loop.collect()
	if err := p.s.Close(); err != nil {
		return fail(err)
	}
	return 0
}

// GoloopStreamForceClose is asyncio's _force_close(exc) (abort() with exc
// NULL): it steals exc, which reaches connection_lost.
//
//export GoloopStreamForceClose
func GoloopStreamForceClose(id C.int, exc *C.PyObject) (rc C.int) {
	defer guard(&rc, nil)
	p := streamOf(id)
	if p.s == nil {
		if exc != nil {
			C.goloop_decref(exc)
		}
		return 0
	}
	p.loop.collect()
	var err error
	switch {
	case exc == nil:
		err = p.s.ForceClose(nil)
	case p.fatal != nil:
		// An earlier ForceClose with an exception has had the stream
		// lost already: this one is a no-op.
		C.goloop_decref(exc)
	default:
		p.fatal = exc
		err = p.s.ForceClose(errProtocol)
	}
	if err != nil {
		return fail(err)
	}
	return 0
}

// GoloopStreamPauseReading pauses (pause != 0) or resumes reading; it
// returns 1 if that changed anything (asyncio logs it in debug mode).
//
//export GoloopStreamPauseReading
func GoloopStreamPauseReading(id C.int, pause C.int) (rc C.int) {
	defer guard(&rc, nil)
	p := streamOf(id)
	s := p.s
	if s == nil {
		return 0
	}
	var err error
	if pause != 0 {
		if !s.IsReading() {
			return 0
		}
		err = s.PauseReading()
	} else {
		if s.IsClosing() || s.IsReading() {
			return 0
		}
		err = s.ResumeReading()
	}
	p.syncIdle()
	if err != nil {
		return fail(err)
	}
	return 1
}

//export GoloopStreamBufferSize
func GoloopStreamBufferSize(id C.int) C.long {
	var rc C.int
	defer guard(&rc, nil)
	if s := streamOf(id).s; s != nil {
		return C.long(s.GetWriteBufferSize())
	}
	return 0
}

// GoloopStreamLimits stores (low, high), the ones in force outside a drain
// wait.
//
//export GoloopStreamLimits
func GoloopStreamLimits(id C.int, low, high *C.longlong) (rc C.int) {
	defer guard(&rc, nil)
	p := streamOf(id)
	var lo, hi int
	switch {
	case p.drain != nil:
		lo, hi = p.drain.low, p.drain.high
	case p.s != nil:
		lo, hi = p.s.WriteBufferLimits()
	default:
		lo, hi = 16<<10, 64<<10
	}
	*low, *high = C.longlong(lo), C.longlong(hi)
	return 0
}

// GoloopStreamSetLimits is set_write_buffer_limits; LLONG_MIN stands for
// None. It may call pause_writing.
//
//export GoloopStreamSetLimits
func GoloopStreamSetLimits(id C.int, high, low C.longlong) (rc C.int) {
	defer guard(&rc, nil)
	p := streamOf(id)
	if p.s == nil {
		return 0
	}
	h, l := int(high), int(low)
	if high == math.MinInt64 {
		h = core.Unset
	}
	if low == math.MinInt64 {
		l = core.Unset
	}
	p.loop.collect()
	if d := p.drain; d != nil {
		// The new limits are the ones to restore when the drain wait
		// ends; set them for a moment (outside the wait, so a pause they
		// cause reaches the protocol), then lower them again.
		p.drain = nil
		err := p.s.SetWriteBufferLimits(h, l)
		if err == nil {
			d.low, d.high = p.s.WriteBufferLimits()
		}
		p.drain = d
		if serr := p.s.SetWriteBufferLimits(0, 0); err == nil {
			err = serr
		}
		if err != nil {
			return fail(err)
		}
		return 0
	}
	if err := p.s.SetWriteBufferLimits(h, l); err != nil {
		return fail(err)
	}
	return 0
}

// GoloopStreamDrainWait starts _make_empty_waiter's wait: it returns 1 if
// the buffer is empty already, else 0, and goloop_stream_drained is called
// once it empties.
//
//export GoloopStreamDrainWait
func GoloopStreamDrainWait(id C.int) (rc C.int) {
	defer guard(&rc, nil)
	p := streamOf(id)
	if p.s == nil || p.s.GetWriteBufferSize() == 0 {
		return 1
	}
	if p.drain != nil {
		return 0
	}
	low, high := p.s.WriteBufferLimits()
	p.drain = &drainWait{low: low, high: high}
	if err := p.s.SetWriteBufferLimits(0, 0); err != nil {
		return fail(err)
	}
	return 0
}

// endDrain restores the limits a drain wait lowered.
func (p *pyStream) endDrain() error {
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
	p := streamOf(id)
	if p.s == nil || p.lent || p.s.IsClosing() {
		return 0
	}
	if p.s.IsReading() || p.s.GetWriteBufferSize() > 0 {
		return fail(errors.New("goloop: the transport must not be reading or writing while sendfile runs"))
	}
	if err := p.loop.core.Unregister(p.s.Fd()); err != nil {
		return fail(err)
	}
	p.lent = true
	p.syncIdle()
	return 0
}

// GoloopStreamReclaimFD ends a drain wait and takes the fd back after a
// sendfile (_reset_empty_waiter). An idle stream polls for nothing, which
// is what it is registered with again; one closed meanwhile stays out.
//
//export GoloopStreamReclaimFD
func GoloopStreamReclaimFD(id C.int) (rc C.int) {
	defer guard(&rc, nil)
	p := streamOf(id)
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
	p.syncIdle()
	return 0
}

// The sink. Each method calls into Python through stream.c, then moves what
// the protocol queued with call_soon into the core, so that a Lost the
// stream schedules next runs after it, as in asyncio's one ready queue.

func (p *pyStream) Data(b []byte) error {
	rc := C.goloop_stream_data(p.self, (*C.char)(unsafe.Pointer(&b[0])), C.long(len(b)))
	p.loop.collect()
	if rc < 0 {
		return errPython
	}
	return nil
}

func (p *pyStream) EOF() (bool, error) {
	rc := C.goloop_stream_eof(p.self)
	p.loop.collect()
	if rc < 0 {
		return false, errPython
	}
	return rc == 1, nil
}

func (p *pyStream) PauseWriting() error {
	if p.drain != nil && p.s.GetWriteBufferSize() <= p.drain.high {
		return nil // only the drain wait's limits were crossed
	}
	p.toldPaused = true
	rc := C.goloop_stream_pause_writing(p.self)
	p.loop.collect()
	if rc < 0 {
		return errPython
	}
	return nil
}

func (p *pyStream) ResumeWriting() error {
	if p.drain != nil {
		// The buffer is empty: restore the limits (nothing is paused by
		// them at size 0) and wake _make_empty_waiter's future.
		if err := p.endDrain(); err != nil {
			return err
		}
		C.goloop_stream_drained(p.self)
	}
	if p.toldPaused {
		p.toldPaused = false
		if C.goloop_stream_resume_writing(p.self) < 0 {
			p.loop.collect()
			return errPython
		}
	}
	p.loop.collect()
	return nil
}

// Lost calls connection_lost and closes the socket (stream.c), then drops
// the loop's reference to the transport.
func (p *pyStream) Lost(err error) error {
	p.Closing() // it is, already: this is belt and braces before the socket closes
	exc := p.exception(err)
	rc := C.goloop_stream_lost(p.self, exc)
	p.loop.collect()
	p.release()
	if rc < 0 {
		return errPython
	}
	return nil
}

// exception returns the Python exception for a Lost error, a new
// reference, or nil for None.
func (p *pyStream) exception(err error) *C.PyObject {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errProtocol) && p.fatal != nil:
		exc := p.fatal
		p.fatal = nil
		return exc
	}
	setError(err)
	return C.goloop_fetch_exception()
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

func (b bufferedSink) BufferUpdated(n int) error {
	rc := C.goloop_stream_buffer_updated(b.self, C.long(n))
	b.loop.collect()
	if rc < 0 {
		return errPython
	}
	return nil
}
