package main

// The Go half both native transports share (transport.c): goloop.
// _SocketTransport over a core.Stream (stream.go) and goloop.
// _DatagramTransport over a core.Datagram (datagram.go). One pyTransport
// serves either kind, as one TransportObject layout does in C: the exports
// here are the methods both types have, and the sink methods here are the
// events both cores report; each kind's file adds its own.
//
// Ownership (see also goloop.h, TransportObject):
//   - C keeps only the transport's registry id, never a Go pointer.
//   - Go keeps the transport object (self) as a borrowed pointer, plus one
//     reference it owns while the transport is "held": from its New export
//     until Lost is delivered, the loop is closed or cleared, or the
//     finalizer of an unclosed transport detaches it. That reference is what
//     keeps a reading transport alive, as asyncio's selector keeps its read
//     handle; the loop's traverse reports it (GoloopTraverse).
//   - The Python socket object owns the fd. The core unregisters the fd
//     before Lost, and transport.c's Lost helper then closes the socket.

/*
#include "bridge.h"
*/
import "C"

import (
	"errors"
	"math"

	"goloop/core"
)

// lostWritesWarning is asyncio's constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES:
// from the fifth write after the connection was lost, each one logs
// 'socket.send() raised exception.'.
const lostWritesWarning = 5

// errProtocol stands for the Python exception held in pyTransport.fatal:
// the one _force_close(exc) (or a failed protocol callback) closed the
// transport with, which Lost hands to connection_lost.
var errProtocol = errors.New("goloop: protocol exception")

// pyTransport is kept small, as every idle connection has one: what only
// some streams need for a while (a drain wait) is allocated then, and what
// one stream uses at a time (writelines' slices) is the loop's. Fields one
// kind does not use stay zero in the other.
type pyTransport struct {
	loop *pyLoop
	// The core's transport: s for a stream, d for a datagram transport;
	// nil once detached by the finalizer.
	s    *core.Stream
	d    *core.Datagram
	self *C.PyObject // the transport object (borrowed; see held)
	// fatal is the exception given to the core's ForceClose as
	// errProtocol (an owned reference), until Lost passes it on.
	fatal *C.PyObject
	// ws is C memory in the transport object, the state its methods read
	// without a call into Go (bridge.h); nil once the object is freed.
	ws    *C.goloop_wstate
	drain *drainWait // a stream's, while _make_empty_waiter's wait is on
	slot  int32      // index in loop.transports while the loop holds self, else -1
	// toldPaused: the protocol got pause_writing() and not yet
	// resume_writing(). It differs from the core's own paused state only
	// while drain is set.
	toldPaused bool
	lent       bool // a stream's fd is unregistered for the length of a sendfile
	mapped     bool // a stream is in the loop's map of streams (mapStream)
	eof        bool // a stream's write_eof() called
	// sending: inside a datagram transport's sendto(), where an exception
	// error_received() raises goes to sendto's caller, as in asyncio;
	// elsewhere it is reported as a failed callback.
	sending bool
}

// coreTransport is what core.Stream and core.Datagram both have.
type coreTransport interface {
	core.IO
	Fd() int
	Start() error
	IsClosing() bool
	IsLost() bool
	IsReading() bool
	PauseReading() error
	ResumeReading() error
	Close() error
	ForceClose(err error) error
	GetWriteBufferSize() int
	WriteBufferLimits() (low, high int)
	SetWriteBufferLimits(high, low int) error
}

var _ core.ClosingSink = (*pyTransport)(nil)

// The transport registry: the ids C keeps, for both kinds.
var transports idTable[*pyTransport]

func transportOf(id C.int) *pyTransport {
	p := transports.list[id]
	p.loop.entered()
	return p
}

// adopt is the last step of a New export, once p's core transport is
// made: p is registered, and the loop takes its reference to the
// transport object. It returns p's id.
func (l *pyLoop) adopt(p *pyTransport) C.int {
	p.sync()
	C.goloop_incref(p.self)
	p.slot = int32(len(l.transports))
	l.transports = append(l.transports, p)
	return C.int(transports.add(p))
}

// core returns the core's transport, or nil once detached.
func (p *pyTransport) core() coreTransport {
	switch {
	case p.s != nil:
		return p.s
	case p.d != nil:
		return p.d
	}
	return nil
}

// unsink stops the core's transport calling into the transport object.
func (p *pyTransport) unsink() {
	switch {
	case p.s != nil:
		p.s.SetSink(nil)
	case p.d != nil:
		p.d.SetSink(nil)
	}
}

