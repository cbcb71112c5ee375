package core

// The poller contract. Each backend (poller_linux.go: epoll + eventfd; a
// later poller_kqueue.go) provides the same unexported methods on *poller:
//
//	newPoller() (*poller, error)
//	    A readiness poller with two descriptors of its own already watched:
//	    a wake-up object that wake() makes readable from any goroutine, and
//	    the read end of a non-blocking pipe whose write end signalFD()
//	    returns, for CPython's signal.set_wakeup_fd (it writes one byte per
//	    signal number, which is why it cannot be an eventfd).
//	ctl(fd int, old, new Events) error
//	    Changes the interest set of fd from old to new (either may be 0).
//	wait(msec int, fn func(fd int, ev Events)) (woken bool, sig []byte, err error)
//	    Blocks up to msec milliseconds (-1: forever, 0: not at all), then
//	    calls fn for each ready user descriptor. It reports whether wake()
//	    was seen and the bytes read from the signal pipe. EINTR is not an
//	    error: it returns with nothing ready.
//	wake() error
//	    Safe from any goroutine; cheap when a wake-up is already pending.
//	signalFD() int
//	close() error
//
// The poller is level-triggered, like asyncio's selectors and libuv's
// uv__io_poll on Linux, so a callback that reads only part of the data is
// called again on the next tick.

// Events is a set of readiness conditions.
type Events uint8

const (
	// Read means the descriptor is readable, at EOF, or in error.
	Read Events = 1 << iota
	// Write means the descriptor is writable or in error.
	Write
)
