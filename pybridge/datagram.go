package main

// The datagram half of goloop._DatagramTransport (datagram.c): the exports
// only a datagram transport has, and the sink methods that turn a
// core.Datagram's events into protocol calls through datagram.c's helpers.
// What it shares with the stream transport, ownership included, is in
// transport.go.

/*
#include "bridge.h"
*/
import "C"

import (
	"errors"
	"os"
	"syscall"
	"unsafe"

	"goloop/core"
)

var _ core.DatagramSink = (*pyTransport)(nil)

// GoloopDatagramNew makes fd (the socket of self, a transport object) a
// datagram transport of the loop, registered but not read until
// GoloopTransportStart. overhead is what each queued datagram counts
// besides its payload (core.Datagram.SetOverhead); addressed is true for a
// transport made with a remote address, whose sends are dropped once the
// connection is lost (core.Datagram.SetDropWhenLost).
//
//export GoloopDatagramNew
func GoloopDatagramNew(loopID C.int, fd C.int, self *C.PyObject, ws *C.goloop_wstate, overhead C.int, addressed C.int) (rc C.int) {
	defer guard(&rc, nil)
	l := loopOf(loopID)
	p := &pyTransport{loop: l, self: self, ws: ws, slot: -1}
	d, err := core.NewDatagram(l.core, int(fd), p)
	if err != nil {
		return fail(err)
	}
	d.SetOverhead(int(overhead))
	d.SetDropWhenLost(addressed != 0)
	p.d = d
	return l.adopt(p)
}

// GoloopDatagramState returns 1 if sends are dropped (core.Datagram's
// Dropping), plus 2 if datagrams are queued: what sendto's slow path needs
// to know before it converts an address in Python.
//
//export GoloopDatagramState
func GoloopDatagramState(id C.int) (rc C.int) {
	defer guard(&rc, nil)
	d := transportOf(id).d
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
	p := transportOf(id)
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
	case lostWriteWarns(before, p.d.LostWrites()):
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
	p := transportOf(id)
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
	return status(err)
}

// The datagram transport's own sink methods, which call into Python
// through datagram.c (the rest are transport.go's).

func (p *pyTransport) Datagram(b []byte, from core.Sockaddr) error {
	var data, addr *C.char
	if len(b) > 0 {
		data = (*C.char)(unsafe.Pointer(&b[0]))
	}
	if len(from) > 0 {
		addr = (*C.char)(unsafe.Pointer(&from[0]))
	}
	return p.returned(C.goloop_datagram_received(p.self, data, C.long(len(b)), addr, C.int(len(from))))
}

// Error calls error_received(exc). mode tells datagram.c where asyncio
// would have called it: 2 in sendto() itself, 1 in _sendto_ready, 0 in
// _read_ready.
func (p *pyTransport) Error(err error) error {
	mode := C.int(0)
	var serr *os.SyscallError
	switch {
	case p.sending:
		mode = 2
	case errors.As(err, &serr) && serr.Syscall != "recvfrom":
		mode = 1
	}
	setError(err)
	return p.returned(C.goloop_datagram_error(p.self, C.goloop_fetch_exception(), mode))
}
