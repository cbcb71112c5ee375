/* The C side of the bridge: object layouts and the state shared by the C
 * files. Only pybridge/ includes Python.h. */
#ifndef GOLOOP_H
#define GOLOOP_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <sys/socket.h>
#include "bridge.h"

typedef struct {
    PyObject_HEAD
    int id;                    /* slot in the Go registry; -1 once freed */
    char closed;
    char debug;
    PyObject *current_handle;  /* the running handle, in debug mode only */
    PyObject *task_factory;    /* asyncio's _task_factory, read on every create_task */
    goloop_intake intake;
    goloop_streams streams;
    /* The buffer a BufferedProtocol's get_buffer() lent for the read under
     * way (stream.c). One read runs at a time on a loop, so one view per
     * loop serves all its transports. */
    Py_buffer read_view;
    char has_read_view;
    /* The bytes object a large read of a Protocol's stream goes into,
     * from goloop_stream_lend to goloop_stream_lent_data (stream.c); for
     * a StreamReaderProtocol's, the bytearray of read_reader, its
     * StreamReader, which held read_base bytes before (reader.c). */
    PyObject *read_bytes;
    PyObject *read_reader;
    Py_ssize_t read_base;
} LoopObject;

/* goloop's Handle and TimerHandle subclass asyncio.Handle and
 * asyncio.TimerHandle, so isinstance() checks and asyncio's own __repr__
 * hold. Those classes use __slots__, every name of which goloop's getsets
 * shadow (checked at init), so their storage right after the object header
 * holds goloop's own fields, as in the transport; only __weakref__ keeps
 * its place: on 3.11 asyncio.Handle's weak reference list is at offset 72
 * (weakreflist; checked), from 3.12 it lives before the header. Both types
 * share one layout, with the fields at the same offset. A handle is 128
 * bytes with its GC header (248 with the slots left unused): a burst of
 * accepted connections has several each in flight, whose memory the
 * allocator keeps. Arguments are stored inline when there is at most one
 * (the common case: Task steps take none, future callbacks one), so
 * call_soon allocates no tuple. */
typedef struct {
    PyObject_HEAD
    PyObject *callback;          /* NULL once cancelled */
    PyObject *arg0;              /* the only argument when nargs == 1 */
    PyObject *args;              /* tuple when nargs > 1 */
    PyObject *context;
    LoopObject *loop;
    PyObject *source_traceback;  /* list, debug mode only */
    PyObject *repr;              /* kept on cancel in debug mode, as asyncio does */
    PyObject *weakreflist;       /* 3.11: asyncio.Handle's __weakref__ slot */
    PyObject *lock;              /* threading.RLock of a _ThreadSafeHandle (3.14+), else NULL */
    Py_ssize_t nargs;
    double when;
    char cancelled;
    char scheduled;              /* a timer still in the heap */
} HandleObject;

extern PyTypeObject *goloop_handle_type;   /* heap types, made at module init */
extern PyTypeObject *goloop_timer_type;
extern PyTypeObject *goloop_threadsafe_type;   /* NULL before 3.14 */
int goloop_init_handle_types(PyObject *module);
#define GOLOOP_IS_HANDLE(o) (Py_IS_TYPE(o, goloop_handle_type) || \
                             Py_IS_TYPE(o, goloop_timer_type) || \
                             (goloop_threadsafe_type && Py_IS_TYPE(o, goloop_threadsafe_type)))
extern PyTypeObject Goloop_LoopType;

/* Set in a child of a bare os.fork(): the Go runtime did not survive it. */
extern int goloop_forked;
int goloop_check_forked(void);

/* Python helpers registered by goloop/_loop.py through _set_helpers(): the
 * cold paths (formatting, logging, exception contexts) stay in Python. */
typedef struct {
    PyObject *callback_failed;   /* (handle, exc) -> None */
    PyObject *log_slow;          /* (handle, seconds) -> None */
    PyObject *extract_stack;     /* () -> list */
    PyObject *futures;           /* asyncio.futures, for its Future */
    PyObject *tasks;             /* asyncio.tasks, for its Task */
    PyObject *fileobj_to_fd;     /* selectors._fileobj_to_fd: its rules and messages */
} Helpers;
extern Helpers goloop_helpers;

/* asyncio.futures.Future and asyncio.tasks.Task as asyncio's loop finds
 * them, at each call: a borrowed reference, or NULL with an exception. */
PyObject *goloop_future_type(void);
PyObject *goloop_task_type(void);

extern PyObject *goloop_str_loop;           /* "loop" */
extern PyObject *goloop_kwnames_loop;       /* ("loop",) */
extern PyObject *goloop_str_context;        /* "context" */
extern PyObject *goloop_str_create_task_slow;
/* *s = the interned string v: 0, or -1 with an exception (module init). */
int goloop_intern(PyObject **s, const char *v);
/* The body of a _set_*_helpers(*args) function, which goloop/_loop.py
 * calls once: each of the n arguments into its slot, as a new reference. */
