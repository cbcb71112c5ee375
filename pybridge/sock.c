/* The low-level socket coroutines' native halves: sock_recv, sock_recv_into,
 * sock_sendall, sock_accept, sock_recvfrom, sock_recvfrom_into and
 * sock_sendto (goloop/_loop.py wraps each in an async def).
 *
 * asyncio's selector loop tries the call at once and, on EAGAIN, registers
 * a reader or writer Handle whose callback (_sock_recv & co.) retries it,
 * plus a done callback that removes the watcher. Here the first attempt is
 * a syscall from C, with no exception made for EAGAIN, and the parked call
 * is one _SockOp object: it sits in the Go core's reader or writer slot for
 * the fd exactly where asyncio's Handle would (so add_reader replacing it,
 * remove_reader, and a reader and a writer on one fd behave as in asyncio),
 * is queued and run in the ready queue as that Handle would be, retries the
 * syscall from C, and on completion unwatches the fd itself before
 * resolving the future. accept and the datagram calls return a peer
 * address, which only the socket module knows how to convert: for them the
 * op calls the socket's own method (and catches its BlockingIOError), so
 * only the parked part is native. The Python wrapper awaits the op and, if the await
 * is interrupted (cancellation, close()), calls _detach() to unwatch: what
 * asyncio's done callback does on cancellation.
 *
 * The native path is taken only where it is indistinguishable from
 * asyncio's: not in debug mode (asyncio's checks, Handle tracebacks and
 * slow-callback warnings stay its own), only for a plain socket.socket
 * (SSL sockets and subclasses that override recv go to asyncio's code,
 * which raises or calls them), only for a non-blocking one (asyncio calls a
 * blocking or timeout socket's methods, which block), and only for
 * arguments the socket module would take as they are. Otherwise the
 * *_start functions return NotImplemented and the wrapper runs asyncio's
 * own coroutine. */
#include <errno.h>
#include <limits.h>
#include <sys/socket.h>
#include "goloop.h"
#include "_cgo_export.h"

/* The head of CPython's PySocketSockObject (Modules/socketmodule.h, the same
 * from 3.11 to 3.15): the fd and the timeout are read from it instead of by
 * calling fileno() and gettimeout() on every call. goloop_init_sock checks
 * it against a real socket and refuses to load if it does not match. */
typedef struct {
    PyObject_HEAD
    int sock_fd;
    int sock_family;
    int sock_type;
    int sock_proto;
    PyObject *(*errorhandler)(void);
    int64_t sock_timeout;   /* _PyTime_t ns; 0: non-blocking, < 0: blocking */
} SocketHead;

enum { OP_RECV, OP_RECV_INTO, OP_SENDALL, OP_ACCEPT, OP_READ_CALL, OP_WRITE_CALL };

/* Ownership: the op holds the loop, the future, the socket (asyncio's Handle
 * holds them through its args) and, for recv_into and sendall, the buffer
 * object. sendall keeps the data's buffer exported while parked, as
 * asyncio's memoryview(data) does; recv_into does not (asyncio keeps only
 * the object), so it re-exports at each attempt. The Go core holds one
 * reference while the op is the fd's reader or writer. Always GC-tracked:
 * op -> future -> task -> coroutine -> op is a cycle. */
typedef struct {
    PyObject_HEAD
    LoopObject *loop;
    PyObject *fut;
    PyObject *sock;
    PyObject *buf;
    PyObject *call;      /* *_CALL: the socket's bound method, and its args */
    PyObject *args;
    Py_buffer view;      /* sendall's data, when has_view */
    Py_ssize_t n;        /* recv: the most to read; sendall: bytes sent */
    int fd;
    char kind;
    char cancelled;      /* replaced or removed by add_/remove_reader & co. */
    char watching;       /* registered with the core, not yet unwatched */
    char has_view;
} SockOpObject;

PyTypeObject *goloop_sockop_type;
static PyTypeObject *socket_type;   /* socket.socket */
static PyObject *str_done, *str_set_result, *str_set_exception, *str_accept,
    *str_setblocking, *str_recvfrom, *str_recvfrom_into, *str_sendto, *str_transports, *str_data, *str_ensure_fd_no_transport;