// sync mirrors the transport's state into the transport object:
// is_closing(), is_reading(), and idle, which lets C send at once where the
// core would make the one system call and return. A stream is idle while
// open, before write_eof(), with nothing buffered; a datagram transport
// while not lost with nothing queued. Every change away from idle goes
// through here or Closing, before anything that could close the socket; a
// change back to idle that happens inside the core (a flush emptying the
// buffer) is noticed at the next send that goes through Go.
func (p *pyTransport) sync() {
	if p.ws == nil {
		return
	}
	switch s, d := p.s, p.d; {
	case s != nil:
		p.ws.idle = cbool(!p.eof && !p.lent && !s.IsClosing() && s.GetWriteBufferSize() == 0)
		p.ws.closing = cbool(s.IsClosing())
		p.ws.reading = cbool(s.IsReading())
		_, buffered := s.Sink().(bufferedSink)
		p.ws.buffered = cbool(buffered)
	case d != nil:
		p.ws.idle = cbool(!d.IsLost() && d.Queued() == 0)
		p.ws.closing = cbool(d.IsClosing())
		p.ws.reading = cbool(d.IsReading())
	default:
		*p.ws = C.goloop_wstate{closing: 1}
	}
}

func cbool(b bool) C.char {
	if b {
		return 1
	}
	return 0
}

// Closing is core.ClosingSink's: the transport is closing, whatever the
// cause. Only the core closes a transport (the bridge's own exports call
// sync after), so this keeps is_closing() and is_reading() exact too.
func (p *pyTransport) Closing() {
	p.mapStream(false)
	if p.ws != nil {
		*p.ws = C.goloop_wstate{closing: 1}
	}
}

// release drops the exception held for Lost and the loop's reference to
// the transport object, which may free it (and run GoloopTransportFree).
func (p *pyTransport) release() {
	p.mapStream(false)
	if p.fatal != nil {
		exc := p.fatal
		p.fatal = nil
		C.goloop_decref(exc)
	}
	if p.slot < 0 {
		return
	}
	l := p.loop
	last := len(l.transports) - 1
	l.transports[p.slot] = l.transports[last]
	l.transports[p.slot].slot = p.slot
	l.transports[last] = nil
	l.transports = l.transports[:last]
	p.slot = -1
	C.goloop_decref(p.self)
}

// releaseTransports lets go of every transport the loop holds: the core
// has forgotten their fds (Close, Clear), so no Lost will come.
func (l *pyLoop) releaseTransports() {
	if len(l.transports) == 0 {
		return
	}
	// Releasing may run finalizers that make or close other transports.
	held := append([]*pyTransport(nil), l.transports...)
	for _, p := range held {
		p.release()
	}
}

// lostWriteWarns reports whether a write that moved the count of writes
// dropped after the connection was lost from before to now is one asyncio
// logs.
func lostWriteWarns(before, now int) bool {
	return now > before && now >= lostWritesWarning
}

// GoloopTransportFree is called from the transport's dealloc.
//
//export GoloopTransportFree
func GoloopTransportFree(id C.int) (rc C.int) {
	defer guard(&rc, nil)
	p := transportOf(id)
	p.unsink() // nothing may call into a freed object
	p.ws = nil
	p.release() // the held exception; the loop holds no reference by now
	transports.remove(int(id))
	return 0
}

// GoloopTransportDetach is the finalizer's: an unclosed transport takes
// its fd back from the core before its socket is closed, and the core's
// transport is never used again (the fd number may be reused at once).
//
//export GoloopTransportDetach
func GoloopTransportDetach(id C.int) (rc C.int) {
	defer guard(&rc, nil)
	p := transportOf(id)
	if t := p.core(); t != nil {
		p.unsink()
		p.mapStream(false)
		p.s, p.d = nil, nil
		p.sync()
		if p.loop.core.Owner(t.Fd()) == core.IO(t) {
			if err := p.loop.core.Unregister(t.Fd()); err != nil {
				p.release()
				return fail(err)
			}
		}
	}
	p.release()
	return 0
}

// GoloopTransportStart begins reading (after connection_made).
//
//export GoloopTransportStart
func GoloopTransportStart(id C.int) (rc C.int) {
	defer guard(&rc, nil)
	p := transportOf(id)
	t := p.core()
	if t == nil {
		return 0
	}
	return status(t.Start())
}

// GoloopTransportQueued returns 1 if anything waits to be sent, else 0:
// where close() leaves connection_lost to the writer.
//
//export GoloopTransportQueued
func GoloopTransportQueued(id C.int) (rc C.int) {
	defer guard(&rc, nil)
	switch p := transportOf(id); {
	case p.s != nil && p.s.GetWriteBufferSize() > 0, p.d != nil && p.d.Queued() > 0:
		return 1
	}
	return 0
}

//export GoloopTransportClose
func GoloopTransportClose(id C.int) (rc C.int) {
	defer guard(&rc, nil)
	p := transportOf(id)
	t := p.core()
	if t == nil {
		return 0
	}
	p.loop.collect()
	return status(t.Close())
}

