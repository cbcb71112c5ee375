/* Handle and TimerHandle: what call_soon, call_later and call_at return,
 * and what the Go ready queue and timer heap hold. Subclasses of, and with
 * the semantics of, asyncio.events.Handle / TimerHandle. */
#include "goloop.h"
#include "_cgo_export.h"

PyTypeObject *goloop_handle_type;
PyTypeObject *goloop_timer_type;
PyTypeObject *goloop_threadsafe_type;
static PyObject *rlock_type;   /* threading.RLock, for _ThreadSafeHandle */

HandleObject *
goloop_handle_new(PyTypeObject *type, LoopObject *loop,
                  PyObject *const *args, Py_ssize_t nargs, PyObject *context)
{
    HandleObject *h = PyObject_GC_New(HandleObject, type);
    if (h == NULL)
        return NULL;
    h->weakreflist = NULL;
    h->callback = Py_NewRef(args[0]);
    h->nargs = nargs - 1;
    h->arg0 = NULL;
    h->args = NULL;
    if (h->nargs == 1)
        h->arg0 = Py_NewRef(args[1]);
    else if (h->nargs > 1 && (h->args = PyTuple_New(h->nargs)) != NULL)
        for (Py_ssize_t i = 0; i < h->nargs; i++)
            PyTuple_SET_ITEM(h->args, i, Py_NewRef(args[i + 1]));
    /* asyncio copies the current context when none is given */
    h->context = context != NULL && context != Py_None ? Py_NewRef(context)
                                                       : PyContext_CopyCurrent();
    h->loop = (LoopObject *)Py_NewRef(loop);
    h->source_traceback = NULL;
    h->repr = NULL;
    h->lock = NULL;
    h->cancelled = 0;
    h->scheduled = 0;
    h->when = 0;
    if (type == goloop_threadsafe_type && (h->lock = PyObject_CallNoArgs(rlock_type)) == NULL) {
        Py_DECREF(h);
        return NULL;
    }
    if ((h->nargs > 1 && h->args == NULL) || h->context == NULL) {
        Py_DECREF(h);
        return NULL;
    }
    if (loop->debug) {
        h->source_traceback = PyObject_CallNoArgs(goloop_helpers.extract_stack);
        if (h->source_traceback == NULL) {
            Py_DECREF(h);
            return NULL;
        }
    }
    return h;
}

void
goloop_release(PyObject *h)
{
    if (Py_REFCNT(h) > 1 && !PyObject_GC_IsTracked(h))
        PyObject_GC_Track(h);
    Py_DECREF(h);
}

/* tp_traverse for the handles a loop holds (Go slices of C pointers, valid
 * for this call). A tracked handle is visited as any object. An untracked
 * one held by the loop alone is part of the loop: its references are the
 * loop's, and its reference to the loop is the loop's own. An untracked one
 * held elsewhere too is left out, so the GC treats what it references as
 * reachable: at worst a cycle through an unclosed loop is kept, never
 * freed early. */
int
goloop_visit(PyObject *loop, goloop_visitproc visit, void *arg, uintptr_t *items, long n)
{
    for (long i = 0; i < n; i++) {
        HandleObject *h = (HandleObject *)items[i];
        if (h == NULL)   /* consumed by the batch being run */
            continue;
        if (PyObject_GC_IsTracked((PyObject *)h)) {
            Py_VISIT(h);
        }
        else if (Py_REFCNT(h) == 1) {
            Py_VISIT(h->callback);
            Py_VISIT(h->arg0);
            Py_VISIT(h->args);
            Py_VISIT(h->context);
            Py_VISIT(h->source_traceback);
            Py_VISIT(loop);
        }
    }
    return 0;
}

static PyObject *
handle_args_tuple(HandleObject *h)
{
    if (h->args != NULL)
        return Py_NewRef(h->args);
    if (h->arg0 != NULL)
        return PyTuple_Pack(1, h->arg0);
    if (h->callback == NULL)
        Py_RETURN_NONE;   /* asyncio sets _args to None on cancel */
    return PyTuple_New(0);
}

static PyObject *
handle_call(HandleObject *h)
{
    if (h->args != NULL)
        return PyObject_Call(h->callback, h->args, NULL);
    if (h->arg0 != NULL)
        return PyObject_CallOneArg(h->callback, h->arg0);
    return PyObject_CallNoArgs(h->callback);
}

