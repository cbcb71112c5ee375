/* LoopBase: the native half of goloop.Loop. It owns a Go core loop (by its
 * registry id) and implements the scheduling methods of
 * asyncio.AbstractEventLoop; goloop/_loop.py adds the orchestration that
 * asyncio itself writes in Python (run_forever, tasks, executors, ...). */
#include <errno.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>
#include "goloop.h"
#include "structmember.h"
#include "_cgo_export.h"

double
goloop_monotonic(void)
{
    /* The clock and the conversion of time.monotonic() and of the Go core's
     * Now(), so deadlines compare equal across the three. */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)((long long)ts.tv_sec * 1000000000LL + ts.tv_nsec) / 1e9;
}

int
goloop_intake_soon(LoopObject *self, PyObject *h)
{
    goloop_intake *in = &self->intake;
    if (in->nsoon == in->capsoon) {
        long cap = in->capsoon ? 2 * in->capsoon : 64;
        PyObject **p = PyMem_Realloc(in->soon, cap * sizeof(*p));
        if (p == NULL) {
            Py_DECREF(h);
            PyErr_NoMemory();
            return -1;
        }
        in->soon = p;
        in->capsoon = cap;
    }
    in->soon[in->nsoon++] = h;
    return 0;
}

static int
intake_timer(LoopObject *self, double when, PyObject *h)
{
    goloop_intake *in = &self->intake;
    if (in->ntimers == in->captimers) {
        long cap = in->captimers ? 2 * in->captimers : 64;
        PyObject **p = PyMem_Realloc(in->timers, cap * sizeof(*p));
        if (p == NULL)
            goto nomem;
        in->timers = p;
        double *w = PyMem_Realloc(in->whens, cap * sizeof(*w));
        if (w == NULL)
            goto nomem;
        in->whens = w;
        in->captimers = cap;
    }
    in->timers[in->ntimers] = h;
    in->whens[in->ntimers++] = when;
    return 0;
nomem:
    Py_DECREF(h);
    PyErr_NoMemory();
    return -1;
}

/* Public methods validate here; the Go core does the work (STYLE.md 5). */
static int
loop_check(LoopObject *self, PyObject *callback, const char *method, int check_thread)
{
    if (goloop_check_forked() < 0)
        return -1;
    if (self->closed) {
        goloop_set_closed_error();
        return -1;
    }
    if (self->debug) {
        /* asyncio validates callbacks and the calling thread only in debug
         * mode; reuse its Python checks for the exact messages. */
        PyObject *r;
        if (check_thread) {
            r = PyObject_CallMethod((PyObject *)self, "_check_thread", NULL);
            if (r == NULL)
                return -1;
            Py_DECREF(r);
        }
        r = PyObject_CallMethod((PyObject *)self, "_check_callback", "Os", callback, method);
        if (r == NULL)
            return -1;
        Py_DECREF(r);
    }
    return 0;
}

/* Splits (fixed..., callback, *args, context=None) as asyncio's signatures
 * have it; names lists the positional parameters before *args. */
static int
parse_callback(const char *method, PyObject *const *args, Py_ssize_t nargs,
               PyObject *kwnames, const char *const *names, Py_ssize_t nnames,
               PyObject **context)
{
    *context = NULL;
    if (kwnames != NULL) {
        Py_ssize_t nk = PyTuple_GET_SIZE(kwnames);
        for (Py_ssize_t i = 0; i < nk; i++) {
            PyObject *key = PyTuple_GET_ITEM(kwnames, i);
            /* keywords arrive interned: the pointer test is the fast path */
            if (key != goloop_str_context &&
                PyUnicode_CompareWithASCIIString(key, "context") != 0) {
                PyErr_Format(PyExc_TypeError,
                             "%s() got an unexpected keyword argument '%U'", method, key);
                return -1;
            }
            *context = args[nargs + i];
        }
    }
    if (nargs < nnames) {
        /* Python's own wording for missing positional arguments */
        if (nnames - nargs == 1)
            PyErr_Format(PyExc_TypeError,
                         "%s() missing 1 required positional argument: '%s'",
                         method, names[nnames - 1]);
        else
            PyErr_Format(PyExc_TypeError,
                         "%s() missing 2 required positional arguments: '%s' and '%s'",
                         method, names[0], names[1]);
        return -1;
    }
    return 0;
}

