/* The accept path of create_server and create_unix_server: the Go core's
 * Listener (core/listener.go, through listener.go) accepts, and for each
 * connection goloop_accepted does what asyncio's _accept_connection and
 * _accept_connection2 do, then _make_socket_transport: the socket object,
 * the protocol factory, the native transport, all in one call with no Task
 * and no reader handle. TLS servers, and 3.15's per-connection contexts,
 * keep asyncio's own path (goloop/_loop.py, _start_serving). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include "goloop.h"
#include "_cgo_export.h"

/* Set by goloop/_loop.py (_set_listener_helpers). */
static struct {
    PyObject *socket_type;        /* socket.socket */
    PyObject *accept_failed;      /* (loop, exc, protocol): _accept_connection2's report */
    PyObject *accept_error;       /* (loop, exc, args): an accept() failure */
    PyObject *accept_slow;        /* (loop, args, seconds): a slow round, in debug mode */
    PyObject *logger;             /* asyncio's logger */
} lh;

static PyObject *str_getpeername, *str_attach, *str_connection_made, *str_start, *str_close,
    *str_fileno;

/* Reports an accept() failure (asyncio's _accept_connection); steals exc.
 * args are _accept_connection's arguments. */
static int
accept_error(PyObject *loop, PyObject *args, PyObject *exc)
{
    PyObject *r = PyObject_CallFunctionObjArgs(lh.accept_error, loop, exc, args, NULL);
    Py_DECREF(exc);
    if (r != NULL) {
        Py_DECREF(r);
        return 0;
    }
    if (goloop_stop_exception())
        return -1;
    PyErr_WriteUnraisable(lh.accept_error);
    return 0;
}

/* The peer's address as socket.accept() returns it: CPython's
 * makesockaddr for the families create_server and create_unix_server
 * make; for another family (a socket given as sock=), getpeername(). */
static PyObject *
peer_address(const void *sa, long len, PyObject *conn)
{
    if (len < (long)sizeof(sa_family_t))
        Py_RETURN_NONE;   /* makesockaddr: no address */
    switch (((const struct sockaddr *)sa)->sa_family) {
    case AF_INET: {
        /* inet_ntop's dotted quad, written out: glibc formats it with
         * sprintf, a tenth of accepting a connection. */
        const struct sockaddr_in *a = sa;
        const unsigned char *b = (const unsigned char *)&a->sin_addr;
        char buf[INET_ADDRSTRLEN], *p = buf;
        for (int i = 0; i < 4; i++) {
            if (i > 0)
                *p++ = '.';
            if (b[i] >= 100)
                *p++ = (char)('0' + b[i] / 100);
            if (b[i] >= 10)
                *p++ = (char)('0' + b[i] / 10 % 10);
            *p++ = (char)('0' + b[i] % 10);
        }
        PyObject *host = PyUnicode_FromStringAndSize(buf, p - buf);
        if (host == NULL)
            return NULL;
        return Py_BuildValue("Ni", host, ntohs(a->sin_port));
    }
    case AF_INET6: {
        const struct sockaddr_in6 *a = sa;
        char buf[INET6_ADDRSTRLEN];
        if (inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof(buf)) == NULL)
            return PyErr_SetFromErrno(PyExc_OSError);
        return Py_BuildValue("siII", buf, ntohs(a->sin6_port), ntohl(a->sin6_flowinfo),
                             a->sin6_scope_id);
    }
    case AF_UNIX: {
        const struct sockaddr_un *a = sa;
        size_t n = (size_t)len - offsetof(struct sockaddr_un, sun_path);
        if (n > 0 && a->sun_path[0] == 0)   /* Linux's abstract namespace */
            return PyBytes_FromStringAndSize(a->sun_path, (Py_ssize_t)n);
        /* A path, up to its NUL; an unnamed peer has none: ''. The buffer
         * is reused, so nothing past len is read. */
        return PyUnicode_DecodeFSDefaultAndSize(a->sun_path, (Py_ssize_t)strnlen(a->sun_path, n));
    }
    }
    return PyObject_CallMethodNoArgs(conn, str_getpeername);
}

/* socket.socket(family, type, proto, fileno=fd), as socket.accept() makes
 * it; SOCK_NONBLOCK tells socket.socket the descriptor is non-blocking
 * already (timeout 0, as asyncio's conn.setblocking(False) leaves it)
 * without another system call, and is not kept in its type. */
