/* goloop._SocketTransport: asyncio's _SelectorSocketTransport for TCP and
 * Unix stream sockets, with the socket I/O, write buffering and flow control
 * in the Go core (core.Stream, through stream.go). What it shares with the
 * datagram transport is in transport.c; here are the methods only a stream
 * has, which check arguments as asyncio does and call one Go export each,
 * and the helpers the Go sink calls to deliver reads to the protocol.
 * Layout and ownership: goloop.h, TransportObject. */
#include <errno.h>
#include <math.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include "goloop.h"
#include "_cgo_export.h"

static PyTypeObject *transport_type;

static PyObject *str_data_received, *str_eof_received, *str_get_buffer, *str_buffer_updated,
    *str_set_result, *str_create_future, *str_getpeername, *str_peername;

/* asyncio's wording, which changed over the versions this is built for. */
#if PY_VERSION_HEX >= 0x030E0000
#define WRITE_TYPE_MESSAGE "data argument must be a bytes, bytearray, or memoryview object, not %R"
#else
#define WRITE_TYPE_MESSAGE "data argument must be a bytes-like object, not %R"
#endif

#define T(o) ((TransportObject *)(o))

/* --- called by the Go sink (bridge.h) --------------------------------- */

#define LARGE_READ (64 << 10)   /* core's largeRead */

static int
data_failed(TransportObject *t)
{
    return goloop_transport_fatal(t, "Fatal error: protocol.data_received() call failed.");
}