#define OP(o) ((SockOpObject *)(o))

/* The fd of a socket the native path may serve, or -1 (no exception set):
 * asyncio's code must run instead. A closed socket has fd -1 in CPython
 * too, but its calls fail with EBADF as the syscall's would, so it goes to
 * asyncio's code, which makes the same OSError. */
static int
native_fd(LoopObject *self, PyObject *sock)
{
    if (self->debug || Py_TYPE(sock) != socket_type)
        return -1;
    SocketHead *s = (SocketHead *)sock;
    return s->sock_timeout == 0 ? s->sock_fd : -1;
}

static int
again(void)
{
    return errno == EAGAIN || errno == EWOULDBLOCK;
}

/* recv() into a new bytes object, as socket.recv does (0 bytes: no
 * syscall). NULL with *parked set when the socket has nothing yet; NULL
 * with an exception on failure. EINTR is retried after running signal
 * handlers, as the socket module does (PEP 475). */
static PyObject *
do_recv(int fd, Py_ssize_t n, int *parked)
{
    PyObject *b = PyBytes_FromStringAndSize(NULL, n);
    if (b == NULL || n == 0)
        return b;
    for (;;) {
        ssize_t got = recv(fd, PyBytes_AS_STRING(b), (size_t)n, 0);
        if (got >= 0) {
            if (got != n && _PyBytes_Resize(&b, got) < 0)
                return NULL;
            return b;
        }
        if (errno == EINTR && PyErr_CheckSignals() == 0)
            continue;
        if (errno != EINTR) {
            if (again())
                *parked = 1;
            else
                PyErr_SetFromErrno(PyExc_OSError);
        }
        Py_DECREF(b);
        return NULL;
    }
}

/* recv_into(buf): buf's whole length, as socket.recv_into(buf) reads. */
static PyObject *
do_recv_into(int fd, PyObject *buf, int *parked)
{
    Py_buffer view;
    if (PyObject_GetBuffer(buf, &view, PyBUF_WRITABLE) < 0)
        return NULL;
    PyObject *r = NULL;
    for (;;) {
        ssize_t got = recv(fd, view.buf, (size_t)view.len, 0);
        if (got >= 0) {
            r = PyLong_FromSsize_t(got);
            break;
        }
        if (errno == EINTR && PyErr_CheckSignals() == 0)
            continue;
        if (errno != EINTR) {
            if (again())
                *parked = 1;
            else
                PyErr_SetFromErrno(PyExc_OSError);
        }
        break;
    }
    PyBuffer_Release(&view);
    return r;
}

/* One send() of len bytes; the count sent, 0 when the socket is full, -1
 * with an exception. MSG_NOSIGNAL: a closed peer is EPIPE (BrokenPipeError)
 * even where SIGPIPE is not ignored, which CPython does at start-up anyway. */
static Py_ssize_t
do_send(int fd, const char *p, Py_ssize_t len)
{
    for (;;) {
        ssize_t sent = send(fd, p, (size_t)len, MSG_NOSIGNAL);
        if (sent >= 0)
            return sent;
        if (errno == EINTR) {
            if (PyErr_CheckSignals() < 0)
                return -1;
            continue;
        }
        if (again())
            return 0;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
}

/* sock.accept() then conn.setblocking(False), as asyncio's _sock_accept. */
static PyObject *
do_accept(PyObject *sock, int *parked)
{
    PyObject *pair = PyObject_CallMethodNoArgs(sock, str_accept);
    if (pair == NULL) {
        if (PyErr_ExceptionMatches(PyExc_BlockingIOError) ||
            PyErr_ExceptionMatches(PyExc_InterruptedError)) {
            PyErr_Clear();
            *parked = 1;
        }
        return NULL;
    }
    if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
        PyErr_SetString(PyExc_TypeError, "socket.accept() did not return a pair");
        Py_DECREF(pair);
        return NULL;
    }
    PyObject *r = PyObject_CallMethodOneArg(PyTuple_GET_ITEM(pair, 0), str_setblocking, Py_False);
    if (r == NULL) {
        Py_DECREF(pair);
        return NULL;
    }
    Py_DECREF(r);
    return pair;
}

