package core

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// ListenerSink receives a Listener's connections, on the loop thread. An
// error returned is returned from Loop.Run.
type ListenerSink interface {
	// Accepted hands over what one readiness accepted: conns, in the order
	// accepted, and err, the accept(2) failure that ended the round if it
	// is not one retried silently (nil otherwise). asyncio's
	// _accept_connection accepts the whole round in its reader callback,
	// and reports a failure there, before the Tasks it made to serve the
	// connections run: so the sink reports err first, then serves conns,
	// all of them even if it closes or stops the listener meanwhile (a
	// protocol factory calling Server.close() cannot undo the round).
	//
	// It returns how many of conns it took, as RunBatch does: all of them
	// unless its error stops the loop (a KeyboardInterrupt from a protocol
	// factory), when the rest are still queued in asyncio, a Task each. The
	// listener keeps those and hands them over, with a nil err, first
	// thing when the loop runs again, or closes them if it is closed
	// before.
	//
	// Each Fd is non-blocking and close-on-exec, and the sink's to close
	// once taken, whatever it returns. conns and each Peer are valid for
	// the call only.
	//
	// For EMFILE, ENFILE, ENOBUFS and ENOMEM the listener has stopped
	// accepting and resumes by itself after AcceptRetryDelay (asyncio logs
	// 'socket.accept() out of system resource' through
	// call_exception_handler); for any other error it goes on accepting at
	// the next readiness (asyncio lets the error reach the loop's
	// handler).
	Accepted(conns []Conn, err error) (int, error)
}

// Conn is a connection a Listener accepted. Peer is the peer's address as
// the kernel wrote it (a struct sockaddr of len(Peer) bytes, empty if it
// gave none): raw, because x/sys/unix's parsed form loses what Python's
// socket module shows (an unnamed Unix peer becomes "@", IPv6 loses its
// flow info).
type Conn struct {
	Fd   int
	Peer []byte
}

// AcceptRetryDelay is asyncio's constants.ACCEPT_RETRY_DELAY, in seconds.
const AcceptRetryDelay = 1.0

// Listener accepts connections on a listening socket: asyncio's
// _accept_connection. Ownership is as for Stream: the embedder owns fd and
// the listener never closes it; Close unregisters it first.
type Listener struct {
	loop    IOLoop
	fd      int
	backlog int
	sink    ListenerSink
	serving bool  // Start called, Stop not since
	closed  bool  // Close called
	retry   *task // pending resumption after a resource error
	delay   float64
	// A round's connections and their addresses (accept4's buffers),
	// reused: they grow to the largest round seen.
	conns []Conn
	addrs []unix.RawSockaddrAny
	// rest: the end of conns, which the sink did not take before its error
	// stopped the loop, to be handed over first when it runs again; no
	// round reuses the buffers before.
	rest []Conn
}

var _ IO = (*Listener)(nil)

// NewListener makes fd, a non-blocking listening socket, a listener of
// loop: registered, but not accepting until Start. Each readiness accepts
// up to backlog connections (asyncio passes the backlog given to listen,
// 100 by default): a burst is taken in one go, while one busy listener
// still cannot hold the loop for ever.
func NewListener(loop IOLoop, fd, backlog int, sink ListenerSink) (*Listener, error) {
	if err := checkNonblocking(fd); err != nil {
		return nil, err
	}
	ln := &Listener{loop: loop, fd: fd, backlog: max(backlog, 1), sink: sink, delay: AcceptRetryDelay}
	if err := loop.Register(fd, ln, 0); err != nil {
		return nil, err
	}
	return ln, nil
}

// Start begins or resumes accepting (Server.start_serving). It fails on a
// closed listener or loop.
func (ln *Listener) Start() error {
	if ln.closed {
		return ErrClosed
	}
	if ln.serving {
		return nil
	}
	ln.serving = true
	if ln.retry != nil {
		return nil // already waiting out a resource error
	}
	return ln.loop.Modify(ln.fd, Read)
}

// Stop stops accepting and cancels a pending retry; Start resumes.
func (ln *Listener) Stop() error {
	if !ln.serving {
		return nil
	}
	ln.serving = false
	ln.cancelRetry()
	return ln.loop.Modify(ln.fd, 0)
}

// Serving reports whether the listener accepts (or will, after a retry
// delay).
func (ln *Listener) Serving() bool { return ln.serving }

