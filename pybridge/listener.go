package main

// The Go half of a server's native accept path (listener.c): one
// core.Listener per listening socket, keyed by fd in its loop, and the sink
// that hands each accepted connection to C.
//
// Ownership: the listener owns its goloop_listener (C memory holding new
// references: the socket, the protocol factory, the server, the context)
// from GoloopListenerNew until GoloopListenerClose, or until the loop is
// closed or cleared (the core forgets the fd then, as asyncio's selector
// forgets its reader). The Python socket object owns the fd: Server.close
// closes it after GoloopListenerClose has unregistered it.

/*
#include "bridge.h"
*/
import "C"

import (
	"unsafe"

	"goloop/core"
)

type pyListener struct {
	loop *pyLoop
	ln   *core.Listener
	spec *C.goloop_listener
}

var _ core.ListenerSink = (*pyListener)(nil)

// GoloopListenerNew starts accepting on fd, a non-blocking listening socket,
// up to backlog connections per readiness. It takes spec over on success
// only.
//
//export GoloopListenerNew
func GoloopListenerNew(loopID C.int, fd C.int, backlog C.int, spec *C.goloop_listener) (rc C.int) {
	defer guard(&rc, nil)
	l := loopOf(loopID)
	p := &pyListener{loop: l, spec: spec}
	ln, err := core.NewListener(l.core, int(fd), int(backlog), p)
	if err != nil {
		return fail(err)
	}
	if err := ln.Start(); err != nil {
		ln.Close()
		return fail(err)
	}
	p.ln = ln
	if l.listeners == nil {
		l.listeners = make(map[int]*pyListener)
	}
	l.listeners[int(fd)] = p
	return 0
}

// GoloopListenerClose stops accepting on fd for good (Server.close): it
// returns 1, or 0 if no listener had fd. It may be called from inside an
// accept, by the protocol factory; listener.c holds what it still needs.
//
//export GoloopListenerClose
func GoloopListenerClose(loopID C.int, fd C.int) (rc C.int) {
	defer guard(&rc, nil)
	l := loopOf(loopID)
	p, ok := l.listeners[int(fd)]
	if !ok {
		return 0
	}
	delete(l.listeners, int(fd))
	err := p.ln.Close()
	p.free()
	if err != nil {
		return fail(err)
	}
	return 1
}

// free gives up the spec's references, which may run Python code.
func (p *pyListener) free() {
	spec := p.spec
	p.spec = nil
	C.goloop_listener_free(spec)
}

// releaseListeners frees every listener's spec: the core has forgotten
// their fds (Close, Clear).
func (l *pyLoop) releaseListeners() {
	for len(l.listeners) > 0 {
		for fd, p := range l.listeners {
			delete(l.listeners, fd)
			p.free()
			break // freeing may have changed the map
		}
	}
}

// Accepted is core.ListenerSink's: C makes the socket object, calls the
// protocol factory and makes the transport.
func (p *pyListener) Accepted(fd int, sa []byte) error {
	// A typed pointer: cgo checks an unsafe.Pointer's whole allocation,
	// and sa lies in the core's Listener, next to Go pointers.
	var addr *C.char
	if len(sa) > 0 {
		addr = (*C.char)(unsafe.Pointer(&sa[0]))
	}
	if C.goloop_accepted(p.loop.self, p.spec, C.int(fd), addr, C.long(len(sa))) < 0 {
		return errPython
	}
	return nil
}

// AcceptError is core.ListenerSink's: asyncio's report of a failed accept.
func (p *pyListener) AcceptError(err error) error {
	setError(err)
	if C.goloop_accept_error(p.loop.self, p.spec, C.goloop_fetch_exception()) < 0 {
		return errPython
	}
	return nil
}
