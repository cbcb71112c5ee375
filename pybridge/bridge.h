/* Declarations shared by the Go files of the bridge and its C files.
 *
 * cgo forbids definitions in the preamble of a file with //export, so this
 * header only declares: the opaque CPython types Go passes around, and the
 * C helpers (handle.c, loop.c, module.c) that Go calls. Go never touches a
 * Python object's fields; it holds PyObject pointers and hands them back.
 *
 * Ownership: a PyObject pointer given to Go through goloop_* entry points is
 * a new reference that Go owns until it passes it to goloop_handle_run
 * (which steals it) or goloop_release. */
#ifndef GOLOOP_BRIDGE_H
#define GOLOOP_BRIDGE_H

#include <stdint.h>

typedef struct _object PyObject;
typedef struct _ts PyThreadState;
typedef int (*goloop_visitproc)(PyObject *, void *);

/* The intake: what call_soon, call_at and TimerHandle.cancel queue without
 * entering Go. It lives in the C loop object; the Go side keeps a pointer and
 * moves its contents into the core at each tick (pyLoop.Collect), so Go is
 * entered about once per loop iteration, not once per call (design README
 * §2). Only touched with the GIL held. The items are new references. */
typedef struct {
    PyObject **soon;
    long nsoon, capsoon;
    PyObject **timers;
    double *whens;
    long ntimers, captimers;
    long cancelled;   /* scheduled timers cancelled since the last collect */
    int wakefd;       /* the core's eventfd (WakeFD) */
    int wake_pending; /* a wake-up was written since the last collect */
} goloop_intake;

/* handle.c */
/* Runs n handles (PyObject pointers) in order, stealing each and zeroing its
 * slot. Returns how many it consumed, negated if the last one raised an
 * exception that stops the loop (KeyboardInterrupt, SystemExit). */
long goloop_run_ready(uintptr_t *handles, long n);
void goloop_release(PyObject *handle);   /* the loop's reference, given up */
int  goloop_visit(PyObject *loop, goloop_visitproc visit, void *arg, uintptr_t *handles, long n);
int  goloop_handle_cancelled(PyObject *handle);

/* loop.c */
int  goloop_signalled(PyObject *loop, const char *data, long n); /* -1: stop the loop */

/* module.c */
void goloop_incref(PyObject *o);
PyThreadState *goloop_save_thread(void);
void goloop_restore_thread(PyThreadState *ts);
void goloop_set_runtime_error(const char *msg);
void goloop_set_os_error(int err, const char *msg);
void goloop_set_closed_error(void);

#endif
