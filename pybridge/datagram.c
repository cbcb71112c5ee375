/* goloop._DatagramTransport: asyncio's _SelectorDatagramTransport for UDP
 * and Unix datagram sockets, with the socket I/O, the send queue and flow
 * control in the Go core (core.Datagram, through datagram.go). What it
 * shares with the stream transport is in transport.c; here are the methods
 * only a datagram transport has, which check arguments as asyncio does and
 * call one Go export each, and the helpers the Go sink calls to reach the
 * protocol. Layout and ownership: goloop.h, DatagramObject. */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stddef.h>
#include <string.h>
#include <sys/un.h>
#include "goloop.h"
#include "_cgo_export.h"

static PyTypeObject *datagram_type;

/* Set by goloop/_loop.py (_set_datagram_helpers): the cold paths. */
static struct {
    PyObject *callback_failed;   /* (transport, exc, method): a protocol callback raised */
    PyObject *sendto_slow;       /* (transport, data, addr, queued) -> address or None */
} dh;

static PyObject *str_datagram_received, *str_error_received, *str_family, *str_peername;

/* What each queued datagram counts besides its payload: 3.13 added the UDP
 * header's 8 bytes (_header_size from 3.14). */
#if PY_VERSION_HEX >= 0x030D0000
#define QUEUED_OVERHEAD 8
#else
#define QUEUED_OVERHEAD 0
#endif

#define D(o) ((DatagramObject *)(o))

/* A protocol callback raised (exception set) where asyncio would have been
 * running the fd's reader or writer handle (method names it): the handler
 * hears of it, the transport stays open. KeyboardInterrupt and SystemExit
 * stop the loop (-1). */
static int
callback_failed(DatagramObject *t, const char *method)
{
    if (goloop_stop_exception())
        return -1;
    PyObject *exc = goloop_fetch_exception();
    PyObject *r = PyObject_CallFunction(dh.callback_failed, "OOs", (PyObject *)t, exc, method);
    Py_DECREF(exc);
    if (r == NULL) {
        if (goloop_stop_exception())
            return -1;
        PyErr_WriteUnraisable((PyObject *)t);
    }
    Py_XDECREF(r);
    return 0;
}

/* --- addresses ---------------------------------------------------------- */

/* The address recvfrom() returns for a struct sockaddr of len bytes: the
 * socket module's makesockaddr for the families the transport serves. */
static PyObject *
from_sockaddr(const struct sockaddr *sa, socklen_t len)
{
    char buf[INET6_ADDRSTRLEN];
    if (len == 0)
        Py_RETURN_NONE;
    switch (sa->sa_family) {
    case AF_INET: {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        if (inet_ntop(AF_INET, &a->sin_addr, buf, sizeof(buf)) == NULL)
            return PyErr_SetFromErrno(PyExc_OSError);
        return Py_BuildValue("si", buf, ntohs(a->sin_port));
    }
    case AF_INET6: {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
        if (inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof(buf)) == NULL)
            return PyErr_SetFromErrno(PyExc_OSError);
        return Py_BuildValue("siII", buf, ntohs(a->sin6_port), ntohl(a->sin6_flowinfo),
                             a->sin6_scope_id);
    }
    case AF_UNIX: {
        const struct sockaddr_un *a = (const struct sockaddr_un *)sa;
        size_t n = len - offsetof(struct sockaddr_un, sun_path);
        if (n > 0 && a->sun_path[0] == 0)   /* Linux's abstract namespace */
            return PyBytes_FromStringAndSize(a->sun_path, (Py_ssize_t)n);
        return PyUnicode_DecodeFSDefaultAndSize(a->sun_path,
                                                (Py_ssize_t)strnlen(a->sun_path, n));
    }
    }
    PyErr_Format(PyExc_OSError, "goloop: address family %d", sa->sa_family);
    return NULL;
}

