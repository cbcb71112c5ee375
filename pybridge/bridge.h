/* Declarations shared by the Go files of the bridge and its C files.
 *
 * cgo forbids definitions in the preamble of a file with //export, so this
 * header only declares: the opaque CPython types Go passes around, and the
 * C helpers (handle.c, loop.c, module.c) that Go calls. Go never touches a
 * Python object's fields; it holds PyObject pointers and hands them back.
 *
 * Ownership: a PyObject pointer given to Go through goloop_* entry points is
 * a new reference that Go owns until it passes it to goloop_handle_run
 * (which steals it) or goloop_release. */
#ifndef GOLOOP_BRIDGE_H
#define GOLOOP_BRIDGE_H

#include <stdint.h>
#include <sys/epoll.h>

typedef struct _object PyObject;
typedef struct _ts PyThreadState;
typedef int (*goloop_visitproc)(PyObject *, void *);

/* The intake: what call_soon, call_at and TimerHandle.cancel queue without
 * entering Go. It lives in the C loop object; the Go side keeps a pointer and
 * moves its contents into the core at each tick (pyLoop.Collect), so Go is
 * entered about once per loop iteration, not once per call (design README
 * §2). Only touched with the GIL held. The items are new references. */
typedef struct {
    PyObject **soon;
    long nsoon, capsoon;
    PyObject **timers;
    double *whens;
    long ntimers, captimers;
    long cancelled;   /* scheduled timers cancelled since the last collect */
    int wakefd;       /* the core's eventfd (WakeFD) */
    int wake_pending; /* a wake-up was written since the last collect */
    /* Set by Go whenever an export looks up this loop or one of its
     * transports (registry.go): goloop_poll_read polls again only while
     * no Go code touched the loop. */
    int go_entered;
} goloop_intake;

/* The loop's open streams by fd, for the poll that reads the streams it
 * finds ready (goloop_poll_read): the transport object of each stream the
 * core has registered and that is not closing, borrowed (the Go side holds
 * a reference meanwhile), else NULL. It lives in the C loop object; only
 * transport.go writes it, with the GIL held, growing it with
 * goloop_streams_grow. */
typedef struct {
    PyObject **t;
    int len;
} goloop_streams;
int goloop_streams_grow(goloop_streams *m, int fd);   /* to hold fd: 0, or -1 with MemoryError */

/* handle.c */
/* Runs n handles (PyObject pointers) in order, stealing each and zeroing its
 * slot. Returns how many it consumed, negated if the last one raised an
 * exception that stops the loop (KeyboardInterrupt, SystemExit). */
long goloop_run_ready(uintptr_t *handles, long n);
void goloop_release(PyObject *handle);   /* the loop's reference, given up */
int  goloop_visit(PyObject *loop, goloop_visitproc visit, void *arg, uintptr_t *handles, long n);
int  goloop_handle_cancelled(PyObject *handle);

/* loop.c */
int  goloop_signalled(PyObject *loop, const char *data, long n); /* -1: stop the loop */

/* Kept current by transport.go in each transport object, so that the
 * transport's hottest methods need not call into Go. idle means C may send
 * straight to the socket (stream.c's write(), datagram.c's sendto()): the
 * transport is open with nothing queued (a stream: and has not had
 * write_eof()); Go clears it before the socket can be closed. closing and
 * reading are is_closing() and is_reading(). */
typedef struct {
    char idle;
    char closing;
    char reading;
    char buffered;   /* a stream's protocol is a BufferedProtocol */
} goloop_wstate;

/* The protocol side of the native transports, called by the Go sinks. t is
 * the transport object (borrowed). Unless said otherwise they return 0, or
 * -1 with an exception set that must stop the loop (KeyboardInterrupt,
 * SystemExit).
 *
 * transport.c: what both kinds call. */
int goloop_transport_pause_writing(PyObject *t);
int goloop_transport_resume_writing(PyObject *t);
void goloop_transport_drained(PyObject *t);   /* resolves a stream's _make_empty_waiter future */
/* connection_lost(exc), then closes the socket; steals exc (NULL: None). */
int goloop_transport_lost(PyObject *t, PyObject *exc);
int goloop_visit_objects(goloop_visitproc visit, void *arg, uintptr_t *objs, long n);
/* stream.c: a stream's reads. Any exception from the protocol but those
 * that stop the loop is handled as asyncio's transport does: reported
 * through the loop's exception handler, and the transport force-closed
 * with it (a nested call of GoloopTransportForceClose) -- the Go side then
 * finds the stream lost. */
int goloop_stream_data(PyObject *t, const char *buf, long n);
char *goloop_stream_lend(PyObject *t, long size);   /* NULL: use the loop's buffer */
int goloop_stream_lent_data(PyObject *t, long n);
int goloop_stream_eof(PyObject *t);   /* -1, or 1: keep open, 0: close */
typedef struct {
    char *buf;   /* NULL when rc != 0 or the protocol failed */
    long len;
    int rc;
} goloop_getbuf;
goloop_getbuf goloop_stream_get_buffer(PyObject *t);
int goloop_stream_buffer_updated(PyObject *t, long n);   /* n == 0: release only */
/* How far a read went (core.ReadOutcome): read, its n bytes delivered, or
 * err (an errno; n 0 without one: EOF); else lent, the len bytes
 * get_buffer() lent, not read into (NULL: get_buffer() failed the stream). */