/* call(*args): the datagram calls' attempts. */
static PyObject *
do_call(PyObject *call, PyObject *args, int *parked)
{
    PyObject *r = PyObject_Call(call, args, NULL);
    if (r == NULL && (PyErr_ExceptionMatches(PyExc_BlockingIOError) ||
                      PyErr_ExceptionMatches(PyExc_InterruptedError))) {
        PyErr_Clear();
        *parked = 1;
    }
    return r;
}

/* asyncio's _ensure_fd_no_transport(fd): the loop's _transports is a
 * WeakValueDictionary, looked up in its .data dict here so that the usual
 * miss costs no KeyError; a hit is decided by asyncio's method itself (its
 * is_closing() test and its message). */
static int
ensure_fd_no_transport(LoopObject *self, int fd)
{
    PyObject *transports = PyObject_GetAttr((PyObject *)self, str_transports);
    if (transports == NULL)
        return -1;
    PyObject *data = PyObject_GetAttr(transports, str_data);
    Py_DECREF(transports);
    if (data == NULL)
        return -1;
    PyObject *key = PyLong_FromLong(fd);
    int has = key == NULL ? -1 : PyDict_Check(data) ? PyDict_Contains(data, key) : 1;
    Py_DECREF(data);
    if (has > 0) {
        PyObject *r = PyObject_CallMethodOneArg((PyObject *)self, str_ensure_fd_no_transport, key);
        has = r == NULL ? -1 : 0;
        Py_XDECREF(r);
    }
    Py_XDECREF(key);
    return has;
}

static int unwatch(SockOpObject *op);

/* Park: a new future and an op watching fd, replacing (and then
 * cancelling) the watcher there, as asyncio's _add_reader/_add_writer do. Returns the op, or
 * NULL with an exception (the op and its buffer released). */
static PyObject *
park(LoopObject *self, int kind, PyObject *sock, int fd, PyObject *buf, Py_buffer *view,
     Py_ssize_t n)
{
    int write = kind == OP_SENDALL || kind == OP_WRITE_CALL;
    SockOpObject *op = PyObject_GC_New(SockOpObject, goloop_sockop_type);
    if (op == NULL) {
        if (view != NULL)
            PyBuffer_Release(view);
        return NULL;
    }
    op->loop = (LoopObject *)Py_NewRef(self);
    op->fut = NULL;
    op->sock = Py_NewRef(sock);
    op->buf = Py_XNewRef(buf);
    op->call = NULL;
    op->args = NULL;
    op->has_view = view != NULL;
    if (view != NULL)
        op->view = *view;
    op->n = n;
    op->fd = fd;
    op->kind = (char)kind;
    op->cancelled = 0;
    op->watching = 0;
    PyObject_GC_Track(op);
    PyObject *args[1] = {(PyObject *)self};
    PyObject *future_type = goloop_future_type();
    op->fut = future_type == NULL ? NULL :
        PyObject_Vectorcall(future_type, args, 0, goloop_kwnames_loop);
    if (op->fut == NULL || ensure_fd_no_transport(self, fd) < 0)
        goto failed;
    if (self->closed) {
        goloop_set_closed_error();
        goto failed;
    }
    PyObject *old = NULL;
    if (GoloopWatchReplacing(self->id, fd, write, (PyObject *)Py_NewRef(op), &old) < 0)
        goto failed;
    op->watching = 1;
    if (old != NULL) {
        PyObject *r = PyObject_CallMethod(old, "cancel", NULL);
        Py_DECREF(old);
        if (r == NULL) {
            PyObject *exc = goloop_fetch_exception();
            unwatch(op);
            goloop_restore_exception(exc);
            goto failed;
        }
        Py_DECREF(r);
    }
    return (PyObject *)op;

failed:
    Py_DECREF(op);
    return NULL;
}