static int
port_arg(PyObject *o, long max, long *v)
{
    if (!PyLong_Check(o))
        return 0;
    *v = PyLong_AsLong(o);
    if (*v == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    return *v >= 0 && *v <= max;
}

static int
numeric_host(PyObject *o, int family, void *dst)
{
    if (!PyUnicode_Check(o))
        return 0;
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(o, &n);
    if (s == NULL) {
        PyErr_Clear();
        return 0;
    }
    return (size_t)n == strlen(s) && inet_pton(family, s, dst) == 1;
}

/* The struct sockaddr for a sendto() address in the forms that need no
 * name resolution: (numeric host, port[, flowinfo, scope_id]) tuples and
 * Unix paths. 1: done; 0: anything else, which the Python slow path
 * resolves, or raises for as socket.sendto() would. */
static int
to_sockaddr(int family, PyObject *addr, struct sockaddr_storage *ss, socklen_t *len)
{
    memset(ss, 0, sizeof(*ss));
    switch (family) {
    case AF_INET: {
        struct sockaddr_in *a = (struct sockaddr_in *)ss;
        long port;
        if (!PyTuple_CheckExact(addr) || PyTuple_GET_SIZE(addr) != 2 ||
            !port_arg(PyTuple_GET_ITEM(addr, 1), 65535, &port) ||
            !numeric_host(PyTuple_GET_ITEM(addr, 0), AF_INET, &a->sin_addr))
            return 0;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        *len = sizeof(*a);
        return 1;
    }
    case AF_INET6: {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        long port, flowinfo = 0, scope = 0;
        Py_ssize_t n = PyTuple_CheckExact(addr) ? PyTuple_GET_SIZE(addr) : 0;
        if (n < 2 || n > 4 || !port_arg(PyTuple_GET_ITEM(addr, 1), 65535, &port) ||
            (n > 2 && !port_arg(PyTuple_GET_ITEM(addr, 2), 0xfffff, &flowinfo)) ||
            (n > 3 && !port_arg(PyTuple_GET_ITEM(addr, 3), UINT_MAX, &scope)) ||
            !numeric_host(PyTuple_GET_ITEM(addr, 0), AF_INET6, &a->sin6_addr))
            return 0;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        a->sin6_flowinfo = htonl((uint32_t)flowinfo);
        a->sin6_scope_id = (uint32_t)scope;
        *len = sizeof(*a);
        return 1;
    }
    case AF_UNIX: {
        struct sockaddr_un *a = (struct sockaddr_un *)ss;
        PyObject *path;
        if (PyUnicode_Check(addr)) {
            path = PyUnicode_EncodeFSDefault(addr);
            if (path == NULL) {
                PyErr_Clear();
                return 0;
            }
        }
        else if (PyBytes_Check(addr))
            path = Py_NewRef(addr);
        else
            return 0;
        Py_ssize_t n = PyBytes_GET_SIZE(path);
        int ok = (size_t)n < sizeof(a->sun_path);
        if (ok) {
            /* socket.sendto's length: the path, without a terminating NUL */
            a->sun_family = AF_UNIX;
            memcpy(a->sun_path, PyBytes_AS_STRING(path), n);
            *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
        }
        Py_DECREF(path);
        return ok;
    }
    }
    return 0;
}

/* to_sockaddr through the one-entry cache: an echo replies to the very
 * address object datagram_received was given. Only immutable objects are
 * kept. */
static int
cached_to(DatagramObject *t, PyObject *addr)
{
    if (addr == t->to_obj)
        return 1;
    if (!to_sockaddr(t->family, addr, &t->to, &t->to_len)) {
        Py_CLEAR(t->to_obj);
        return 0;
    }
    if (PyTuple_CheckExact(addr) || PyUnicode_CheckExact(addr) || PyBytes_CheckExact(addr))
        Py_XSETREF(t->to_obj, Py_NewRef(addr));
    else
        Py_CLEAR(t->to_obj);
    return 1;
}

/* --- called by the Go sink (bridge.h) --------------------------------- */

static int
datagram_received(DatagramObject *t, const char *buf, long n, const char *addr, int addrlen)
{
    PyObject *from = t->from_obj;
    if (from == NULL || (socklen_t)addrlen != t->from_len || memcmp(addr, &t->from, addrlen) != 0) {
        from = from_sockaddr((const struct sockaddr *)addr, (socklen_t)addrlen);
        if (from == NULL)
            return callback_failed(t, "_read_ready");
        memcpy(&t->from, addr, addrlen);
        t->from_len = (socklen_t)addrlen;
        Py_XSETREF(t->from_obj, from);
    }
    PyObject *data = PyBytes_FromStringAndSize(buf, n);
    if (data == NULL)
        return callback_failed(t, "_read_ready");
    PyObject *args[3] = {Py_NewRef(t->base.protocol), data, Py_NewRef(from)};
    PyObject *r = PyObject_VectorcallMethod(str_datagram_received, args,
                                            3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    Py_DECREF(args[0]);
    Py_DECREF(data);
    Py_DECREF(args[2]);
    if (r == NULL)
        return callback_failed(t, "_read_ready");
    Py_DECREF(r);
    return 0;
}

int
goloop_datagram_received(PyObject *o, const char *buf, long n, const char *addr, int addrlen)
{
    DatagramObject *t = D(o);
    if (t->base.protocol == NULL)
        return 0;
    goloop_scope s;
    if (goloop_scope_enter(&t->base, &s, GOLOOP_READ_CTX(&t->base)) < 0)
        return callback_failed(t, "_read_ready");
    return goloop_scope_leave(&t->base, &s, datagram_received(t, buf, n, addr, addrlen),
                              "_read_ready", NULL);
}

int
goloop_datagram_error(PyObject *o, PyObject *exc, int mode)
{
    DatagramObject *t = D(o);
    if (t->base.protocol == NULL) {
        Py_DECREF(exc);
        return 0;
    }
    const char *handle = mode == 1 ? "_sendto_ready" : "_read_ready";
    goloop_scope s;
    s.ctx = NULL;
    s.loop = NULL;
    PyObject *ctx = mode == 1 ? GOLOOP_WRITE_CTX(&t->base) : GOLOOP_READ_CTX(&t->base);
    if (mode != 2 && goloop_scope_enter(&t->base, &s, ctx) < 0) {
        Py_DECREF(exc);
        return callback_failed(t, handle);
    }
    PyObject *proto = Py_NewRef(t->base.protocol);
    PyObject *r = PyObject_CallMethodOneArg(proto, str_error_received, exc);
    Py_DECREF(proto);
    Py_DECREF(exc);
    int rc = 0;
    if (r != NULL)
        Py_DECREF(r);
    else if (mode == 2)
        return -1;   /* for sendto's caller; no scope was entered */
    else
        rc = callback_failed(t, handle);
    return mode == 2 ? rc : goloop_scope_leave(&t->base, &s, rc, handle, NULL);
}

/* --- methods ----------------------------------------------------------- */

static PyObject *
send_done(int rc)
{
    if (rc < 0)
        return NULL;
    if (rc == 2)   /* queued: see send_go */
        Py_RETURN_NONE;
    if (rc == 1 && goloop_warn_lost_write() < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* GoloopDatagramSendTo, keeping the context the send was made in as the
 * writer's when it is the first to be queued: asyncio adds its writer
 * handle there, before pause_writing() can run. */
static PyObject *
send_go(DatagramObject *t, const char *buf, Py_ssize_t len, const void *sa, socklen_t salen)
{
    PyObject *ctx = PyContext_CopyCurrent();
    if (ctx == NULL)
        return NULL;
    int rc = GoloopDatagramSendTo(t->base.id, (char *)buf, (long)len, (char *)sa, (int)salen);
    if (rc == 2)
        Py_XSETREF(t->base.write_ctx, ctx);
    else
        Py_DECREF(ctx);
    return send_done(rc);
}

/* Sends the datagram: from here when the transport is idle (datagram.go,
 * sync: open, nothing queued), sparing the call into Go whose SendTo would
 * make the same one system call; through Go otherwise, and when the socket
 * refuses with EAGAIN (Go tries again and queues). Another errno goes to
 * error_received through Go, without a second attempt: a connected UDP
 * socket's ECONNREFUSED is a pending error that the failed send consumed,
 * and asyncio reports it and drops the datagram. */
static PyObject *
send_to(DatagramObject *t, const char *buf, Py_ssize_t len, const void *sa, socklen_t salen)
{
    if (t->base.ws.idle) {
        ssize_t n = sa != NULL ? sendto(t->base.fd, buf, (size_t)len, MSG_NOSIGNAL, sa, salen)
                               : send(t->base.fd, buf, (size_t)len, MSG_NOSIGNAL);
        if (n >= 0)
            Py_RETURN_NONE;
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            if (GoloopDatagramSendFailed(t->base.id, errno, sa == NULL) < 0)
                return NULL;
            Py_RETURN_NONE;
        }
    }
    return send_go(t, buf, len, sa, salen);
}

/* sendto() for an address to_sockaddr cannot read: goloop/_loop.py sends
 * it, or resolves it for the queue, or reports why not, as asyncio's
 * sendto() would. */
static PyObject *
sendto_slow(DatagramObject *t, PyObject *data, const char *buf, Py_ssize_t len, PyObject *addr)
{
    int state = GoloopDatagramState(t->base.id);
    if (state < 0)
        return NULL;
    if (state & 1)   /* dropped: counted on a transport with an address */
        return send_done(GoloopDatagramSendTo(t->base.id, (char *)buf, (long)len, NULL, 0));
    PyObject *resolved = PyObject_CallFunction(dh.sendto_slow, "OOOO", (PyObject *)t, data, addr,
                                               (state & 2) ? Py_True : Py_False);
    if (resolved == NULL)
        return NULL;
    if (resolved == Py_None)
        return resolved;
    struct sockaddr_storage ss;
    socklen_t sslen;
    if (!to_sockaddr(t->family, resolved, &ss, &sslen)) {
        PyErr_Format(PyExc_ValueError, "goloop: cannot send to %R", resolved);
        Py_DECREF(resolved);
        return NULL;
    }
    Py_DECREF(resolved);
    return send_to(t, buf, len, &ss, sslen);
}

static PyObject *
send_buffer(DatagramObject *t, PyObject *data, const char *buf, Py_ssize_t len, PyObject *addr)
{
#if PY_VERSION_HEX < 0x030D0000
    if (len == 0)   /* sent from 3.13 on */
        Py_RETURN_NONE;
#endif
    if (t->address != NULL) {
        int set = PyObject_IsTrue(t->address);
        if (set < 0)
            return NULL;
        if (set) {
            if (addr != Py_None && addr != t->address) {
                int eq = PyObject_RichCompareBool(addr, t->address, Py_EQ);
                if (eq < 0)
                    return NULL;
                if (!eq)
                    return PyErr_Format(PyExc_ValueError, "Invalid address: must be None or %S",
                                        t->address);
            }
            addr = t->address;
        }
    }
    if (t->connected)   /* send(): the kernel knows the peer */
        return send_to(t, buf, len, NULL, 0);
    if (!cached_to(t, addr))
        return sendto_slow(t, data, buf, len, addr);
    return send_to(t, buf, len, &t->to, t->to_len);
}

static PyObject *
datagram_sendto(DatagramObject *t, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *data = NULL, *addr = Py_None;
    Py_ssize_t nkw = kwnames != NULL ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs > 2 || nargs + nkw > 2) {
        PyErr_Format(PyExc_TypeError, "sendto() takes from 2 to 3 positional arguments but %zd were given",
                     nargs + nkw + 1);
        return NULL;
    }
    if (nargs > 0)
        data = args[0];
    if (nargs > 1)
        addr = args[1];
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, i);
        if (PyUnicode_CompareWithASCIIString(name, "data") == 0 && data == NULL)
            data = args[nargs + i];
        else if (PyUnicode_CompareWithASCIIString(name, "addr") == 0 && nargs < 2)
            addr = args[nargs + i];
        else {
            PyErr_Format(PyExc_TypeError, "sendto() got an unexpected keyword argument %R", name);
            return NULL;
        }
    }
    if (data == NULL) {
        PyErr_SetString(PyExc_TypeError, "sendto() missing 1 required positional argument: 'data'");
        return NULL;
    }
    if (!PyBytes_Check(data) && !PyByteArray_Check(data) && !PyMemoryView_Check(data)) {
        PyObject *name = PyType_GetName(Py_TYPE(data));
        if (name != NULL) {
            PyErr_Format(PyExc_TypeError,
                         "data argument must be a bytes-like object, not %R", name);
            Py_DECREF(name);
        }
        return NULL;
    }
    if (PyBytes_CheckExact(data))
        return send_buffer(t, data, PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), addr);
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    PyObject *r = send_buffer(t, data, view.buf, view.len, addr);
    PyBuffer_Release(&view);
    return r;
}