static const char *const soon_names[] = {"callback"};
static const char *const at_names[] = {"when", "callback"};
static const char *const later_names[] = {"delay", "callback"};

static PyObject *
loop_call_soon(LoopObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *context;
    if (parse_callback("call_soon", args, nargs, kwnames, soon_names, 1, &context) < 0)
        return NULL;
    if (loop_check(self, args[0], "call_soon", 1) < 0)
        return NULL;
    HandleObject *h = goloop_handle_new(goloop_handle_type, self, args, nargs, context);
    if (h == NULL)
        return NULL;
    if (goloop_intake_soon(self, (PyObject *)Py_NewRef(h)) < 0) {
        Py_DECREF(h);
        return NULL;
    }
    return (PyObject *)h;
}

static PyObject *
loop_call_soon_threadsafe(LoopObject *self, PyObject *const *args, Py_ssize_t nargs,
                          PyObject *kwnames)
{
    PyObject *context;
    if (parse_callback("call_soon_threadsafe", args, nargs, kwnames, soon_names, 1, &context) < 0)
        return NULL;
    if (loop_check(self, args[0], "call_soon_threadsafe", 0) < 0)
        return NULL;
    HandleObject *h = goloop_handle_new(
        goloop_threadsafe_type ? goloop_threadsafe_type : goloop_handle_type,
        self, args, nargs, context);
    if (h == NULL)
        return NULL;
    /* The caller holds the GIL, which the loop thread holds whenever it
     * touches the intake (it lets go only inside epoll_wait), so the push
     * needs no lock of its own. The wake-up interrupts that epoll_wait; it
     * is written here rather than through Go because a C-to-Go call from a
     * thread Go did not start costs several times more, and only once per
     * collect (wake_pending, reset by Collect under the GIL). */
    if (goloop_intake_soon(self, (PyObject *)Py_NewRef(h)) < 0) {
        Py_DECREF(h);
        return NULL;
    }
    goloop_intake *in = &self->intake;
    if (!in->wake_pending) {
        uint64_t one = 1;
        ssize_t n;
        do {
            n = write(in->wakefd, &one, sizeof(one));
        } while (n < 0 && errno == EINTR);
        /* EAGAIN: the counter is saturated, so the fd is readable anyway */
        if (n < 0 && errno != EAGAIN) {
            PyErr_SetFromErrno(PyExc_OSError);
            Py_DECREF(h);
            return NULL;
        }
        in->wake_pending = 1;
    }
    return (PyObject *)h;
}

static PyObject *
schedule_timer(LoopObject *self, double when, PyObject *const *args, Py_ssize_t nargs,
               PyObject *context)
{
    if (loop_check(self, args[0], "call_at", 1) < 0)
        return NULL;
    HandleObject *h = goloop_handle_new(goloop_timer_type, self, args, nargs, context);
    if (h == NULL)
        return NULL;
    h->when = when;
    h->scheduled = 1;
    if (intake_timer(self, when, (PyObject *)Py_NewRef(h)) < 0) {
        h->scheduled = 0;
        Py_DECREF(h);
        return NULL;
    }
    return (PyObject *)h;
}

static PyObject *
loop_call_at(LoopObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *context;
    if (parse_callback("call_at", args, nargs, kwnames, at_names, 2, &context) < 0)
        return NULL;
    if (args[0] == Py_None) {
        PyErr_SetString(PyExc_TypeError, "when cannot be None");
        return NULL;
    }
    double when = PyFloat_AsDouble(args[0]);
    if (when == -1 && PyErr_Occurred())
        return NULL;
    return schedule_timer(self, when, args + 1, nargs - 1, context);
}