/* Unwatch the fd if this op is still what watches it. */
static int
unwatch(SockOpObject *op)
{
    if (!op->watching)
        return 0;
    op->watching = 0;
    if (op->loop->closed)
        return 0;
    int write = op->kind == OP_SENDALL || op->kind == OP_WRITE_CALL;
    return GoloopUnwatchIf(op->loop->id, op->fd, write, (PyObject *)op) < 0 ? -1 : 0;
}

/* The *_start functions take (sock, args...): n in all. */
static int
check_nargs(const char *name, Py_ssize_t nargs, Py_ssize_t n)
{
    if (nargs == n)
        return 0;
    PyErr_Format(PyExc_TypeError, "%s() takes %zd arguments", name, n);
    return -1;
}

/* _sock_recv_start(sock, n): the bytes read, a _SockOp to await, or
 * NotImplemented (asyncio's sock_recv must run). */
PyObject *
goloop_sock_recv_start(LoopObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (check_nargs("_sock_recv_start", nargs, 2) < 0)
        return NULL;
    int fd = native_fd(self, args[0]);
    if (fd < 0 || !PyLong_CheckExact(args[1]))
        Py_RETURN_NOTIMPLEMENTED;
    Py_ssize_t n = PyLong_AsSsize_t(args[1]);
    if (n < 0) {   /* the socket module's ValueError or OverflowError */
        PyErr_Clear();
        Py_RETURN_NOTIMPLEMENTED;
    }
    int parked = 0;
    PyObject *r = do_recv(fd, n, &parked);
    if (!parked)
        return r;
    return park(self, OP_RECV, args[0], fd, NULL, NULL, n);
}

/* _sock_recv_into_start(sock, buf): the count read, a _SockOp or
 * NotImplemented. */
PyObject *
goloop_sock_recv_into_start(LoopObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (check_nargs("_sock_recv_into_start", nargs, 2) < 0)
        return NULL;
    int fd = native_fd(self, args[0]);
    if (fd < 0 || !PyObject_CheckBuffer(args[1]))
        Py_RETURN_NOTIMPLEMENTED;
    int parked = 0;
    PyObject *r = do_recv_into(fd, args[1], &parked);
    if (r == NULL && !parked && PyErr_ExceptionMatches(PyExc_BufferError)) {
        /* not writable or not contiguous: socket's own message */
        PyErr_Clear();
        Py_RETURN_NOTIMPLEMENTED;
    }
    if (!parked)
        return r;
    return park(self, OP_RECV_INTO, args[0], fd, args[1], NULL, 0);
}

/* _sock_sendall_start(sock, data): None once all is sent, a _SockOp or
 * NotImplemented. data must export a simple buffer whose len() is its size
 * in bytes: asyncio compares send()'s byte count with len(data), so for
 * other objects (a memoryview of ints) its own code must run. */
PyObject *
goloop_sock_sendall_start(LoopObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (check_nargs("_sock_sendall_start", nargs, 2) < 0)
        return NULL;
    int fd = native_fd(self, args[0]);
    PyObject *data = args[1];
    if (fd < 0 || !PyObject_CheckBuffer(data))
        Py_RETURN_NOTIMPLEMENTED;
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) {
        PyErr_Clear();
        Py_RETURN_NOTIMPLEMENTED;
    }
    if (!PyBytes_CheckExact(data) && !PyByteArray_CheckExact(data)) {
        Py_ssize_t len = PyObject_Size(data);
        if (len != view.len) {
            PyErr_Clear();
            PyBuffer_Release(&view);
            Py_RETURN_NOTIMPLEMENTED;
        }
    }
    Py_ssize_t sent = do_send(fd, view.buf, view.len);
    if (sent < 0) {
        PyBuffer_Release(&view);
        return NULL;
    }
    if (sent == view.len) {
        PyBuffer_Release(&view);
        Py_RETURN_NONE;
    }
    return park(self, OP_SENDALL, args[0], fd, data, &view, sent);
}

/* _sock_accept_start(sock): (conn, address), a _SockOp or NotImplemented. */
PyObject *
goloop_sock_accept_start(LoopObject *self, PyObject *sock)
{
    int fd = native_fd(self, sock);
    if (fd < 0)
        Py_RETURN_NOTIMPLEMENTED;
    int parked = 0;
    PyObject *r = do_accept(sock, &parked);
    if (!parked)
        return r;
    return park(self, OP_ACCEPT, sock, fd, NULL, NULL, 0);
}

