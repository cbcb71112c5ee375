package main

/*
#include <stdlib.h>
#include "bridge.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"goloop/core"
)

// pyLoop is one loop as the bridge sees it: the Go core plus the state the
// hooks need while it runs. It implements core.Hooks.
type pyLoop struct {
	core *core.Loop[*C.PyObject]
	// self is the Python loop object, borrowed for the duration of Run.
	self *C.PyObject
	// intake is C memory inside the Python loop object, which outlives
	// this pyLoop's use by the loop (GoloopFree runs in its dealloc, and
	// sets it and streams to nil).
	intake *C.goloop_intake
	// streams is the map of open streams by fd that goloop_poll_read
	// looks up, C memory in the loop object too (transport.go writes it).
	streams *C.goloop_streams
	// transports are the native transports whose Python object this loop
	// holds a reference to (transport.go), for the cyclic GC and for Close.
	transports []*pyTransport
	// listeners are the servers' listening sockets this loop accepts on
	// (listener.go), by fd.
	listeners map[int]*pyListener
	scratch   []*C.PyObject // reused by traverse
	lines     [][]byte      // reused by a stream's writelines
	// run is the transports and fds of the streams ReadStreams reads.
	run []C.goloop_ready_stream
	// lastYield is when Collect last yielded to the Go scheduler.
	lastYield int64
	collects  uint // Collect calls, to read the clock on every fourth
}

// idTable gives the Go objects C refers to (loops, transports) the int ids
// C keeps, reused once freed, so that the hot path looks one up by index
// instead of through a cgo.Handle map. It is only touched with the GIL
// held, which serializes it.
type idTable[P any] struct {
	list []P
	free []int
}

func (t *idTable[P]) add(p P) int {
	if n := len(t.free); n > 0 {
		id := t.free[n-1]
		t.free = t.free[:n-1]
		t.list[id] = p
		return id
	}
	t.list = append(t.list, p)
	return len(t.list) - 1
}

func (t *idTable[P]) remove(id int) {
	var none P
	t.list[id] = none
	t.free = append(t.free, id)
}

// live counts the ids in use.
func (t *idTable[P]) live() int { return len(t.list) - len(t.free) }

// The loop registry: the id a LoopBase stores names its pyLoop.
var loops idTable[*pyLoop]

// loopOf and transportOf are how every export finds the Go state it
// touches; they tell goloop_poll_read that Go code touched the loop
// (bridge.h, goloop_intake's go_entered).
func loopOf(id C.int) *pyLoop {
	l := loops.list[id]
	l.entered()
	return l
}

// entered marks the loop as touched by Go code; a no-op once the loop
// object, which holds the intake, is gone (a transport may outlive it).
func (l *pyLoop) entered() {
	if l.intake != nil {
		l.intake.go_entered = 1
	}
}

// errPython means a Python exception is already set.
var errPython = errors.New("python exception set")

// setError raises err as a Python exception: the one place where Go errors
// become Python ones. An errno becomes the matching OSError subclass with
// strerror's text, as the socket and select modules raise it (the core's
// wrapping names the system call, which Python's OSError has no room for).
func setError(err error) {
	var errno syscall.Errno
	var limits *core.LimitsError
	switch {
	case errors.Is(err, errPython):
	case errors.Is(err, core.ErrClosed):
		C.goloop_set_closed_error()
	case errors.As(err, &errno):
		C.goloop_set_os_error(C.int(errno), nil)
	case errors.As(err, &limits):
		msg := C.CString(limits.Error())
		C.goloop_set_value_error(msg)
		C.free(unsafe.Pointer(msg))
	default:
		msg := C.CString(err.Error())
		C.goloop_set_runtime_error(msg)
		C.free(unsafe.Pointer(msg))
	}
}

// fail raises err; -1 is the export's return value.
func fail(err error) C.int {
	setError(err)
	return -1
}

// status is an export's return value for err: 0, or -1 with err raised.
func status(err error) C.int {
	if err != nil {
		return fail(err)
	}
	return 0
}

// guard is deferred by every export: a panic becomes RuntimeError and the
// export returns -1. No Go code runs while the GIL is released (Poll waits
// in C), so the GIL is always held here.
func guard(rc *C.int, l *pyLoop) {
	r := recover()
	if r == nil {
		return
	}
	setError(fmt.Errorf("goloop internal error (Go panic): %v", r))
	*rc = -1
}

// yieldEvery is how often the loop goroutine passes through the Go
// scheduler (runtime.Gosched). Go's sysmon treats a goroutine that has not
// been rescheduled for 10 ms (forcePreemptNS) as one to preempt, and since a
// goroutine in a cgo call cannot be preempted it takes its P away instead,
// each time it finds it in a system call or a call into C: for a loop that
// runs Python inside one long cgo callback, that was every poll and most
// protocol calls, with a thread woken to look for work each time (a tenth of
// a 1 KiB echo's user CPU). Yielding well within the 10 ms keeps sysmon
// idle; it costs a hand-off between threads (the goroutine is locked to the
// loop thread) every few milliseconds.
const yieldEvery = 5e6 // ns

// Collect is the hook the core calls at the start of each tick and after
// the poll: the scheduler yield above, then collect.
//
// The clock is read on every fourth call only: a read costs as much as the
// rest of Collect, and ticks are far shorter than yieldEvery/4 whenever
// there are many of them (a tick long enough to skip a yield costs far
// more than the hand-off sysmon then makes).
func (l *pyLoop) Collect() {
	if l.collects++; l.collects&3 == 0 {
		if now := nanotime(); now-l.lastYield > yieldEvery {
			l.lastYield = now
			runtime.Gosched()
		}
	}
	l.collect()
}

// collect moves what C queued since the last tick into the core. It reads
// the intake's C memory directly: no cgo call.
func (l *pyLoop) collect() {
	in := l.intake
	if in.nsoon > 0 {
		for _, h := range unsafe.Slice(in.soon, in.nsoon) {
			l.core.CallSoon(h)
		}
		in.nsoon = 0
	}
	if in.ntimers > 0 {
		whens := unsafe.Slice(in.whens, in.ntimers)
		for i, h := range unsafe.Slice(in.timers, in.ntimers) {
			l.core.CallAt(float64(whens[i]), h)
		}
		in.ntimers = 0
	}
	if in.cancelled > 0 {
		l.core.TimersCancelled(int(in.cancelled))
		in.cancelled = 0
	}
	// Whatever a wake-up announced is collected now; the next
	// call_soon_threadsafe writes the eventfd again.
	in.wake_pending = 0
}

// RunBatch hands a run of the ready queue (a Go slice of C pointers, valid
// for the call) to C, which runs the handles in one crossing. The slice is
// passed as uintptr_t words: they are C addresses, and typing them so spares
// cgo's pointer check a walk over every element.
func (l *pyLoop) RunBatch(items []*C.PyObject) (int, error) {
	n := C.goloop_run_ready((*C.uintptr_t)(unsafe.Pointer(&items[0])), C.long(len(items)))
	if n < 0 {
		return int(-n), errPython
	}
	return int(n), nil
}

func (l *pyLoop) Cancelled(h *C.PyObject) bool { return C.goloop_handle_cancelled(h) != 0 }
func (l *pyLoop) Retain(h *C.PyObject)         { C.goloop_incref(h) }
func (l *pyLoop) Release(h *C.PyObject)        { C.goloop_release(h) }

// Poll releases the GIL for the wait: the only place it is (design README
// §1). events is the poller's array, Go memory without pointers, which C
// uses only during the call.
func (l *pyLoop) Poll(epfd int, events []unix.EpollEvent, msec int) (int, error) {
	n := C.goloop_poll(C.int(epfd), (*C.struct_epoll_event)(unsafe.Pointer(&events[0])),
		C.int(len(events)), C.int(msec))
	if n < 0 {
		return 0, syscall.Errno(-n)
	}
	return int(n), nil
}

func (l *pyLoop) Signalled(sig []byte) error {
	if l.self == nil || len(sig) == 0 {
		return nil
	}
	if C.goloop_signalled(l.self, (*C.char)(unsafe.Pointer(&sig[0])), C.long(len(sig))) != 0 {
		return errPython
	}
	return nil
}

// nanotime is the runtime's monotonic clock (a vDSO read), as core.Now.
//
//go:linkname nanotime runtime.nanotime
func nanotime() int64