PyObject *goloop_set_helpers(const char *name, PyObject **slots[], Py_ssize_t n,
                             PyObject *const *args, Py_ssize_t nargs);
/* The exception set is one asyncio lets escape from its callbacks and
 * transports instead of handling it: KeyboardInterrupt or SystemExit. */
static inline int
goloop_stop_exception(void)
{
    return PyErr_ExceptionMatches(PyExc_SystemExit) ||
           PyErr_ExceptionMatches(PyExc_KeyboardInterrupt);
}

/* Handles the loop alone holds are not tracked by the cyclic GC: a burst of
 * queued callbacks would otherwise be scanned by every young collection,
 * which cost more than the rest of call_soon together. The loop's own
 * traverse stands in for them (goloop_visit), and a handle is tracked as
 * soon as something else may hold it: when it leaves the loop with other
 * references left (goloop_release), or when it is made for Python code to
 * keep (_handle). */
HandleObject *goloop_handle_new(PyTypeObject *type, LoopObject *loop,
                                PyObject *const *args, Py_ssize_t nargs,
                                PyObject *context);
double goloop_monotonic(void);
int goloop_intake_soon(LoopObject *loop, PyObject *handle);   /* steals */
PyObject *goloop_fetch_exception(void);   /* the raised exception, normalized; clears it */
void goloop_restore_exception(PyObject *exc);   /* raises it again; steals */

/* The native transports' object layout, TransportObject: goloop.
 * _SocketTransport, a TCP or Unix stream socket served by the Go core's
 * Stream (stream.c, stream.go), is one; goloop._DatagramTransport, a UDP
 * or Unix datagram socket served by its Datagram (datagram.c, datagram.go),
 * starts with one (DatagramObject). What does not depend on the kind is in
 * transport.c and transport.go, written once for both; fields a kind does
 * not use stay NULL (a datagram's server, peername, empty_waiter and own
 * context).
 *
 * Each type subclasses asyncio.transports._FlowControlMixin (so isinstance
 * checks against Transport or DatagramTransport and _FlowControlMixin hold,
 * as asyncio's sendfile fallback requires) the way the handles subclass
 * asyncio's. Every name in the bases' __slots__ (_extra, _loop,
 * _protocol_paused, _high_water, _low_water) is shadowed by a getset of the
 * same name, so their storage, right after the object header, is free: it
 * holds the first five fields (checked at init). A stream holds what an
 * idle connection needs and no more, for the memory each one costs: no
 * buffers, and no extra dict until something asks for it (transport.c,
 * make_extra).
 *
 * Ownership: the Python socket object owns the descriptor; the transport
 * holds it (sock) and closes it once the Go core has let go of the fd:
 * after protocol.connection_lost() (the core's Lost, as asyncio's
 * _call_connection_lost does), or in the finalizer of a transport that was
 * never closed (asyncio's __del__), which first takes the fd back from the
 * core. The Go side holds a reference to the transport from creation until
 * Lost is delivered, as asyncio's selector holds the read handle: an open
 * transport is not collected while its loop lives. The loop's traverse
 * reports that reference, and closing the loop drops it. */
typedef struct {
    PyObject_HEAD
    /* in the bases' slot storage */
    PyObject *extra;         /* asyncio's _extra once made; till then the caller's dict or NULL */
    LoopObject *loop;        /* NULL once the connection is lost, as asyncio's _loop */
    PyObject *sock;          /* socket.socket; NULL once closed */
    PyObject *protocol;      /* NULL once the connection is lost */
    PyObject *server;        /* base_events.Server or NULL, until detached */
    /* the transport's own */
    PyObject *empty_waiter;  /* future of _make_empty_waiter (sendfile) */
    /* The contextvars.Context each kind of callback the core dispatches
     * runs in: what asyncio's handles for them would carry (GOLOOP_*_CTX).
     * context is the connection's own (3.15's context=), used for all when
     * set. Else as the selector transport's handles: reads in a copy taken
     * when reading starts or resumes (_add_reader), flow control in one
     * taken when a write is first queued (_add_writer), connection_lost in
     * one taken at close()/abort() (call_soon), or the read one when the
     * connection ends on its own. */
    PyObject *context;
    PyObject *read_ctx;
    PyObject *write_ctx;
    PyObject *lost_ctx;
    PyObject *dict;
    PyObject *weakreflist;
    PyObject *peername;      /* the peer's address while extra is not made */
    int id;                  /* in the Go transport registry; -1 when none */
    int fd;
    goloop_wstate ws;        /* written by transport.go */
    char buffered;           /* protocol is an asyncio.BufferedProtocol */
    char feeds_reader;       /* protocol is asyncio's StreamReaderProtocol (reader.c) */
    char protocol_paused;    /* pause_writing() called, resume_writing() not yet */
    char extra_made;         /* extra is the complete dict (make_extra; a datagram's always) */
    /* A plain protocol's last read was large, so the core lends the next
     * (core.largeRead): its own flag, seen from the deliveries here. */
    char large_read;
    /* pause_reading() calls that paused: a run of reads (stream.c) skips
     * a stream paused since the run was planned, even if resumed since. */
    unsigned short read_pauses;
} TransportObject;