typedef struct {
    int read;
    long n;
    int err;
    char *lent;
    long len;
} goloop_read_outcome;
/* get_buffer(), then, if the stream is still open, the read of fd into the
 * buffer and buffer_updated(); rc is the last call's. */
typedef struct {
    goloop_read_outcome out;
    int rc;
} goloop_readbuf;
goloop_readbuf goloop_stream_read_buffered(PyObject *t, int fd);
/* A run of streams made ready by one poll (core.StreamReader): each read in
 * turn, a plain stream's socket into buf and its bytes handed to
 * data_received, a BufferedProtocol's as goloop_stream_read_buffered does,
 * up to the first that needs the core (see goloop_streams_read). */
typedef struct {
    PyObject *self;
    int fd;
    unsigned short pauses;   /* C's: the transport's read_pauses when the run began */
} goloop_ready_stream;
typedef struct {
    long done;   /* streams finished before the one it stopped at */
    int began;   /* that one's read was begun: out says how far */
    goloop_read_outcome out;
    int rc;      /* -1: an exception that stops the loop; done counts its stream */
} goloop_run_result;
goloop_run_result goloop_streams_read(goloop_ready_stream *run, long count, char *buf, long len);
/* goloop_poll, then, when all it found was streams ready for reading and
 * nothing is to run before them (core.PollReader; due is when the first
 * timer is), their reads as goloop_streams_read makes them, a stream
 * paused or closed meanwhile skipped; and again while those reads left the
 * loop as they found it. loop is the running loop object. */
typedef struct {
    int n;       /* epoll_wait's count, or -errno */
    int read;    /* the reads were made, and every event zeroed */
    int began;   /* the transport id of a read begun and left to the core, or -1 */
    goloop_read_outcome out;
    int rc;      /* -1: an exception that stops the loop */
} goloop_polled;
goloop_polled goloop_poll_read(PyObject *loop, int epfd, struct epoll_event *events, int maxevents,
                               int msec, double due, char *buf, long len);
/* One buffer of writelines(), lent for the call. */
typedef struct {
    char *buf;
    long len;
} goloop_buf;
/* datagram.c: datagram_received(data, addr): addr is the sender's struct
 * sockaddr, addrlen bytes (0: None). A protocol exception is reported as
 * asyncio reports a failing _read_ready/_sendto_ready callback, and the
 * transport stays open. error_received(exc) steals exc; mode is where
 * asyncio would call it: 0 _read_ready, 1 _sendto_ready, 2 sendto(), where
 * an exception it raises is left set (-1) for sendto's caller. */
int goloop_datagram_received(PyObject *t, const char *buf, long n, const char *addr, int addrlen);
int goloop_datagram_error(PyObject *t, PyObject *exc, int mode);

/* listener.c: what a server's listening socket needs at each accept.
 * Allocated by _serve and owned by the Go listener (listener.go) from
 * GoloopListenerNew on; freed with goloop_listener_free, with the GIL held.
 * The objects are new references. */
typedef struct {
    PyObject *sock;      /* the listening socket.socket */
    PyObject *factory;   /* the protocol factory */
    PyObject *server;    /* base_events.Server, or None */
    PyObject *context;   /* contextvars.Context, copied per connection */
    PyObject *args;      /* asyncio's _accept_connection arguments, for error reports */
    int family, type, proto;
    int own_context;     /* each connection keeps its copy as its own context (3.15) */
} goloop_listener;
/* A round of accepts (core.ListenerSink's Accepted) is served between
 * goloop_accept_begin, which returns what goloop_accept_end takes, and
 * goloop_accept_end, which in debug mode warns if it was slow (-1 with an
 * exception set if the warning failed); l stays valid all the while. loop
 * is the running loop object (borrowed). In a round:
 * goloop_accepted: a connection accepted on l's socket: fd is non-blocking
 * and now C's; sa is the peer's raw struct sockaddr (salen bytes, lent for
 * the call). Returns 0, or -1 with KeyboardInterrupt or SystemExit set
 * (any other failure is asyncio's 'Error on transport creation', handled
 * here).
 * goloop_accept_error: an accept(2) failure the core does not retry
 * silently; steals exc. */
double goloop_accept_begin(PyObject *loop);
int goloop_accepted(PyObject *loop, goloop_listener *l, int fd, const char *sa, long salen);
int goloop_accept_error(PyObject *loop, goloop_listener *l, PyObject *exc);
int goloop_accept_end(PyObject *loop, goloop_listener *l, double t0);
void goloop_listener_free(goloop_listener *l);
int goloop_listener_visit(goloop_listener *l, goloop_visitproc visit, void *arg);

/* module.c */
void goloop_incref(PyObject *o);
void goloop_decref(PyObject *o);
PyObject *goloop_fetch_exception(void);   /* new reference; clears it */
int goloop_poll(int epfd, struct epoll_event *events, int maxevents, int msec);
void goloop_set_runtime_error(const char *msg);
void goloop_set_os_error(int err, const char *msg);   /* msg NULL: strerror(err) */
void goloop_set_value_error(const char *msg);
void goloop_set_closed_error(void);

#endif
