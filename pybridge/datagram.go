package main

// The Go half of goloop._DatagramTransport (datagram.c): one core.Datagram
// per transport, the exports its C methods call, and the sink that turns the
// datagram socket's events into protocol calls through datagram.c's helpers.
//
// Ownership is the stream's (stream.go): C keeps only the registry id; Go
// keeps the transport object borrowed, plus one reference it owns from
// GoloopDatagramNew until Lost is delivered, the loop is closed or cleared,
// or the finalizer of an unclosed transport detaches it (the loop's
// traverse reports it). The Python socket object owns the fd, which the
// core unregisters before Lost; the Lost helper then closes the socket.

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

type pyDatagram struct {
	loop *pyLoop
	d    *core.Datagram // nil once detached by the finalizer
	self *C.PyObject    // the transport object (borrowed; see above)
	fd   int
	id   int // in the datagram registry
	slot int // index in loop.datagrams while the loop holds self, else -1
	// fatal is the exception given to ForceClose as errProtocol (an owned
	// reference), until Lost passes it on.
	fatal *C.PyObject
	// sending: inside sendto(), where an exception error_received() raises
	// goes to sendto's caller, as in asyncio; elsewhere it is reported as
	// a failed callback.
	sending bool
	// ws is C memory in the transport object: is_closing() and
	// is_reading() read it without a call into Go, and sendto() sends from
	// C while it says idle (see sync).
	ws *C.goloop_wstate
}

var _ core.DatagramSink = (*pyDatagram)(nil)
var _ core.ClosingSink = (*pyDatagram)(nil)

// The datagram registry, as the stream one: ids for C, reused, touched
// only with the GIL held.
var datagrams struct {
	list []*pyDatagram
	free []int
}

func registerDatagram(p *pyDatagram) int {
	if n := len(datagrams.free); n > 0 {
		id := datagrams.free[n-1]
		datagrams.free = datagrams.free[:n-1]
		datagrams.list[id] = p
		return id
	}
	datagrams.list = append(datagrams.list, p)
	return len(datagrams.list) - 1
}

func datagramOf(id C.int) *pyDatagram { return datagrams.list[id] }

// holdDatagram takes the loop's reference to the transport object.
func (l *pyLoop) holdDatagram(p *pyDatagram) {
	C.goloop_incref(p.self)
	p.slot = len(l.datagrams)
	l.datagrams = append(l.datagrams, p)
}

// release drops the exception held for Lost and the loop's reference to
// the transport object, which may free it (and run GoloopDatagramFree).
func (p *pyDatagram) release() {
	if p.fatal != nil {
		exc := p.fatal
		p.fatal = nil
		C.goloop_decref(exc)
	}
	if p.slot < 0 {
		return
	}
	l := p.loop
	last := len(l.datagrams) - 1
	l.datagrams[p.slot] = l.datagrams[last]
	l.datagrams[p.slot].slot = p.slot
	l.datagrams[last] = nil
	l.datagrams = l.datagrams[:last]
	p.slot = -1
	C.goloop_decref(p.self)
}

// releaseDatagrams is releaseStreams' twin.
func (l *pyLoop) releaseDatagrams() {
	if len(l.datagrams) == 0 {
		return
	}
	held := append([]*pyDatagram(nil), l.datagrams...)
	for _, p := range held {
		p.release()
	}
}

// GoloopDatagramNew makes fd (the socket of self, a transport object) a
// datagram transport of the loop, registered but not read until
// GoloopDatagramStart. overhead is what each queued datagram counts
// besides its payload (core.Datagram.SetOverhead); addressed is true for a
// transport made with a remote address, whose sends are dropped once the
// connection is lost (core.Datagram.SetDropWhenLost).
//
//export GoloopDatagramNew
func GoloopDatagramNew(loopID C.int, fd C.int, self *C.PyObject, ws *C.goloop_wstate, overhead C.int, addressed C.int) (rc C.int) {
	defer guard(&rc, nil)
	l := loopOf(loopID)
	p := &pyDatagram{loop: l, self: self, fd: int(fd), slot: -1}
	d, err := core.NewDatagram(l.core, int(fd), p)
	if err != nil {
		return fail(err)
	}
	d.SetOverhead(int(overhead))
	d.SetDropWhenLost(addressed != 0)
	p.d, p.ws = d, ws
	p.sync()
	l.holdDatagram(p)
	return C.int(registerDatagram(p))
}

// sync mirrors the transport's state into the transport object:
// is_closing(), is_reading(), and idle, which lets datagram.c send at once
// (the core's SendTo would make one sendto and return): not lost, nothing
// queued. Queueing happens only inside SendTo, and losing the connection
// goes through Closing, so idle is never stale in the unsafe direction; a
// queue the core flushes empty is noticed at the next send through Go.
func (p *pyDatagram) sync() {
	if p.ws == nil {
		return
	}
	if p.d == nil {
		*p.ws = C.goloop_wstate{closing: 1}
		return
	}
	p.ws.idle = cbool(!p.d.IsLost() && p.d.Queued() == 0)
	p.ws.closing = cbool(p.d.IsClosing())
	p.ws.reading = cbool(p.d.IsReading())
}