#define GOLOOP_READ_CTX(t) ((t)->context ? (t)->context : (t)->read_ctx)
#define GOLOOP_WRITE_CTX(t) ((t)->context ? (t)->context : \
                             (t)->write_ctx ? (t)->write_ctx : (t)->read_ctx)
#define GOLOOP_LOST_CTX(t) ((t)->context ? (t)->context : (t)->lost_ctx ? (t)->lost_ctx : \
                            (t)->read_ctx ? (t)->read_ctx : (t)->write_ctx)

/* transport.c: a protocol callback the core dispatches runs as the asyncio
 * handle that would have run it: inside that handle's context (entered by
 * goloop_scope_enter, exited by goloop_scope_leave whatever the callback
 * did) and, in debug mode, timed for the slow-callback warning, which names
 * the handle as "<Handle Type.handle(arg)>". scope_leave keeps an exception
 * the callback left set and returns rc, or -1 if the warning itself raised
 * KeyboardInterrupt or SystemExit. */
typedef struct {
    PyObject *ctx;       /* entered; NULL for none */
    LoopObject *loop;    /* debug mode: the loop, for slow_callback_duration */
    double t0;
} goloop_scope;

int goloop_scope_enter(TransportObject *t, goloop_scope *s, PyObject *ctx);
int goloop_scope_leave(TransportObject *t, goloop_scope *s, int rc, const char *handle,
                       PyObject *arg);
/* A copy of the current context into *slot, as asyncio's Handle(context=None)
 * takes one, unless the connection has a context of its own (3.15). */
int goloop_capture_context(TransportObject *t, PyObject **slot);

/* Set by goloop/_loop.py (_set_transport_helpers): the cold paths. */
typedef struct {
    PyObject *buffered_protocol;   /* asyncio.BufferedProtocol */
    PyObject *fatal_error;         /* (transport, exc, message): _fatal_error's report */
    PyObject *callback_failed;     /* (transport, exc, message): pause/resume_writing */
    PyObject *lost_failed;         /* (loop, transport, arg, exc): connection_lost raised */
    PyObject *logger;              /* asyncio's logger */
    PyObject *transport_socket;    /* asyncio.trsock.TransportSocket */
} TransportHelpers;
extern TransportHelpers goloop_transport_helpers;

/* A protocol call raised (exception set): asyncio's except branches. With
 * KeyboardInterrupt or SystemExit returns -1, the exception still set. Else
 * the exception is reported as _fatal_error does and the transport is
 * force-closed with it (the Go side then finds it lost); returns 0. */
int goloop_transport_fatal(TransportObject *t, const char *message);
/* logger.debug(fmt, t) in debug mode: 0, or -1 with its exception set. */
int goloop_log_debug(TransportObject *t, const char *fmt);
/* asyncio's warning for a write dropped after the connection was lost. */
int goloop_warn_lost_write(void);
/* set_write_buffer_limits' high/low: None (or absent) is LLONG_MIN, core.Unset. */
int goloop_limit_arg(PyObject *o, long long *v);
/* sock.getsockname() or sock.getpeername() (method), None if it raises
 * OSError; a new reference, or NULL. */
PyObject *goloop_sock_address(PyObject *sock, PyObject *method);
void goloop_close_socket(TransportObject *t);   /* sock.close(), once; drops sock */
PyObject *goloop_get_obj(PyObject *o);   /* a getter's value: o, or None for NULL */

/* Making a transport: goloop_transport_fd checks the loop (a goloop loop,
 * open, in this process) and returns sock.fileno(), or -1 with an
 * exception; goloop_transport_alloc makes the object, zeroed past its
 * header but for loop, protocol and fd; the kind sets its own fields and
 * registers it with Go (id), and goloop_transport_registered then gives it
 * its socket and returns it. A failure leaves the socket as it was, open,
 * for the caller to close. */
int goloop_transport_fd(PyObject *loop, PyObject *sock);
TransportObject *goloop_transport_alloc(PyTypeObject *type, LoopObject *loop, PyObject *protocol,
                                        int fd);