static PyObject *
datagram_set_protocol(DatagramObject *t, PyObject *protocol)
{
    Py_XSETREF(t->base.protocol, Py_NewRef(protocol));
    Py_RETURN_NONE;
}

static int
datagram_traverse(DatagramObject *t, visitproc visit, void *arg)
{
    Py_VISIT(t->address);
    Py_VISIT(t->from_obj);
    Py_VISIT(t->to_obj);
    return goloop_transport_traverse(&t->base, visit, arg);
}

static int
datagram_clear(DatagramObject *t)
{
    Py_CLEAR(t->address);
    Py_CLEAR(t->from_obj);
    Py_CLEAR(t->to_obj);
    return goloop_transport_clear(&t->base);
}

static PyObject *
get_address(DatagramObject *t, void *c)
{
    return goloop_get_obj(t->address);
}

static PyMethodDef datagram_methods[] = {
    {"sendto", (PyCFunction)(void (*)(void))datagram_sendto, METH_FASTCALL | METH_KEYWORDS,
     "Send data to the transport.\n\nThis does not block; it buffers the data and arranges "
     "for it to be sent out asynchronously. addr is target socket address. If addr is None "
     "use target address pointed on transport creation."},
    {"set_protocol", (PyCFunction)datagram_set_protocol, METH_O, "Set a new protocol."},
    {NULL}
};