/* protocol.data_received(data), stealing data; NULL: making it failed. */
static int
stream_data(TransportObject *t, PyObject *data)
{
    if (data == NULL)
        return goloop_transport_fatal(t, "Fatal read error on socket transport");
    PyObject *args[2] = {Py_NewRef(t->protocol), data};
    PyObject *r = PyObject_VectorcallMethod(str_data_received, args,
                                            2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    Py_DECREF(args[0]);
    Py_DECREF(data);
    return r == NULL ? data_failed(t) : (Py_DECREF(r), 0);
}

/* The n bytes at buf, or data if not NULL (stolen; its bytes are buf's),
 * to the protocol: fed to a StreamReader in C where reader.c can, else
 * handed to data_received. */
static int
deliver(TransportObject *t, const char *buf, long n, PyObject *data)
{
    if (t->feeds_reader) {
        PyObject *proto = Py_NewRef(t->protocol);
        int rc = goloop_feed_reader(proto, buf, n);
        Py_DECREF(proto);
        if (rc != 0) {
            Py_XDECREF(data);
            return rc < 0 ? data_failed(t) : 0;
        }
    }
    return stream_data(t, data != NULL ? data : PyBytes_FromStringAndSize(buf, n));
}

int
goloop_stream_data(PyObject *o, const char *buf, long n)
{
    TransportObject *t = T(o);
    t->large_read = n >= LARGE_READ;
    if (t->protocol == NULL)
        return 0;
    goloop_scope s;
    if (goloop_scope_enter(t, &s, GOLOOP_READ_CTX(t)) < 0)
        return goloop_transport_fatal(t, "Fatal read error on socket transport");
    return goloop_scope_leave(t, &s, deliver(t, buf, n, NULL), "_read_ready", NULL);
}

/* A read the core expects to be large (core.LendingStreamSink) goes
 * straight into a new bytes object of size bytes, which data_received then
 * gets cut to what was read: the data is never copied in user space, where
 * goloop_stream_data copies it out of the loop's read buffer. NULL, with no
 * exception set, leaves this read to that buffer (out of memory for size
 * bytes, the smaller copy may still fit). */
char *
goloop_stream_lend(PyObject *o, long size)
{
    LoopObject *loop = T(o)->loop;
    if (T(o)->protocol == NULL || loop == NULL || loop->read_bytes != NULL)
        return NULL;
    if (T(o)->feeds_reader) {
        char *p = goloop_reader_lend(loop, T(o)->protocol, size);
        if (p != NULL)
            return p;
    }
    PyObject *data = PyBytes_FromStringAndSize(NULL, size);
    if (data == NULL) {
        PyErr_Clear();
        return NULL;
    }
    loop->read_bytes = data;
    return PyBytes_AS_STRING(data);
}

/* The n bytes read into goloop_stream_lend's object, delivered; with n 0
 * the object is only dropped. As with a BufferedProtocol's view, nothing
 * runs between the two calls, so t->loop is the loop that lent it. */
int
goloop_stream_lent_data(PyObject *o, long n)
{
    TransportObject *t = T(o);
    t->large_read = n >= LARGE_READ;
    if (t->loop->read_reader != NULL) {
        PyObject *reader = goloop_reader_cut(t->loop, n);
        if (reader == NULL)
            return data_failed(t);
        int rc = 0;
        goloop_scope s;
        if (n > 0 && goloop_scope_enter(t, &s, GOLOOP_READ_CTX(t)) < 0)
            rc = goloop_transport_fatal(t, "Fatal read error on socket transport");
        else if (n > 0)
            rc = goloop_scope_leave(t, &s, goloop_wakeup_waiter(reader) < 0 ? data_failed(t) : 0,
                                    "_read_ready", NULL);
        Py_DECREF(reader);
        return rc;
    }
    PyObject *data = t->loop->read_bytes;
    t->loop->read_bytes = NULL;
    if (n == 0 || t->protocol == NULL) {
        Py_DECREF(data);
        return 0;
    }
    goloop_scope s;
    if (goloop_scope_enter(t, &s, GOLOOP_READ_CTX(t)) < 0) {
        Py_DECREF(data);
        return goloop_transport_fatal(t, "Fatal read error on socket transport");
    }
    int rc = _PyBytes_Resize(&data, n) < 0 ?   /* frees data and sets it NULL */
        stream_data(t, NULL) : deliver(t, PyBytes_AS_STRING(data), n, data);
    return goloop_scope_leave(t, &s, rc, "_read_ready", NULL);
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
        return goloop_transport_fatal(t, "Fatal error: protocol.eof_received() call failed.") < 0
                   ? -1 : 1;
    return keep;
}

int
goloop_stream_eof(PyObject *o)
{
    TransportObject *t = T(o);
    if (goloop_log_debug(t, "%r received EOF") < 0)
        PyErr_WriteUnraisable(o);
    if (t->protocol == NULL)
        return 0;
    goloop_scope s;
    if (goloop_scope_enter(t, &s, GOLOOP_READ_CTX(t)) < 0)
        return goloop_transport_fatal(t, "Fatal read error on socket transport") < 0 ? -1 : 1;
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
        res.rc = goloop_transport_fatal(t, "Fatal error: protocol.get_buffer() call failed.");
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
        res.rc = goloop_transport_fatal(t, "Fatal read error on socket transport");
        return res;
    }
    if (view->len == 0) {
        PyBuffer_Release(view);
        PyErr_SetString(PyExc_RuntimeError, "get_buffer() returned an empty buffer");
        res.rc = goloop_transport_fatal(t, "Fatal error: protocol.get_buffer() call failed.");
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
    if (goloop_scope_enter(t, &s, GOLOOP_READ_CTX(t)) < 0) {
        res.rc = goloop_transport_fatal(t, "Fatal error: protocol.get_buffer() call failed.");
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
        return goloop_transport_fatal(t, "Fatal error: protocol.buffer_updated() call failed.");
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
    if (goloop_scope_enter(t, &s, GOLOOP_READ_CTX(t)) < 0)
        return goloop_transport_fatal(t, "Fatal error: protocol.buffer_updated() call failed.");
    return goloop_scope_leave(t, &s, stream_buffer_updated(t, n), "_read_ready", NULL);
}

/* get_buffer(), the read, buffer_updated() in one call from Go instead of
 * two (core.ReadingStreamSink): the crossing it spares is a tenth of a
 * BufferedProtocol read's cost in goloop's own code. The read is made here,
 * as the write fast path's send is (send_now), only while the stream is
 * still open after get_buffer(); a get_buffer() that closed or aborted the
 * transport leaves the read to the core, which knows whether the stream
 * was lost. */
goloop_readbuf
goloop_stream_read_buffered(PyObject *o, int fd)
{
    goloop_readbuf res = {0};
    goloop_getbuf got = goloop_stream_get_buffer(o);
    res.rc = got.rc;
    if (got.rc < 0 || got.buf == NULL || T(o)->ws.closing) {
        res.out.lent = got.buf;
        res.out.len = got.len;
        return res;
    }
    ssize_t n = read(fd, got.buf, (size_t)got.len);
    res.out.read = 1;
    if (n < 0) {
        res.out.err = errno;
        n = 0;
    }
    res.out.n = n;
    res.rc = goloop_stream_buffer_updated(o, (long)n);
    return res;
}

/* As the core's read: nothing until the next poll. */
static int
read_again(int err)
{
    return err == EAGAIN || err == EWOULDBLOCK || err == EINTR;
}

/* Reads a run of streams, as goloop_streams_read describes, up to the
 * first it does not finish: one closed or paused since the run was planned
 * (run[i].pauses; paused and resumed is no different, as asyncio's
 * resume_reading() adds a new reader handle that waits for the next poll),
 * one whose read it began, or an exception. */
static goloop_run_result
read_run(goloop_ready_stream *run, long count, char *buf, long len)
{
    goloop_run_result res = {0};
    for (; res.done < count; res.done++) {
        TransportObject *t = T(run[res.done].self);
        int fd = run[res.done].fd, buffered = t->ws.buffered;
        if (!t->ws.reading || t->ws.closing || t->protocol == NULL ||
            t->read_pauses != run[res.done].pauses)
            return res;
        if (buffered) {
            goloop_readbuf r = goloop_stream_read_buffered((PyObject *)t, fd);
            res.out = r.out;
            if (r.rc < 0) {
                res.rc = -1;
                res.done++;
                return res;
            }
        } else {
            ssize_t n = read(fd, buf, (size_t)len);
            res.out.read = 1;
            res.out.err = n < 0 ? errno : 0;
            res.out.n = n < 0 ? 0 : n;
            if (n > 0 && goloop_stream_data((PyObject *)t, buf, (long)n) < 0) {
                res.rc = -1;
                res.done++;
                return res;
            }
        }
        if (res.out.read && (res.out.err ? read_again(res.out.err) :
                             res.out.n > 0 && (buffered || res.out.n < LARGE_READ)))
            continue;
        res.began = 1;
        return res;
    }
    return res;
}

/* core.StreamReader: the streams one poll made ready, read in turn with
 * one call from Go instead of one each: a plain Protocol's socket read and
 * its bytes handed to data_received, a BufferedProtocol's read as
 * goloop_stream_read_buffered does. Each is read only if it is still open
 * and reading once the callbacks before it have run, as the core's own
 * read would find it; otherwise the rest is left to the core. So is a read
 * begun but not finished here: at EOF, an error, a plain read large enough
 * that the core follows it with its lending, a buffer get_buffer() lent
 * while closing the transport. */
goloop_run_result
goloop_streams_read(goloop_ready_stream *run, long count, char *buf, long len)
{
    for (long i = 0; i < count; i++)
        run[i].pauses = T(run[i].self)->read_pauses;
    return read_run(run, count, buf, len);
}

#define CLOCK_RESOLUTION 1e-9   /* core's clockResolution */
#define MAX_TIMEOUT 86400.0      /* core's maxTimeout */
#define POLL_ROUNDS 64           /* polls one goloop_poll_read may make */

/* Whether every one of the n events is a stream's, ready only for reading,
 * that a run can read (a plain protocol's only if the core would not lend
 * its next read): their transports and fds go into run. */
static int
polled_streams(LoopObject *loop, struct epoll_event *events, int n, goloop_ready_stream *run)
{
    goloop_streams *m = &loop->streams;
    for (int i = 0; i < n; i++) {
        int fd = events[i].data.fd;
        if (events[i].events != EPOLLIN || fd < 0 || fd >= m->len || m->t[fd] == NULL)
            return 0;
        TransportObject *t = T(m->t[fd]);
        if (!t->ws.buffered && t->large_read)
            return 0;
        run[i].self = (PyObject *)t;
        run[i].fd = fd;
        run[i].pauses = t->read_pauses;
    }
    return 1;
}

/* Whether nothing waits in the intake: no callback or timer queued, no
 * timer cancelled since the tick's Collect. */
static int
intake_empty(LoopObject *loop)
{
    goloop_intake *in = &loop->intake;
    return in->nsoon == 0 && in->ntimers == 0 && in->cancelled == 0;
}

/* The reads of one poll's n events, if they are all streams to read and
 * nothing is to run before them: a callback another thread queued during
 * the wait (the intake holds it) or a timer due by now, which asyncio's
 * iteration runs before or along with the reader handles. Each transport is
 * looked up and held before any protocol runs, as the core looks up its
 * watchers, and a stream a callback before it paused or closed is skipped,
 * as the core skips its watcher; after a read left to the core or an
 * exception the rest are dropped, for the next poll to report again.
 * Returns whether it read (res says how far). */
static int
read_polled(LoopObject *loop, struct epoll_event *events, int n, double due,
            char *buf, long len, goloop_polled *res)
{
    goloop_ready_stream run[n];
    if (!intake_empty(loop) || (!isinf(due) && due < goloop_monotonic() + CLOCK_RESOLUTION) ||
        !polled_streams(loop, events, n, run))
        return 0;
    for (int i = 0; i < n; i++)
        Py_INCREF(run[i].self);
    res->read = 1;
    loop->intake.go_entered = 0;
    for (long i = 0; i < n; i++) {   /* the increment skips a paused or closed stream */
        goloop_run_result r = read_run(run + i, n - i, buf, len);
        i += r.done;
        if (r.rc < 0) {
            res->rc = -1;
            break;
        }
        if (r.began) {
            res->began = T(run[i].self)->id;
            res->out = r.out;
            break;
        }
    }
    for (int i = 0; i < n; i++) {
        events[i].events = 0;
        Py_DECREF(run[i].self);
    }
    return 1;
}

/* The timeout of the poll until due, as the core's tick computes it. */
static int
timeout_until(double due)
{
    if (isinf(due))
        return -1;
    double t = due - goloop_monotonic();
    return (int)ceil((t > MAX_TIMEOUT ? MAX_TIMEOUT : t < 0 ? 0 : t) * 1e3);
}

/* core.PollReader: the blocking poll and, when it found only streams to
 * read and nothing is to run before them, their reads (read_polled), so
 * that a busy server's tick crosses from Go once. Then it polls again, up
 * to POLL_ROUNDS times, while the reads left the loop as they found it:
 * nothing queued in the intake, no Go code run (every export looks its loop
 * or transport up, which sets the intake's go_entered), so the core would only
 * have come back to the same blocking poll. A Protocol echo server that
 * answers with write() stays in C between ticks. */
goloop_polled
goloop_poll_read(PyObject *o, int epfd, struct epoll_event *events, int maxevents,
                 int msec, double due, char *buf, long len)
{
    LoopObject *loop = (LoopObject *)o;
    goloop_polled res;
    for (int round = 1;; round++) {
        res = (goloop_polled){.began = -1};
        res.n = goloop_poll(epfd, events, maxevents, msec);
        if (res.n <= 0 || !read_polled(loop, events, res.n, due, buf, len, &res) ||
            res.rc < 0 || res.began >= 0 || loop->intake.go_entered || !intake_empty(loop) ||
            round == POLL_ROUNDS)
            return res;
        msec = timeout_until(due);
    }
}

/* --- methods ----------------------------------------------------------- */

/* The outcome of a Go write (stream.go, writeResult). */
static PyObject *
write_done(int rc, const char *method)
{
    switch (rc) {
    case 0:
        Py_RETURN_NONE;
    case 1:
        if (goloop_warn_lost_write() < 0)
            return NULL;
        Py_RETURN_NONE;
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

static int
is_buffered(PyObject *protocol)
{
    return PyObject_IsInstance(protocol, goloop_transport_helpers.buffered_protocol);
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
    t->feeds_reader = (char)goloop_feeds_reader(protocol);
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

static PyObject *
get_server(TransportObject *t, void *c)
{
    return goloop_get_obj(t->server);
}

static PyObject *
get_empty_waiter(TransportObject *t, void *c)
{
    return goloop_get_obj(t->empty_waiter);
}

/* asyncio's _paused (pause_reading() called, resume_reading() not yet), as
 * code written against the selector transport reads it; once closing it is
 * False here, where asyncio keeps the last value. */
static PyObject *
get_paused_reading(TransportObject *t, void *c)
{
    return PyBool_FromLong(!t->ws.closing && !t->ws.reading);
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
    {"set_protocol", (PyCFunction)transport_set_protocol, METH_O, "Set a new protocol."},
    {"_make_empty_waiter", (PyCFunction)transport_make_empty_waiter, METH_NOARGS, NULL},
    {"_reset_empty_waiter", (PyCFunction)transport_reset_empty_waiter, METH_NOARGS, NULL},
    {"_lend_fd", (PyCFunction)transport_lend_fd, METH_NOARGS, NULL},
    {NULL}
};

static PyGetSetDef transport_getset[] = {
    {"_server", (getter)get_server, NULL, NULL, NULL},
    {"_empty_waiter", (getter)get_empty_waiter, NULL, NULL, NULL},
    {"_paused", (getter)get_paused_reading, NULL, NULL, NULL},
    {NULL}
};

/* What only a stream has: goloop_transport_type adds the rest. */
static PyType_Slot transport_slots[] = {
    {Py_tp_doc, "A TCP or Unix stream socket transport served by goloop's Go core."},
    {Py_tp_traverse, goloop_transport_traverse},
    {Py_tp_clear, goloop_transport_clear},
    {Py_tp_methods, transport_methods},
    {Py_tp_getset, transport_getset},
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
 * extra has it), is stolen. server is NULL or None for none; context is the
 * connection's own contextvars.Context (3.15), or NULL or None. On failure
 * the socket is left as it was, open, for the caller to close. */
PyObject *
goloop_transport_new(LoopObject *loop, PyObject *sock, PyObject *protocol, PyObject *extra,
                     PyObject *peername, PyObject *server, PyObject *context, int fd)
{
    int buffered = is_buffered(protocol);
    TransportObject *t = buffered < 0 ? NULL :
        goloop_transport_alloc(transport_type, loop, protocol, fd);
    if (t == NULL) {
        Py_XDECREF(peername);
        return NULL;
    }
    t->extra = extra != NULL && extra != Py_None ? Py_NewRef(extra) : NULL;
    t->peername = peername;
    t->server = server != NULL && server != Py_None ? Py_NewRef(server) : NULL;
    t->context = context != NULL && context != Py_None ? Py_NewRef(context) : NULL;
    t->buffered = (char)buffered;
    t->feeds_reader = (char)goloop_feeds_reader(protocol);
    t->id = GoloopStreamNew(loop->id, fd, (PyObject *)t, buffered, &t->ws);
    return goloop_transport_registered(t, sock);
}

/* A transport whose set-up failed after goloop_transport_new (its server
 * refused it): as asyncio's half-made transport, it is never started and
 * its protocol hears nothing; the core lets go of the fd, and the socket
 * is closed. The server is dropped without _detach (it never attached). */
void
goloop_transport_abandon(PyObject *o)
{
    TransportObject *t = T(o);
    if (t->id >= 0 && GoloopTransportDetach(t->id) < 0)
        PyErr_WriteUnraisable(o);
    goloop_close_socket(t);
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
    if (extra != Py_None && !PyDict_Check(extra)) {
        PyErr_SetString(PyExc_TypeError, "extra must be a dict or None");
        return NULL;
    }
    int fd = goloop_transport_fd(loop, sock);
    if (fd < 0)
        return NULL;
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
    if (!given && (peername = goloop_sock_address(sock, str_getpeername)) == NULL)
        return NULL;
    return goloop_transport_new((LoopObject *)loop, sock, protocol, extra, peername, server,
                                context, fd);
}

static PyMethodDef stream_functions[] = {
    {"_new_socket_transport", (PyCFunction)(void (*)(void))new_socket_transport, METH_FASTCALL,
     NULL},
    {NULL}
};

int
goloop_init_stream_type(PyObject *module)
{
    static const char *const bases[] = {"_FlowControlMixin", NULL};
    if (goloop_intern(&str_data_received, "data_received") < 0 ||
        goloop_intern(&str_eof_received, "eof_received") < 0 ||
        goloop_intern(&str_get_buffer, "get_buffer") < 0 ||
        goloop_intern(&str_buffer_updated, "buffer_updated") < 0 ||
        goloop_intern(&str_set_result, "set_result") < 0 ||
        goloop_intern(&str_create_future, "create_future") < 0 ||
        goloop_intern(&str_getpeername, "getpeername") < 0 ||
        goloop_intern(&str_peername, "peername") < 0)
        return -1;
    transport_type = goloop_transport_type(module, &transport_spec, bases);
    if (transport_type == NULL)
        return -1;
    return PyModule_AddFunctions(module, stream_functions);
}
