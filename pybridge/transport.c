/* What the native transports (stream.c, datagram.c) share: running a
 * protocol callback the Go core dispatches as the asyncio handle that would
 * have run it, and asyncio's write-buffer limit arguments. Declarations and
 * the contexts' meaning: goloop.h, TransportObject. */
#include <limits.h>
#include "goloop.h"

int
goloop_capture_context(TransportObject *t, PyObject **slot)
{
    if (t->context != NULL)
        return 0;
    PyObject *ctx = PyContext_CopyCurrent();
    if (ctx == NULL)
        return -1;
    Py_XSETREF(*slot, ctx);
    return 0;
}

int
goloop_scope_enter(TransportObject *t, goloop_scope *s, PyObject *ctx)
{
    s->loop = NULL;
    s->ctx = NULL;
    if (t->loop != NULL && t->loop->debug) {
        s->loop = (LoopObject *)Py_NewRef(t->loop);
        s->t0 = goloop_monotonic();
    }
    if (ctx != NULL) {
        if (PyContext_Enter(ctx) < 0) {
            Py_CLEAR(s->loop);
            return -1;
        }
        s->ctx = Py_NewRef(ctx);
    }
    return 0;
}

/* asyncio's logger, for the slow-callback warning (debug mode only). */
static PyObject *
asyncio_logger(void)
{
    static PyObject *logger;
    if (logger == NULL) {
        PyObject *mod = PyImport_ImportModule("asyncio.log");
        if (mod == NULL)
            return NULL;
        logger = PyObject_GetAttrString(mod, "logger");
        Py_DECREF(mod);
    }
    return logger;
}

int
goloop_scope_leave(TransportObject *t, goloop_scope *s, int rc, const char *handle, PyObject *arg)
{
    PyObject *saved = PyErr_Occurred() ? goloop_fetch_exception() : NULL;
    if (s->ctx != NULL) {
        if (PyContext_Exit(s->ctx) < 0)
            PyErr_WriteUnraisable((PyObject *)t);
        Py_DECREF(s->ctx);
    }
    if (s->loop == NULL)
        goto done;
    double dt = goloop_monotonic() - s->t0;
    PyObject *limit = PyObject_GetAttrString((PyObject *)s->loop, "slow_callback_duration");
    double slow = limit == NULL ? -1 : PyFloat_AsDouble(limit);
    Py_XDECREF(limit);
    PyObject *r = NULL;
    if (!PyErr_Occurred() && dt >= slow) {
        /* asyncio's handle repr, with the native type's own name */
        PyObject *type = PyType_GetName(Py_TYPE(t));
        PyObject *desc = type == NULL ? NULL : arg != NULL ?
            PyUnicode_FromFormat("<Handle %U.%s(%R)>", type, handle, arg) :
            PyUnicode_FromFormat("<Handle %U.%s()>", type, handle);
        Py_XDECREF(type);
        PyObject *logger = desc == NULL ? NULL : asyncio_logger();
        if (logger != NULL)
            r = PyObject_CallMethod(logger, "warning", "sOd",
                                    "Executing %s took %.3f seconds", desc, dt);
        Py_XDECREF(desc);
    }
    else if (!PyErr_Occurred())
        r = Py_NewRef(Py_None);
    if (r == NULL) {
        /* what asyncio's transports re-raise instead of handling */
        int stop = PyErr_ExceptionMatches(PyExc_SystemExit) ||
                   PyErr_ExceptionMatches(PyExc_KeyboardInterrupt);
        if (stop && saved == NULL)
            rc = -1;
        else
            PyErr_WriteUnraisable((PyObject *)t);
    }
    Py_XDECREF(r);
    Py_DECREF(s->loop);
done:
    if (saved != NULL)
        goloop_restore_exception(saved);
    return rc;
}

int
goloop_limit_arg(PyObject *o, long long *v)
{
    if (o == NULL || o == Py_None) {
        *v = LLONG_MIN;   /* core.Unset */
        return 0;
    }
    *v = PyLong_AsLongLong(o);
    if (*v == -1 && PyErr_Occurred())
        return -1;
    if (*v == LLONG_MIN) {
        PyErr_SetString(PyExc_OverflowError, "write buffer limit out of range");
        return -1;
    }
    return 0;
}