static PyGetSetDef datagram_getset[] = {
    {"_address", (getter)get_address, NULL, NULL, NULL},
    {NULL}
};

/* What only a datagram transport has: goloop_transport_type adds the rest. */
static PyType_Slot datagram_slots[] = {
    {Py_tp_doc, "A UDP or Unix datagram socket transport served by goloop's Go core."},
    {Py_tp_traverse, datagram_traverse},
    {Py_tp_clear, datagram_clear},
    {Py_tp_methods, datagram_methods},
    {Py_tp_getset, datagram_getset},
    {0, NULL},
};

static PyType_Spec datagram_spec = {
    .name = "goloop._DatagramTransport",
    .basicsize = sizeof(DatagramObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = datagram_slots,
};

/* _new_datagram_transport(loop, sock, protocol, extra, address): registers
 * sock's fd with the loop's core (not read until _start). extra is
 * asyncio's dict, with peername filled in by the caller; address is
 * remote_addr or None. On failure the socket is left as it was, open, for
 * the caller to close. */
static PyObject *
new_datagram_transport(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "_new_datagram_transport() takes 5 arguments");
        return NULL;
    }
    PyObject *loop = args[0], *sock = args[1], *protocol = args[2], *extra = args[3],
             *address = args[4];
    if (!PyDict_Check(extra)) {
        PyErr_SetString(PyExc_TypeError, "extra must be a dict");
        return NULL;
    }
    int fd = goloop_transport_fd(loop, sock);
    if (fd < 0)
        return NULL;
    PyObject *famobj = PyObject_GetAttr(sock, str_family);
    if (famobj == NULL)
        return NULL;
    long family = PyLong_AsLong(famobj);
    Py_DECREF(famobj);
    if (family == -1 && PyErr_Occurred())
        return NULL;
    PyObject *peer = PyDict_GetItemWithError(extra, str_peername);
    if (peer == NULL && PyErr_Occurred())
        return NULL;
    int connected = peer != NULL ? PyObject_IsTrue(peer) : 0;
    if (connected < 0)
        return NULL;
    /* asyncio's sendto drops what comes after the connection is lost only
     * when the transport has an _address */
    int addressed = address != Py_None ? PyObject_IsTrue(address) : 0;
    if (addressed < 0)
        return NULL;
    DatagramObject *t = D(goloop_transport_alloc(datagram_type, (LoopObject *)loop, protocol, fd));
    if (t == NULL)
        return NULL;
    t->base.extra = Py_NewRef(extra);
    t->base.extra_made = 1;   /* _datagram_transport filled it, as asyncio does */
    t->address = address != Py_None ? Py_NewRef(address) : NULL;
    t->family = (int)family;
    t->connected = (char)connected;
    t->base.id = GoloopDatagramNew(((LoopObject *)loop)->id, fd, (PyObject *)t, &t->base.ws,
                                   QUEUED_OVERHEAD, addressed);
    return goloop_transport_registered(&t->base, sock);
}