// Closing is core.ClosingSink's: whatever closes the transport, C sees it
// before the call that closed it returns.
func (p *pyDatagram) Closing() {
	if p.ws != nil {
		*p.ws = C.goloop_wstate{closing: 1}
	}
}

// GoloopDatagramFree is called from the transport's dealloc.
//
//export GoloopDatagramFree
func GoloopDatagramFree(id C.int) (rc C.int) {
	defer guard(&rc, nil)
	p := datagramOf(id)
	if p.d != nil {
		p.d.SetSink(nil) // nothing may call into a freed object
	}
	p.ws = nil
	p.release()
	datagrams.list[id] = nil
	datagrams.free = append(datagrams.free, int(id))
	return 0
}

// GoloopDatagramDetach is the finalizer's: an unclosed transport takes its
// fd back from the core before its socket is closed.
//
//export GoloopDatagramDetach
func GoloopDatagramDetach(id C.int) (rc C.int) {
	defer guard(&rc, nil)
	p := datagramOf(id)
	if d := p.d; d != nil {
		p.d = nil
		p.sync()
		d.SetSink(nil)
		if p.loop.core.Owner(p.fd) == core.IO(d) {
			if err := p.loop.core.Unregister(p.fd); err != nil {
				p.release()
				return fail(err)
			}
		}
	}
	p.release()
	return 0
}

// GoloopDatagramStart begins reading (after connection_made).
//
//export GoloopDatagramStart
func GoloopDatagramStart(id C.int) (rc C.int) {
	defer guard(&rc, nil)
	p := datagramOf(id)
	if p.d == nil {
		return 0
	}
	err := p.d.Start()
	p.sync()
	if err != nil {
		return fail(err)
	}
	return 0
}

// GoloopDatagramState returns 1 if sends are dropped (core.Datagram's
// Dropping), plus 2 if datagrams are queued: what sendto's slow path needs
// to know before it converts an address in Python.
//
//export GoloopDatagramState
func GoloopDatagramState(id C.int) (rc C.int) {
	defer guard(&rc, nil)
	d := datagramOf(id).d
	if d == nil {
		return 1
	}
	if d.Dropping() {
		rc |= 1
	}
	if d.Queued() > 0 {
		rc |= 2
	}
	return rc
}

// GoloopDatagramSendTo sends n bytes at buf (a Python buffer's memory, lent
// for the call; the core copies what it queues) to the sockaddr at addr
// (addrlen bytes, C memory; none for the connected peer). It returns 0; 1
// for a datagram dropped after the connection was lost that asyncio would
// log; 2 for one queued while nothing was, where asyncio adds its writer
// (datagram.c keeps the context of that moment for the flush); or -1 with
// an exception set.
//
//export GoloopDatagramSendTo
func GoloopDatagramSendTo(id C.int, buf *C.char, n C.long, addr *C.char, addrlen C.int) (rc C.int) {
	defer guard(&rc, nil)
	p := datagramOf(id)
	if p.d == nil {
		return 0
	}
	var b []byte
	if n > 0 {
		b = unsafe.Slice((*byte)(unsafe.Pointer(buf)), int(n))
	}
	var to core.Sockaddr
	if addrlen > 0 {
		to = unsafe.Slice((*byte)(unsafe.Pointer(addr)), int(addrlen))
	}
	// Callbacks queued so far run before anything this send schedules.
	p.loop.collect()
	before, wasEmpty := p.d.LostWrites(), p.d.Queued() == 0
	p.sending = true
	err := p.d.SendTo(b, to)
	p.sending = false
	p.sync()
	switch {
	case err != nil:
		return fail(err)
	case wasEmpty && p.d.Queued() > 0:
		return 2
	}
	if n := p.d.LostWrites(); n > before && n >= lostWritesWarning {
		return 1
	}
	return 0
}

// GoloopDatagramSendFailed reports the errno of a send datagram.c made
// itself: error_received, as the core's SendTo reports a failed send.
//
//export GoloopDatagramSendFailed
func GoloopDatagramSendFailed(id C.int, code C.int, connected C.int) (rc C.int) {
	defer guard(&rc, nil)
	p := datagramOf(id)
	if p.d == nil {
		return 0
	}
	call := "sendto"
	if connected != 0 {
		call = "send"
	}
	p.loop.collect()
	p.sending = true
	err := p.Error(os.NewSyscallError(call, syscall.Errno(code)))
	p.sending = false
	p.sync()
	if err != nil {
		return fail(err)
	}
	return 0
}

//export GoloopDatagramClose
func GoloopDatagramClose(id C.int) (rc C.int) {
	defer guard(&rc, nil)
	p := datagramOf(id)
	if p.d == nil {
		return 0
	}
	p.loop.collect()
	if err := p.d.Close(); err != nil {
		return fail(err)
	}
	return 0
}

