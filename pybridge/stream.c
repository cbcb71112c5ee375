/* goloop._SocketTransport: asyncio's _SelectorSocketTransport for TCP and
 * Unix stream sockets, with the socket I/O, write buffering and flow control
 * in the Go core (core.Stream, through stream.go). The methods here check
 * arguments as asyncio does and call one Go export each; the helpers at the
 * top are what the Go sink calls to reach the protocol. Layout and
 * ownership: goloop.h, TransportObject. */
#include <errno.h>
#include <limits.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include "goloop.h"
#include "structmember.h"
#include "_cgo_export.h"

static PyTypeObject *transport_type;

/* Set by goloop/_loop.py (_set_transport_helpers): the cold paths. */
static struct {
    PyObject *buffered_protocol;   /* asyncio.BufferedProtocol */
    PyObject *fatal_error;         /* (transport, exc, message): _fatal_error's report */
    PyObject *callback_failed;     /* (transport, exc, message): pause/resume_writing */
    PyObject *lost_failed;         /* (loop, transport, arg, exc): connection_lost raised */
    PyObject *logger;              /* asyncio's logger */
    PyObject *transport_socket;    /* asyncio.trsock.TransportSocket */
} th;

static PyObject *str_data_received, *str_eof_received, *str_get_buffer, *str_buffer_updated,
    *str_connection_lost, *str_pause_writing, *str_resume_writing, *str_close, *str_detach,
    *str_set_result, *str_set_exception, *str_done, *str_create_future, *str_fileno,
    *str_debug, *str_warning, *str_getsockname, *str_getpeername, *str_socket, *str_sockname,
    *str_peername;

/* asyncio's wording, which changed over the versions this is built for. */
#if PY_VERSION_HEX >= 0x030E0000
#define WRITE_TYPE_MESSAGE "data argument must be a bytes, bytearray, or memoryview object, not %R"
#else
#define WRITE_TYPE_MESSAGE "data argument must be a bytes-like object, not %R"
#endif

#define T(o) ((TransportObject *)(o))

static int
stop_exception(void)
{
    /* What asyncio's transports re-raise instead of handling. */
    return PyErr_ExceptionMatches(PyExc_SystemExit) ||
           PyErr_ExceptionMatches(PyExc_KeyboardInterrupt);
}

static int
debug_on(TransportObject *t)
{
    return t->loop != NULL && t->loop->debug;
}

static void
log_debug(TransportObject *t, const char *fmt)
{
    PyObject *r = PyObject_CallMethod(th.logger, "debug", "sO", fmt, (PyObject *)t);
    if (r == NULL)
        PyErr_WriteUnraisable((PyObject *)t);
    Py_XDECREF(r);
}

/* A protocol call raised (exception set): asyncio's except branches. With
 * KeyboardInterrupt or SystemExit returns -1, the exception still set. Else
 * the exception is reported as _fatal_error does and the stream is
 * force-closed with it (the Go side then finds it lost); returns 0. */
