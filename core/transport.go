package core

import (
	"errors"
	"fmt"
	"math"
	"os"
)

// What Stream and Datagram share, after asyncio's _SelectorTransport and
// _FlowControlMixin: reading state, write flow control, and closing.
//
// Errors returned by sink methods. Every sink method may return an error,
// and the rule is the same for all of them: the core stops what it was
// doing, leaves the transport as it is, and hands the error back — to the
// embedder's caller if the sink was called from a transport method (Write,
// SetWriteBufferLimits, ...), else out of Loop.Run. It is how the bridge
// lets KeyboardInterrupt and SystemExit escape, as asyncio re-raises them.
// A protocol exception that asyncio treats as fatal to the transport
// ("Fatal error: protocol.data_received() call failed.") is the sink's to
// report (call_exception_handler) before it calls ForceClose(exc) and
// returns nil.

// TransportSink is what every transport reports to its embedder.
type TransportSink interface {
	// PauseWriting is called when the write buffer grows past the high
	// water mark, ResumeWriting when it then drains to the low one.
	PauseWriting() error
	ResumeWriting() error
	// Lost is called exactly once, when the transport is done with its
	// descriptor: nil after Close once the buffer is flushed, or after
	// Abort; the error that broke it otherwise. The fd is no longer
	// registered with the loop by then, so Lost is where the embedder
	// closes it. The transport keeps no reference to the sink afterwards.
	Lost(err error) error
}

// ClosingSink is a TransportSink that is told when its transport starts
// closing, whatever the cause: Close, Abort, ForceClose, a fatal read or
// write error, an EOF not kept open. Closing is called once, before the
// call that closes the transport returns (and so before Lost), and must not
// call back into the transport. The bridge uses it to keep exact the state
// it mirrors in C, where an idle stream's writes go straight to the socket.
type ClosingSink interface {
	TransportSink
	Closing()
}

// Unset stands for Python's None in SetWriteBufferLimits.
const Unset = math.MinInt

// defaultHighWater is asyncio's default high water mark (64 KiB); the low
// one defaults to a quarter of the high one.
const defaultHighWater = 64 << 10

// LimitsError is asyncio's ValueError from set_write_buffer_limits.
type LimitsError struct{ High, Low int }

func (e *LimitsError) Error() string {
	return fmt.Sprintf("high (%d) must be >= low (%d) must be >= 0", e.High, e.Low)
}

var (
	errBlocking = errors.New("core: the descriptor is in blocking mode (call setblocking(False) first)")
	// ErrWriteAfterEOF is asyncio's RuntimeError from write() after write_eof().
	ErrWriteAfterEOF = errors.New("Cannot call write() after write_eof()")
	// ErrEmptyBuffer is asyncio's RuntimeError for a get_buffer() that
	// returned an empty buffer.
	ErrEmptyBuffer = errors.New("get_buffer() returned an empty buffer")
)

// wrap names the system call in an error, as os does; the bridge maps the
// errno inside to the OSError subclass.
func wrap(call string, err error) error { return os.NewSyscallError(call, err) }

// transportImpl is what the concrete transport tells its base.
type transportImpl interface {
	IO
	bufferSize() int // bytes counted against the water marks
	buffered() bool  // anything left to send (possibly empty datagrams)
	dropBuffer()
	forgetSink() // drop the typed sink references once Lost is delivered
}

type transport struct {
	loop     IOLoop
	fd       int
	impl     transportImpl
	sink     TransportSink
	interest Events // registered with the loop now

	started  bool // Start called: read once the embedder is ready
	paused   bool // PauseReading
	readDone bool // EOF received and kept open: never read again
	closing  bool // Close, or a fatal error
	lost     bool // Lost scheduled or delivered (asyncio's _conn_lost)
	done     bool // Lost delivered
	// writePaused: PauseWriting called, ResumeWriting not yet. With the
	// flags above it packs into one word (every connection has one).
	writePaused bool

	lostWrites int // writes dropped after the connection was lost
	high, low  int
}

func (t *transport) init(loop IOLoop, fd int, impl transportImpl, sink TransportSink) error {
	if err := checkNonblocking(fd); err != nil {
		return err
	}
	t.loop, t.fd, t.impl, t.sink = loop, fd, impl, sink
	t.high, t.low = defaultHighWater, defaultHighWater/4
	// Registered with no events: the transport owns fd from now on (an
	// add_reader on it fails), but reads only once Start is called.
	return loop.Register(fd, impl, 0)
}

// Fd returns the descriptor, which the embedder owns and closes.
func (t *transport) Fd() int { return t.fd }

// Start begins reading (asyncio adds the reader in a call_soon after
// connection_made, so the embedder calls Start once connection_made has
// run). Reading does not start if the transport was paused or closed.
func (t *transport) Start() error {
	if t.started {
		return nil
	}
	t.started = true
	return t.sync()
}

// IsClosing reports whether Close, Abort or a fatal error happened.
func (t *transport) IsClosing() bool { return t.closing }