static PyObject *
new_socket(goloop_listener *l, int fd)
{
    PyObject *args[5] = {NULL, PyLong_FromLong(l->family), PyLong_FromLong(l->type | SOCK_NONBLOCK),
                         PyLong_FromLong(l->proto), PyLong_FromLong(fd)};
    PyObject *sock = NULL;
    if (args[1] != NULL && args[2] != NULL && args[3] != NULL && args[4] != NULL)
        sock = PyObject_Vectorcall(lh.socket_type, args + 1, 4 | PY_VECTORCALL_ARGUMENTS_OFFSET,
                                   NULL);
    for (int i = 1; i < 5; i++)
        Py_XDECREF(args[i]);
    return sock;
}

static int
close_conn(PyObject *conn)
{
    PyObject *r = PyObject_CallMethodNoArgs(conn, str_close);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* call_soon(callback, arg, context=context) from C; with context NULL, in
 * a copy of the current one, as asyncio's call_soon takes. */
static int
call_soon(LoopObject *loop, PyObject *callback, PyObject *arg, PyObject *context)
{
    PyObject *args[2] = {callback, arg};
    HandleObject *h = goloop_handle_new(goloop_handle_type, loop, args, arg != NULL ? 2 : 1,
                                        context);
    if (h == NULL)
        return -1;
    return goloop_intake_soon(loop, (PyObject *)h);   /* steals */
}

/* What follows the transport's creation in _SelectorTransport.__init__ and
 * _SelectorSocketTransport.__init__: the server's _attach, TCP_NODELAY
 * (base_events._set_nodelay's test), then connection_made and the start of
 * reading, each in a call_soon. (asyncio's loop._transports entry is the
 * Go core's registration, and its extra dict is made when asked for:
 * transport.c, make_extra.) */
static int
start_transport(LoopObject *loop, goloop_listener *l, PyObject *server, PyObject *protocol,
                PyObject *t, int fd, PyObject *own)
{
    int rc;
    if (server != Py_None) {
#if PY_VERSION_HEX >= 0x030D0000
        PyObject *r = PyObject_CallMethodOneArg(server, str_attach, t);
#else
        PyObject *r = PyObject_CallMethodNoArgs(server, str_attach);
#endif
        if (r == NULL)
            return -1;
        Py_DECREF(r);
    }
    if ((l->family == AF_INET || l->family == AF_INET6) && l->type == SOCK_STREAM &&
        l->proto == IPPROTO_TCP) {
        int one = 1;
        if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0) {
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
    }
    PyObject *made = PyObject_GetAttr(protocol, str_connection_made);
    if (made == NULL)
        return -1;
    rc = call_soon(loop, made, t, own);
    Py_DECREF(made);
    if (rc < 0)
        return -1;
    PyObject *start = PyObject_GetAttr(t, str_start);
    if (start == NULL)
        return -1;
    rc = call_soon(loop, start, NULL, own);
    Py_DECREF(start);
    return rc;
}

/* _accept_connection2, once the socket exists: run in a copy of the
 * listener's context (asyncio runs it in a Task of its own, which copies
 * the listening reader's context, or on 3.15 runs in a copy of the
 * server's, which is then the connection's own: own, else NULL). Returns
 * 0, or -1 with KeyboardInterrupt or SystemExit set. */
static int
serve_connection(LoopObject *loop, goloop_listener *l, PyObject *server, PyObject *conn,
                 PyObject *addr, int fd, PyObject *own)
{
    PyObject *protocol = NULL, *t = NULL;
    protocol = PyObject_CallNoArgs(l->factory);
    if (protocol == NULL)
        goto fail;
    /* asyncio 3.12+ checks here that no open transport has fd: one that
     * had it before would still be registered with the core, whose
     * registration then fails the same way. */
    t = goloop_transport_new(loop, conn, protocol, NULL, Py_NewRef(addr), server, own, fd);
    if (t == NULL)
        goto fail;
    if (start_transport(loop, l, server, protocol, t, fd, own) < 0)
        goto fail;
    Py_DECREF(t);
    Py_DECREF(protocol);
    return 0;
fail:;
    int stop = goloop_stop_exception();
    PyObject *exc = goloop_fetch_exception();
    /* asyncio leaves the socket to the garbage collector (and its
     * ResourceWarning); it is closed here and now. */
    if (t != NULL)
        goloop_transport_abandon(t);
    else if (close_conn(conn) < 0)
        PyErr_WriteUnraisable(conn);
    Py_XDECREF(t);
    int rc = 0;
    if (stop) {
        goloop_restore_exception(exc);
        rc = -1;
    }
    else {
        if (loop->debug) {
            PyObject *r = PyObject_CallFunctionObjArgs(lh.accept_failed, (PyObject *)loop, exc,
                                                       protocol ? protocol : Py_None, NULL);
            if (r == NULL) {
                if (goloop_stop_exception())
                    rc = -1;
                else
                    PyErr_WriteUnraisable(lh.accept_failed);
            }
            Py_XDECREF(r);
        }
        Py_DECREF(exc);
    }
    Py_XDECREF(protocol);
    return rc;
}

/* The Go listener keeps l until the round is served, even if Python code
 * run from here closes the server. */
int
goloop_accepted(PyObject *loopobj, goloop_listener *l, int fd, const char *sa, long salen)
{
    LoopObject *loop = (LoopObject *)loopobj;
    PyObject *server = l->server;
    PyObject *ctx = NULL, *addr = NULL;
    int rc = -1;
    PyObject *conn = new_socket(l, fd);
    if (conn == NULL) {
        close(fd);
        /* as a failure of socket.accept() itself */
        rc = goloop_stop_exception() ? -1
                                     : accept_error(loopobj, l->args, goloop_fetch_exception());
        goto done;
    }
    addr = peer_address(sa, salen, conn);
    if (addr == NULL)
        goto error;
    if (loop->debug) {
        PyObject *r = PyObject_CallMethod(lh.logger, "debug", "sOOO",
                                          "%r got a new connection from %r: %r", server, addr, conn);
        if (r == NULL)
            goto error;
        Py_DECREF(r);
    }
    ctx = PyContext_Copy(l->context);
    if (ctx == NULL || PyContext_Enter(ctx) < 0)
        goto error;
    rc = serve_connection(loop, l, server, conn, addr, fd, l->own_context ? ctx : NULL);
    PyObject *exc = rc < 0 ? goloop_fetch_exception() : NULL;
    if (PyContext_Exit(ctx) < 0 && exc == NULL)
        exc = goloop_fetch_exception();
    if (exc != NULL) {
        goloop_restore_exception(exc);
        rc = -1;
    }
    goto done;
error:;
    /* the socket is made, so this failed in _accept_connection: reported
     * as asyncio's loop reports an exception from a reader callback */
    int stop = goloop_stop_exception();
    PyObject *failure = goloop_fetch_exception();
    if (close_conn(conn) < 0)
        PyErr_WriteUnraisable(conn);
    if (stop) {
        goloop_restore_exception(failure);
        rc = -1;
    }
    else
        rc = accept_error(loopobj, l->args, failure);
done:
    Py_XDECREF(ctx);
    Py_XDECREF(addr);
    Py_XDECREF(conn);
    return rc;
}

int
goloop_accept_error(PyObject *loop, goloop_listener *l, PyObject *exc)
{
    return accept_error(loop, l->args, exc);
}

/* Debug mode times a round as _run_once times asyncio's reader handle,
 * _accept_connection, which the round stands for: with the protocol
 * factories and the transports' set-up, which asyncio runs in a Task per
 * connection, and which here run inside it. */
double
goloop_accept_begin(PyObject *loop)
{
    return ((LoopObject *)loop)->debug ? goloop_monotonic() : -1;
}

int
goloop_accept_end(PyObject *loop, goloop_listener *l, double t0)
{
    if (t0 < 0)
        return 0;
    double dt = goloop_monotonic() - t0;
    PyObject *limit = PyObject_GetAttrString(loop, "slow_callback_duration");
    if (limit == NULL)
        return -1;
    double slow = PyFloat_AsDouble(limit);
    Py_DECREF(limit);
    if (slow == -1 && PyErr_Occurred())
        return -1;
    if (dt < slow)
        return 0;
    PyObject *seconds = PyFloat_FromDouble(dt);
    if (seconds == NULL)
        return -1;
    PyObject *r = PyObject_CallFunctionObjArgs(lh.accept_slow, loop, l->args, seconds, NULL);
    Py_DECREF(seconds);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

void
goloop_listener_free(goloop_listener *l)
{
    Py_XDECREF(l->sock);
    Py_XDECREF(l->factory);
    Py_XDECREF(l->server);
    Py_XDECREF(l->context);
    Py_XDECREF(l->args);
    PyMem_Free(l);
}

int
goloop_listener_visit(goloop_listener *l, goloop_visitproc visit, void *arg)
{
    Py_VISIT(l->sock);
    Py_VISIT(l->factory);
    Py_VISIT(l->server);
    Py_VISIT(l->context);
    Py_VISIT(l->args);
    return 0;
}

/* *out = v, an int that fits a C int; steals v. */
static int
int_value(PyObject *v, int *out)
{
    if (v == NULL)
        return -1;
    long x = PyLong_AsLong(v);
    Py_DECREF(v);
    if (x == -1 && PyErr_Occurred())
        return -1;
    if (x < INT_MIN || x > INT_MAX) {
        PyErr_SetString(PyExc_OverflowError, "Python int too large to convert to C int");
        return -1;
    }
    *out = (int)x;
    return 0;
}

static int
int_attr(PyObject *o, const char *name, int *out)
{
    return int_value(PyObject_GetAttrString(o, name), out);
}

/* _serve(loop, sock, protocol_factory, server, backlog, context, args,
 * own_context): accept on sock, a non-blocking listening socket, from now
 * on, up to backlog connections per readiness. Each connection is served
 * in a copy of context, which with own_context true is the connection's
 * own context from then on (3.15). args are asyncio's _accept_connection
 * arguments, for error reports. */
static PyObject *
serve(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "_serve() takes 8 arguments");
        return NULL;
    }
    if (!PyContext_CheckExact(args[5])) {
        PyErr_SetString(PyExc_TypeError, "context must be a contextvars.Context");
        return NULL;
    }
    int own = PyObject_IsTrue(args[7]);
    if (own < 0)
        return NULL;
    PyObject *loop = args[0], *sock = args[1];
    if (!PyObject_TypeCheck(loop, &Goloop_LoopType)) {
        PyErr_SetString(PyExc_TypeError, "a goloop loop is required");
        return NULL;
    }
    if (goloop_check_forked() < 0)
        return NULL;
    int fd, backlog;
    if (int_value(PyObject_CallMethodNoArgs(sock, str_fileno), &fd) < 0 ||
        int_value(Py_NewRef(args[4]), &backlog) < 0)
        return NULL;
    goloop_listener *l = PyMem_Calloc(1, sizeof(*l));
    if (l == NULL)
        return PyErr_NoMemory();
    if (int_attr(sock, "family", &l->family) < 0 || int_attr(sock, "type", &l->type) < 0 ||
        int_attr(sock, "proto", &l->proto) < 0) {
        PyMem_Free(l);
        return NULL;
    }
    l->sock = Py_NewRef(sock);
    l->factory = Py_NewRef(args[2]);
    l->server = Py_NewRef(args[3]);
    l->context = Py_NewRef(args[5]);
    l->args = Py_NewRef(args[6]);
    l->own_context = own;
    if (GoloopListenerNew(((LoopObject *)loop)->id, fd, backlog, l) < 0) {
        goloop_listener_free(l);
        return NULL;
    }
    Py_RETURN_NONE;
}