/* The datagram calls: sock.<name>(*first) at once; if the socket is not
 * ready, an op that calls sock.<name>(*retry) when it is. Steals first and
 * retry. */
static PyObject *
call_start(LoopObject *self, int kind, PyObject *sock, int fd, PyObject *name, PyObject *first,
           PyObject *retry)
{
    PyObject *call = first != NULL && retry != NULL ? PyObject_GetAttr(sock, name) : NULL;
    if (call == NULL) {
        Py_XDECREF(first);
        Py_XDECREF(retry);
        return NULL;
    }
    int parked = 0;
    PyObject *r = do_call(call, first, &parked);
    Py_DECREF(first);
    if (parked) {
        r = park(self, kind, sock, fd, NULL, NULL, 0);
        if (r != NULL) {
            OP(r)->call = Py_NewRef(call);
            OP(r)->args = Py_NewRef(retry);
        }
    }
    Py_DECREF(call);
    Py_DECREF(retry);
    return r;
}

/* _sock_recvfrom_start(sock, bufsize): (data, address), a _SockOp or
 * NotImplemented. */
PyObject *
goloop_sock_recvfrom_start(LoopObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (check_nargs("_sock_recvfrom_start", nargs, 2) < 0)
        return NULL;
    int fd = native_fd(self, args[0]);
    if (fd < 0)
        Py_RETURN_NOTIMPLEMENTED;
    PyObject *a = PyTuple_Pack(1, args[1]);
    return call_start(self, OP_READ_CALL, args[0], fd, str_recvfrom, a, Py_XNewRef(a));
}

/* _sock_recvfrom_into_start(sock, buf, nbytes): (count, address), a _SockOp
 * or NotImplemented. nbytes 0 (false) means len(buf), as in asyncio. */
PyObject *
goloop_sock_recvfrom_into_start(LoopObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (check_nargs("_sock_recvfrom_into_start", nargs, 3) < 0)
        return NULL;
    int fd = native_fd(self, args[0]);
    if (fd < 0)
        Py_RETURN_NOTIMPLEMENTED;
    PyObject *nbytes;
    int given = PyObject_IsTrue(args[2]);
    if (given < 0)
        return NULL;
    if (given) {
        nbytes = Py_NewRef(args[2]);
    }
    else {
        Py_ssize_t len = PyObject_Size(args[1]);
        if (len < 0)
            return NULL;
        nbytes = PyLong_FromSsize_t(len);
        if (nbytes == NULL)
            return NULL;
    }
    PyObject *a = PyTuple_Pack(2, args[1], nbytes);
    Py_DECREF(nbytes);
    return call_start(self, OP_READ_CALL, args[0], fd, str_recvfrom_into, a, Py_XNewRef(a));
}

/* _sock_sendto_start(sock, data, address): the count sent, a _SockOp or
 * NotImplemented. The retry passes flags 0, as asyncio's _sock_sendto. */
PyObject *
goloop_sock_sendto_start(LoopObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (check_nargs("_sock_sendto_start", nargs, 3) < 0)
        return NULL;
    int fd = native_fd(self, args[0]);
    if (fd < 0)
        Py_RETURN_NOTIMPLEMENTED;
    PyObject *zero = PyLong_FromLong(0);
    PyObject *retry = zero == NULL ? NULL : PyTuple_Pack(3, args[1], zero, args[2]);
    Py_XDECREF(zero);
    return call_start(self, OP_WRITE_CALL, args[0], fd, str_sendto,
                      PyTuple_Pack(2, args[1], args[2]), retry);
}

/* Run by the ready queue when the fd is ready: asyncio's _sock_recv & co.
 * Returns -1 only for SystemExit and KeyboardInterrupt, which asyncio's
 * callbacks let escape too. */