static PyObject *
loop_call_later(LoopObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *context;
    if (parse_callback("call_later", args, nargs, kwnames, later_names, 2, &context) < 0)
        return NULL;
    PyObject *delay = args[0];
    if (delay == Py_None) {
        PyErr_SetString(PyExc_TypeError, "delay must not be None");
        return NULL;
    }
    double when;
    if (PyFloat_CheckExact(delay) || PyLong_CheckExact(delay)) {
        double d = PyFloat_AsDouble(delay);
        if (d == -1 && PyErr_Occurred())
            return NULL;
        when = goloop_monotonic() + d;
    }
    else {
        /* self.time() + delay, for asyncio's TypeError on a bad delay */
        PyObject *now = PyFloat_FromDouble(goloop_monotonic());
        if (now == NULL)
            return NULL;
        PyObject *sum = PyNumber_Add(now, delay);
        Py_DECREF(now);
        if (sum == NULL)
            return NULL;
        when = PyFloat_AsDouble(sum);
        Py_DECREF(sum);
        if (when == -1 && PyErr_Occurred())
            return NULL;
    }
    return schedule_timer(self, when, args + 1, nargs - 1, context);
}

static PyObject *
loop_time(LoopObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyFloat_FromDouble(goloop_monotonic());
}

static PyObject *
loop_get_debug(LoopObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(self->debug);
}

static PyObject *
loop_is_closed(LoopObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(self->closed);
}