/* _unserve(loop, fd): stop accepting on fd for good; False if _serve was
 * not accepting on it. */
static PyObject *
unserve(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "_unserve() takes 2 arguments");
        return NULL;
    }
    if (!PyObject_TypeCheck(args[0], &Goloop_LoopType)) {
        PyErr_SetString(PyExc_TypeError, "a goloop loop is required");
        return NULL;
    }
    if (goloop_check_forked() < 0)
        return NULL;
    int fd;
    if (int_value(Py_NewRef(args[1]), &fd) < 0)
        return NULL;
    int rc = GoloopListenerClose(((LoopObject *)args[0])->id, fd);
    if (rc < 0)
        return NULL;
    return PyBool_FromLong(rc);
}

/* _set_listener_helpers(socket.socket, accept_failed, accept_error,
 * accept_slow, logger), once, from goloop/_loop.py. */
static PyObject *
set_listener_helpers(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject **slots[] = {&lh.socket_type, &lh.accept_failed, &lh.accept_error,
                          &lh.accept_slow, &lh.logger};
    return goloop_set_helpers("_set_listener_helpers", slots, Py_ARRAY_LENGTH(slots), args,
                              nargs);
}

static PyMethodDef listener_functions[] = {
    {"_serve", (PyCFunction)(void (*)(void))serve, METH_FASTCALL, NULL},
    {"_unserve", (PyCFunction)(void (*)(void))unserve, METH_FASTCALL, NULL},
    {"_set_listener_helpers", (PyCFunction)(void (*)(void))set_listener_helpers, METH_FASTCALL,
     NULL},
    {NULL}
};

int
goloop_init_listener(PyObject *module)
{
    if (goloop_intern(&str_getpeername, "getpeername") < 0 ||
        goloop_intern(&str_attach, "_attach") < 0 ||
        goloop_intern(&str_connection_made, "connection_made") < 0 ||
        goloop_intern(&str_start, "_start") < 0 || goloop_intern(&str_close, "close") < 0 ||
        goloop_intern(&str_fileno, "fileno") < 0)
        return -1;
    return PyModule_AddFunctions(module, listener_functions);
}