PyObject *goloop_transport_registered(TransportObject *t, PyObject *sock);   /* NULL: t freed */

/* A transport type from spec (its doc, traverse, clear, and the methods and
 * getsets only it has), with what every transport has added: dealloc,
 * finalize, repr, __dict__ and weak references, the methods and getsets in
 * transport.c. bases names asyncio.transports' classes (NULL-terminated).
 * It is added to module; returns a new reference, or NULL. */
PyTypeObject *goloop_transport_type(PyObject *module, PyType_Spec *spec, const char *const *bases);
/* 0 if a getset of type shadows every __slots__ name of its bases, whose
 * storage holds the object's own fields (a transport's, a handle's), else
 * -1 with RuntimeError. */
int goloop_check_slots_shadowed(PyTypeObject *type);
/* The TransportObject part of tp_traverse and tp_clear. */
int goloop_transport_traverse(TransportObject *t, visitproc visit, void *arg);
int goloop_transport_clear(TransportObject *t);
int goloop_init_transport(PyObject *module);

/* stream.c */
int goloop_init_stream_type(PyObject *module);
/* reader.c: whether the transport's reads go to protocol, asyncio's own
 * StreamReaderProtocol, through goloop_feed_reader (1 or 0; never fails). */
int goloop_feeds_reader(PyObject *protocol);
/* protocol.data_received(n bytes at buf) done in C: 1 done, 0 not taken
 * (data_received must run), -1 error set, as data_received would raise. */
int goloop_feed_reader(PyObject *protocol, const char *buf, Py_ssize_t n);
/* A read of up to size bytes for protocol's StreamReader, into the end of
 * its buffer, grown for it: the memory, with the reader and its buffer
 * into the loop's read_reader and read_bytes; NULL, with no exception set,
 * when feed_data would not take its plain path (or memory ran out). */
char *goloop_reader_lend(LoopObject *loop, PyObject *protocol, Py_ssize_t size);
/* The n bytes read into goloop_reader_lend's memory, fed: the buffer cut
 * to what was read. The reader (a new reference), or NULL with the
 * exception set (the cut failed: as feed_data's extend() failing). */
PyObject *goloop_reader_cut(LoopObject *loop, Py_ssize_t n);
/* StreamReader._wakeup_waiter(): 0, or -1 with the exception set. */
int goloop_wakeup_waiter(PyObject *reader);
int goloop_init_reader(PyObject *module);
/* A stream transport for sock (whose descriptor is fd) on loop, not read
 * until _start; goloop_transport_abandon undoes it (listener.c). */
PyObject *goloop_transport_new(LoopObject *loop, PyObject *sock, PyObject *protocol,
                               PyObject *extra, PyObject *peername, PyObject *server,
                               PyObject *context, int fd);
void goloop_transport_abandon(PyObject *transport);

/* listener.c: the native accept path of create_server (listener.go). */
int goloop_init_listener(PyObject *module);

/* sock.c: the native halves of sock_recv, sock_recv_into, sock_sendall,
 * sock_accept and the datagram sock_* calls. A parked call is a _SockOp, held by the Go core as the fd's
 * reader or writer item next to the Handles, and run by goloop_run_ready. */
extern PyTypeObject *goloop_sockop_type;
int goloop_init_sock(PyObject *module);
int goloop_sockop_run(PyObject *op);         /* -1: SystemExit or KeyboardInterrupt */
int goloop_sockop_cancelled(PyObject *op);
PyObject *goloop_sock_recv_start(LoopObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *goloop_sock_recv_into_start(LoopObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *goloop_sock_sendall_start(LoopObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *goloop_sock_accept_start(LoopObject *self, PyObject *sock);
PyObject *goloop_sock_recvfrom_start(LoopObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *goloop_sock_recvfrom_into_start(LoopObject *self, PyObject *const *args,
                                          Py_ssize_t nargs);
PyObject *goloop_sock_sendto_start(LoopObject *self, PyObject *const *args, Py_ssize_t nargs);

/* goloop._DatagramTransport: a TransportObject (above) whose type also
 * subclasses asyncio.DatagramTransport. Addresses cross as struct sockaddr
 * bytes; the last one received and the last one sent to are kept with
 * their Python form, so that an exchange with one peer converts neither
 * way. */
typedef struct {
    TransportObject base;
    PyObject *address;         /* asyncio's _address (remote_addr) or NULL */
    PyObject *from_obj;        /* Python form of from (cache), or NULL */
    PyObject *to_obj;          /* Python object to was made from (cache), or NULL */
    struct sockaddr_storage from, to;
    socklen_t from_len, to_len;
    int family;
    char connected;            /* extra['peername'] was true: send() to the peer */
} DatagramObject;

int goloop_init_datagram_type(PyObject *module);

#endif