static PyObject *
loop_stop(LoopObject *self, PyObject *Py_UNUSED(ignored))
{
    if (goloop_check_forked() < 0 || GoloopStop(self->id) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
loop_create_future(LoopObject *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *args[1] = {(PyObject *)self};
    PyObject *future_type = goloop_future_type();
    if (future_type == NULL)
        return NULL;
    return PyObject_Vectorcall(future_type, args, 0, goloop_kwnames_loop);
}

/* create_task(coro, **kwargs): Task(coro, loop=self, **kwargs) straight
 * from C in the common case. With a task factory or in debug mode (where
 * asyncio trims the task's source traceback) it defers to the Python
 * _create_task_slow, which is asyncio's own create_task. */
static PyObject *
loop_create_task(LoopObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs == 1 && !self->debug && !self->closed &&
        (self->task_factory == NULL || self->task_factory == Py_None) && nkw < 8) {
        PyObject *task_type = goloop_task_type();
        if (task_type == NULL)
            return NULL;
        PyObject *stack[10];
        stack[0] = args[0];
        stack[1] = (PyObject *)self;
        for (Py_ssize_t i = 0; i < nkw; i++)
            stack[2 + i] = args[1 + i];
        if (nkw == 0)
            return PyObject_Vectorcall(task_type, stack, 1, goloop_kwnames_loop);
        PyObject *names = PyTuple_New(nkw + 1);
        if (names == NULL)
            return NULL;
        PyTuple_SET_ITEM(names, 0, Py_NewRef(goloop_str_loop));
        for (Py_ssize_t i = 0; i < nkw; i++)
            PyTuple_SET_ITEM(names, i + 1, Py_NewRef(PyTuple_GET_ITEM(kwnames, i)));
        PyObject *task = PyObject_Vectorcall(task_type, stack, 1, names);
        Py_DECREF(names);
        return task;
    }
    PyObject *method = PyObject_GetAttr((PyObject *)self, goloop_str_create_task_slow);
    if (method == NULL)
        return NULL;
    PyObject *task = PyObject_Vectorcall(method, args, nargs, kwnames);
    Py_DECREF(method);
    return task;
}

static PyObject *
loop_run(LoopObject *self, PyObject *Py_UNUSED(ignored))
{
    if (goloop_check_forked() < 0 || GoloopRun(self->id, (PyObject *)self) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
loop_close_core(LoopObject *self, PyObject *Py_UNUSED(ignored))
{
    if (goloop_check_forked() < 0 || GoloopClose(self->id) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
loop_write_to_self(LoopObject *self, PyObject *Py_UNUSED(ignored))
{
    if (goloop_check_forked() < 0 || GoloopWake(self->id) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
loop_signal_fd(LoopObject *self, PyObject *Py_UNUSED(ignored))
{
    if (goloop_check_forked() < 0)
        return NULL;
    return PyLong_FromLong(GoloopSignalFD(self->id));
}

/* An fd or an object with fileno(), by selectors' rules; -1 with an
 * exception. */
static int
goloop_as_fd(PyObject *o)
{
    PyObject *num = PyLong_CheckExact(o) ? Py_NewRef(o)
                                         : PyObject_CallOneArg(goloop_helpers.fileobj_to_fd, o);
    if (num == NULL)
        return -1;
    long fd = PyLong_AsLong(num);
    Py_DECREF(num);
    if (fd == -1 && PyErr_Occurred())
        return -1;
    if (fd < 0) {
        PyErr_Format(PyExc_ValueError, "Invalid file descriptor: %ld", fd);
        return -1;
    }
    if (fd > INT_MAX) {
        /* what epoll's register raises for it in asyncio (and a removal
         * reports False: such an fd is never registered) */
        PyErr_SetString(PyExc_OverflowError, "Python int too large to convert to C int");
        return -1;
    }
    return (int)fd;
}

/* asyncio's selector loop cancels the handle it replaces or removes. */
static int
cancel_watcher(LoopObject *self, int fd, int write)
{
    PyObject *old = GoloopWatcher(self->id, fd, write);
    if (old == NULL)
        return 0;
    Py_INCREF(old);
    PyObject *r = PyObject_CallMethod(old, "cancel", NULL);
    Py_DECREF(old);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

static PyObject *
add_watcher(LoopObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
            int write)
{
    /* context=: 3.15's transports run their callbacks in a context of their own */
    PyObject *context = NULL;
    if (kwnames != NULL) {
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(kwnames); i++) {
            PyObject *key = PyTuple_GET_ITEM(kwnames, i);
            if (key != goloop_str_context &&
                PyUnicode_CompareWithASCIIString(key, "context") != 0) {
                PyErr_Format(PyExc_TypeError,
                             "%s() got an unexpected keyword argument '%U'",
                             write ? "_add_writer" : "_add_reader", key);
                return NULL;
            }
            context = args[nargs + i];
        }
    }
    if (nargs < 2) {
        PyErr_SetString(PyExc_TypeError, "expected (fd, callback, *args)");
        return NULL;
    }
    int fd = goloop_as_fd(args[0]);
    if (fd < 0)
        return NULL;
    if (goloop_check_forked() < 0)
        return NULL;
    if (self->closed) {
        goloop_set_closed_error();
        return NULL;
    }
    HandleObject *h = goloop_handle_new(goloop_handle_type, self, args + 1, nargs - 1, context);
    if (h == NULL)
        return NULL;
    if (cancel_watcher(self, fd, write) < 0) {
        Py_DECREF(h);
        return NULL;
    }
    if (GoloopWatch(self->id, fd, write, (PyObject *)Py_NewRef(h)) < 0) {
        Py_DECREF(h);
        return NULL;
    }
    return (PyObject *)h;
}

static PyObject *
loop_add_reader(LoopObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    return add_watcher(self, args, nargs, kwnames, 0);
}

static PyObject *
loop_add_writer(LoopObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    return add_watcher(self, args, nargs, kwnames, 1);
}

static PyObject *
remove_watcher(LoopObject *self, PyObject *arg, int write)
{
    int fd = goloop_as_fd(arg);
    if (fd < 0) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError))
            return NULL;
        PyErr_Clear();
        Py_RETURN_FALSE;
    }
    if (goloop_check_forked() < 0)
        return NULL;
    if (self->closed)
        Py_RETURN_FALSE;
    if (cancel_watcher(self, fd, write) < 0)
        return NULL;
    int r = GoloopUnwatch(self->id, fd, write);
    if (r < 0)
        return NULL;
    return PyBool_FromLong(r);
}

static PyObject *
loop_remove_reader(LoopObject *self, PyObject *arg) { return remove_watcher(self, arg, 0); }

static PyObject *
loop_remove_writer(LoopObject *self, PyObject *arg) { return remove_watcher(self, arg, 1); }

/* _handle(callback, *args): a Handle not yet scheduled, as asyncio's
 * add_signal_handler makes with events.Handle(callback, args, self, None). */
static PyObject *
loop_handle(LoopObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1) {
        PyErr_SetString(PyExc_TypeError, "_handle() missing callback");
        return NULL;
    }
    HandleObject *h = goloop_handle_new(goloop_handle_type, self, args, nargs, NULL);
    if (h != NULL)
        PyObject_GC_Track(h);   /* kept by Python code, not by the loop */
    return (PyObject *)h;
}

/* _add_callback(handle): queue an existing handle unless it is cancelled. */
static PyObject *
loop_add_callback(LoopObject *self, PyObject *h)
{
    if (!GOLOOP_IS_HANDLE(h)) {
        PyErr_SetString(PyExc_TypeError, "a goloop Handle is required");
        return NULL;
    }
    if (goloop_check_forked() < 0)
        return NULL;
    if (((HandleObject *)h)->cancelled)
        Py_RETURN_NONE;
    if (goloop_intake_soon(self, Py_NewRef(h)) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* _watching(fd): the events fd is watched for, as selectors' EVENT_READ
 * (1) and EVENT_WRITE (2) bits. */
static PyObject *
loop_watching(LoopObject *self, PyObject *arg)
{
    int fd = goloop_as_fd(arg);
    if (fd < 0 || goloop_check_forked() < 0)
        return NULL;
    if (self->closed)
        return PyLong_FromLong(0);
    return PyLong_FromLong(GoloopWatching(self->id, fd));
}

/* _transport_of(fd): the native transport whose stream owns fd (an int)
 * now, or None (goloop's _ensure_fd_no_transport). */
static PyObject *
loop_transport_of(LoopObject *self, PyObject *arg)
{
    int overflow;
    long fd = PyLong_AsLongAndOverflow(arg, &overflow);
    if (fd == -1 && PyErr_Occurred())
        return NULL;
    if (goloop_check_forked() < 0)
        return NULL;
    PyObject *t = NULL;   /* borrowed */
    if (!overflow && fd >= 0 && fd <= INT_MAX && !self->closed)
        t = GoloopStreamOf(self->id, (int)fd);
    return Py_NewRef(t != NULL ? t : Py_None);
}

/* (ready callbacks, timers in the heap): for tests that check nothing leaks. */
static PyObject *
loop_debug_counts(LoopObject *self, PyObject *Py_UNUSED(ignored))
{
    if (goloop_check_forked() < 0)
        return NULL;
    long ready = 0, timers = 0;
    GoloopCounts(self->id, &ready, &timers);
    return Py_BuildValue("ll", ready, timers);
}

int
goloop_signalled(PyObject *loop, const char *data, long n)
{
    /* Run the Python-level handlers now (SIGINT's raises KeyboardInterrupt,
     * asyncio.Runner's cancels the main task); any exception stops the loop
     * as it would escape select() in asyncio. */
    if (PyErr_CheckSignals() < 0)
        return -1;
    PyObject *bytes = PyBytes_FromStringAndSize(data, n);
    if (bytes == NULL)
        return -1;
    PyObject *r = PyObject_CallMethod(loop, "_process_self_data", "O", bytes);
    Py_DECREF(bytes);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

static PyObject *
loop_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    if (goloop_check_forked() < 0)
        return NULL;
    LoopObject *self = (LoopObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->closed = 0;
    self->debug = 0;
    self->current_handle = NULL;
    self->task_factory = NULL;
    memset(&self->intake, 0, sizeof(self->intake));
    memset(&self->streams, 0, sizeof(self->streams));
    self->has_read_view = 0;
    self->read_bytes = NULL;
    self->read_reader = NULL;
    self->id = GoloopNew(&self->intake, &self->streams);
    if (self->id < 0) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static int
loop_traverse(LoopObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->current_handle);
    Py_VISIT(self->task_factory);
    if (self->has_read_view)
        Py_VISIT(self->read_view.obj);
    Py_VISIT(self->read_bytes);
    Py_VISIT(self->read_reader);
    /* The handles queued here and in Go are references this loop owns. */
    goloop_intake *in = &self->intake;
    int r = goloop_visit((PyObject *)self, (goloop_visitproc)visit, arg,
                         (uintptr_t *)in->soon, in->nsoon);
    if (r)
        return r;
    r = goloop_visit((PyObject *)self, (goloop_visitproc)visit, arg,
                     (uintptr_t *)in->timers, in->ntimers);
    if (r)
        return r;
    if (self->id >= 0 && !goloop_forked) {
        r = GoloopTraverse(self->id, (PyObject *)self, (goloop_visitproc)visit, arg);
        if (r)
            return r;
    }
    return 0;
}

static int
loop_clear(LoopObject *self)
{
    Py_CLEAR(self->current_handle);
    Py_CLEAR(self->task_factory);
    if (self->id >= 0 && !goloop_forked)
        GoloopClear(self->id);
    return 0;
}

/* goloop.Loop's __del__ (the ResourceWarning) has run by now: the Python
 * subclass's dealloc calls it before this one. */
static void
loop_dealloc(LoopObject *self)
{
    PyObject_GC_UnTrack(self);
    loop_clear(self);
    if (self->id >= 0 && !goloop_forked)   /* after fork Go is gone: leak it */
        GoloopFree(self->id);
    self->id = -1;
    PyMem_Free(self->intake.soon);
    PyMem_Free(self->intake.timers);
    PyMem_Free(self->intake.whens);
    PyMem_Free(self->streams.t);
    if (self->has_read_view)
        PyBuffer_Release(&self->read_view);
    Py_XDECREF(self->read_bytes);
    Py_XDECREF(self->read_reader);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
loop_get_closed(LoopObject *self, void *c) { return PyBool_FromLong(self->closed); }

static int
loop_set_closed(LoopObject *self, PyObject *v, void *c)
{
    int b = v == NULL ? 0 : PyObject_IsTrue(v);
    if (b < 0)
        return -1;
    self->closed = (char)b;
    return 0;
}

static PyObject *
loop_get_debug_attr(LoopObject *self, void *c) { return PyBool_FromLong(self->debug); }

static int
loop_set_debug_attr(LoopObject *self, PyObject *v, void *c)
{
    int b = v == NULL ? 0 : PyObject_IsTrue(v);
    if (b < 0)
        return -1;
    self->debug = (char)b;
    return 0;
}

static PyMethodDef loop_methods[] = {
    {"call_soon", (PyCFunction)(void (*)(void))loop_call_soon, METH_FASTCALL | METH_KEYWORDS,
     "Arrange for a callback to be called as soon as possible."},
    {"call_soon_threadsafe", (PyCFunction)(void (*)(void))loop_call_soon_threadsafe,
     METH_FASTCALL | METH_KEYWORDS, "Like call_soon(), but thread-safe."},
    {"call_later", (PyCFunction)(void (*)(void))loop_call_later, METH_FASTCALL | METH_KEYWORDS,
     "Arrange for a callback to be called at a given time."},
    {"call_at", (PyCFunction)(void (*)(void))loop_call_at, METH_FASTCALL | METH_KEYWORDS,
     "Like call_later(), but uses an absolute time."},
    {"time", (PyCFunction)loop_time, METH_NOARGS,
     "Return the time according to the event loop's clock."},
    {"get_debug", (PyCFunction)loop_get_debug, METH_NOARGS, NULL},
    {"is_closed", (PyCFunction)loop_is_closed, METH_NOARGS,
     "Returns True if the event loop was closed."},
    {"stop", (PyCFunction)loop_stop, METH_NOARGS, "Stop running the event loop."},
    {"create_future", (PyCFunction)loop_create_future, METH_NOARGS,
     "Create a Future object attached to the loop."},
    {"create_task", (PyCFunction)(void (*)(void))loop_create_task, METH_FASTCALL | METH_KEYWORDS,
     "Schedule or begin executing a coroutine object.\n\nReturn a task object."},
    {"_run", (PyCFunction)loop_run, METH_NOARGS, NULL},
    {"_close", (PyCFunction)loop_close_core, METH_NOARGS, NULL},
    {"_write_to_self", (PyCFunction)loop_write_to_self, METH_NOARGS, NULL},
    {"_signal_fd", (PyCFunction)loop_signal_fd, METH_NOARGS, NULL},
    {"_add_reader", (PyCFunction)(void (*)(void))loop_add_reader, METH_FASTCALL | METH_KEYWORDS, NULL},
    {"_add_writer", (PyCFunction)(void (*)(void))loop_add_writer, METH_FASTCALL | METH_KEYWORDS, NULL},
    {"_remove_reader", (PyCFunction)loop_remove_reader, METH_O, NULL},
    {"_remove_writer", (PyCFunction)loop_remove_writer, METH_O, NULL},
    {"_handle", (PyCFunction)(void (*)(void))loop_handle, METH_FASTCALL, NULL},
    {"_add_callback", (PyCFunction)loop_add_callback, METH_O, NULL},
    {"_watching", (PyCFunction)loop_watching, METH_O, NULL},
    {"_sock_recv_start", (PyCFunction)(void (*)(void))goloop_sock_recv_start, METH_FASTCALL, NULL},
    {"_sock_recv_into_start", (PyCFunction)(void (*)(void))goloop_sock_recv_into_start,
     METH_FASTCALL, NULL},
    {"_sock_sendall_start", (PyCFunction)(void (*)(void))goloop_sock_sendall_start,
     METH_FASTCALL, NULL},
    {"_sock_accept_start", (PyCFunction)goloop_sock_accept_start, METH_O, NULL},
    {"_sock_recvfrom_start", (PyCFunction)(void (*)(void))goloop_sock_recvfrom_start,
     METH_FASTCALL, NULL},
    {"_sock_recvfrom_into_start", (PyCFunction)(void (*)(void))goloop_sock_recvfrom_into_start,
     METH_FASTCALL, NULL},
    {"_sock_sendto_start", (PyCFunction)(void (*)(void))goloop_sock_sendto_start, METH_FASTCALL,
     NULL},
    {"_transport_of", (PyCFunction)loop_transport_of, METH_O, NULL},
    {"_debug_counts", (PyCFunction)loop_debug_counts, METH_NOARGS, NULL},
    {NULL}
};

static PyGetSetDef loop_getset[] = {
    {"_closed", (getter)loop_get_closed, (setter)loop_set_closed, NULL, NULL},
    {"_debug", (getter)loop_get_debug_attr, (setter)loop_set_debug_attr, NULL, NULL},
    {NULL}
};

static PyMemberDef loop_members[] = {
    {"_current_handle", T_OBJECT, offsetof(LoopObject, current_handle), 0, NULL},
    {"_task_factory", T_OBJECT, offsetof(LoopObject, task_factory), 0, NULL},
    {NULL}
};

PyTypeObject Goloop_LoopType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "goloop._goloop.LoopBase",
    .tp_doc = "The native base of goloop.Loop: scheduling on the Go core.",
    .tp_basicsize = sizeof(LoopObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = loop_new,
    .tp_dealloc = (destructor)loop_dealloc,
    .tp_traverse = (traverseproc)loop_traverse,
    .tp_clear = (inquiry)loop_clear,
    .tp_methods = loop_methods,
    .tp_getset = loop_getset,
    .tp_members = loop_members,
};