// GoloopTransportForceClose is asyncio's _force_close(exc) (abort() with
// exc NULL): it steals exc, which reaches connection_lost unless the
// connection is lost already.
//
//export GoloopTransportForceClose
func GoloopTransportForceClose(id C.int, exc *C.PyObject) (rc C.int) {
	defer guard(&rc, nil)
	p := transportOf(id)
	t := p.core()
	if t == nil || (exc != nil && t.IsLost()) {
		if exc != nil {
			C.goloop_decref(exc)
		}
		return 0
	}
	p.loop.collect()
	if exc == nil {
		return status(t.ForceClose(nil))
	}
	p.fatal = exc
	return status(t.ForceClose(errProtocol))
}

// GoloopTransportPauseReading pauses (pause != 0) or resumes reading; it
// returns 1 if that changed anything (asyncio logs it in debug mode).
//
//export GoloopTransportPauseReading
func GoloopTransportPauseReading(id C.int, pause C.int) (rc C.int) {
	defer guard(&rc, nil)
	p := transportOf(id)
	t := p.core()
	if t == nil {
		return 0
	}
	var err error
	if pause != 0 {
		if !t.IsReading() {
			return 0
		}
		err = t.PauseReading()
	} else {
		if t.IsClosing() || t.IsReading() {
			return 0
		}
		err = t.ResumeReading()
	}
	p.sync()
	if err != nil {
		return fail(err)
	}
	return 1
}

//export GoloopTransportBufferSize
func GoloopTransportBufferSize(id C.int) C.long {
	var rc C.int
	defer guard(&rc, nil)
	if t := transportOf(id).core(); t != nil {
		return C.long(t.GetWriteBufferSize())
	}
	return 0
}

// GoloopTransportLimits stores (low, high), the ones in force outside a
// drain wait.
//
//export GoloopTransportLimits
func GoloopTransportLimits(id C.int, low, high *C.longlong) (rc C.int) {
	defer guard(&rc, nil)
	p := transportOf(id)
	lo, hi := 16<<10, 64<<10 // asyncio's defaults
	switch t := p.core(); {
	case p.drain != nil:
		lo, hi = p.drain.low, p.drain.high
	case t != nil:
		lo, hi = t.WriteBufferLimits()
	}
	*low, *high = C.longlong(lo), C.longlong(hi)
	return 0
}

// GoloopTransportSetLimits is set_write_buffer_limits; LLONG_MIN stands
// for None. It may call pause_writing.
//
//export GoloopTransportSetLimits
func GoloopTransportSetLimits(id C.int, high, low C.longlong) (rc C.int) {
	defer guard(&rc, nil)
	p := transportOf(id)
	t := p.core()
	if t == nil {
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
	if p.drain != nil {
		return status(p.setDrainLimits(h, l))
	}
	return status(t.SetWriteBufferLimits(h, l))
}

// The sink methods both kinds share, which call into Python through
// transport.c.

// returned is a sink method's result once its call into Python returned rc
// (-1: an exception that stops the loop is set). What the protocol queued
// with call_soon moves into the core first, so that a Lost the transport
// schedules next runs after it, as in asyncio's one ready queue.
func (p *pyTransport) returned(rc C.int) error {
	p.loop.collect()
	if rc < 0 {
		return errPython
	}
	return nil
}

func (p *pyTransport) PauseWriting() error {
	if p.drain != nil && p.s.GetWriteBufferSize() <= p.drain.high {
		return nil // only the drain wait's limits were crossed
	}
	p.toldPaused = true
	return p.returned(C.goloop_transport_pause_writing(p.self))
}

func (p *pyTransport) ResumeWriting() error {
	if p.drain != nil {
		// The buffer is empty: restore the limits (nothing is paused by
		// them at size 0) and wake _make_empty_waiter's future.
		if err := p.endDrain(); err != nil {
			return err
		}
		C.goloop_transport_drained(p.self)
	}
	if p.toldPaused {
		p.toldPaused = false
		if C.goloop_transport_resume_writing(p.self) < 0 {
			p.loop.collect()
			return errPython
		}
	}
	p.loop.collect()
	return nil
}

// Lost calls connection_lost and closes the socket (transport.c), then
// drops the loop's reference to the transport.
func (p *pyTransport) Lost(err error) error {
	p.Closing() // it is, already: this is belt and braces before the socket closes
	rc := C.goloop_transport_lost(p.self, p.exception(err))
	p.loop.collect()
	p.release()
	if rc < 0 {
		return errPython
	}
	return nil
}

// exception returns the Python exception for a Lost error, a new
// reference, or nil for None.
func (p *pyTransport) exception(err error) *C.PyObject {
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
