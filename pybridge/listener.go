package main

// The Go half of a server's native accept path (listener.c): one
// core.Listener per listening socket, keyed by fd in its loop, and the sink
// that hands each accepted connection to C.
//
// Ownership: the listener owns its goloop_listener (C memory holding new
// references: the socket, the protocol factory, the server, the context)
// from GoloopListenerNew until GoloopListenerClose (or, closed during a
// round of accepts, the end of the round), or until the loop is closed or
// cleared (the core forgets the fd then, as asyncio's selector forgets its
// reader). The Python socket object owns the fd: Server.close
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
	// round: inside Accepted, which needs spec to the end of the round;
	// closed then defers freeing it until the round is served.
	round, closed bool
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
	if p.round {
		p.closed = true
	} else {
		p.free()
	}
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

// releaseListeners closes every listener, which closes what a stopped loop
// left of a round, and frees its spec: the core has forgotten their fds
// (Close, Clear).
func (l *pyLoop) releaseListeners() {
	for len(l.listeners) > 0 {
		for fd, p := range l.listeners {
			delete(l.listeners, fd)
			p.ln.Close()
			p.free()
			break // freeing may have changed the map
		}
	}
}

// Accepted is core.ListenerSink's: C reports err, then for each
// connection makes the socket object, calls the protocol factory and makes
// the transport; in debug mode, it warns if the round was slow, as asyncio
// does for its reader handle. A KeyboardInterrupt or SystemExit stops the
// round, and the loop: the listener keeps the connections not served yet,
// for the next run.
func (p *pyListener) Accepted(conns []core.Conn, err error) (int, error) {
	p.round = true
	defer func() {
		p.round = false
		if p.closed {
			p.free()
		}
	}()
	t0 := C.goloop_accept_begin(p.loop.self)
	if err != nil {
		setError(err)
		if C.goloop_accept_error(p.loop.self, p.spec, C.goloop_fetch_exception()) < 0 {
			return 0, errPython
		}
	}
	for i, c := range conns {
		// A typed pointer: cgo checks an unsafe.Pointer's whole
		// allocation, and Peer lies in the core's buffer of addresses.
		var addr *C.char
		if len(c.Peer) > 0 {
			addr = (*C.char)(unsafe.Pointer(&c.Peer[0]))
		}
		if C.goloop_accepted(p.loop.self, p.spec, C.int(c.Fd), addr, C.long(len(c.Peer))) < 0 {
			return i + 1, errPython
		}
	}
	if C.goloop_accept_end(p.loop.self, p.spec, t0) < 0 {
		return len(conns), errPython
	}
	return len(conns), nil
}
