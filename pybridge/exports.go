package main

// The entry points C calls. Each one converts, calls the core, converts
// back, and defers guard; none holds on to a Python object except as the
// core's items (new references, see bridge.h).

/*
#include "bridge.h"
*/
import "C"

import (
	"unsafe"

	"goloop/core"
)

//export GoloopNew
func GoloopNew(intake *C.goloop_intake, streams *C.goloop_streams) (rc C.int) {
	defer guard(&rc, nil)
	l := &pyLoop{intake: intake, streams: streams}
	c, err := core.New[*C.PyObject](l)
	if err != nil {
		return fail(err)
	}
	l.core = c
	c.SetStreamReader(l)
	intake.wakefd = C.int(c.WakeFD())
	return C.int(loops.add(l))
}

//export GoloopFree
func GoloopFree(id C.int) (rc C.int) {
	defer guard(&rc, nil)
	l := loopOf(id)
	l.collect()
	err := l.core.Close()
	l.releaseTransports()
	l.releaseListeners()
	loops.remove(int(id))
	l.intake, l.streams = nil, nil // freed with the loop object
	return status(err)
}

//export GoloopRun
func GoloopRun(id C.int, self *C.PyObject) (rc C.int) {
	l := loopOf(id)
	defer guard(&rc, l)
	l.self = self
	defer func() { l.self = nil }()
	return status(l.core.Run())
}

//export GoloopStop
func GoloopStop(id C.int) (rc C.int) {
	defer guard(&rc, nil)
	loopOf(id).core.Stop()
	return 0
}

//export GoloopWake
func GoloopWake(id C.int) (rc C.int) {
	defer guard(&rc, nil)
	return status(loopOf(id).core.Wake())
}

//export GoloopSignalFD
func GoloopSignalFD(id C.int) C.int { return C.int(loopOf(id).core.SignalFD()) }

//export GoloopClose
func GoloopClose(id C.int) (rc C.int) {
	defer guard(&rc, nil)
	l := loopOf(id)
	l.collect()
	if err := l.core.Close(); err != nil {
		return fail(err)
	}
	// As when asyncio closes its selector: the loop lets go of its open
	// transports, and those nothing else holds warn and close their socket;
	// and of its servers' listening sockets.
	l.releaseTransports()
	l.releaseListeners()
	return 0
}

//export GoloopClear
func GoloopClear(id C.int) (rc C.int) {
	defer guard(&rc, nil)
	l := loopOf(id)
	l.collect()
	l.core.Clear()
	l.releaseTransports()
	l.releaseListeners()
	return 0
}

// event is the core's event for C's write flag: 0 read, else write.
func event(write C.int) core.Events {
	if write != 0 {
		return core.Write
	}
	return core.Read
}

//export GoloopWatch
func GoloopWatch(id C.int, fd C.int, write C.int, h *C.PyObject) (rc C.int) {
	defer guard(&rc, nil)
	l := loopOf(id).core
	if write != 0 {
		return status(l.AddWriter(int(fd), h))
	}
	return status(l.AddReader(int(fd), h))
}

// GoloopUnwatch returns 1 if a watcher was removed, 0 if there was none.
//
//export GoloopUnwatch
func GoloopUnwatch(id C.int, fd C.int, write C.int) (rc C.int) {
	defer guard(&rc, nil)
	l := loopOf(id).core
	var had bool
	var err error
	if write != 0 {
		had, err = l.RemoveWriter(int(fd))
	} else {
		had, err = l.RemoveReader(int(fd))
	}
	if err != nil {
		return fail(err)
	}
	if had {
		return 1
	}
	return 0
}