int
goloop_sockop_run(PyObject *obj)
{
    SockOpObject *op = OP(obj);
    if (op->cancelled)
        return 0;
    PyObject *done = PyObject_CallMethodNoArgs(op->fut, str_done);
    if (done == NULL)
        goto failed;
    int is_done = PyObject_IsTrue(done);
    Py_DECREF(done);
    if (is_done != 0) {
        /* cancelled meanwhile: the wrapper's _detach() may not have run yet,
         * and a readable fd would be reported on every poll until then */
        if (is_done < 0 || unwatch(op) < 0)
            goto failed;
        return 0;
    }
    int parked = 0;
    PyObject *res = NULL;
    switch (op->kind) {
    case OP_RECV:
        res = do_recv(op->fd, op->n, &parked);
        break;
    case OP_RECV_INTO:
        res = do_recv_into(op->fd, op->buf, &parked);
        break;
    case OP_SENDALL: {
        Py_ssize_t sent = do_send(op->fd, (char *)op->view.buf + op->n, op->view.len - op->n);
        if (sent >= 0) {
            op->n += sent;
            if (op->n == op->view.len)
                res = Py_NewRef(Py_None);
            else
                parked = 1;
        }
        break;
    }
    case OP_ACCEPT:
        res = do_accept(op->sock, &parked);
        break;
    case OP_READ_CALL:
    case OP_WRITE_CALL:
        res = do_call(op->call, op->args, &parked);
        break;
    }
    if (parked)
        return 0;
    if (unwatch(op) < 0) {
        Py_XDECREF(res);
        goto failed;
    }
    PyObject *r;
    if (res != NULL) {
        r = PyObject_CallMethodOneArg(op->fut, str_set_result, res);
        Py_DECREF(res);
    }
    else {
        if (goloop_stop_exception())
            return -1;
        PyObject *exc = goloop_fetch_exception();
        r = PyObject_CallMethodOneArg(op->fut, str_set_exception, exc);
        Py_DECREF(exc);
    }
    if (op->has_view) {
        op->has_view = 0;
        PyBuffer_Release(&op->view);
    }
    if (r == NULL)
        goto failed;
    Py_DECREF(r);
    return 0;

failed:
    if (goloop_stop_exception())
        return -1;
    PyErr_WriteUnraisable(obj);
    return 0;
}

int
goloop_sockop_cancelled(PyObject *obj)
{
    return OP(obj)->cancelled;
}

/* cancel(): what asyncio's _add_reader/_remove_reader do to the Handle they
 * replace or remove; the future is left as it is, as asyncio leaves it. */
static PyObject *
sockop_cancel(SockOpObject *op, PyObject *Py_UNUSED(ignored))
{
    op->cancelled = 1;
    op->watching = 0;
    Py_RETURN_NONE;
}

static PyObject *
sockop_cancelled_meth(SockOpObject *op, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(op->cancelled);
}

/* _detach(): the await was interrupted; stop watching the fd, as asyncio's
 * done callback (_sock_read_done/_sock_write_done) does. */
static PyObject *
sockop_detach(SockOpObject *op, PyObject *Py_UNUSED(ignored))
{
    if (unwatch(op) < 0)
        return NULL;
    if (op->has_view) {
        op->has_view = 0;
        PyBuffer_Release(&op->view);
    }
    Py_RETURN_NONE;
}

static PyObject *
sockop_await(SockOpObject *op)
{
    PyAsyncMethods *am = Py_TYPE(op->fut)->tp_as_async;
    if (am == NULL || am->am_await == NULL) {
        PyErr_SetString(PyExc_TypeError, "the loop's future is not awaitable");
        return NULL;
    }
    return am->am_await(op->fut);
}

static int
sockop_traverse(SockOpObject *op, visitproc visit, void *arg)
{
    Py_VISIT(op->loop);
    Py_VISIT(op->fut);
    Py_VISIT(op->sock);
    Py_VISIT(op->buf);
    Py_VISIT(op->call);
    Py_VISIT(op->args);
    Py_VISIT(Py_TYPE(op));
    return 0;
}