// Close stops accepting for good and unregisters fd, which the embedder
// may close from then (Server.close). It keeps no reference to the sink
// (called from Accepted, it leaves the round's connections to the sink),
// and closes the connections a stopped loop left it (see Accepted): in
// asyncio they would only fail Server._attach. An embedder whose loop
// forgot the listener (Loop.Clear) closes it for them too.
func (ln *Listener) Close() error {
	if ln.closed {
		return nil
	}
	ln.closed, ln.serving = true, false
	ln.cancelRetry()
	ln.sink = nil
	ln.closeRest()
	return ln.loop.Unregister(ln.fd)
}

// Fd returns the listening descriptor.
func (ln *Listener) Fd() int { return ln.fd }

// Ready accepts up to backlog connections, then hands them to the sink. The
// loop calls it only while fd is polled: serving, and not backing off.
func (ln *Listener) Ready(Events) error {
	conns, err := ln.accept()
	if len(conns) == 0 && err == nil {
		return nil
	}
	return ln.handOver(conns, err)
}

// handOver gives conns to the sink, keeping what it did not take for the
// next Run (see Accepted).
func (ln *Listener) handOver(conns []Conn, err error) error {
	n, serr := ln.sink.Accepted(conns, err)
	if serr == nil || n == len(conns) {
		return serr
	}
	ln.rest = conns[n:]
	if ln.closed { // by the sink, in this round
		ln.closeRest()
	} else {
		ln.loop.first(ln.serveRest)
	}
	return serr
}

// serveRest hands over what a stopped loop left of a round, unless Close
// closed it meanwhile.
func (ln *Listener) serveRest() error {
	rest := ln.rest
	ln.rest = nil
	if len(rest) == 0 {
		return nil
	}
	return ln.handOver(rest, nil)
}

func (ln *Listener) closeRest() {
	for _, c := range ln.rest {
		unix.Close(c.Fd)
	}
	ln.rest = nil
}

// accept is the round: backlog calls to accept4 at most, until the queue
// is empty or an error ends it.
func (ln *Listener) accept() ([]Conn, error) {
	conns := ln.conns[:0]
	var err error
accepting:
	for range ln.backlog {
		if len(conns) == len(ln.addrs) {
			ln.addrs = append(ln.addrs, unix.RawSockaddrAny{})
			ln.addrs = ln.addrs[:cap(ln.addrs)]
		}
		rsa := &ln.addrs[len(conns)]
		fd, n, aerr := accept4(ln.fd, rsa)
		switch aerr {
		case nil:
			// Should addrs grow later in the round, this stays in the old
			// array, which keeps what accept4 wrote.
			peer := unsafe.Slice((*byte)(unsafe.Pointer(rsa)), n)
			conns = append(conns, Conn{Fd: fd, Peer: peer})
			continue
		case unix.EAGAIN:
			break accepting // the queue is empty
		case unix.EINTR, unix.ECONNABORTED:
			// Interrupted, or a connection reset while queued: the next one
			// may be fine. Go's net retries both, and asyncio ECONNABORTED
			// from 3.14 on; before, it gives up the round, which the
			// level-triggered poll makes up for.
			continue
		case unix.EMFILE, unix.ENFILE, unix.ENOBUFS, unix.ENOMEM:
			// Linux keeps reporting the socket readable while the queue
			// holds connections we cannot accept, so stop polling it for a
			// while rather than spin, as asyncio does.
			if berr := ln.backOff(); berr != nil {
				for _, c := range conns {
					unix.Close(c.Fd)
				}
				return nil, berr
			}
		}
		err = wrap("accept4", aerr)
		break accepting
	}
	ln.conns = conns
	return conns, err
}

// backOff stops polling until the retry delay has passed.
func (ln *Listener) backOff() error {
	if err := ln.loop.Modify(ln.fd, 0); err != nil {
		return err
	}
	t, err := ln.loop.later(ln.delay, func() error {
		ln.retry = nil
		if !ln.serving {
			return nil
		}
		return ln.loop.Modify(ln.fd, Read)
	})
	ln.retry = t
	return err
}

func (ln *Listener) cancelRetry() {
	if ln.retry != nil {
		ln.retry.cancelled = true
		ln.retry = nil
	}
}
