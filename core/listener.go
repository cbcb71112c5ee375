package core

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// ListenerSink receives a Listener's connections, on the loop thread. An
// error returned ends the accept round and is returned from Loop.Run.
type ListenerSink interface {
	// Accepted hands over a new connection: fd is non-blocking and
	// close-on-exec, and from now the sink's to close. sa is the peer's
	// address as the kernel wrote it (a struct sockaddr of len(sa) bytes,
	// empty if it gave none), valid for the call only: raw, because
	// x/sys/unix's parsed form loses what Python's socket module shows (an
	// unnamed Unix peer becomes "@", IPv6 loses its flow info).
	Accepted(fd int, sa []byte) error
	// AcceptError reports an accept(2) failure other than the ones
	// retried silently. For EMFILE, ENFILE, ENOBUFS and ENOMEM the
	// listener has stopped accepting and resumes by itself after
	// AcceptRetryDelay (asyncio logs 'socket.accept() out of system
	// resource' through call_exception_handler); for any other error it
	// goes on accepting at the next readiness (asyncio lets the error
	// reach the loop's handler).
	AcceptError(err error) error
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
	rsa     unix.RawSockaddrAny // accept4's address buffer, reused
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
// may close from then (Server.close). It keeps no reference to the sink.
func (ln *Listener) Close() error {
	if ln.closed {
		return nil
	}
	ln.closed, ln.serving = true, false
	ln.cancelRetry()
	ln.sink = nil
	return ln.loop.Unregister(ln.fd)
}

// Fd returns the listening descriptor.
func (ln *Listener) Fd() int { return ln.fd }

// Ready accepts up to backlog connections.
func (ln *Listener) Ready(Events) error {
	for i := 0; i < ln.backlog && ln.serving; i++ {
		fd, n, err := accept4(ln.fd, &ln.rsa)
		switch err {
		case nil:
			sa := unsafe.Slice((*byte)(unsafe.Pointer(&ln.rsa)), n)
			if err := ln.sink.Accepted(fd, sa); err != nil {
				return err
			}
			continue
		case unix.EAGAIN:
			return nil // the queue is empty
		case unix.EINTR, unix.ECONNABORTED:
			// Interrupted, or a connection reset while queued: the next one
			// may be fine (Go's net retries both; asyncio gives up the round
			// on ECONNABORTED, which the level-triggered poll makes up for).
			continue
		case unix.EMFILE, unix.ENFILE, unix.ENOBUFS, unix.ENOMEM:
			// Linux keeps reporting the socket readable while the queue
			// holds connections we cannot accept, so stop polling it for a
			// while rather than spin, as asyncio does.
			if err := ln.backOff(); err != nil {
				return err
			}
			return ln.sink.AcceptError(wrap("accept4", err))
		default:
			return ln.sink.AcceptError(wrap("accept4", err))
		}
	}
	return nil
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
