/* What the native transports share: goloop._SocketTransport (stream.c) and
 * goloop._DatagramTransport (datagram.c) are one object layout,
 * TransportObject (goloop.h: fields, contexts, ownership), and what does
 * not depend on the kind is written here once: the methods, getters and
 * slots both types have (goloop_transport_type adds them to each type's
 * own), the protocol calls the Go core makes for both (flow control,
 * connection_lost), and running such a call as the asyncio handle that
 * would have run it. The Go half of all this is transport.go. */
#include <limits.h>
#include <string.h>
#include "goloop.h"
#include "structmember.h"
#include "_cgo_export.h"

TransportHelpers goloop_transport_helpers;
#define th goloop_transport_helpers

static PyObject *str_connection_lost, *str_pause_writing, *str_resume_writing, *str_close,
    *str_detach, *str_set_result, *str_set_exception, *str_done, *str_fileno, *str_getsockname,
    *str_socket, *str_sockname, *str_peername;

#define T(o) ((TransportObject *)(o))

/* --- contexts and callback scopes --------------------------------------- */

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
        if (desc != NULL)
            r = PyObject_CallMethod(th.logger, "warning", "sOd",
                                    "Executing %s took %.3f seconds", desc, dt);
        Py_XDECREF(desc);
    }
    else if (!PyErr_Occurred())
        r = Py_NewRef(Py_None);
    if (r == NULL) {
        if (goloop_stop_exception() && saved == NULL)
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

/* --- helpers ------------------------------------------------------------ */

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

int
goloop_transport_fatal(TransportObject *t, const char *message)
{
    if (goloop_stop_exception())
        return -1;
    PyObject *exc = goloop_fetch_exception();
    PyObject *r = PyObject_CallFunction(th.fatal_error, "OOs", (PyObject *)t, exc, message);
    if (r == NULL) {
        if (goloop_stop_exception()) {
            Py_DECREF(exc);
            return -1;
        }
        PyErr_WriteUnraisable((PyObject *)t);
    }
    Py_XDECREF(r);
    if (t->id < 0) {
        Py_DECREF(exc);
        return 0;
    }
    return GoloopTransportForceClose(t->id, exc) < 0 ? -1 : 0;   /* steals exc */
}

int
goloop_log_debug(TransportObject *t, const char *fmt)
{
    if (t->loop == NULL || !t->loop->debug)
        return 0;
    PyObject *r = PyObject_CallMethod(th.logger, "debug", "sO", fmt, (PyObject *)t);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

int
goloop_warn_lost_write(void)
{
    PyObject *r = PyObject_CallMethod(th.logger, "warning", "s", "socket.send() raised exception.");
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* sock.getsockname() or sock.getpeername(): a new reference, None if it
 * raises OSError (asyncio's except clauses); NULL with another exception. */
PyObject *
goloop_sock_address(PyObject *sock, PyObject *method)
{
    PyObject *addr = PyObject_CallMethodNoArgs(sock, method);
    if (addr == NULL && PyErr_ExceptionMatches(PyExc_OSError)) {
        PyErr_Clear();
        addr = Py_NewRef(Py_None);
    }
    return addr;
}

static int
set_item(PyObject *dict, PyObject *key, PyObject *value)   /* steals value */
{
    if (value == NULL)
        return -1;
    int rc = PyDict_SetItem(dict, key, value);
    Py_DECREF(value);
    return rc;
}

/* Makes asyncio's _extra dict, which a datagram transport has from the
 * start. asyncio's _SelectorTransport.__init__ fills it at once: 'socket'
 * (a TransportSocket), 'sockname' and 'peername', in the caller's dict or
 * a new one. A stream takes only the peer's address at once (getpeername()
 * fails once the peer has reset the connection, and connection_lost()
 * often logs the peer), and keeps it on its own; the dict is made when
 * anything else is asked for, or before the socket closes, so that it is
 * there afterwards too. That dict, the TransportSocket and the address
 * were 400 bytes of every connection, which few ever ask for. Returns 0,
 * or -1 with an exception set. */
static int
make_extra(TransportObject *t)
{
    if (t->extra_made)
        return 0;
    if (t->extra == NULL && (t->extra = PyDict_New()) == NULL)
        return -1;
    if (t->sock != NULL &&
        (set_item(t->extra, str_socket, PyObject_CallOneArg(th.transport_socket, t->sock)) < 0 ||
         set_item(t->extra, str_sockname, goloop_sock_address(t->sock, str_getsockname)) < 0))
        return -1;
    if (t->peername != NULL) {
        if (PyDict_SetItem(t->extra, str_peername, t->peername) < 0)
            return -1;
        Py_CLEAR(t->peername);
    }
    t->extra_made = 1;
    return 0;
}

void
goloop_close_socket(TransportObject *t)
{
    PyObject *sock = t->sock;
    t->sock = NULL;
    if (sock == NULL)
        return;
    PyObject *r = PyObject_CallMethodNoArgs(sock, str_close);
    Py_DECREF(sock);
    if (r == NULL)
        PyErr_WriteUnraisable((PyObject *)t);
    Py_XDECREF(r);
}

/* server._detach(): with the transport from 3.13 on. */
static int
detach_server(TransportObject *t)
{
    PyObject *server = t->server;
    t->server = NULL;
    if (server == NULL)
        return 0;
#if PY_VERSION_HEX >= 0x030D0000
    PyObject *r = PyObject_CallMethodOneArg(server, str_detach, (PyObject *)t);
#else
    PyObject *r = PyObject_CallMethodNoArgs(server, str_detach);
#endif
    Py_DECREF(server);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* 0 if fut is pending; 1 if done; -1 on error */
static int
future_done(PyObject *fut)
{
    PyObject *r = PyObject_CallMethodNoArgs(fut, str_done);
    if (r == NULL)
        return -1;
    int done = PyObject_IsTrue(r);
    Py_DECREF(r);
    return done;
}

/* Resolves a stream's _make_empty_waiter future, if pending. */
static void
waiter_set(TransportObject *t, PyObject *method, PyObject *value)
{
    PyObject *fut = t->empty_waiter;
    if (fut == NULL)
        return;
    Py_INCREF(fut);
    int done = future_done(fut);
    if (done == 0) {
        PyObject *r = PyObject_CallMethodOneArg(fut, method, value);
        Py_XDECREF(r);
        done = r == NULL ? -1 : 1;
    }
    if (done < 0)
        PyErr_WriteUnraisable((PyObject *)t);
    Py_DECREF(fut);
}

/* --- called by the Go sink (bridge.h) --------------------------------- */

/* _FlowControlMixin._maybe_pause_protocol / _maybe_resume_protocol: the
 * protocol's failure is reported, not fatal. */
static int
flow_call(TransportObject *t, PyObject *name, const char *message)
{
    if (t->protocol == NULL)
        return 0;
    PyObject *proto = Py_NewRef(t->protocol);
    PyObject *r = PyObject_CallMethodNoArgs(proto, name);
    Py_DECREF(proto);
    if (r != NULL) {
        Py_DECREF(r);
        return 0;
    }
    if (goloop_stop_exception())
        return -1;
    PyObject *exc = goloop_fetch_exception();
    r = PyObject_CallFunction(th.callback_failed, "OOs", (PyObject *)t, exc, message);
    Py_DECREF(exc);
    if (r == NULL) {
        if (goloop_stop_exception())
            return -1;
        PyErr_WriteUnraisable((PyObject *)t);
    }
    Py_XDECREF(r);
    return 0;
}

int
goloop_transport_pause_writing(PyObject *o)
{
    T(o)->protocol_paused = 1;
    return flow_call(T(o), str_pause_writing, "protocol.pause_writing() failed");
}

int
goloop_transport_resume_writing(PyObject *o)
{
    TransportObject *t = T(o);
    t->protocol_paused = 0;
    goloop_scope s;
    if (goloop_scope_enter(t, &s, GOLOOP_WRITE_CTX(t)) < 0)
        return goloop_transport_fatal(t, "Fatal write error on socket transport");
    int rc = flow_call(t, str_resume_writing, "protocol.resume_writing() failed");
    return goloop_scope_leave(t, &s, rc, "_write_ready", NULL);
}

void
goloop_transport_drained(PyObject *o)
{
    TransportObject *t = T(o);
    goloop_scope s;
    if (goloop_scope_enter(t, &s, GOLOOP_WRITE_CTX(t)) < 0) {
        PyErr_WriteUnraisable(o);
        return;
    }
    waiter_set(t, str_set_result, Py_None);
    if (goloop_scope_leave(t, &s, 0, "_write_ready", NULL) < 0)
        PyErr_WriteUnraisable(o);
}

/* asyncio's _call_connection_lost: protocol.connection_lost(exc), and
 * whatever it does, close the socket and drop the protocol, the loop and
 * the server. A failing connection_lost is reported as the failing
 * callback it is in asyncio; KeyboardInterrupt and SystemExit stop the
 * loop (-1). */
int
goloop_transport_lost(PyObject *o, PyObject *exc)
{
    TransportObject *t = T(o);
    PyObject *arg = exc != NULL ? exc : Py_None;
    PyObject *failure = NULL;
    Py_INCREF(t);   /* connection_lost may drop the last other reference */
    goloop_scope s;
    int entered = goloop_scope_enter(t, &s, GOLOOP_LOST_CTX(t)) == 0;
    if (!entered)
        failure = goloop_fetch_exception();
    else if (t->protocol != NULL) {
        PyObject *proto = Py_NewRef(t->protocol);
        PyObject *r = PyObject_CallMethodOneArg(proto, str_connection_lost, arg);
        Py_DECREF(proto);
        if (r == NULL)
            failure = goloop_fetch_exception();
        Py_XDECREF(r);
    }
    /* the finally: clause */
    if (make_extra(t) < 0)
        PyErr_WriteUnraisable(o);
    goloop_close_socket(t);
    Py_CLEAR(t->protocol);
    LoopObject *loop = t->loop;
    t->loop = NULL;
    if (detach_server(t) < 0) {
        if (failure == NULL)
            failure = goloop_fetch_exception();
        else
            PyErr_WriteUnraisable(o);
    }
    if (t->empty_waiter != NULL) {
        PyObject *cerr = PyObject_CallFunction(PyExc_ConnectionError, "s",
                                               "Connection is closed by peer");
        if (cerr == NULL)
            PyErr_WriteUnraisable(o);
        else {
            waiter_set(t, str_set_exception, cerr);
            Py_DECREF(cerr);
        }
    }
    int rc = 0;
    if (failure != NULL) {
        if (PyErr_GivenExceptionMatches(failure, PyExc_SystemExit) ||
            PyErr_GivenExceptionMatches(failure, PyExc_KeyboardInterrupt)) {
            goloop_restore_exception(failure);
            rc = -1;
        }
        else {
            PyObject *r = PyObject_CallFunctionObjArgs(
                th.lost_failed, loop ? (PyObject *)loop : Py_None, o, arg, failure, NULL);
            Py_DECREF(failure);
            if (r == NULL) {
                if (goloop_stop_exception())
                    rc = -1;
                else
                    PyErr_WriteUnraisable(o);
            }
            Py_XDECREF(r);
        }
    }
    Py_XDECREF(loop);
    if (entered)
        rc = goloop_scope_leave(t, &s, rc, "_call_connection_lost", arg);
    Py_XDECREF(exc);
    Py_DECREF(t);
    return rc;
}

int
goloop_visit_objects(goloop_visitproc visit, void *arg, uintptr_t *objs, long n)
{
    for (long i = 0; i < n; i++) {
        int r = visit((PyObject *)objs[i], arg);
        if (r)
            return r;
    }
    return 0;
}

/* --- methods ----------------------------------------------------------- */

/* close(), abort(), _force_close(): asyncio schedules connection_lost with
 * call_soon from the first of them, in the caller's context; close() with
 * data still queued leaves it to the writer, in the writer's. */
static int
closing(TransportObject *t, int now)
{
    if (t->context != NULL || t->lost_ctx != NULL || t->ws.closing)
        return 0;
    if (!now && t->write_ctx != NULL) {
        int queued = GoloopTransportQueued(t->id);
        if (queued < 0)
            return -1;
        if (queued) {
            t->lost_ctx = Py_NewRef(t->write_ctx);
            return 0;
        }
    }
    return goloop_capture_context(t, &t->lost_ctx);
}

static PyObject *
transport_close(TransportObject *t, PyObject *Py_UNUSED(ignored))
{
    if (closing(t, 0) < 0)
        return NULL;
    if (GoloopTransportClose(t->id) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
transport_abort(TransportObject *t, PyObject *Py_UNUSED(ignored))
{
    if (closing(t, 1) < 0)
        return NULL;
    if (GoloopTransportForceClose(t->id, NULL) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* _force_close(exc): sslproto calls it; connection_lost gets exc. */
static PyObject *
transport_force_close(TransportObject *t, PyObject *exc)
{
    if (closing(t, 1) < 0)
        return NULL;
    if (GoloopTransportForceClose(t->id, exc == Py_None ? NULL : Py_NewRef(exc)) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* is_closing() and is_reading() read what transport.go keeps current
 * (bridge.h, goloop_wstate). */
static PyObject *
transport_is_closing(TransportObject *t, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(t->ws.closing);
}

static PyObject *
transport_is_reading(TransportObject *t, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(t->ws.reading);
}

static PyObject *
pause_resume(TransportObject *t, int pause)
{
    int rc = GoloopTransportPauseReading(t->id, pause);
    if (rc < 0)
        return NULL;
    if (rc > 0 && pause)
        t->read_pauses++;
    /* resume_reading() adds asyncio's reader again, in this context */
    if (rc > 0 && !pause && goloop_capture_context(t, &t->read_ctx) < 0)
        return NULL;
    if (rc > 0 && goloop_log_debug(t, pause ? "%r pauses reading" : "%r resumes reading") < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
transport_pause_reading(TransportObject *t, PyObject *Py_UNUSED(ignored))
{
    return pause_resume(t, 1);
}

static PyObject *
transport_resume_reading(TransportObject *t, PyObject *Py_UNUSED(ignored))
{
    return pause_resume(t, 0);
}

static PyObject *
transport_get_write_buffer_size(TransportObject *t, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromLong(GoloopTransportBufferSize(t->id));
}

static PyObject *
transport_get_write_buffer_limits(TransportObject *t, PyObject *Py_UNUSED(ignored))
{
    long long low, high;
    if (GoloopTransportLimits(t->id, &low, &high) < 0)
        return NULL;
    return Py_BuildValue("(LL)", low, high);
}

static PyObject *
transport_set_write_buffer_limits(TransportObject *t, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"high", "low", NULL};
    PyObject *high = NULL, *low = NULL;
    long long h, l;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|OO:set_write_buffer_limits", kwlist,
                                     &high, &low))
        return NULL;
    if (goloop_limit_arg(high, &h) < 0 || goloop_limit_arg(low, &l) < 0)
        return NULL;
    if (GoloopTransportSetLimits(t->id, h, l) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
transport_get_extra_info(TransportObject *t, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"name", "default", NULL};
    PyObject *name, *dflt = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|O:get_extra_info", kwlist, &name, &dflt))
        return NULL;
    if (!t->extra_made) {
        if (t->peername != NULL && PyUnicode_Check(name) &&
            PyUnicode_Compare(name, str_peername) == 0)
            return Py_NewRef(t->peername);
        if (make_extra(t) < 0)
            return NULL;
    }
    if (t->extra == NULL)   /* cleared by the cyclic GC */
        return Py_NewRef(dflt);
    PyObject *v = PyDict_GetItemWithError(t->extra, name);
    if (v == NULL && PyErr_Occurred())
        return NULL;
    return Py_NewRef(v != NULL ? v : dflt);
}

static PyObject *
transport_get_protocol(TransportObject *t, PyObject *Py_UNUSED(ignored))
{
    return Py_NewRef(t->protocol != NULL ? t->protocol : Py_None);
}

/* Reading starts in a call_soon after connection_made, as asyncio adds its
 * reader; not if pause_reading() or close() came first. */
static PyObject *
transport_start(TransportObject *t, PyObject *Py_UNUSED(ignored))
{
    /* asyncio adds its reader here, in this handle's context */
    if (goloop_capture_context(t, &t->read_ctx) < 0)
        return NULL;
    if (GoloopTransportStart(t->id) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* --- making one -------------------------------------------------------- */

int
goloop_transport_fd(PyObject *loop, PyObject *sock)
{
    if (!PyObject_TypeCheck(loop, &Goloop_LoopType)) {
        PyErr_SetString(PyExc_TypeError, "a goloop loop is required");
        return -1;
    }
    if (goloop_check_forked() < 0)
        return -1;
    if (((LoopObject *)loop)->closed) {
        goloop_set_closed_error();
        return -1;
    }
    PyObject *fdobj = PyObject_CallMethodNoArgs(sock, str_fileno);
    if (fdobj == NULL)
        return -1;
    long fd = PyLong_AsLong(fdobj);
    Py_DECREF(fdobj);
    if (fd == -1 && PyErr_Occurred())
        return -1;
    if (fd < 0 || fd > INT_MAX) {
        PyErr_Format(PyExc_ValueError, "Invalid file descriptor: %ld", fd);
        return -1;
    }
    return (int)fd;
}

TransportObject *
goloop_transport_alloc(PyTypeObject *type, LoopObject *loop, PyObject *protocol, int fd)
{
    /* type's basic size: a DatagramObject's for a datagram transport */
    TransportObject *t = PyObject_GC_New(TransportObject, type);
    if (t == NULL)
        return NULL;
    memset((char *)t + sizeof(PyObject), 0, type->tp_basicsize - sizeof(PyObject));
    t->loop = (LoopObject *)Py_NewRef(loop);
    t->protocol = Py_NewRef(protocol);
    t->fd = fd;
    t->id = -1;
    return t;
}

PyObject *
goloop_transport_registered(TransportObject *t, PyObject *sock)
{
    if (t->id < 0) {
        Py_DECREF(t);   /* its finalizer does nothing: it has no socket */
        return NULL;
    }
    t->sock = Py_NewRef(sock);
    PyObject_GC_Track(t);
    return (PyObject *)t;
}

/* --- slots -------------------------------------------------------------- */

/* asyncio's _SelectorTransport.__repr__:
 * <_SelectorSocketTransport fd=6 read=polling write=<idle, bufsize=0>> */
static PyObject *
transport_repr(TransportObject *t)
{
    PyObject *name = PyType_GetName(Py_TYPE(t));
    if (name == NULL)
        return NULL;
    const char *status = t->sock == NULL ? " closed" : t->ws.closing ? " closing" : "";
    PyObject *r;
    if (t->loop != NULL && !t->loop->closed) {
        int ev = GoloopWatching(t->loop->id, t->fd);
        r = PyUnicode_FromFormat("<%U%s fd=%d read=%s write=<%s, bufsize=%ld>>", name, status,
                                 t->fd, (ev & 1) ? "polling" : "idle",
                                 (ev & 2) ? "polling" : "idle", GoloopTransportBufferSize(t->id));
    }
    else {
        r = PyUnicode_FromFormat("<%U%s fd=%d>", name, status, t->fd);
    }
    Py_DECREF(name);
    return r;
}

/* asyncio's __del__: an unclosed transport warns, takes its fd back from
 * the core and closes its socket (and, from 3.13, a stream leaves its
 * server). */
static void
transport_finalize(TransportObject *t)
{
    if (t->sock == NULL)
        return;
    PyObject *saved = PyErr_Occurred() ? goloop_fetch_exception() : NULL;
    if (PyErr_ResourceWarning((PyObject *)t, 1, "unclosed transport %R", (PyObject *)t) < 0)
        PyErr_WriteUnraisable((PyObject *)t);
    if (t->id >= 0 && !goloop_forked && GoloopTransportDetach(t->id) < 0)
        PyErr_WriteUnraisable((PyObject *)t);
    goloop_close_socket(t);
#if PY_VERSION_HEX >= 0x030D0000
    if (detach_server(t) < 0)
        PyErr_WriteUnraisable((PyObject *)t);
#endif
    if (saved != NULL)
        goloop_restore_exception(saved);
}

int
goloop_transport_traverse(TransportObject *t, visitproc visit, void *arg)
{
    Py_VISIT(t->extra);
    Py_VISIT(t->peername);
    Py_VISIT(t->loop);
    Py_VISIT(t->sock);
    Py_VISIT(t->protocol);
    Py_VISIT(t->server);
    Py_VISIT(t->empty_waiter);
    Py_VISIT(t->context);
    Py_VISIT(t->read_ctx);
    Py_VISIT(t->write_ctx);
    Py_VISIT(t->lost_ctx);
    Py_VISIT(t->dict);
    Py_VISIT(Py_TYPE(t));
    return 0;
}

int
goloop_transport_clear(TransportObject *t)
{
    Py_CLEAR(t->extra);
    Py_CLEAR(t->peername);
    Py_CLEAR(t->loop);
    Py_CLEAR(t->sock);
    Py_CLEAR(t->protocol);
    Py_CLEAR(t->server);
    Py_CLEAR(t->empty_waiter);
    Py_CLEAR(t->context);
    Py_CLEAR(t->read_ctx);
    Py_CLEAR(t->write_ctx);
    Py_CLEAR(t->lost_ctx);
    Py_CLEAR(t->dict);
    return 0;
}

static void
transport_dealloc(TransportObject *t)
{
    PyTypeObject *tp = Py_TYPE(t);
    if (PyObject_CallFinalizerFromDealloc((PyObject *)t) < 0)
        return;   /* resurrected */
    PyObject_GC_UnTrack(t);
    if (t->weakreflist != NULL)
        PyObject_ClearWeakRefs((PyObject *)t);
    if (t->id >= 0 && !goloop_forked)
        GoloopTransportFree(t->id);
    t->id = -1;
    tp->tp_clear((PyObject *)t);
    PyObject_GC_Del(t);
    Py_DECREF(tp);
}

/* --- getters ------------------------------------------------------------ */

static PyObject *
get_extra(TransportObject *t, void *c)
{
    return make_extra(t) < 0 ? NULL : goloop_get_obj(t->extra);
}

static PyObject *get_loop(TransportObject *t, void *c) { return goloop_get_obj((PyObject *)t->loop); }
static PyObject *get_sock(TransportObject *t, void *c) { return goloop_get_obj(t->sock); }
static PyObject *get_sock_fd(TransportObject *t, void *c) { return PyLong_FromLong(t->fd); }
static PyObject *get_protocol(TransportObject *t, void *c) { return goloop_get_obj(t->protocol); }
static PyObject *get_paused(TransportObject *t, void *c) { return PyBool_FromLong(t->protocol_paused); }
static PyObject *get_closing(TransportObject *t, void *c) { return PyBool_FromLong(t->ws.closing); }

/* _high_water (closure NULL) or _low_water */
static PyObject *
get_water(TransportObject *t, void *low_water)
{
    long long low, high;
    if (GoloopTransportLimits(t->id, &low, &high) < 0)
        return NULL;
    return PyLong_FromLongLong(low_water != NULL ? low : high);
}

PyObject *
goloop_get_obj(PyObject *o)
{
    return Py_NewRef(o != NULL ? o : Py_None);
}

/* --- the types ---------------------------------------------------------- */

static PyMethodDef transport_methods[] = {
    {"close", (PyCFunction)transport_close, METH_NOARGS, "Close the transport."},
    {"abort", (PyCFunction)transport_abort, METH_NOARGS, "Close the transport immediately."},
    {"is_closing", (PyCFunction)transport_is_closing, METH_NOARGS,
     "Return True if the transport is closing or closed."},
    {"is_reading", (PyCFunction)transport_is_reading, METH_NOARGS,
     "Return True if the transport is receiving."},
    {"pause_reading", (PyCFunction)transport_pause_reading, METH_NOARGS,
     "Pause the receiving end."},
    {"resume_reading", (PyCFunction)transport_resume_reading, METH_NOARGS,
     "Resume the receiving end."},
    {"get_write_buffer_size", (PyCFunction)transport_get_write_buffer_size, METH_NOARGS,
     "Return the current size of the write buffer."},
    {"get_write_buffer_limits", (PyCFunction)transport_get_write_buffer_limits, METH_NOARGS,
     "Get the high and low watermarks for write flow control."},
    {"set_write_buffer_limits", (PyCFunction)(void (*)(void))transport_set_write_buffer_limits,
     METH_VARARGS | METH_KEYWORDS, "Set the high- and low-water limits for write flow control."},
    {"get_extra_info", (PyCFunction)(void (*)(void))transport_get_extra_info,
     METH_VARARGS | METH_KEYWORDS, "Get optional transport information."},
    {"get_protocol", (PyCFunction)transport_get_protocol, METH_NOARGS,
     "Return the current protocol."},
    {"_force_close", (PyCFunction)transport_force_close, METH_O, NULL},
    {"_start", (PyCFunction)transport_start, METH_NOARGS, NULL},
    {NULL}
};

static PyGetSetDef transport_getset[] = {
    {"_extra", (getter)get_extra, NULL, NULL, NULL},
    {"_loop", (getter)get_loop, NULL, NULL, NULL},
    {"_sock", (getter)get_sock, NULL, NULL, NULL},
    {"_sock_fd", (getter)get_sock_fd, NULL, NULL, NULL},
    {"_protocol", (getter)get_protocol, NULL, NULL, NULL},
    {"_protocol_paused", (getter)get_paused, NULL, NULL, NULL},
    {"_high_water", (getter)get_water, NULL, NULL, NULL},
    {"_low_water", (getter)get_water, NULL, NULL, "low"},
    {"_closing", (getter)get_closing, NULL, NULL, NULL},
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL, NULL},
    {NULL}
};

static PyMemberDef transport_members[] = {
    {"__dictoffset__", T_PYSSIZET, offsetof(TransportObject, dict), READONLY},
    {"__weaklistoffset__", T_PYSSIZET, offsetof(TransportObject, weakreflist), READONLY},
    {NULL}
};

/* own's entries, then shared's, in one table for a type's spec (which
 * keeps a pointer to it: allocated once per type, never freed). Both are
 * PyMethodDef or PyGetSetDef tables, which end at an entry whose name, the
 * first member, is NULL. */
static void *
join_tables(const void *own, const void *shared, size_t size)
{
    size_t n = 0, m = 0;
    while (*(const char *const *)((const char *)own + n * size) != NULL)
        n++;
    while (*(const char *const *)((const char *)shared + m * size) != NULL)
        m++;
    char *table = PyMem_Calloc(n + m + 1, size);   /* zeroed: the end entry */
    if (table == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    memcpy(table, own, n * size);
    memcpy(table + n * size, shared, m * size);
    return table;
}

int
goloop_check_slots_shadowed(PyTypeObject *type)
{
    PyObject *mro = type->tp_mro;
    for (Py_ssize_t i = 1; i < PyTuple_GET_SIZE(mro); i++) {
        PyObject *slots = PyObject_GetAttrString(PyTuple_GET_ITEM(mro, i), "__slots__");
        if (slots == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_AttributeError))
                return -1;
            PyErr_Clear();
            continue;
        }
        PyObject *names = PyUnicode_Check(slots) ? PyTuple_Pack(1, slots) : PySequence_Tuple(slots);
        Py_DECREF(slots);
        if (names == NULL)
            return -1;
        for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(names); j++) {
            PyObject *name = PyTuple_GET_ITEM(names, j);
            PyObject *d = PyObject_GetAttr((PyObject *)type, name);
            int ok = d != NULL && Py_IS_TYPE(d, &PyGetSetDescr_Type);
            Py_XDECREF(d);
            if (!ok) {
                PyErr_Clear();
                PyErr_Format(PyExc_RuntimeError,
                             "goloop: no getset shadows the slot %R of asyncio's transports", name);
                Py_DECREF(names);
                return -1;
            }
        }
        Py_DECREF(names);
    }
    return 0;
}

/* The bases named, classes of asyncio.transports, as a tuple; each must
 * keep its slots' storage within the fields goloop.h puts there. */
static PyObject *
transport_bases(const char *const *names)
{
    PyObject *transports = PyImport_ImportModule("asyncio.transports");
    if (transports == NULL)
        return NULL;
    PyObject *bases = PyList_New(0);
    for (; bases != NULL && *names != NULL; names++) {
        PyObject *base = PyObject_GetAttrString(transports, *names);
        if (base == NULL || PyList_Append(bases, base) < 0)
            Py_CLEAR(bases);
        else if (((PyTypeObject *)base)->tp_basicsize >
                 (Py_ssize_t)offsetof(TransportObject, empty_waiter)) {
            PyErr_Format(PyExc_RuntimeError, "goloop: %s has more slots than goloop reuses",
                         ((PyTypeObject *)base)->tp_name);
            Py_CLEAR(bases);
        }
        Py_XDECREF(base);
    }
    Py_DECREF(transports);
    if (bases == NULL)
        return NULL;
    Py_SETREF(bases, PyList_AsTuple(bases));
    return bases;
}

PyTypeObject *
goloop_transport_type(PyObject *module, PyType_Spec *spec, const char *const *bases)
{
    PyType_Slot slots[16];
    size_t n = 0;
    for (PyType_Slot *s = spec->slots; s->slot != 0; s++) {
        if (n == Py_ARRAY_LENGTH(slots) - 5) {   /* room for the shared ones */
            PyErr_Format(PyExc_RuntimeError, "goloop: %s has too many slots", spec->name);
            return NULL;
        }
        void *p = s->pfunc;
        if (s->slot == Py_tp_methods)
            p = join_tables(p, transport_methods, sizeof(PyMethodDef));
        else if (s->slot == Py_tp_getset)
            p = join_tables(p, transport_getset, sizeof(PyGetSetDef));
        if (p == NULL)
            return NULL;
        slots[n++] = (PyType_Slot){s->slot, p};
    }
    slots[n++] = (PyType_Slot){Py_tp_dealloc, transport_dealloc};
    slots[n++] = (PyType_Slot){Py_tp_finalize, transport_finalize};
    slots[n++] = (PyType_Slot){Py_tp_repr, transport_repr};
    slots[n++] = (PyType_Slot){Py_tp_members, transport_members};
    slots[n] = (PyType_Slot){0, NULL};
    PyType_Spec full = *spec;
    full.slots = slots;
    PyObject *b = transport_bases(bases);
    if (b == NULL)
        return NULL;
    PyTypeObject *type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &full, b);
    Py_DECREF(b);
    if (type == NULL)
        return NULL;
    if (goloop_check_slots_shadowed(type) < 0 ||
        PyModule_AddObjectRef(module, strrchr(spec->name, '.') + 1, (PyObject *)type) < 0) {
        Py_DECREF(type);
        return NULL;
    }
    return type;
}

/* _set_transport_helpers(BufferedProtocol, fatal_error, callback_failed,
 * lost_failed, logger, TransportSocket), once, from goloop/_loop.py. */
static PyObject *
set_transport_helpers(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject **slots[] = {&th.buffered_protocol, &th.fatal_error, &th.callback_failed,
                          &th.lost_failed, &th.logger, &th.transport_socket};
    return goloop_set_helpers("_set_transport_helpers", slots, Py_ARRAY_LENGTH(slots), args,
                              nargs);
}

static PyMethodDef transport_functions[] = {
    {"_set_transport_helpers", (PyCFunction)(void (*)(void))set_transport_helpers,
     METH_FASTCALL, NULL},
    {NULL}
};

int
goloop_init_transport(PyObject *module)
{
    if (goloop_intern(&str_connection_lost, "connection_lost") < 0 ||
        goloop_intern(&str_pause_writing, "pause_writing") < 0 ||
        goloop_intern(&str_resume_writing, "resume_writing") < 0 ||
        goloop_intern(&str_close, "close") < 0 || goloop_intern(&str_detach, "_detach") < 0 ||
        goloop_intern(&str_set_result, "set_result") < 0 ||
        goloop_intern(&str_set_exception, "set_exception") < 0 ||
        goloop_intern(&str_done, "done") < 0 || goloop_intern(&str_fileno, "fileno") < 0 ||
        goloop_intern(&str_getsockname, "getsockname") < 0 ||
        goloop_intern(&str_socket, "socket") < 0 ||
        goloop_intern(&str_sockname, "sockname") < 0 ||
        goloop_intern(&str_peername, "peername") < 0)
        return -1;
    return PyModule_AddFunctions(module, transport_functions);
}