/* _set_datagram_helpers(callback_failed, sendto_slow), once, from
 * goloop/_loop.py. */
static PyObject *
set_datagram_helpers(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject **slots[] = {&dh.callback_failed, &dh.sendto_slow};
    return goloop_set_helpers("_set_datagram_helpers", slots, Py_ARRAY_LENGTH(slots), args,
                              nargs);
}

static PyMethodDef datagram_functions[] = {
    {"_new_datagram_transport", (PyCFunction)(void (*)(void))new_datagram_transport,
     METH_FASTCALL, NULL},
    {"_set_datagram_helpers", (PyCFunction)(void (*)(void))set_datagram_helpers, METH_FASTCALL,
     NULL},
    {NULL}
};

int
goloop_init_datagram_type(PyObject *module)
{
    static const char *const bases[] = {"_FlowControlMixin", "DatagramTransport", NULL};
    if (goloop_intern(&str_datagram_received, "datagram_received") < 0 ||
        goloop_intern(&str_error_received, "error_received") < 0 ||
        goloop_intern(&str_family, "family") < 0 || goloop_intern(&str_peername, "peername") < 0)
        return -1;
    datagram_type = goloop_transport_type(module, &datagram_spec, bases);
    if (datagram_type == NULL)
        return -1;
    return PyModule_AddFunctions(module, datagram_functions);
}