// IsLost reports whether Lost is scheduled or delivered (asyncio's
// _conn_lost): from then on writes are counted and dropped.
func (t *transport) IsLost() bool { return t.lost }

// IsReading is asyncio's is_reading: not closing and not paused.
func (t *transport) IsReading() bool { return !t.closing && !t.paused }

// PauseReading stops reading until ResumeReading; a no-op unless reading.
func (t *transport) PauseReading() error {
	if !t.IsReading() {
		return nil
	}
	t.paused = true
	return t.sync()
}

// ResumeReading undoes PauseReading; a no-op if closing or not paused.
func (t *transport) ResumeReading() error {
	if t.closing || !t.paused {
		return nil
	}
	t.paused = false
	return t.sync()
}

// GetWriteBufferSize is the number of bytes waiting to be sent.
func (t *transport) GetWriteBufferSize() int { return t.impl.bufferSize() }

// WriteBufferLimits returns (low, high), in asyncio's order.
func (t *transport) WriteBufferLimits() (low, high int) { return t.low, t.high }

// SetWriteBufferLimits is asyncio's set_write_buffer_limits; pass Unset
// for None. high defaults to 64 KiB, or 4*low if only low is given; low
// to high//4. It may call PauseWriting at once.
func (t *transport) SetWriteBufferLimits(high, low int) error {
	if high == Unset {
		if low == Unset {
			high = defaultHighWater
		} else {
			high = 4 * low
		}
	}
	if low == Unset {
		low = floorDiv(high, 4) // Python's //, for the error message's sake
	}
	if !(high >= low && low >= 0) {
		return &LimitsError{High: high, Low: low}
	}
	t.high, t.low = high, low
	return t.maybePause()
}

func floorDiv(a, b int) int {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// LostWrites counts writes dropped because the connection was lost; asyncio
// logs a warning from the fifth (LOG_THRESHOLD_FOR_CONNLOST_WRITES).
func (t *transport) LostWrites() int { return t.lostWrites }

// Close stops reading and, once the write buffer is flushed, unregisters
// the fd and calls Lost(nil): at once from the flush, or through the loop
// (as asyncio's call_soon) if nothing was buffered. Closing twice is a
// no-op. It fails only if the loop is closed.
func (t *transport) Close() error {
	if t.closing {
		return nil
	}
	t.setClosing()
	if !t.impl.buffered() {
		return t.lostSoon(nil)
	}
	return t.sync()
}

// Abort drops the write buffer and schedules Lost(nil) at once.
func (t *transport) Abort() error { return t.ForceClose(nil) }

// ForceClose is asyncio's _force_close: drop the write buffer, stop
// polling, and schedule Lost(err) through the loop, never re-entrantly. A
// no-op once Lost is scheduled.
func (t *transport) ForceClose(err error) error {
	if t.lost {
		return nil
	}
	t.impl.dropBuffer()
	t.setClosing()
	return t.lostSoon(err)
}

func (t *transport) setClosing() {
	if t.closing {
		return
	}
	t.closing = true
	if cs, ok := t.sink.(ClosingSink); ok {
		cs.Closing()
	}
}

// lostSoon unregisters and schedules Lost(err).
func (t *transport) lostSoon(err error) error {
	uerr := t.forget()
	if serr := t.loop.soon(func() error { return t.deliverLost(err) }); serr != nil {
		return serr
	}
	return uerr
}

// lostNow unregisters and calls Lost(err) now: the flush that Close waited
// for has ended, and asyncio calls connection_lost from there directly.
func (t *transport) lostNow(err error) error {
	if uerr := t.forget(); uerr != nil {
		return errors.Join(uerr, t.deliverLost(err))
	}
	return t.deliverLost(err)
}

func (t *transport) forget() error {
	t.lost, t.interest = true, 0
	return t.loop.Unregister(t.fd)
}

func (t *transport) deliverLost(err error) error {
	sink := t.sink
	t.sink, t.done = nil, true
	t.impl.forgetSink()
	if sink == nil {
		return nil
	}
	return sink.Lost(err)
}

// sync polls for what the transport wants now: reading once started and
// until paused, closed or at EOF; writing while anything is buffered.
func (t *transport) sync() error {
	if t.lost {
		return nil
	}
	var ev Events
	if t.started && !t.paused && !t.closing && !t.readDone {
		ev |= Read
	}
	if t.impl.buffered() {
		ev |= Write
	}
	if ev == t.interest {
		return nil
	}
	if err := t.loop.Modify(t.fd, ev); err != nil {
		return err
	}
	t.interest = ev
	return nil
}

// maybePause and maybeResume are _FlowControlMixin's: called when the
// buffer grows and shrinks.
func (t *transport) maybePause() error {
	if t.writePaused || t.sink == nil || t.impl.bufferSize() <= t.high {
		return nil
	}
	t.writePaused = true
	return t.sink.PauseWriting()
}

func (t *transport) maybeResume() error {
	if !t.writePaused || t.sink == nil || t.impl.bufferSize() > t.low {
		return nil
	}
	t.writePaused = false
	return t.sink.ResumeWriting()
}