// GoloopWatchReplacing is GoloopWatch for a sock_* op, in one crossing
// instead of two: it registers h (a new reference the loop takes over) and
// stores in *old the reader or writer it replaced, as a new reference the
// caller cancels and releases (asyncio's _add_reader cancels the handle it
// replaces after registering the new one), or NULL.
//
//export GoloopWatchReplacing
func GoloopWatchReplacing(id C.int, fd C.int, write C.int, h *C.PyObject, old **C.PyObject) (rc C.int) {
	defer guard(&rc, nil)
	l := loopOf(id).core
	prev, had := l.Watcher(int(fd), event(write))
	if had {
		C.goloop_incref(prev) // AddReader/AddWriter release the loop's reference
	}
	var err error
	if write != 0 {
		err = l.AddWriter(int(fd), h)
	} else {
		err = l.AddReader(int(fd), h)
	}
	if err != nil {
		if had {
			C.goloop_decref(prev)
		}
		return fail(err)
	}
	*old = prev
	return 0
}

// GoloopUnwatchIf removes the reader (write 0) or writer of fd only if it
// is still h: a sock_* call unwatching its fd once done, which must leave a
// watcher that replaced it alone. It returns 1 if h was removed.
//
//export GoloopUnwatchIf
func GoloopUnwatchIf(id C.int, fd C.int, write C.int, h *C.PyObject) (rc C.int) {
	defer guard(&rc, nil)
	l := loopOf(id).core
	if cur, ok := l.Watcher(int(fd), event(write)); !ok || cur != h {
		return 0
	}
	var err error
	if write != 0 {
		_, err = l.RemoveWriter(int(fd))
	} else {
		_, err = l.RemoveReader(int(fd))
	}
	if err != nil {
		return fail(err)
	}
	return 1
}

// GoloopTraverse reports the references the loop holds to the cyclic GC.
//
//export GoloopTraverse
func GoloopTraverse(id C.int, self *C.PyObject, visit C.goloop_visitproc, arg unsafe.Pointer) (rc C.int) {
	defer guard(&rc, nil)
	l := loopOf(id)
	l.core.Each(func(items []*C.PyObject) {
		if rc == 0 {
			rc = C.goloop_visit(self, visit, arg, (*C.uintptr_t)(unsafe.Pointer(&items[0])), C.long(len(items)))
		}
	})
	if rc == 0 && len(l.transports) > 0 {
		// The transports' references are visited from a copy: visiting runs
		// no Python code, but keep the list out of C's reach all the same.
		objs := l.scratch[:0]
		for _, p := range l.transports {
			objs = append(objs, p.self)
		}
		rc = C.goloop_visit_objects(visit, arg, (*C.uintptr_t)(unsafe.Pointer(&objs[0])), C.long(len(objs)))
		clear(objs)
		l.scratch = objs[:0]
	}
	for _, p := range l.listeners {
		if rc == 0 {
			rc = C.goloop_listener_visit(p.spec, visit, arg)
		}
	}
	return rc
}

// GoloopWatcher returns the handle add_reader (write 0) or add_writer
// (write 1) registered for fd, borrowed, or NULL.
//
//export GoloopWatcher
func GoloopWatcher(id C.int, fd C.int, write C.int) *C.PyObject {
	h, _ := loopOf(id).core.Watcher(int(fd), event(write))
	return h
}

// GoloopWatching returns the events fd is watched for: 1 read, 2 write
// (selectors' EVENT_READ and EVENT_WRITE, which core.Read and core.Write
// equal).
//
//export GoloopWatching
func GoloopWatching(id C.int, fd C.int) C.int {
	return C.int(loopOf(id).core.Watching(int(fd)))
}

//export GoloopCounts
func GoloopCounts(id C.int, ready, timers *C.long) {
	loopOf(id).collect()
	l := loopOf(id).core
	*ready = C.long(l.Ready())
	*timers = C.long(l.Timers())
}

// GoloopPanic panics inside an export, so a test can check that a Go panic
// reaches Python as RuntimeError instead of aborting the process.
//
//export GoloopPanic
func GoloopPanic() (rc C.int) {
	defer guard(&rc, nil)
	var none []*pyLoop
	_ = none[len(loops.list)+1] // index out of range, at run time
	return 0
}

//export GoloopLive
func GoloopLive() C.long { return C.long(loops.live()) }