// GoloopDatagramForceClose is _force_close(exc) (abort() with exc NULL);
// it steals exc, which reaches connection_lost.
//
//export GoloopDatagramForceClose
func GoloopDatagramForceClose(id C.int, exc *C.PyObject) (rc C.int) {
	defer guard(&rc, nil)
	p := datagramOf(id)
	if p.d == nil || (exc != nil && p.d.IsLost()) {
		if exc != nil {
			C.goloop_decref(exc)
		}
		return 0
	}
	p.loop.collect()
	var err error
	if exc == nil {
		err = p.d.ForceClose(nil)
	} else {
		p.fatal = exc
		err = p.d.ForceClose(errProtocol)
	}
	if err != nil {
		return fail(err)
	}
	return 0
}

// GoloopDatagramPauseReading pauses (pause != 0) or resumes reading; it
// returns 1 if that changed anything (asyncio logs it in debug mode).
//
//export GoloopDatagramPauseReading
func GoloopDatagramPauseReading(id C.int, pause C.int) (rc C.int) {
	defer guard(&rc, nil)
	p := datagramOf(id)
	d := p.d
	if d == nil {
		return 0
	}
	var err error
	if pause != 0 {
		if !d.IsReading() {
			return 0
		}
		err = d.PauseReading()
	} else {
		if d.IsClosing() || d.IsReading() {
			return 0
		}
		err = d.ResumeReading()
	}
	p.sync()
	if err != nil {
		return fail(err)
	}
	return 1
}

//export GoloopDatagramBufferSize
func GoloopDatagramBufferSize(id C.int) C.long {
	var rc C.int
	defer guard(&rc, nil)
	if d := datagramOf(id).d; d != nil {
		return C.long(d.GetWriteBufferSize())
	}
	return 0
}

//export GoloopDatagramLimits
func GoloopDatagramLimits(id C.int, low, high *C.longlong) (rc C.int) {
	defer guard(&rc, nil)
	lo, hi := 16<<10, 64<<10
	if d := datagramOf(id).d; d != nil {
		lo, hi = d.WriteBufferLimits()
	}
	*low, *high = C.longlong(lo), C.longlong(hi)
	return 0
}

// GoloopDatagramSetLimits is set_write_buffer_limits; LLONG_MIN stands for
// None. It may call pause_writing.
//
//export GoloopDatagramSetLimits
func GoloopDatagramSetLimits(id C.int, high, low C.longlong) (rc C.int) {
	defer guard(&rc, nil)
	p := datagramOf(id)
	if p.d == nil {
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
	if err := p.d.SetWriteBufferLimits(h, l); err != nil {
		return fail(err)
	}
	return 0
}

// The sink. Each method calls into Python through datagram.c (or
// stream.c's flow control and connection_lost helpers, which work on the
// same object layout), then moves what the protocol queued with call_soon
// into the core, so that a Lost scheduled next runs after it.

func (p *pyDatagram) Datagram(b []byte, from core.Sockaddr) error {
	var data, addr *C.char
	if len(b) > 0 {
		data = (*C.char)(unsafe.Pointer(&b[0]))
	}
	if len(from) > 0 {
		addr = (*C.char)(unsafe.Pointer(&from[0]))
	}
	rc := C.goloop_datagram_received(p.self, data, C.long(len(b)), addr, C.int(len(from)))
	p.loop.collect()
	if rc < 0 {
		return errPython
	}
	return nil
}

// Error calls error_received(exc). mode tells datagram.c where asyncio
// would have called it: 2 in sendto() itself, 1 in _sendto_ready, 0 in
// _read_ready.
func (p *pyDatagram) Error(err error) error {
	mode := C.int(0)
	var serr *os.SyscallError
	switch {
	case p.sending:
		mode = 2
	case errors.As(err, &serr) && serr.Syscall != "recvfrom":
		mode = 1
	}
	setError(err)
	rc := C.goloop_datagram_error(p.self, C.goloop_fetch_exception(), mode)
	p.loop.collect()
	if rc < 0 {
		return errPython
	}
	return nil
}

func (p *pyDatagram) PauseWriting() error {
	rc := C.goloop_stream_pause_writing(p.self)
	p.loop.collect()
	if rc < 0 {
		return errPython
	}
	return nil
}

func (p *pyDatagram) ResumeWriting() error {
	rc := C.goloop_stream_resume_writing(p.self)
	p.loop.collect()
	if rc < 0 {
		return errPython
	}
	return nil
}

// Lost calls connection_lost and closes the socket, then drops the loop's
// reference to the transport.
func (p *pyDatagram) Lost(err error) error {
	p.Closing()
	var exc *C.PyObject
	switch {
	case err == nil:
	case err == errProtocol && p.fatal != nil:
		exc, p.fatal = p.fatal, nil
	default:
		setError(err)
		exc = C.goloop_fetch_exception()
	}
	rc := C.goloop_stream_lost(p.self, exc)
	p.loop.collect()
	p.release()
	if rc < 0 {
		return errPython
	}
	return nil
}