static int
fatal(TransportObject *t, const char *message)
{
    if (stop_exception())
        return -1;
    PyObject *exc = goloop_fetch_exception();
    PyObject *r = PyObject_CallFunction(th.fatal_error, "OOs", (PyObject *)t, exc, message);
    if (r == NULL) {
        if (stop_exception()) {
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
    return GoloopStreamForceClose(t->id, exc) < 0 ? -1 : 0;   /* steals exc */
}

#define READ_CTX(t) ((t)->context ? (t)->context : (t)->read_ctx)
#define WRITE_CTX(t) ((t)->context ? (t)->context : (t)->write_ctx ? (t)->write_ctx : (t)->read_ctx)
#define LOST_CTX(t) ((t)->context ? (t)->context : (t)->lost_ctx ? (t)->lost_ctx : \
                     (t)->read_ctx ? (t)->read_ctx : (t)->write_ctx)

/* --- called by the Go sink (bridge.h) --------------------------------- */

static int
stream_data(TransportObject *t, const char *buf, long n)
{
    PyObject *data = PyBytes_FromStringAndSize(buf, n);
    if (data == NULL)
        return fatal(t, "Fatal read error on socket transport");
    PyObject *args[2] = {Py_NewRef(t->protocol), data};
    PyObject *r = PyObject_VectorcallMethod(str_data_received, args,
                                            2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    Py_DECREF(args[0]);
    Py_DECREF(data);
    if (r == NULL)
        return fatal(t, "Fatal error: protocol.data_received() call failed.");
    Py_DECREF(r);
    return 0;
}

int
goloop_stream_data(PyObject *o, const char *buf, long n)
{
    TransportObject *t = T(o);
    if (t->protocol == NULL)
        return 0;
    goloop_scope s;
    if (goloop_scope_enter(t, &s, READ_CTX(t)) < 0)
        return fatal(t, "Fatal read error on socket transport");
    return goloop_scope_leave(t, &s, stream_data(t, buf, n), "_read_ready", NULL);
}

static int
stream_eof(TransportObject *t)
{
    PyObject *proto = Py_NewRef(t->protocol);
    PyObject *r = PyObject_CallMethodNoArgs(proto, str_eof_received);
    Py_DECREF(proto);
    int keep = r == NULL ? -1 : PyObject_IsTrue(r);
    Py_XDECREF(r);
    if (keep < 0)
        /* failed: the stream is lost now, so "keep open" does nothing */
        return fatal(t, "Fatal error: protocol.eof_received() call failed.") < 0 ? -1 : 1;
    return keep;
}

int
goloop_stream_eof(PyObject *o)
{
    TransportObject *t = T(o);
    if (debug_on(t))
        log_debug(t, "%r received EOF");
    if (t->protocol == NULL)
        return 0;
    goloop_scope s;
    if (goloop_scope_enter(t, &s, READ_CTX(t)) < 0)
        return fatal(t, "Fatal read error on socket transport") < 0 ? -1 : 1;
    return goloop_scope_leave(t, &s, stream_eof(t), "_read_ready", NULL);
}

static goloop_getbuf
stream_get_buffer(TransportObject *t)
{
    goloop_getbuf res = {NULL, 0, 0};
    LoopObject *loop = t->loop;   /* not NULL: checked by the caller */
    PyObject *args[2] = {Py_NewRef(t->protocol), NULL};
    args[1] = PyLong_FromLong(-1);
    PyObject *buf = args[1] == NULL ? NULL :
        PyObject_VectorcallMethod(str_get_buffer, args, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    Py_DECREF(args[0]);
    Py_XDECREF(args[1]);
    if (buf != NULL) {
        /* asyncio: if not len(buf): raise RuntimeError(...) */
        Py_ssize_t len = PyObject_Size(buf);
        if (len == 0)
            PyErr_SetString(PyExc_RuntimeError, "get_buffer() returned an empty buffer");
        if (len <= 0)
            Py_CLEAR(buf);
    }
    if (buf == NULL) {
        res.rc = fatal(t, "Fatal error: protocol.get_buffer() call failed.");
        return res;
    }
    /* What sock.recv_into(buf) accepts; it raises for the rest, which
     * asyncio reports as a read error. */
    Py_buffer *view = &loop->read_view;
    int rc = PyObject_GetBuffer(buf, view, PyBUF_WRITABLE);
    if (rc < 0 && (PyErr_ExceptionMatches(PyExc_BufferError) ||
                   PyErr_ExceptionMatches(PyExc_TypeError))) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError,
                     "recv_into() argument 1 must be read-write bytes-like object, not %.100s",
                     Py_TYPE(buf)->tp_name);
    }
    Py_DECREF(buf);
    if (rc < 0) {
        res.rc = fatal(t, "Fatal read error on socket transport");
        return res;
    }
    if (view->len == 0) {
        PyBuffer_Release(view);
        PyErr_SetString(PyExc_RuntimeError, "get_buffer() returned an empty buffer");
        res.rc = fatal(t, "Fatal error: protocol.get_buffer() call failed.");
        return res;
    }
    /* Until goloop_stream_buffer_updated, which comes before the loop
     * runs anything else: the read's connection is not lost meanwhile (the
     * core schedules Lost), so t->loop is still this loop then. */
    loop->has_read_view = 1;
    res.buf = view->buf;
    res.len = (long)view->len;
    return res;
}

goloop_getbuf
goloop_stream_get_buffer(PyObject *o)
{
    TransportObject *t = T(o);
    goloop_getbuf res = {NULL, 0, 0};
    if (t->protocol == NULL || t->loop == NULL || t->loop->has_read_view)
        return res;
    goloop_scope s;
    if (goloop_scope_enter(t, &s, READ_CTX(t)) < 0) {
        res.rc = fatal(t, "Fatal error: protocol.get_buffer() call failed.");
        return res;
    }
    res = stream_get_buffer(t);
    res.rc = goloop_scope_leave(t, &s, res.rc, "_read_ready", NULL);
    return res;
}

static int
stream_buffer_updated(TransportObject *t, long n)
{
    PyObject *args[2] = {Py_NewRef(t->protocol), PyLong_FromLong(n)};
    PyObject *r = args[1] == NULL ? NULL :
        PyObject_VectorcallMethod(str_buffer_updated, args, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    Py_DECREF(args[0]);
    Py_XDECREF(args[1]);
    if (r == NULL)
        return fatal(t, "Fatal error: protocol.buffer_updated() call failed.");
    Py_DECREF(r);
    return 0;
}

int
goloop_stream_buffer_updated(PyObject *o, long n)
{
    TransportObject *t = T(o);
    LoopObject *loop = t->loop;
    if (loop != NULL && loop->has_read_view) {
        loop->has_read_view = 0;
        PyBuffer_Release(&loop->read_view);
    }
    if (n == 0 || t->protocol == NULL)
        return 0;
    goloop_scope s;
    if (goloop_scope_enter(t, &s, READ_CTX(t)) < 0)
        return fatal(t, "Fatal error: protocol.buffer_updated() call failed.");
    return goloop_scope_leave(t, &s, stream_buffer_updated(t, n), "_read_ready", NULL);
}

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
    if (stop_exception())
        return -1;
    PyObject *exc = goloop_fetch_exception();
    r = PyObject_CallFunction(th.callback_failed, "OOs", (PyObject *)t, exc, message);
    Py_DECREF(exc);
    if (r == NULL) {
        if (stop_exception())
            return -1;
        PyErr_WriteUnraisable((PyObject *)t);
    }
    Py_XDECREF(r);
    return 0;
}

int
goloop_stream_pause_writing(PyObject *o)
{
    T(o)->protocol_paused = 1;
    return flow_call(T(o), str_pause_writing, "protocol.pause_writing() failed");
}

int
goloop_stream_resume_writing(PyObject *o)
{
    TransportObject *t = T(o);
    t->protocol_paused = 0;
    goloop_scope s;
    if (goloop_scope_enter(t, &s, WRITE_CTX(t)) < 0)
        return fatal(t, "Fatal write error on socket transport");
    int rc = flow_call(t, str_resume_writing, "protocol.resume_writing() failed");
    return goloop_scope_leave(t, &s, rc, "_write_ready", NULL);
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

void
goloop_stream_drained(PyObject *o)
{
    TransportObject *t = T(o);
    goloop_scope s;
    if (goloop_scope_enter(t, &s, WRITE_CTX(t)) < 0) {
        PyErr_WriteUnraisable(o);
        return;
    }
    waiter_set(t, str_set_result, Py_None);
    if (goloop_scope_leave(t, &s, 0, "_write_ready", NULL) < 0)
        PyErr_WriteUnraisable(o);
}

/* sock.getsockname() or sock.getpeername(): a new reference, None if it
 * raises OSError (asyncio's except clauses); NULL with another exception. */
static PyObject *
sock_address(PyObject *sock, PyObject *method)
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

/* Makes asyncio's _extra dict. asyncio's _SelectorTransport.__init__ fills
 * it at once: 'socket' (a TransportSocket), 'sockname' and 'peername', in
 * the caller's dict or a new one. Here only the peer's address is taken at
 * once (getpeername() fails once the peer has reset the connection, and
 * connection_lost() often logs the peer), and kept on its own; the dict is
 * made when anything else is asked for, or before the socket closes, so
 * that it is there afterwards too. That dict, the TransportSocket and the
 * address were 400 bytes of every connection, which few ever ask for.
 * Returns 0, or -1 with an exception set. */
static int
make_extra(TransportObject *t)
{
    if (t->extra_made)
        return 0;
    if (t->extra == NULL && (t->extra = PyDict_New()) == NULL)
        return -1;
    if (t->sock != NULL &&
        (set_item(t->extra, str_socket, PyObject_CallOneArg(th.transport_socket, t->sock)) < 0 ||
         set_item(t->extra, str_sockname, sock_address(t->sock, str_getsockname)) < 0))
        return -1;
    if (t->peername != NULL) {
        if (PyDict_SetItem(t->extra, str_peername, t->peername) < 0)
            return -1;
        Py_CLEAR(t->peername);
    }
    t->extra_made = 1;
    return 0;
}

static void
close_socket(TransportObject *t)
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

/* asyncio's _call_connection_lost: protocol.connection_lost(exc), and
 * whatever it does, close the socket and drop the protocol, the loop and
 * the server. A failing connection_lost is reported as the failing
 * callback it is in asyncio; KeyboardInterrupt and SystemExit stop the
 * loop (-1). */
int
goloop_stream_lost(PyObject *o, PyObject *exc)
{
    TransportObject *t = T(o);
    PyObject *arg = exc != NULL ? exc : Py_None;
    PyObject *failure = NULL;
    Py_INCREF(t);   /* connection_lost may drop the last other reference */
    goloop_scope s;
    int entered = goloop_scope_enter(t, &s, LOST_CTX(t)) == 0;
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
    close_socket(t);
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
                if (stop_exception())
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

/* The outcome of a Go write (stream.go, writeResult). */
static PyObject *
write_done(int rc, const char *method)
{
    switch (rc) {
    case 0:
        Py_RETURN_NONE;
    case 1: {
        PyObject *r = PyObject_CallMethod(th.logger, "warning", "s",
                                          "socket.send() raised exception.");
        if (r == NULL)
            return NULL;
        Py_DECREF(r);
        Py_RETURN_NONE;
    }
    case -2:
        return PyErr_Format(PyExc_RuntimeError, "Cannot call %s() after write_eof()", method);
    }
    return NULL;
}

/* asyncio checks write_eof first, then a running sendfile. */
static PyObject *
sendfile_running(TransportObject *t, const char *method)
{
    int rc = GoloopStreamWrite(t->id, NULL, 0);
    if (rc != 0)
        return write_done(rc, method);
    return PyErr_Format(PyExc_RuntimeError, "unable to %s; sendfile is in progress", method);
}

/* The write fast path. When the stream is idle (bridge.h, goloop_wstate:
 * open, no write_eof(), nothing buffered) the core's Write would make one
 * sendmsg and return; making it here spares the call into Go. Whatever the
 * socket does not take, and a failure, go to Go as if Go had sent it: the
 * rest is buffered there, the errno fails the stream. Returns the bytes
 * sent, or -1 with an exception set. */
static Py_ssize_t
send_now(TransportObject *t, struct iovec *iov, int n)
{
    struct msghdr msg = {0};
    msg.msg_iov = iov;
    msg.msg_iovlen = n;
    ssize_t sent = sendmsg(t->fd, &msg, MSG_NOSIGNAL);
    if (sent >= 0)
        return sent;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return 0;
    if (GoloopStreamSendFailed(t->id, errno) < 0)
        return -1;
    return -2;   /* the stream failed: nothing more to do */
}

/* What is left of a write goes to the core's buffer: if the buffer was
 * empty, this is where asyncio's write() adds its writer, in the caller's
 * context. */
static int
queueing(TransportObject *t, int was_idle)
{
    if (was_idle || t->write_ctx == NULL)
        return goloop_capture_context(t, &t->write_ctx);
    return 0;
}

static PyObject *
write_buffer(TransportObject *t, const char *buf, Py_ssize_t len)
{
    int was_idle = t->ws.idle;
    if (was_idle && len > 0) {
        struct iovec iov = {(void *)buf, (size_t)len};
        Py_ssize_t sent = send_now(t, &iov, 1);
        if (sent == len || sent == -2)
            Py_RETURN_NONE;
        if (sent < 0)
            return NULL;
        buf += sent;
        len -= sent;
    }
    if (len > 0 && queueing(t, was_idle) < 0)
        return NULL;
    return write_done(GoloopStreamWrite(t->id, (char *)buf, (long)len), "write");
}

static PyObject *
transport_write(TransportObject *t, PyObject *data)
{
    if (!PyBytes_Check(data) && !PyByteArray_Check(data) && !PyMemoryView_Check(data)) {
        PyObject *name = PyType_GetName(Py_TYPE(data));
        if (name != NULL) {
            PyErr_Format(PyExc_TypeError, WRITE_TYPE_MESSAGE, name);
            Py_DECREF(name);
        }
        return NULL;
    }
    if (t->empty_waiter != NULL)
        return sendfile_running(t, "write");
    if (PyBytes_CheckExact(data))
        return write_buffer(t, PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data));
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    PyObject *r = write_buffer(t, view.buf, view.len);
    PyBuffer_Release(&view);
    return r;
}

#if PY_VERSION_HEX < 0x030C0000
/* 3.11: Transport.writelines, which joins and writes. */
static PyObject *
transport_writelines(TransportObject *t, PyObject *list)
{
    PyObject *empty = PyBytes_FromStringAndSize(NULL, 0);
    if (empty == NULL)
        return NULL;
    PyObject *data = PyObject_CallMethod(empty, "join", "O", list);
    Py_DECREF(empty);
    if (data == NULL)
        return NULL;
    PyObject *r = transport_write(t, data);
    Py_DECREF(data);
    return r;
}
#else
/* 3.12+: _SelectorSocketTransport.writelines, one sendmsg for the lot. */
#define LINES_ON_STACK 16

static PyObject *
transport_writelines(TransportObject *t, PyObject *list)
{
    if (t->empty_waiter != NULL)
        return sendfile_running(t, "writelines");
    int empty = PyObject_Not(list);
    if (empty < 0)
        return NULL;
    if (empty)   /* after the write_eof check, which an empty call makes */
        return write_done(GoloopStreamWriteLines(t->id, NULL, 0), "writelines");
    PyObject *items = PySequence_List(list);
    if (items == NULL)
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(items);
    Py_buffer stack_views[LINES_ON_STACK];
    goloop_buf stack_bufs[LINES_ON_STACK];
    Py_buffer *views = stack_views;
    goloop_buf *bufs = stack_bufs;
    if (n > LINES_ON_STACK) {
        views = PyMem_Malloc(n * sizeof(*views));
        bufs = PyMem_Malloc(n * sizeof(*bufs));
        if (views == NULL || bufs == NULL) {
            PyMem_Free(views);
            PyMem_Free(bufs);
            Py_DECREF(items);
            return PyErr_NoMemory();
        }
    }
    PyObject *result = NULL;
    Py_ssize_t got = 0;
    for (; got < n; got++) {
        PyObject *item = PyList_GET_ITEM(items, got);
        if (PyObject_GetBuffer(item, &views[got], PyBUF_SIMPLE) < 0) {
            if (PyErr_ExceptionMatches(PyExc_TypeError)) {
                /* memoryview(data)'s own message */
                PyErr_Clear();
                PyObject *mv = PyMemoryView_FromObject(item);
                if (mv != NULL) {
                    Py_DECREF(mv);
                    PyErr_Format(PyExc_TypeError,
                                 "memoryview: a bytes-like object is required, not '%.200s'",
                                 Py_TYPE(item)->tp_name);
                }
            }
            goto done;
        }
        bufs[got].buf = views[got].buf;
        bufs[got].len = (long)views[got].len;
    }
    goloop_buf *rest = bufs;
    Py_ssize_t nrest = n;
    int was_idle = t->ws.idle;
    if (was_idle && n <= LINES_ON_STACK) {
        /* the fast path (see write_buffer), for what fits one sendmsg */
        struct iovec iov[LINES_ON_STACK];
        Py_ssize_t total = 0;
        for (Py_ssize_t i = 0; i < n; i++) {
            iov[i].iov_base = bufs[i].buf;
            iov[i].iov_len = (size_t)bufs[i].len;
            total += bufs[i].len;
        }
        Py_ssize_t sent = total > 0 ? send_now(t, iov, (int)n) : 0;
        if (sent == -1)
            goto done;
        if (sent == total || sent == -2) {
            result = Py_NewRef(Py_None);
            goto done;
        }
        while (nrest > 0 && sent >= rest->len) {
            sent -= rest->len;
            rest++;
            nrest--;
        }
        if (nrest > 0) {
            rest->buf += sent;
            rest->len -= (long)sent;
        }
    }
    if (nrest > 0 && queueing(t, was_idle) < 0)
        goto done;
    result = write_done(GoloopStreamWriteLines(t->id, rest, (long)nrest), "writelines");
done:
    for (Py_ssize_t i = 0; i < got; i++)
        PyBuffer_Release(&views[i]);
    if (views != stack_views) {
        PyMem_Free(views);
        PyMem_Free(bufs);
    }
    Py_DECREF(items);
    return result;
}
#endif

static PyObject *
transport_write_eof(TransportObject *t, PyObject *Py_UNUSED(ignored))
{
    if (GoloopStreamWriteEOF(t->id) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
transport_can_write_eof(TransportObject *t, PyObject *Py_UNUSED(ignored))
{
    Py_RETURN_TRUE;
}

/* close(), abort(), _force_close(): asyncio schedules connection_lost with
 * call_soon from the first of them, in the caller's context; close() with
 * data still buffered leaves it to the writer, in the writer's. */
static int
closing(TransportObject *t, int now)
{
    if (t->context != NULL || t->lost_ctx != NULL || t->ws.closing)
        return 0;
    if (!now && t->write_ctx != NULL && GoloopStreamBufferSize(t->id) > 0) {
        t->lost_ctx = Py_NewRef(t->write_ctx);
        return 0;
    }
    return goloop_capture_context(t, &t->lost_ctx);
}

static PyObject *
transport_close(TransportObject *t, PyObject *Py_UNUSED(ignored))
{
    if (closing(t, 0) < 0)
        return NULL;
    if (GoloopStreamClose(t->id) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
transport_abort(TransportObject *t, PyObject *Py_UNUSED(ignored))
{
    if (closing(t, 1) < 0)
        return NULL;
    if (GoloopStreamForceClose(t->id, NULL) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* _force_close(exc): sslproto calls it; connection_lost gets exc. */
static PyObject *
transport_force_close(TransportObject *t, PyObject *exc)
{
    if (closing(t, 1) < 0)
        return NULL;
    if (GoloopStreamForceClose(t->id, exc == Py_None ? NULL : Py_NewRef(exc)) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* 1|2: closing, reading (kept current by stream.go, bridge.h) */
static int
state(TransportObject *t)
{
    return (t->ws.closing ? 1 : 0) | (t->ws.reading ? 2 : 0);
}

static PyObject *
transport_is_closing(TransportObject *t, PyObject *Py_UNUSED(ignored))
{
    int s = state(t);
    return s < 0 ? NULL : PyBool_FromLong(s & 1);
}

static PyObject *
transport_is_reading(TransportObject *t, PyObject *Py_UNUSED(ignored))
{
    int s = state(t);
    return s < 0 ? NULL : PyBool_FromLong(s & 2);
}

static PyObject *
pause_resume(TransportObject *t, int pause)
{
    int rc = GoloopStreamPauseReading(t->id, pause);
    if (rc < 0)
        return NULL;
    /* resume_reading() adds asyncio's reader again, in this context */
    if (rc > 0 && !pause && goloop_capture_context(t, &t->read_ctx) < 0)
        return NULL;
    if (rc > 0 && debug_on(t))
        log_debug(t, pause ? "%r pauses reading" : "%r resumes reading");
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
    return PyLong_FromLong(GoloopStreamBufferSize(t->id));
}

static int
limits(TransportObject *t, long long *low, long long *high)
{
    return GoloopStreamLimits(t->id, low, high);
}

static PyObject *
transport_get_write_buffer_limits(TransportObject *t, PyObject *Py_UNUSED(ignored))
{
    long long low, high;
    if (limits(t, &low, &high) < 0)
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
    if (GoloopStreamSetLimits(t->id, h, l) < 0)
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

static int
is_buffered(PyObject *protocol)
{
    return PyObject_IsInstance(protocol, th.buffered_protocol);
}

/* set_protocol: reads take the new protocol's path from the next one on,
 * as _SelectorSocketTransport.set_protocol picks _read_ready_cb. */
static PyObject *
transport_set_protocol(TransportObject *t, PyObject *protocol)
{
    int buffered = is_buffered(protocol);
    if (buffered < 0)
        return NULL;
    if (GoloopStreamSetProtocol(t->id, buffered) < 0)
        return NULL;
    Py_XSETREF(t->protocol, Py_NewRef(protocol));
    t->buffered = (char)buffered;
    Py_RETURN_NONE;
}

/* Reading starts in a call_soon after connection_made, as asyncio adds its
 * reader; not if pause_reading() or close() came first. */
static PyObject *
transport_start(TransportObject *t, PyObject *Py_UNUSED(ignored))
{
    /* asyncio adds its reader here, in this handle's context */
    if (goloop_capture_context(t, &t->read_ctx) < 0)
        return NULL;
    if (GoloopStreamStart(t->id) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* _make_empty_waiter(): a future done once the write buffer is empty (the
 * sendfile path of asyncio's selector loop). */
static PyObject *
transport_make_empty_waiter(TransportObject *t, PyObject *Py_UNUSED(ignored))
{
    if (t->empty_waiter != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Empty waiter is already set");
        return NULL;
    }
    if (t->loop == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Transport is closed");
        return NULL;
    }
    PyObject *fut = PyObject_CallMethodNoArgs((PyObject *)t->loop, str_create_future);
    if (fut == NULL)
        return NULL;
    t->empty_waiter = Py_NewRef(fut);
    int rc = GoloopStreamDrainWait(t->id);
    if (rc == 1) {
        PyObject *r = PyObject_CallMethodOneArg(fut, str_set_result, Py_None);
        if (r == NULL)
            rc = -1;
        Py_XDECREF(r);
    }
    if (rc < 0) {
        Py_CLEAR(t->empty_waiter);
        Py_DECREF(fut);
        return NULL;
    }
    return fut;
}

/* _reset_empty_waiter(): the sendfile is over; the core gets the fd back. */
static PyObject *
transport_reset_empty_waiter(TransportObject *t, PyObject *Py_UNUSED(ignored))
{
    Py_CLEAR(t->empty_waiter);
    if (GoloopStreamReclaimFD(t->id) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* _lend_fd(): unregister the fd from the core while sock_sendfile watches
 * it (goloop's _sendfile_native calls it once the buffer is empty). */
static PyObject *
transport_lend_fd(TransportObject *t, PyObject *Py_UNUSED(ignored))
{
    if (GoloopStreamLendFD(t->id) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* asyncio's _SelectorTransport.__repr__:
 * <_SelectorSocketTransport fd=6 read=polling write=<idle, bufsize=0>> */
static PyObject *
transport_repr(TransportObject *t)
{
    PyObject *name = PyType_GetName(Py_TYPE(t));
    if (name == NULL)
        return NULL;
    int s = state(t);
    if (s < 0) {
        Py_DECREF(name);
        return NULL;
    }
    const char *status = t->sock == NULL ? " closed" : (s & 1) ? " closing" : "";
    PyObject *r;
    if (t->loop != NULL && !t->loop->closed) {
        int ev = GoloopWatching(t->loop->id, t->fd);
        r = PyUnicode_FromFormat("<%U%s fd=%d read=%s write=<%s, bufsize=%ld>>", name, status,
                                 t->fd, (ev & 1) ? "polling" : "idle",
                                 (ev & 2) ? "polling" : "idle", GoloopStreamBufferSize(t->id));
    }
    else {
        r = PyUnicode_FromFormat("<%U%s fd=%d>", name, status, t->fd);
    }
    Py_DECREF(name);
    return r;
}

/* asyncio's __del__: an unclosed transport warns, takes its fd back from
 * the core and closes its socket (and, from 3.13, leaves its server). */
static void
transport_finalize(TransportObject *t)
{
    if (t->sock == NULL)
        return;
    PyObject *saved = PyErr_Occurred() ? goloop_fetch_exception() : NULL;
    if (PyErr_ResourceWarning((PyObject *)t, 1, "unclosed transport %R", (PyObject *)t) < 0)
        PyErr_WriteUnraisable((PyObject *)t);
    if (t->id >= 0 && !goloop_forked && GoloopStreamDetach(t->id) < 0)
        PyErr_WriteUnraisable((PyObject *)t);
    close_socket(t);
#if PY_VERSION_HEX >= 0x030D0000
    if (detach_server(t) < 0)
        PyErr_WriteUnraisable((PyObject *)t);
#endif
    if (saved != NULL)
        goloop_restore_exception(saved);
}

static int
transport_traverse(TransportObject *t, visitproc visit, void *arg)
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

static int
transport_clear(TransportObject *t)
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
        GoloopStreamFree(t->id);
    t->id = -1;
    transport_clear(t);
    PyObject_GC_Del(t);
    Py_DECREF(tp);
}

static PyObject *
get_obj(PyObject *o)
{
    return Py_NewRef(o != NULL ? o : Py_None);
}

static PyObject *
get_extra(TransportObject *t, void *c)
{
    return make_extra(t) < 0 ? NULL : Py_NewRef(t->extra);
}

static PyObject *get_loop(TransportObject *t, void *c) { return get_obj((PyObject *)t->loop); }
static PyObject *get_sock(TransportObject *t, void *c) { return get_obj(t->sock); }
static PyObject *get_sock_fd(TransportObject *t, void *c) { return PyLong_FromLong(t->fd); }
static PyObject *get_protocol(TransportObject *t, void *c) { return get_obj(t->protocol); }
static PyObject *get_server(TransportObject *t, void *c) { return get_obj(t->server); }
static PyObject *get_empty_waiter(TransportObject *t, void *c) { return get_obj(t->empty_waiter); }
static PyObject *get_paused(TransportObject *t, void *c) { return PyBool_FromLong(t->protocol_paused); }

static PyObject *
get_high(TransportObject *t, void *c)
{
    long long low, high;
    return limits(t, &low, &high) < 0 ? NULL : PyLong_FromLongLong(high);
}

static PyObject *
get_low(TransportObject *t, void *c)
{
    long long low, high;
    return limits(t, &low, &high) < 0 ? NULL : PyLong_FromLongLong(low);
}

static PyObject *
get_closing(TransportObject *t, void *c)
{
    int s = state(t);
    return s < 0 ? NULL : PyBool_FromLong(s & 1);
}

/* asyncio's _paused (pause_reading() called, resume_reading() not yet), as
 * code written against the selector transport reads it; once closing it is
 * False here, where asyncio keeps the last value. */
static PyObject *
get_paused_reading(TransportObject *t, void *c)
{
    return PyBool_FromLong(state(t) == 0);
}

static PyMethodDef transport_methods[] = {
    {"write", (PyCFunction)transport_write, METH_O,
     "Write some data bytes to the transport."},
    {"writelines", (PyCFunction)transport_writelines, METH_O,
     "Write a list (or any iterable) of data bytes to the transport."},
    {"write_eof", (PyCFunction)transport_write_eof, METH_NOARGS,
     "Close the write end after flushing buffered data."},
    {"can_write_eof", (PyCFunction)transport_can_write_eof, METH_NOARGS,
     "Return True if this transport supports write_eof(), False if not."},
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
    {"set_protocol", (PyCFunction)transport_set_protocol, METH_O, "Set a new protocol."},
    {"_force_close", (PyCFunction)transport_force_close, METH_O, NULL},
    {"_start", (PyCFunction)transport_start, METH_NOARGS, NULL},
    {"_make_empty_waiter", (PyCFunction)transport_make_empty_waiter, METH_NOARGS, NULL},
    {"_reset_empty_waiter", (PyCFunction)transport_reset_empty_waiter, METH_NOARGS, NULL},
    {"_lend_fd", (PyCFunction)transport_lend_fd, METH_NOARGS, NULL},
    {NULL}
};

static PyGetSetDef transport_getset[] = {
    {"_extra", (getter)get_extra, NULL, NULL, NULL},
    {"_loop", (getter)get_loop, NULL, NULL, NULL},
    {"_sock", (getter)get_sock, NULL, NULL, NULL},
    {"_sock_fd", (getter)get_sock_fd, NULL, NULL, NULL},
    {"_protocol", (getter)get_protocol, NULL, NULL, NULL},
    {"_server", (getter)get_server, NULL, NULL, NULL},
    {"_empty_waiter", (getter)get_empty_waiter, NULL, NULL, NULL},
    {"_protocol_paused", (getter)get_paused, NULL, NULL, NULL},
    {"_high_water", (getter)get_high, NULL, NULL, NULL},
    {"_low_water", (getter)get_low, NULL, NULL, NULL},
    {"_closing", (getter)get_closing, NULL, NULL, NULL},
    {"_paused", (getter)get_paused_reading, NULL, NULL, NULL},
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL, NULL},
    {NULL}
};

static PyMemberDef transport_members[] = {
    {"__dictoffset__", T_PYSSIZET, offsetof(TransportObject, dict), READONLY},
    {"__weaklistoffset__", T_PYSSIZET, offsetof(TransportObject, weakreflist), READONLY},
    {NULL}
};

static PyType_Slot transport_slots[] = {
    {Py_tp_doc, "A TCP or Unix stream socket transport served by goloop's Go core."},
    {Py_tp_dealloc, transport_dealloc},
    {Py_tp_finalize, transport_finalize},
    {Py_tp_traverse, transport_traverse},
    {Py_tp_clear, transport_clear},
    {Py_tp_repr, transport_repr},
    {Py_tp_methods, transport_methods},
    {Py_tp_getset, transport_getset},
    {Py_tp_members, transport_members},
    {0, NULL},
};

static PyType_Spec transport_spec = {
    .name = "goloop._SocketTransport",
    .basicsize = sizeof(TransportObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = transport_slots,
};

/* A transport for sock (whose descriptor is fd) on loop, registered with the
 * loop's core but not read until _start: _new_socket_transport's work, also
 * done for each connection a server accepts (listener.c). extra is NULL or
 * a dict for make_extra to add to; peername, the peer's address (NULL if
 * extra has it), is stolen. server is NULL or None for none; context is the connection's own
 * contextvars.Context (3.15), or NULL or None. On failure the socket is
 * left as it was, open, for the caller to close. */
PyObject *
goloop_transport_new(LoopObject *loop, PyObject *sock, PyObject *protocol, PyObject *extra,
                     PyObject *peername, PyObject *server, PyObject *context, int fd)
{
    int buffered = is_buffered(protocol);
    if (buffered < 0) {
        Py_XDECREF(peername);
        return NULL;
    }
    TransportObject *t = PyObject_GC_New(TransportObject, transport_type);
    if (t == NULL) {
        Py_XDECREF(peername);
        return NULL;
    }
    t->extra = extra != NULL && extra != Py_None ? Py_NewRef(extra) : NULL;
    t->peername = peername;
    t->loop = (LoopObject *)Py_NewRef(loop);
    t->sock = NULL;   /* set once registered: a failure leaves the socket alone */
    t->protocol = Py_NewRef(protocol);
    t->server = server != NULL && server != Py_None ? Py_NewRef(server) : NULL;
    t->empty_waiter = NULL;
    t->context = context != NULL && context != Py_None ? Py_NewRef(context) : NULL;
    t->read_ctx = t->write_ctx = t->lost_ctx = NULL;
    t->dict = NULL;
    t->weakreflist = NULL;
    t->fd = fd;
    t->buffered = (char)buffered;
    t->protocol_paused = 0;
    t->extra_made = 0;
    t->ws.idle = t->ws.closing = t->ws.reading = 0;
    t->id = GoloopStreamNew(loop->id, fd, (PyObject *)t, buffered, &t->ws);
    if (t->id < 0) {
        Py_CLEAR(t->server);   /* not attached */
        Py_DECREF(t);
        return NULL;
    }
    t->sock = Py_NewRef(sock);
    PyObject_GC_Track(t);
    return (PyObject *)t;
}

/* A transport whose set-up failed after goloop_transport_new (its server
 * refused it): as asyncio's half-made transport, it is never started and
 * its protocol hears nothing; the core lets go of the fd, and the socket
 * is closed. The server is dropped without _detach (it never attached). */
void
goloop_transport_abandon(PyObject *o)
{
    TransportObject *t = T(o);
    if (t->id >= 0 && GoloopStreamDetach(t->id) < 0)
        PyErr_WriteUnraisable(o);
    close_socket(t);
    Py_CLEAR(t->server);
}

/* _new_socket_transport(loop, sock, protocol, extra, server, context):
 * registers sock's fd with the loop's core (not read until _start). extra
 * is None or the dict asyncio's transport would take (make_extra adds to
 * it); a dict that holds only 'peername', as asyncio's accept makes, is not
 * kept: the address is. context is the connection's own contextvars.Context
 * (3.15) or None. On failure the socket is left as it was, open, for the
 * caller to close. */
static PyObject *
new_socket_transport(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "_new_socket_transport() takes 6 arguments");
        return NULL;
    }
    PyObject *loop = args[0], *sock = args[1], *protocol = args[2], *extra = args[3],
             *server = args[4], *context = args[5];
    if (context != Py_None && !PyContext_CheckExact(context)) {
        PyErr_SetString(PyExc_TypeError, "context must be a contextvars.Context or None");
        return NULL;
    }
    if (!PyObject_TypeCheck(loop, &Goloop_LoopType)) {
        PyErr_SetString(PyExc_TypeError, "a goloop loop is required");
        return NULL;
    }
    if (extra != Py_None && !PyDict_Check(extra)) {
        PyErr_SetString(PyExc_TypeError, "extra must be a dict or None");
        return NULL;
    }
    if (goloop_check_forked() < 0)
        return NULL;
    if (((LoopObject *)loop)->closed) {
        goloop_set_closed_error();
        return NULL;
    }
    PyObject *fdobj = PyObject_CallMethodNoArgs(sock, str_fileno);
    if (fdobj == NULL)
        return NULL;
    long fd = PyLong_AsLong(fdobj);
    Py_DECREF(fdobj);
    if (fd == -1 && PyErr_Occurred())
        return NULL;
    if (fd < 0 || fd > INT_MAX) {
        PyErr_Format(PyExc_ValueError, "Invalid file descriptor: %ld", fd);
        return NULL;
    }
    PyObject *peername = NULL;   /* kept apart from extra */
    int given = 0;
    if (extra != Py_None) {
        PyObject *p = PyDict_GetItemWithError(extra, str_peername);   /* borrowed */
        if (p == NULL && PyErr_Occurred())
            return NULL;
        given = p != NULL;
        if (given && PyDict_GET_SIZE(extra) == 1) {
            peername = Py_NewRef(p);
            extra = Py_None;
        }
    }
    if (!given && (peername = sock_address(sock, str_getpeername)) == NULL)
        return NULL;
    return goloop_transport_new((LoopObject *)loop, sock, protocol, extra, peername, server,
                                context, (int)fd);
}

/* _set_transport_helpers(BufferedProtocol, fatal_error, callback_failed,
 * lost_failed, logger, TransportSocket), once, from goloop/_loop.py. */
static PyObject *
set_transport_helpers(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "_set_transport_helpers() takes 6 arguments");
        return NULL;
    }
    Py_XSETREF(th.buffered_protocol, Py_NewRef(args[0]));
    Py_XSETREF(th.fatal_error, Py_NewRef(args[1]));
    Py_XSETREF(th.callback_failed, Py_NewRef(args[2]));
    Py_XSETREF(th.lost_failed, Py_NewRef(args[3]));
    Py_XSETREF(th.logger, Py_NewRef(args[4]));
    Py_XSETREF(th.transport_socket, Py_NewRef(args[5]));
    Py_RETURN_NONE;
}

static PyMethodDef stream_functions[] = {
    {"_new_socket_transport", (PyCFunction)(void (*)(void))new_socket_transport, METH_FASTCALL,
     NULL},
    {"_set_transport_helpers", (PyCFunction)(void (*)(void))set_transport_helpers,
     METH_FASTCALL, NULL},
    {NULL}
};

static int
intern(PyObject **s, const char *v)
{
    *s = PyUnicode_InternFromString(v);
    return *s == NULL ? -1 : 0;
}

/* Every __slots__ name of the bases must find one of the type's getsets
 * first: their storage holds the transport's own fields (goloop.h). */
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

int
goloop_init_transport_type(PyObject *module)
{
    if (intern(&str_data_received, "data_received") < 0 ||
        intern(&str_eof_received, "eof_received") < 0 ||
        intern(&str_get_buffer, "get_buffer") < 0 ||
        intern(&str_buffer_updated, "buffer_updated") < 0 ||
        intern(&str_connection_lost, "connection_lost") < 0 ||
        intern(&str_pause_writing, "pause_writing") < 0 ||
        intern(&str_resume_writing, "resume_writing") < 0 ||
        intern(&str_close, "close") < 0 || intern(&str_detach, "_detach") < 0 ||
        intern(&str_set_result, "set_result") < 0 ||
        intern(&str_set_exception, "set_exception") < 0 || intern(&str_done, "done") < 0 ||
        intern(&str_create_future, "create_future") < 0 ||
        intern(&str_fileno, "fileno") < 0 || intern(&str_debug, "debug") < 0 ||
        intern(&str_warning, "warning") < 0 || intern(&str_getsockname, "getsockname") < 0 ||
        intern(&str_getpeername, "getpeername") < 0 || intern(&str_socket, "socket") < 0 ||
        intern(&str_sockname, "sockname") < 0 || intern(&str_peername, "peername") < 0)
        return -1;
    PyObject *transports = PyImport_ImportModule("asyncio.transports");
    if (transports == NULL)
        return -1;
    PyObject *base = PyObject_GetAttrString(transports, "_FlowControlMixin");
    Py_DECREF(transports);
    if (base == NULL)
        return -1;
    if (((PyTypeObject *)base)->tp_basicsize > (Py_ssize_t)offsetof(TransportObject, empty_waiter)) {
        PyErr_Format(PyExc_RuntimeError, "goloop: %s has more slots than goloop reuses",
                     ((PyTypeObject *)base)->tp_name);
        Py_DECREF(base);
        return -1;
    }
    PyObject *bases = PyTuple_Pack(1, base);
    Py_DECREF(base);
    if (bases == NULL)
        return -1;
    transport_type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &transport_spec, bases);
    Py_DECREF(bases);
    if (transport_type == NULL)
        return -1;
    if (goloop_check_slots_shadowed(transport_type) < 0)
        return -1;
    if (PyModule_AddObjectRef(module, "_SocketTransport", (PyObject *)transport_type) < 0)
        return -1;
    return PyModule_AddFunctions(module, stream_functions);
}