/* asyncio's _ThreadSafeHandle (3.14+) holds an RLock around cancel(),
 * cancelled() and _run(), so a cancel from another thread waits for a
 * callback that is already running. */
static int
lock_acquire(HandleObject *h)
{
    if (h->lock == NULL)
        return 0;
    PyObject *r = PyObject_CallMethod(h->lock, "acquire", NULL);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

static void
lock_release(HandleObject *h)
{
    if (h->lock == NULL)
        return;
    PyObject *exc = PyErr_Occurred() ? goloop_fetch_exception() : NULL;
    PyObject *r = PyObject_CallMethod(h->lock, "release", NULL);
    if (r == NULL)
        PyErr_WriteUnraisable(h->lock);
    Py_XDECREF(r);
    if (exc != NULL)
        goloop_restore_exception(exc);
}

/* Run the callback in its context. On an ordinary exception the handle goes
 * to the loop's exception handler (asyncio's Handle._run); SystemExit and
 * KeyboardInterrupt stay raised: returns -1 and the loop stops. */
static int handle_run_unlocked(HandleObject *h);

static int
handle_run(HandleObject *h)
{
    if (h->cancelled)
        return 0;
    if (h->lock == NULL)
        return handle_run_unlocked(h);
    if (lock_acquire(h) < 0)
        return -1;
    /* cancelled while this thread waited for the lock */
    int rc = h->cancelled ? 0 : handle_run_unlocked(h);
    lock_release(h);
    return rc;
}

static int
handle_run_unlocked(HandleObject *h)
{
    if (PyContext_Enter(h->context) < 0)
        goto failed;
    PyObject *res = handle_call(h);
    if (PyContext_Exit(h->context) < 0) {
        Py_XDECREF(res);
        goto failed;
    }
    if (res == NULL)
        goto failed;
    Py_DECREF(res);
    return 0;

failed:
    if (goloop_stop_exception())
        return -1;
    PyObject *exc = goloop_fetch_exception();
    PyObject *r = PyObject_CallFunctionObjArgs(goloop_helpers.callback_failed,
                                               (PyObject *)h, exc, NULL);
    Py_DECREF(exc);
    if (r == NULL) {
        /* call_exception_handler lets only these two escape */
        if (goloop_stop_exception())
            return -1;
        PyErr_WriteUnraisable((PyObject *)h);
        return 0;
    }
    Py_DECREF(r);
    return 0;
}

/* Debug mode: record the current handle and warn about slow callbacks, as
 * _run_once does when loop._debug is set. */
static int
handle_run_debug(HandleObject *h)
{
    LoopObject *loop = h->loop;
    Py_XSETREF(loop->current_handle, Py_NewRef((PyObject *)h));
    double t0 = goloop_monotonic();
    int rc = handle_run(h);
    double dt = goloop_monotonic() - t0;
    Py_CLEAR(loop->current_handle);
    if (rc < 0)
        return rc;
    PyObject *limit = PyObject_GetAttrString((PyObject *)loop, "slow_callback_duration");
    if (limit == NULL)
        return -1;
    double slow = PyFloat_AsDouble(limit);
    Py_DECREF(limit);
    if (slow == -1 && PyErr_Occurred())
        return -1;
    if (dt >= slow) {
        PyObject *r = PyObject_CallFunction(goloop_helpers.log_slow, "Od", (PyObject *)h, dt);
        if (r == NULL)
            return -1;
        Py_DECREF(r);
    }
    return 0;
}

long
goloop_run_ready(uintptr_t *handles, long n)
{
    for (long i = 0; i < n; i++) {
        HandleObject *h = (HandleObject *)handles[i];
        int rc;
        if (Py_IS_TYPE(h, goloop_sockop_type)) {
            rc = goloop_sockop_run((PyObject *)h);
        }
        else {
            h->scheduled = 0;
            rc = h->loop->debug ? handle_run_debug(h) : handle_run(h);
        }
        /* The slot stays in Go's queue until the batch returns; clear it
         * before the handle may be freed, so a GC pass started by a later
         * callback (which traverses the loop) does not visit it. */
        handles[i] = 0;
        goloop_release((PyObject *)h);
        if (rc < 0)
            return -(i + 1);
    }
    return n;
}

int
goloop_handle_cancelled(PyObject *obj)
{
    if (Py_IS_TYPE(obj, goloop_sockop_type))
        return goloop_sockop_cancelled(obj);
    return ((HandleObject *)obj)->cancelled;
}

static int
handle_traverse(HandleObject *h, visitproc visit, void *arg)
{
    Py_VISIT(h->callback);
    Py_VISIT(h->arg0);
    Py_VISIT(h->args);
    Py_VISIT(h->context);
    Py_VISIT(h->loop);
    Py_VISIT(h->source_traceback);
    Py_VISIT(Py_TYPE(h));
    return 0;
}

static int
handle_clear(HandleObject *h)
{
    Py_CLEAR(h->callback);
    Py_CLEAR(h->arg0);
    Py_CLEAR(h->args);
    Py_CLEAR(h->context);
    Py_CLEAR(h->loop);
    Py_CLEAR(h->source_traceback);
    Py_CLEAR(h->repr);
    Py_CLEAR(h->lock);
    return 0;
}

static void
handle_dealloc(HandleObject *h)
{
    PyTypeObject *tp = Py_TYPE(h);
    PyObject_GC_UnTrack(h);
    PyObject_ClearWeakRefs((PyObject *)h);   /* asyncio.Handle has __weakref__ */
    handle_clear(h);
    PyObject_GC_Del(h);
    Py_DECREF(tp);
}

static PyObject *handle_cancel_unlocked(HandleObject *h);

static PyObject *
handle_cancel(HandleObject *h, PyObject *Py_UNUSED(ignored))
{
    if (lock_acquire(h) < 0)
        return NULL;
    PyObject *r = handle_cancel_unlocked(h);
    lock_release(h);
    return r;
}

static PyObject *
handle_cancel_unlocked(HandleObject *h)
{
    if (h->cancelled)
        Py_RETURN_NONE;
    LoopObject *loop = h->loop;
    /* TimerHandle.cancel: tell the loop so it can compact its heap */
    if (h->scheduled && loop != NULL)
        loop->intake.cancelled++;
    h->cancelled = 1;
    if (loop != NULL && loop->debug) {
        /* asyncio keeps the repr so "Executing <Handle ...> took" still
         * names the callback after it is dropped */
        PyObject *r = PyObject_Repr((PyObject *)h);
        if (r == NULL)
            return NULL;
        Py_XSETREF(h->repr, r);
    }
    Py_CLEAR(h->callback);
    Py_CLEAR(h->arg0);
    Py_CLEAR(h->args);
    Py_RETURN_NONE;
}

static PyObject *
handle_cancelled(HandleObject *h, PyObject *Py_UNUSED(ignored))
{
    if (lock_acquire(h) < 0)
        return NULL;
    int cancelled = h->cancelled;
    lock_release(h);
    return PyBool_FromLong(cancelled);
}

static PyObject *
handle_get_context(HandleObject *h, PyObject *Py_UNUSED(ignored))
{
    return Py_NewRef(h->context);
}

/* Handle._run(), for code that runs a handle by hand. */
static PyObject *
handle_py_run(HandleObject *h, PyObject *Py_UNUSED(ignored))
{
    if (handle_run(h) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
handle_get_callback(HandleObject *h, void *c) { return Py_NewRef(h->callback ? h->callback : Py_None); }
static PyObject *
handle_get_args(HandleObject *h, void *c) { return handle_args_tuple(h); }
static PyObject *
handle_get_cancelled(HandleObject *h, void *c) { return PyBool_FromLong(h->cancelled); }
static PyObject *
handle_get_scheduled(HandleObject *h, void *c) { return PyBool_FromLong(h->scheduled); }
static PyObject *
handle_get_loop(HandleObject *h, void *c) { return Py_NewRef(h->loop ? (PyObject *)h->loop : Py_None); }
static PyObject *
handle_get_context_attr(HandleObject *h, void *c) { return Py_NewRef(h->context ? h->context : Py_None); }
static PyObject *
handle_get_repr(HandleObject *h, void *c) { return Py_NewRef(h->repr ? h->repr : Py_None); }
static PyObject *
handle_get_lock(HandleObject *h, void *c) { return Py_NewRef(h->lock ? h->lock : Py_None); }
static PyObject *
handle_get_when(HandleObject *h, void *c) { return PyFloat_FromDouble(h->when); }

static PyObject *
handle_get_tb(HandleObject *h, void *c)
{
    return Py_NewRef(h->source_traceback ? h->source_traceback : Py_None);
}

/* asyncio's call_later trims its own frame with del h._source_traceback[-1];
 * allow the same assignment and deletion here. */
static int
handle_set_tb(HandleObject *h, PyObject *v, void *c)
{
    Py_XSETREF(h->source_traceback, v == Py_None ? NULL : Py_XNewRef(v));
    return 0;
}

/* goloop.TimerHandle does not derive from goloop.Handle (asyncio's two
 * layouts differ), so both list the shared methods and attributes. */
#define HANDLE_METHODS \
    {"cancel", (PyCFunction)handle_cancel, METH_NOARGS, NULL}, \
    {"cancelled", (PyCFunction)handle_cancelled, METH_NOARGS, NULL}, \
    {"get_context", (PyCFunction)handle_get_context, METH_NOARGS, NULL}, \
    {"_run", (PyCFunction)handle_py_run, METH_NOARGS, NULL}

#define HANDLE_GETSET \
    {"_callback", (getter)handle_get_callback, NULL, NULL, NULL}, \
    {"_args", (getter)handle_get_args, NULL, NULL, NULL}, \
    {"_cancelled", (getter)handle_get_cancelled, NULL, NULL, NULL}, \
    {"_loop", (getter)handle_get_loop, NULL, NULL, NULL}, \
    {"_context", (getter)handle_get_context_attr, NULL, NULL, NULL}, \
    {"_repr", (getter)handle_get_repr, NULL, NULL, NULL}, \
    {"_source_traceback", (getter)handle_get_tb, (setter)handle_set_tb, NULL, NULL}

static PyMethodDef handle_methods[] = {HANDLE_METHODS, {NULL}};
static PyGetSetDef handle_getset[] = {HANDLE_GETSET, {NULL}};

static PyType_Slot handle_slots[] = {
    {Py_tp_doc, "Object returned by callback registration methods."},
    {Py_tp_dealloc, handle_dealloc},
    {Py_tp_traverse, handle_traverse},
    {Py_tp_clear, handle_clear},
    {Py_tp_methods, handle_methods},
    {Py_tp_getset, handle_getset},
    {0, NULL},
};

static PyType_Spec handle_spec = {
    .name = "goloop.Handle",
    .basicsize = sizeof(HandleObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = handle_slots,
};

static PyObject *
timer_when(HandleObject *h, PyObject *Py_UNUSED(ignored))
{
    return PyFloat_FromDouble(h->when);
}

static Py_hash_t
timer_hash(HandleObject *h)
{
    /* hash(self._when), as asyncio */
    PyObject *f = PyFloat_FromDouble(h->when);
    if (f == NULL)
        return -1;
    Py_hash_t r = PyObject_Hash(f);
    Py_DECREF(f);
    return r;
}

/* TimerHandle orders by deadline; equality also compares the callback, as
 * asyncio.TimerHandle.__eq__ does. */
static PyObject *
timer_richcompare(HandleObject *a, PyObject *other, int op)
{
    if (!Py_IS_TYPE(other, goloop_timer_type))
        Py_RETURN_NOTIMPLEMENTED;
    HandleObject *b = (HandleObject *)other;
    if (op == Py_EQ || op == Py_NE) {
        int eq = a->when == b->when && a->cancelled == b->cancelled;
        if (eq && a != b) {
            PyObject *l = handle_args_tuple(a), *r = handle_args_tuple(b);
            if (l == NULL || r == NULL) {
                Py_XDECREF(l);
                Py_XDECREF(r);
                return NULL;
            }
            PyObject *ca = a->callback ? a->callback : Py_None;
            PyObject *cb = b->callback ? b->callback : Py_None;
            int e1 = PyObject_RichCompareBool(ca, cb, Py_EQ);
            int e2 = e1 > 0 ? PyObject_RichCompareBool(l, r, Py_EQ) : e1;
            Py_DECREF(l);
            Py_DECREF(r);
            if (e2 < 0)
                return NULL;
            eq = e2;
        }
        return PyBool_FromLong(op == Py_EQ ? eq : !eq);
    }
    Py_RETURN_RICHCOMPARE(a->when, b->when, op);
}

static PyMethodDef timer_methods[] = {
    HANDLE_METHODS,
    {"when", (PyCFunction)timer_when, METH_NOARGS, NULL},
    {NULL}
};

static PyGetSetDef timer_getset[] = {
    HANDLE_GETSET,
    {"_when", (getter)handle_get_when, NULL, NULL, NULL},
    {"_scheduled", (getter)handle_get_scheduled, NULL, NULL, NULL},
    {NULL}
};

static PyGetSetDef threadsafe_getset[] = {
    HANDLE_GETSET,
    {"_lock", (getter)handle_get_lock, NULL, NULL, NULL},
    {NULL}
};

static PyType_Slot threadsafe_slots[] = {
    {Py_tp_doc, "Object returned by call_soon_threadsafe()."},
    {Py_tp_dealloc, handle_dealloc},
    {Py_tp_traverse, handle_traverse},
    {Py_tp_clear, handle_clear},
    {Py_tp_methods, handle_methods},
    {Py_tp_getset, threadsafe_getset},
    {0, NULL},
};

static PyType_Spec threadsafe_spec = {
    .name = "goloop._ThreadSafeHandle",
    .basicsize = sizeof(HandleObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = threadsafe_slots,
};

static PyType_Slot timer_slots[] = {
    {Py_tp_doc, "Object returned by timed callback registration methods."},
    {Py_tp_dealloc, handle_dealloc},
    {Py_tp_traverse, handle_traverse},
    {Py_tp_clear, handle_clear},
    {Py_tp_hash, timer_hash},
    {Py_tp_richcompare, timer_richcompare},
    {Py_tp_methods, timer_methods},
    {Py_tp_getset, timer_getset},
    {0, NULL},
};

static PyType_Spec timer_spec = {
    .name = "goloop.TimerHandle",
    .basicsize = sizeof(HandleObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = timer_slots,
};

static PyTypeObject *
make_type(PyObject *module, PyType_Spec *spec, PyObject *base)
{
    if (((PyTypeObject *)base)->tp_basicsize > (Py_ssize_t)offsetof(HandleObject, when)) {
        PyErr_Format(PyExc_RuntimeError, "goloop: %s has more slots than goloop reuses",
                     ((PyTypeObject *)base)->tp_name);
        return NULL;
    }
    PyObject *bases = PyTuple_Pack(1, base);
    if (bases == NULL)
        return NULL;
    PyTypeObject *t = (PyTypeObject *)PyType_FromModuleAndSpec(module, spec, bases);
    Py_DECREF(bases);
    if (t == NULL)
        return NULL;
    if (t->tp_weaklistoffset > 0 &&
        t->tp_weaklistoffset != (Py_ssize_t)offsetof(HandleObject, weakreflist)) {
        PyErr_Format(PyExc_RuntimeError, "goloop: %s keeps weak references at offset %zd",
                     ((PyTypeObject *)base)->tp_name, t->tp_weaklistoffset);
        Py_DECREF(t);
        return NULL;
    }
    if (goloop_check_slots_shadowed(t) < 0) {
        Py_DECREF(t);
        return NULL;
    }
    return t;
}

int
goloop_init_handle_types(PyObject *module)
{
    PyObject *events = PyImport_ImportModule("asyncio.events");
    if (events == NULL)
        return -1;
    PyObject *handle = PyObject_GetAttrString(events, "Handle");
    PyObject *timer = PyObject_GetAttrString(events, "TimerHandle");
    /* call_soon_threadsafe returns one from 3.14 on */
    PyObject *threadsafe = PyObject_GetAttrString(events, "_ThreadSafeHandle");
    if (threadsafe == NULL)
        PyErr_Clear();
    Py_DECREF(events);
    int rc = -1;
    if (handle != NULL && timer != NULL &&
        (goloop_handle_type = make_type(module, &handle_spec, handle)) != NULL &&
        (goloop_timer_type = make_type(module, &timer_spec, timer)) != NULL) {
        rc = 0;
        if (threadsafe != NULL) {
            PyObject *threading = PyImport_ImportModule("threading");
            rlock_type = threading ? PyObject_GetAttrString(threading, "RLock") : NULL;
            Py_XDECREF(threading);
            if (rlock_type == NULL ||
                (goloop_threadsafe_type = make_type(module, &threadsafe_spec, threadsafe)) == NULL)
                rc = -1;
        }
    }
    Py_XDECREF(handle);
    Py_XDECREF(timer);
    Py_XDECREF(threadsafe);
    return rc;
}