static int
sockop_clear(SockOpObject *op)
{
    if (op->has_view) {
        op->has_view = 0;
        PyBuffer_Release(&op->view);
    }
    Py_CLEAR(op->loop);
    Py_CLEAR(op->fut);
    Py_CLEAR(op->sock);
    Py_CLEAR(op->buf);
    Py_CLEAR(op->call);
    Py_CLEAR(op->args);
    return 0;
}

static void
sockop_dealloc(SockOpObject *op)
{
    PyTypeObject *tp = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
    sockop_clear(op);
    PyObject_GC_Del(op);
    Py_DECREF(tp);
}

static PyMethodDef sockop_methods[] = {
    {"cancel", (PyCFunction)sockop_cancel, METH_NOARGS, NULL},
    {"cancelled", (PyCFunction)sockop_cancelled_meth, METH_NOARGS, NULL},
    {"_detach", (PyCFunction)sockop_detach, METH_NOARGS, NULL},
    {NULL}
};

static PyType_Slot sockop_slots[] = {
    {Py_tp_doc, "A sock_* call waiting for its socket: the fd's reader or writer, awaited "
                "by the sock_* coroutine."},
    {Py_tp_dealloc, sockop_dealloc},
    {Py_tp_traverse, sockop_traverse},
    {Py_tp_clear, sockop_clear},
    {Py_tp_methods, sockop_methods},
    {Py_am_await, sockop_await},
    {0, NULL}
};

static PyType_Spec sockop_spec = {
    .name = "goloop._goloop._SockOp",
    .basicsize = sizeof(SockOpObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = sockop_slots,
};

/* SocketHead must describe this Python's sockets: check a real one, blocking
 * and not. */
static int
check_socket_layout(void)
{
    PyObject *s = PyObject_CallFunction((PyObject *)socket_type, "ii", AF_UNIX, SOCK_STREAM);
    if (s == NULL)
        return -1;
    int ok = 0;
    PyObject *fd = PyObject_CallMethod(s, "fileno", NULL);
    if (fd != NULL) {
        long want = PyLong_AsLong(fd);
        Py_DECREF(fd);
        int64_t blocking = ((SocketHead *)s)->sock_timeout;
        PyObject *r = PyObject_CallMethod(s, "setblocking", "O", Py_False);
        Py_XDECREF(r);
        ok = r != NULL && ((SocketHead *)s)->sock_fd == want && blocking < 0 &&
             ((SocketHead *)s)->sock_timeout == 0;
    }
    PyObject *r = PyObject_CallMethod(s, "close", NULL);
    Py_XDECREF(r);
    Py_DECREF(s);
    if (PyErr_Occurred())
        return -1;
    if (!ok) {
        PyErr_SetString(PyExc_RuntimeError,
                        "goloop: socket objects do not have the layout sock.c expects");
        return -1;
    }
    return 0;
}

int
goloop_init_sock(PyObject *module)
{
    if (goloop_intern(&str_done, "done") < 0 ||
        goloop_intern(&str_set_result, "set_result") < 0 ||
        goloop_intern(&str_set_exception, "set_exception") < 0 ||
        goloop_intern(&str_accept, "accept") < 0 ||
        goloop_intern(&str_setblocking, "setblocking") < 0 ||
        goloop_intern(&str_recvfrom, "recvfrom") < 0 ||
        goloop_intern(&str_recvfrom_into, "recvfrom_into") < 0 ||
        goloop_intern(&str_sendto, "sendto") < 0 ||
        goloop_intern(&str_transports, "_transports") < 0 ||
        goloop_intern(&str_data, "data") < 0 ||
        goloop_intern(&str_ensure_fd_no_transport, "_ensure_fd_no_transport") < 0)
        return -1;
    PyObject *socket = PyImport_ImportModule("socket");
    if (socket == NULL)
        return -1;
    socket_type = (PyTypeObject *)PyObject_GetAttrString(socket, "socket");
    Py_DECREF(socket);
    if (socket_type == NULL || check_socket_layout() < 0)
        return -1;
    goloop_sockop_type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &sockop_spec, NULL);
    if (goloop_sockop_type == NULL)
        return -1;
    return PyModule_AddObjectRef(module, "_SockOp", (PyObject *)goloop_sockop_type);
}
