package core_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"goloop/core"
)

// TestStreamReadWrite: bytes written by the peer reach Data; Write goes out
// at once when nothing is buffered; reading waits for Start.
func TestStreamReadWrite(t *testing.T) {
	r := newLoop(t)
	a, b := socketpair(t)
	s, k := r.stream("s", a)
	write(t, b, "early")
	r.soon(r.item("start", func() error { return s.Start() }))
	k.data = func(p []byte) error {
		k.got = append(k.got, p...)
		if string(k.got) == "early" {
			if err := s.Write([]byte("reply")); err != nil {
				t.Errorf("Write: %v", err)
			}
			if n := s.GetWriteBufferSize(); n != 0 {
				t.Errorf("GetWriteBufferSize = %d after a write the socket took, want 0", n)
			}
			r.l.Stop()
		}
		return nil
	}
	r.deadline(5)
	if err := r.run(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got, _ := readAll(t, b); string(got) != "reply" {
		t.Errorf("peer read %q, want %q", got, "reply")
	}
	if diff := cmp.Diff([]string{"run:start"}, withoutPolls(r.takeLog())); diff != "" {
		t.Errorf("log (-want +got):\n%s", diff)
	}
}

// TestStreamOwnership: a stream owns its fd against add_reader and is
// refused where items watch; a blocking fd is refused.
func TestStreamOwnership(t *testing.T) {
	r := newLoop(t)
	a, b := socketpair(t)
	s, _ := r.stream("s", a)
	var inUse *core.InUseError
	if err := r.addReader(a, r.item("rd", nil)); !errors.As(err, &inUse) || inUse.Owner != s {
		t.Errorf("AddReader on a stream's fd = %v, want InUseError owned by the stream", err)
	}
	if err := r.addReader(b, r.item("rd2", nil)); err != nil {
		t.Fatal(err)
	}
	if _, err := core.NewStream(r.l, b, r.sink("t", b)); !errors.As(err, &inUse) || inUse.Owner != nil {
		t.Errorf("NewStream on a reader's fd = %v, want InUseError", err)
	}
	c, d := socketpair(t)
	unix.SetNonblock(c, false)
	if _, err := core.NewStream(r.l, c, r.sink("c", c)); err == nil || !strings.Contains(err.Error(), "blocking") {
		t.Errorf("NewStream on a blocking fd = %v, want an error", err)
	}
	if r.l.Owner(c) != nil || r.l.Owner(d) != nil {
		t.Errorf("a refused stream left its fd registered")
	}
	r.l.RemoveReader(b)
	if err := s.Abort(); err != nil {
		t.Fatal(err)
	}
	if r.l.Owner(a) != nil {
		t.Errorf("Owner after Abort = %v, want nil: the fd may be closed at once", r.l.Owner(a))
	}
	r.takeLog()
}

// TestStreamPartialWritesUnderBackPressure: with small socket buffers a
// large Write goes out in part, the rest is buffered and sent as the peer
// reads, and the water marks pause and resume the writer once each, in
// order, with the buffer at or below the low mark on resume.
func TestStreamPartialWritesUnderBackPressure(t *testing.T) {
	r := newLoop(t)
	a, b := tcpPair(t)
	setInt(t, a, unix.SOL_SOCKET, unix.SO_SNDBUF, 4096)
	w, wk := r.stream("w", a)
	rd, rk := r.stream("r", b)
	payload := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	if err := w.Write(payload); err != nil {
		t.Fatal(err)
	}
	size := w.GetWriteBufferSize()
	if size == 0 || size == len(payload) {
		t.Fatalf("buffered %d of %d bytes, want a partial write", size, len(payload))
	}
	// The reader pauses on every other read for a tick or two, so the
	// writer sees the socket fill and drain repeatedly.
	reads := 0
	rk.data = func(p []byte) error {
		rk.got = append(rk.got, p...)
		if reads++; reads%2 == 0 {
			rd.PauseReading()
			if rd.IsReading() {
				t.Errorf("IsReading after PauseReading")
			}
			r.soon(r.item("resume", func() error { return rd.ResumeReading() }))
		}
		if len(rk.got) == len(payload) {
			r.l.Stop()
		}
		return nil
	}
	wk.resume = func() error {
		if n := w.GetWriteBufferSize(); n > 16<<10 {
			t.Errorf("resumed with %d bytes buffered, above the low mark", n)
		}
		return nil
	}
	if err := rd.Start(); err != nil {
		t.Fatal(err)
	}
	r.deadline(5)
	if err := r.run(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !bytes.Equal(rk.got, payload) {
		t.Errorf("peer got %d bytes, not the payload", len(rk.got))
	}
	var flow []string
	for _, e := range r.takeLog() {
		if strings.HasPrefix(e, "w:") {
			flow = append(flow, e)
		}
	}
	if diff := cmp.Diff([]string{"w:pause", "w:resume"}, flow); diff != "" {
		t.Errorf("writer's flow control (-want +got):\n%s", diff)
	}
	if w.GetWriteBufferSize() != 0 {
		t.Errorf("%d bytes still buffered", w.GetWriteBufferSize())
	}
}

// TestStreamRandomChunks streams 8 MiB in random chunk sizes, written
// whenever the writer is not paused (Write and WriteLines), read by a
// reader that sometimes pauses, over TCP and a Unix socketpair, in plain,
// buffered and lending mode, and checks the hash.
func TestStreamRandomChunks(t *testing.T) {
	for _, tc := range []struct {
		name string
		pair func(*testing.T) (int, int)
		mode string
	}{
		{"tcp", tcpPair, "plain"},
		{"unix", socketpair, "plain"},
		{"tcp-buffered", tcpPair, "buffered"},
		{"unix-reading", socketpair, "reading"},
		{"unix-lending", socketpair, "lending"},
	} {
		t.Run(tc.name, func(t *testing.T) { streamRandomChunks(t, tc.pair, tc.mode) })
	}
}

func streamRandomChunks(t *testing.T, pair func(*testing.T) (int, int), mode string) {
	const total = 8 << 20
	r := newLoop(t)
	a, b := pair(t)
	// Small enough that the 64 KiB writes fill it, large enough for two
	// loopback segments (MSS 64 KiB): with one, the peer's delayed ACK
	// paces the transfer at 40 ms a segment.
	setInt(t, a, unix.SOL_SOCKET, unix.SO_SNDBUF, 64<<10)
	rng := rand.New(rand.NewPCG(1, 2))
	src := rand.NewChaCha8([32]byte{7})

	w, wk := r.stream("w", a)
	rk := r.sink("r", b)
	var rs core.StreamSink = rk
	var lk *lendSink
	var reading *readSink
	switch mode {
	case "buffered":
		rs = &bufSink{lender: lender{sink: rk}, size: 1000}
	case "reading":
		reading = &readSink{bufSink: &bufSink{lender: lender{sink: rk}, size: 1000}}
		rs = reading
	case "lending":
		lk = &lendSink{lender: lender{sink: rk}}
		rs = lk
	}
	rd, err := core.NewStream(r.l, b, rs)
	if err != nil {
		t.Fatal(err)
	}
	if reading != nil {
		reading.s = rd
	}

	wantHash, gotHash := sha256.New(), sha256.New()
	sent, got, pauses := 0, 0, 0
	var produce func() error
	produce = func() error {
		for sent < total && wk.r != nil {
			if w.GetWriteBufferSize() > 64<<10 {
				return nil // paused: wait for resume
			}
			n := min(1+rng.IntN(64<<10), total-sent)
			chunk := make([]byte, n)
			src.Read(chunk)
			wantHash.Write(chunk)
			sent += n
			var err error
			if rng.IntN(4) == 0 && n > 3 {
				err = w.WriteLines([][]byte{chunk[:n/3], nil, chunk[n/3 : 2*n/3], chunk[2*n/3:]})
			} else {
				err = w.Write(chunk)
			}
			clear(chunk) // the stream must have copied what it kept
			if err != nil {
				return err
			}
		}
		if sent == total {
			return w.Close()
		}
		return nil
	}
	wk.pause = func() error { pauses++; return nil }
	wk.resume = produce
	rk.data = func(p []byte) error {
		gotHash.Write(p)
		got += len(p)
		if rng.IntN(16) == 0 {
			rd.PauseReading()
			ticks := 1 + rng.IntN(3)
			var again func() error
			again = func() error {
				if ticks--; ticks > 0 {
					r.soon(r.item("wait", again))
					return nil
				}
				return rd.ResumeReading()
			}
			r.soon(r.item("wait", again))
		}
		return nil
	}
	lost := 0
	rk.lost = func(err error) error {
		if lost++; lost == 2 {
			r.l.Stop()
		}
		return nil
	}
	wk.lost = rk.lost
	rk.shutOnLost, wk.shutOnLost = true, true

	if err := produce(); err != nil {
		t.Fatal(err)
	}
	if err := rd.Start(); err != nil {
		t.Fatal(err)
	}
	r.deadline(8)
	if err := r.run(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got != total || !bytes.Equal(gotHash.Sum(nil), wantHash.Sum(nil)) {
		t.Errorf("received %d of %d bytes; hashes equal: %v", got, total, bytes.Equal(gotHash.Sum(nil), wantHash.Sum(nil)))
	}
	if pauses == 0 {
		t.Errorf("the writer was never paused: the test did not exercise back-pressure")
	}
	if lk != nil && len(lk.sizes) == 0 {
		t.Errorf("no read went into lent memory: the test did not exercise lending")
	}
	for _, k := range []*sink{wk, rk} {
		if diff := cmp.Diff([]string{"nil"}, errNames(k.lostErrs)); diff != "" {
			t.Errorf("%s Lost (-want +got):\n%s", k.name, diff)
		}
	}
	if r.l.Owner(a) != nil || r.l.Owner(b) != nil {
		t.Errorf("fds still registered after Lost")
	}
	r.takeLog()
}

func errNames(errs []error) []string {
	var out []string
	for _, err := range errs {
		out = append(out, errName(err))
	}
	return out
}

// lender lends the stream one buffer at a time and checks that each is
// given back once.
type lender struct {
	*sink
	lent []byte
}

// lend is a hook's lending of size bytes.
func (l *lender) lend(hook string, size int) []byte {
	l.r.locked(hook)
	if l.lent != nil {
		l.r.t.Errorf("%s before the last buffer was given back", hook)
	}
	l.lent = make([]byte, size)
	return l.lent
}

// giveBack takes the buffer back in a hook, with the n bytes read into it.
func (l *lender) giveBack(hook string, n int) []byte {
	if l.lent == nil {
		l.r.t.Errorf("%s(%d) without a buffer lent", hook, n)
	}
	p := l.lent[:n]
	l.lent = nil
	return p
}

// bufSink is a BufferedStreamSink over a sink, reading into buffers of
// size bytes; get, if set, runs in GetBuffer before it lends.
type bufSink struct {
	lender
	size int
	get  func() error
}

func (b *bufSink) GetBuffer(hint int) ([]byte, error) {
	if hint != -1 {
		b.r.t.Errorf("GetBuffer hint %d, want -1", hint)
	}
	if b.get != nil {
		if err := b.get(); err != nil {
			return nil, err
		}
	}
	return b.lend("GetBuffer", b.size), nil
}

func (b *bufSink) BufferUpdated(n int) error {
	p := b.giveBack("BufferUpdated", n)
	if n == 0 {
		b.logf("updated:0")
		return nil
	}
	return b.sink.Data(p)
}

// readSink is a bufSink that makes the read itself (a
// ReadingStreamSink), as the bridge does in C: only while the stream is
// not closing after GetBuffer.
type readSink struct {
	*bufSink
	s *core.Stream // set once made
}

func (k *readSink) ReadInto(fd int) (core.ReadOutcome, error) {
	buf, err := k.GetBuffer(-1)
	if err != nil || len(buf) == 0 || k.s.IsClosing() {
		return core.ReadOutcome{Lent: buf}, err
	}
	n, rerr := unix.Read(fd, buf)
	if rerr != nil {
		n = 0
	}
	return core.ReadOutcome{Read: true, N: n, Err: rerr}, k.BufferUpdated(n)
}

// lendSink is a LendingStreamSink over a sink: reads the stream expects to
// be large go into memory it lends. It must not have GetBuffer, or it would
// be taken for a BufferedStreamSink.
type lendSink struct {
	lender
	sizes []int // of the reads made into lent memory
}

func (l *lendSink) LendBuffer(size int) ([]byte, error) {
	l.sizes = append(l.sizes, size)
	return l.lend("LendBuffer", size), nil
}

func (l *lendSink) LentData(n int) error {
	p := l.giveBack("LentData", n)
	if n == 0 {
		return nil
	}
	return l.sink.Data(p)
}

// TestStreamLendsWhatTheSocketHolds: after a large read, the next read
// goes into lent memory of the size the socket holds, not of the most one
// read takes (glibc maps a 256 KiB block afresh on every allocation).
func TestStreamLendsWhatTheSocketHolds(t *testing.T) {
	const first, second = 70 << 10, 90 << 10
	r := newLoop(t)
	a, b := socketpair(t)
	lk := &lendSink{lender: lender{sink: r.sink("r", b)}}
	s, err := core.NewStream(r.l, b, lk)
	if err != nil {
		t.Fatal(err)
	}
	lk.data = func(p []byte) error {
		lk.logf("data:%d", len(p))
		if len(p) == first {
			write(t, a, strings.Repeat("y", second))
		} else {
			r.l.Stop()
		}
		return nil
	}
	write(t, a, strings.Repeat("x", first))
	s.Start()
	r.runExpecting(fmt.Sprintf("r:data:%d", first), fmt.Sprintf("r:data:%d", second))
	if diff := cmp.Diff([]int{second}, lk.sizes); diff != "" {
		t.Errorf("sizes lent (-want +got):\n%s", diff)
	}
}

// TestStreamBufferedEOF: in buffered mode the buffer is given back with 0
// before EOF, and EOF closing the stream brings Lost(nil).
func TestStreamBufferedEOF(t *testing.T) {
	for _, reads := range []bool{false, true} {
		t.Run("sink-reads="+strconv.FormatBool(reads), func(t *testing.T) {
			r := newLoop(t)
			a, b := socketpair(t)
			bk := &bufSink{lender: lender{sink: r.sink("s", a)}, size: 4}
			var ks core.StreamSink = bk
			rk := &readSink{bufSink: bk}
			if reads {
				ks = rk
			}
			s, err := core.NewStream(r.l, a, ks)
			if err != nil {
				t.Fatal(err)
			}
			rk.s = s
			bk.lost = func(error) error { r.l.Stop(); return nil }
			write(t, b, "hello")
			unix.Shutdown(b, unix.SHUT_WR)
			s.Start()
			r.runExpecting("s:data:4", "s:data:1", "s:updated:0", "s:eof", "s:lost:nil")
			if string(bk.got) != "hello" {
				t.Errorf("read %q", bk.got)
			}
		})
	}
}

// TestStreamHalfClose: EOF kept open stops reading but not writing; the
// stream then closes on request, and the peer sees the data and EOF.
func TestStreamHalfClose(t *testing.T) {
	r := newLoop(t)
	a, b := socketpair(t)
	s, k := r.stream("s", a)
	k.shutOnLost = true
	k.eof = func() (bool, error) {
		if s.IsClosing() {
			t.Errorf("closing during EOF")
		}
		r.soon(r.item("reply", func() error {
			if err := s.Write([]byte("bye")); err != nil {
				return err
			}
			return s.Close()
		}))
		return true, nil
	}
	k.lost = func(error) error { r.l.Stop(); return nil }
	write(t, b, "hi")
	unix.Shutdown(b, unix.SHUT_WR)
	s.Start()
	r.runExpecting("s:data:2", "s:eof", "run:reply", "s:lost:nil")
	if got, eof := readAll(t, b); string(got) != "bye" || !eof {
		t.Errorf("peer read %q, eof %v; want %q, true", got, eof, "bye")
	}
}

// TestStreamEOFCloses: EOF not kept open closes the stream.
func TestStreamEOFCloses(t *testing.T) {
	r := newLoop(t)
	a, b := socketpair(t)
	s, k := r.stream("s", a)
	k.lost = func(error) error { r.l.Stop(); return nil }
	unix.Shutdown(b, unix.SHUT_WR)
	s.Start()
	r.runExpecting("s:eof", "s:lost:nil")
	if !s.IsClosing() || s.IsReading() {
		t.Errorf("IsClosing %v IsReading %v, want true false", s.IsClosing(), s.IsReading())
	}
}

// TestStreamWriteEOF: write_eof waits for the buffer, then shuts down the
// sending side; writing after it fails.
func TestStreamWriteEOF(t *testing.T) {
	r := newLoop(t)
	a, b := socketpair(t)
	s, _ := r.stream("s", a)
	filled := fill(t, a)
	if err := s.Write([]byte("tail")); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteEOF(); err != nil {
		t.Fatal(err)
	}
	if err := s.Write([]byte("x")); err != core.ErrWriteAfterEOF {
		t.Errorf("Write after WriteEOF = %v, want ErrWriteAfterEOF", err)
	}
	var got []byte
	if err := r.addReader(b, r.item("peer", func() error {
		p, eof := readAll(t, b)
		got = append(got, p...)
		if eof {
			r.l.RemoveReader(b)
			r.l.Stop()
		}
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	r.deadline(5)
	if err := r.run(); err != nil {
		t.Fatal(err)
	}
	if len(got) != filled+4 || string(got[filled:]) != "tail" {
		t.Errorf("peer read %d bytes ending %q, want %d ending \"tail\"", len(got), got[max(0, len(got)-4):], filled+4)
	}
	if s.IsClosing() {
		t.Errorf("WriteEOF closed the stream")
	}
	r.takeLog()
}

// TestStreamCloseFlushesFirst: Close with data buffered sends all of it,
// and only then calls Lost(nil), from the flush itself.
func TestStreamCloseFlushesFirst(t *testing.T) {
	r := newLoop(t)
	a, b := socketpair(t)
	s, k := r.stream("s", a)
	k.shutOnLost = true
	filled := fill(t, a)
	payload := bytes.Repeat([]byte("x"), 300<<10)
	s.Write(payload)
	s.Start()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if !s.IsClosing() || s.GetWriteBufferSize() != len(payload) {
		t.Fatalf("after Close: IsClosing %v, %d buffered", s.IsClosing(), s.GetWriteBufferSize())
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	got := 0
	if err := r.addReader(b, r.item("peer", func() error {
		p, eof := readAll(t, b)
		got += len(p)
		if eof {
			r.log = append(r.log, "peer:eof")
			r.l.RemoveReader(b)
			r.l.Stop()
		}
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	k.lost = func(error) error {
		if s.GetWriteBufferSize() != 0 {
			t.Errorf("Lost with %d bytes unsent", s.GetWriteBufferSize())
		}
		return nil
	}
	r.deadline(5)
	if err := r.run(); err != nil {
		t.Fatal(err)
	}
	if got != filled+len(payload) {
		t.Errorf("peer read %d bytes, want %d", got, filled+len(payload))
	}
	var tail []string
	for _, e := range withoutPolls(r.takeLog()) {
		if !strings.HasPrefix(e, "run:peer") && !strings.HasPrefix(e, "retain:peer") && !strings.HasPrefix(e, "release:peer") {
			tail = append(tail, e)
		}
	}
	if diff := cmp.Diff([]string{"s:pause", "s:resume", "s:lost:nil", "peer:eof"}, tail); diff != "" {
		t.Errorf("log (-want +got):\n%s", diff)
	}
}

// TestStreamAbortDrops: Abort drops the buffer, unregisters at once and
// delivers Lost(nil) in the next ready phase, not from inside Abort.
func TestStreamAbortDrops(t *testing.T) {
	r := newLoop(t)
	a, b := socketpair(t)
	s, k := r.stream("s", a)
	filled := fill(t, a)
	s.Write(bytes.Repeat([]byte("x"), 100<<10))
	s.Start()
	r.soon(r.item("abort", func() error {
		if err := s.Abort(); err != nil {
			return err
		}
		if s.GetWriteBufferSize() != 0 || r.l.Owner(a) != nil {
			t.Errorf("after Abort: %d buffered, owner %v", s.GetWriteBufferSize(), r.l.Owner(a))
		}
		s.Write([]byte("dropped"))
		s.Abort()
		s.Close()
		return nil
	}))
	r.soon(r.item("after", nil))
	k.shutOnLost = true
	k.lost = func(error) error { r.l.Stop(); return nil }
	r.runExpecting("s:pause", "run:abort", "run:after", "s:lost:nil")
	if s.LostWrites() != 1 {
		t.Errorf("LostWrites = %d, want 1", s.LostWrites())
	}
	if got, eof := readAll(t, b); len(got) != filled || !eof {
		t.Errorf("peer read %d bytes (eof %v), want the %d that were in the socket, then EOF", len(got), eof, filled)
	}
}

// TestStreamEPIPE: a write to a closed peer fails the stream with EPIPE:
// Write itself succeeds, Lost(EPIPE) comes once, later writes are dropped.
func TestStreamEPIPE(t *testing.T) {
	r := newLoop(t)
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	a := fds[0]
	closeLater(t, a)
	unix.Close(fds[1])
	s, k := r.stream("s", a)
	k.lost = func(error) error { r.l.Stop(); return nil }
	for i := 0; i < 3; i++ {
		if err := s.Write([]byte("x")); err != nil {
			t.Errorf("Write %d: %v", i, err)
		}
	}
	r.runExpecting("s:lost:EPIPE")
	if s.LostWrites() != 2 {
		t.Errorf("LostWrites = %d, want 2", s.LostWrites())
	}
	if err := k.lostErrs[0]; !strings.HasPrefix(err.Error(), "sendmsg: ") || !errors.Is(err, unix.EPIPE) {
		t.Errorf("Lost error %v, want sendmsg: EPIPE", err)
	}
}

// TestStreamResetMidWrite: the peer resets the connection while the stream
// has data buffered: Lost(ECONNRESET) once, the buffer dropped.
func TestStreamResetMidWrite(t *testing.T) {
	r := newLoop(t)
	a, b := tcpPair(t)
	s, k := r.stream("s", a)
	fill(t, a)
	s.Write(bytes.Repeat([]byte("x"), 1<<20))
	// Not reading: only the write path sees the reset.
	r.soon(r.item("reset", func() error { reset(t, b); return nil }))
	k.lost = func(error) error {
		r.soon(r.item("stop", func() error { r.l.Stop(); return nil }))
		return nil
	}
	r.runExpecting("s:pause", "run:reset", "s:lost:ECONNRESET", "run:stop")
	if s.GetWriteBufferSize() != 0 {
		t.Errorf("%d bytes still buffered", s.GetWriteBufferSize())
	}
}

// TestStreamResetMidRead: the peer streams data, then resets: every byte
// read before the reset is delivered, then Lost(ECONNRESET) once.
func TestStreamResetMidRead(t *testing.T) {
	r := newLoop(t)
	a, b := tcpPair(t)
	s, k := r.stream("s", a)
	sent := fill(t, b)
	first := true
	k.data = func(p []byte) error {
		k.got = append(k.got, p...)
		if first {
			first = false
			// Pause for a moment with data still unread, so the reset
			// arrives in the middle of the stream.
			s.PauseReading()
			reset(t, b)
			r.soon(r.item("resume", func() error { return s.ResumeReading() }))
		}
		return nil
	}
	k.lost = func(error) error {
		r.soon(r.item("stop", func() error { r.l.Stop(); return nil }))
		return nil
	}
	s.Start()
	r.deadline(5)
	if err := r.run(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"ECONNRESET"}, errNames(k.lostErrs)); diff != "" {
		t.Errorf("Lost (-want +got):\n%s", diff)
	}
	if len(k.got) == 0 || len(k.got) > sent {
		t.Errorf("read %d of %d bytes before the reset", len(k.got), sent)
	}
	r.takeLog()
}

// TestStreamPauseReading: while paused, nothing is read however many ticks
// pass; resuming reads again. Pausing twice or resuming while reading are
// no-ops.
func TestStreamPauseReading(t *testing.T) {
	r := newLoop(t)
	a, b := socketpair(t)
	s, k := r.stream("s", a)
	s.Start()
	k.data = func(p []byte) error {
		k.logf("data:%s", p)
		switch string(p) {
		case "one":
			s.PauseReading()
			s.PauseReading()
			write(t, b, "two")
			ticks := 0
			var tick func() error
			tick = func() error {
				// Ticks pass with "two" readable: the loop must not read it.
				if ticks++; ticks < 5 {
					r.at(core.Now()+0.002, r.item("tick", tick))
					return nil
				}
				if s.IsReading() {
					t.Errorf("IsReading while paused")
				}
				return s.ResumeReading()
			}
			r.soon(r.item("tick", tick))
		case "two":
			s.ResumeReading()
			r.l.Stop()
		}
		return nil
	}
	write(t, b, "one")
	r.deadline(5)
	if err := r.run(); err != nil {
		t.Fatal(err)
	}
	var log []string
	for _, e := range withoutPolls(r.takeLog()) {
		if e != "run:tick" {
			log = append(log, e)
		}
	}
	if diff := cmp.Diff([]string{"s:data:one", "s:data:two"}, log); diff != "" {
		t.Errorf("log (-want +got):\n%s", diff)
	}
	if !s.IsReading() {
		t.Errorf("not reading after ResumeReading")
	}
}

// startBehind starts s with "early" from its peer waiting to be read,
// queues first ahead of the poll that reports it, and runs the loop,
// expecting want: the tests of what the callbacks queued before a stream's
// readiness do to it.
func (r *recorder) startBehind(s *core.Stream, peer int, first *item, want ...string) {
	r.t.Helper()
	write(r.t, peer, "early")
	if err := s.Start(); err != nil {
		r.t.Fatal(err)
	}
	r.soon(first)
	r.runExpecting(want...)
}

// undoRedo makes an item that calls undo, queues "next" and calls redo: a
// readiness reported before the undo must not outlive it, so the bytes
// come after the next poll, behind "next".
func (r *recorder) undoRedo(name string, undo, redo func() error) *item {
	return r.item(name, func() error {
		if err := undo(); err != nil {
			return err
		}
		r.soon(r.item("next", nil))
		return redo()
	})
}

// stopAtData makes the sink log what Data gets, as text, and stop the loop.
func (s *sink) stopAtData() {
	s.data = func(p []byte) error {
		s.logf("data:%s", p)
		s.r.l.Stop()
		return nil
	}
}

// TestStreamReadsBehindReadyCallbacks: bytes waiting at the poll are read
// in the ready phase, after the callbacks queued before the poll, as
// asyncio queues the reader's handle behind them.
func TestStreamReadsBehindReadyCallbacks(t *testing.T) {
	r := newLoop(t)
	a, b := socketpair(t)
	s, k := r.stream("s", a)
	k.stopAtData()
	r.startBehind(s, b, r.item("before", nil), "run:before", "s:data:early")
}

// TestStreamClosedBeforeItsTurn: a callback queued before the poll that
// aborts the stream, with bytes to read and a write buffer to flush, means
// neither happens, and Lost comes once.
func TestStreamClosedBeforeItsTurn(t *testing.T) {
	r := newLoop(t)
	a, b := socketpair(t)
	s, k := r.stream("s", a)
	fill(t, a)
	if err := s.Write([]byte("queued")); err != nil {
		t.Fatal(err)
	}
	readAll(t, b) // so that a is writable at the poll
	k.lost = func(error) error { r.l.Stop(); return nil }
	r.startBehind(s, b, r.item("abort", s.Abort), "run:abort", "s:lost:nil")
	if got, _ := readAll(t, b); len(got) != 0 {
		t.Errorf("the peer got %d bytes flushed after Abort", len(got))
	}
}

// TestStreamPausedBeforeItsTurn: a callback queued before the poll that
// pauses and resumes reading drops the readiness that poll reported, as
// asyncio's remove_reader cancels the queued handle: the bytes are read
// after the next poll, behind what was queued meanwhile.
func TestStreamPausedBeforeItsTurn(t *testing.T) {
	r := newLoop(t)
	a, b := socketpair(t)
	s, k := r.stream("s", a)
	k.stopAtData()
	r.startBehind(s, b, r.undoRedo("toggle", s.PauseReading, s.ResumeReading),
		"run:toggle", "run:next", "s:data:early")
}

// TestStreamUnregisteredBeforeItsTurn: a stream whose fd is unregistered
// behind its back (the bridge's finalizer of an unclosed transport does
// so) after the poll reported it readable does not read it, nor read for
// the stream registered under the same number in the meantime, which gets
// the bytes from its own readiness.
func TestStreamUnregisteredBeforeItsTurn(t *testing.T) {
	r := newLoop(t)
	a, b := socketpair(t)
	s, _ := r.stream("old", a)
	unregister := func() error { return r.l.Unregister(a) }
	replace := func() error {
		s2, k2 := r.stream("new", a)
		k2.stopAtData()
		return s2.Start()
	}
	r.startBehind(s, b, r.undoRedo("swap", unregister, replace),
		"run:swap", "run:next", "new:data:early")
}

// TestStreamSinkErrors: an error from Data ends Run and leaves the stream
// open; a sink that fails the stream itself (a protocol exception) gets
// Lost with its own error.
func TestStreamSinkErrors(t *testing.T) {
	r := newLoop(t)
	a, b := socketpair(t)
	s, k := r.stream("s", a)
	escape := errors.New("KeyboardInterrupt")
	fatal := errors.New("ValueError in data_received")
	calls := 0
	k.data = func(p []byte) error {
		calls++
		if calls == 1 {
			return escape
		}
		return s.ForceClose(fatal)
	}
	k.lost = func(error) error { r.l.Stop(); return nil }
	write(t, b, "x")
	s.Start()
	r.deadline(5)
	if err := r.run(); err != escape {
		t.Fatalf("Run = %v, want the sink's error", err)
	}
	if s.IsClosing() {
		t.Fatalf("an escaping error closed the stream")
	}
	write(t, b, "y")
	if err := r.run(); err != nil {
		t.Fatal(err)
	}
	if len(k.lostErrs) != 1 || k.lostErrs[0] != fatal {
		t.Errorf("Lost %v, want [%v]", k.lostErrs, fatal)
	}
	r.takeLog()
}

// TestStreamLeftQueuedByAFailedRun: when a sink's error ends Run in the
// ready phase, a stream whose readiness was queued behind it is handled in
// the next Run, once, though the poll reports it again.
func TestStreamLeftQueuedByAFailedRun(t *testing.T) {
	r := newLoop(t)
	a, b := socketpair(t)
	c, d := socketpair(t)
	s1, k1 := r.stream("s1", a)
	s2, k2 := r.stream("s2", c)
	escape := errors.New("KeyboardInterrupt")
	k1.data = func(p []byte) error { k1.logf("data:%s", p); return escape }
	k2.data = func(p []byte) error {
		k2.logf("data:%s", p)
		r.soon(r.stopper("stop"))
		return nil
	}
	write(t, b, "one")
	write(t, d, "two")
	s1.Start()
	s2.Start()
	r.deadline(5)
	err := r.run()
	log := withoutPolls(r.takeLog())
	if err != escape {
		t.Fatalf("Run = %v, want the sink's error", err)
	}
	if err := r.run(); err != nil {
		t.Fatal(err)
	}
	// The poll reports the streams in no set order.
	log = append(log, withoutPolls(r.takeLog())...)
	want := []string{"s1:data:one", "s2:data:two", "run:stop"}
	if log[0] == "s2:data:two" {
		want = []string{"s2:data:two", "s1:data:one", "run:stop"}
	}
	if diff := cmp.Diff(want, log); diff != "" {
		t.Errorf("log (-want +got):\n%s", diff)
	}
}

// TestStreamWriteBufferLimits: asyncio's defaults and validation, and the
// pause/resume sequence with a full socket.
func TestStreamWriteBufferLimits(t *testing.T) {
	r := newLoop(t)
	a, b := socketpair(t)
	s, _ := r.stream("s", a)
	type lim struct{ Low, High int }
	get := func() lim { l, h := s.WriteBufferLimits(); return lim{l, h} }
	if diff := cmp.Diff(lim{16 << 10, 64 << 10}, get()); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
	for _, c := range []struct {
		high, low int
		want      lim
		err       string
	}{
		{core.Unset, 100, lim{100, 400}, ""},
		{1000, core.Unset, lim{250, 1000}, ""},
		{core.Unset, core.Unset, lim{16 << 10, 64 << 10}, ""},
		{0, 0, lim{0, 0}, ""},
		{1, 2, lim{}, "high (1) must be >= low (2) must be >= 0"},
		{core.Unset, -1, lim{}, "high (-4) must be >= low (-1) must be >= 0"},
		{-1, core.Unset, lim{}, "high (-1) must be >= low (-1) must be >= 0"},
		{-5, core.Unset, lim{}, "high (-5) must be >= low (-2) must be >= 0"},
	} {
		before := get()
		err := s.SetWriteBufferLimits(c.high, c.low)
		var le *core.LimitsError
		switch {
		case c.err != "":
			if !errors.As(err, &le) || err.Error() != c.err {
				t.Errorf("SetWriteBufferLimits(%d, %d) = %v, want %q", c.high, c.low, err, c.err)
			}
			if get() != before {
				t.Errorf("a refused SetWriteBufferLimits changed the limits")
			}
		case err != nil:
			t.Errorf("SetWriteBufferLimits(%d, %d): %v", c.high, c.low, err)
		case get() != c.want:
			t.Errorf("SetWriteBufferLimits(%d, %d) gave %+v, want %+v", c.high, c.low, get(), c.want)
		}
	}

	// Limits 100/20 over a full socket: every write is buffered whole.
	s.SetWriteBufferLimits(100, 20)
	filled := fill(t, a)
	for _, n := range []int{60, 40, 1, 10} {
		s.Write(bytes.Repeat([]byte("y"), n))
		r.log = append(r.log, "size:"+strconv.Itoa(s.GetWriteBufferSize()))
	}
	s.SetWriteBufferLimits(200, 150) // above the size: no resume from here
	s.SetWriteBufferLimits(50, 10)   // already paused: no second pause
	got := 0
	r.addReader(b, r.item("peer", func() error {
		p, _ := readAll(t, b)
		if got += len(p); got == filled+111 {
			r.l.RemoveReader(b)
			r.l.Stop()
		}
		return nil
	}))
	r.deadline(5)
	if err := r.run(); err != nil {
		t.Fatal(err)
	}
	var flow []string
	for _, e := range r.takeLog() {
		if strings.HasPrefix(e, "s:") || strings.HasPrefix(e, "size:") {
			flow = append(flow, e)
		}
	}
	want := []string{"size:60", "size:100", "s:pause", "size:101", "size:111", "s:resume"}
	if diff := cmp.Diff(want, flow); diff != "" {
		t.Errorf("flow (-want +got):\n%s", diff)
	}
}

// allocStream skips under -short (allocation counts are for full runs) and
// returns a started stream over a socketpair, its sink and its peer.
func allocStream(t *testing.T) (r *recorder, s *core.Stream, k *sink, peer int) {
	t.Helper()
	if testing.Short() {
		t.Skip("allocation counts")
	}
	r = newLoop(t)
	a, b := socketpair(t)
	s, k = r.stream("s", a)
	s.Start()
	return r, s, k, b
}

// TestStreamHotPathsDoNotAllocate: a Write the socket takes whole and a
// read handed to Data cost no allocation (the iovec and the read buffer are
// reused), so a busy echo server makes no garbage in the core.
func TestStreamHotPathsDoNotAllocate(t *testing.T) {
	r, s, k, b := allocStream(t)
	msg := []byte("ping")
	var buf [64]byte
	k.data = func([]byte) error { return nil }
	s.Ready(core.Read) // the first read allocates the loop's buffer
	allocs := testing.AllocsPerRun(200, func() {
		if err := s.Write(msg); err != nil {
			t.Fatal(err)
		}
		unix.Read(b, buf[:])
		unix.Write(b, msg)
		if err := s.Ready(core.Read); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per write and read, want 0", allocs)
	}
	r.takeLog()
}

// TestStreamReadyPhaseDoesNotAllocate: queueing a stream's readiness
// for the ready phase and handling it there cost no allocation either: the
// loop queues the stream's watcher itself.
func TestStreamReadyPhaseDoesNotAllocate(t *testing.T) {
	r, _, k, b := allocStream(t)
	r.deadline(5) // bounds each poll
	msg := []byte("ping")
	reads := 0
	k.data = func([]byte) error { reads++; return nil }
	tick := func() {
		unix.Write(b, msg)
		if err := r.l.Tick(); err != nil {
			t.Fatal(err)
		}
		r.log = r.log[:0] // the poll hooks' entries
	}
	tick() // the first allocates the loop's read buffer and task ring
	allocs := testing.AllocsPerRun(200, tick)
	if reads != 202 { // AllocsPerRun runs tick once more, to warm up
		t.Errorf("%d reads handed to Data, want 202", reads)
	}
	if allocs != 0 {
		t.Errorf("%v allocations per tick, want 0", allocs)
	}
}

// idleSink is a StreamSink with no state: converting it to the interface
// allocates nothing, so only the stream's own memory is counted.
type idleSink struct{}

func (idleSink) Data([]byte) error    { return nil }
func (idleSink) EOF() (bool, error)   { return false, nil }
func (idleSink) PauseWriting() error  { return nil }
func (idleSink) ResumeWriting() error { return nil }
func (idleSink) Lost(error) error     { return nil }

// TestIdleStreamMemory: an idle stream is its own struct and the loop's
// watcher for its fd, and nothing else (the read buffer and the sendmsg
// iovecs are the loop's; the write buffer exists only while something is
// queued), since a server's memory is counted per idle connection.
func TestIdleStreamMemory(t *testing.T) {
	r := newLoop(t)
	// The least of a few batches: the count is the process's, and the
	// runtime allocates now and then on its own.
	best := uint64(math.MaxUint64)
	for range 3 {
		const n = 128
		fds := make([]int, n)
		for i := range fds {
			fds[i], _ = socketpair(t)
		}
		// The highest fd first, so that the loop's fd table has grown
		// before the count starts.
		if _, err := core.NewStream(r.l, fds[n-1], idleSink{}); err != nil {
			t.Fatal(err)
		}
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for _, fd := range fds[:n-1] {
			s, err := core.NewStream(r.l, fd, idleSink{})
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Start(); err != nil {
				t.Fatal(err)
			}
		}
		runtime.ReadMemStats(&after)
		best = min(best, (after.TotalAlloc-before.TotalAlloc)/(n-1))
	}
	// 128 (the Stream's size class) + 48 (the watcher's).
	if best > 176 {
		t.Errorf("an idle stream costs %d bytes of Go heap, want at most 176", best)
	}
}

// TestStreamDropsDrainedWriteBuffer: the write buffer a stream needed under
// back-pressure is let go once it is flushed.
func TestStreamDropsDrainedWriteBuffer(t *testing.T) {
	r := newLoop(t)
	a, b := socketpair(t)
	s, _ := r.stream("s", a)
	chunk := make([]byte, 64<<10)
	for !s.HasWriteBuffer() {
		if err := s.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	var buf [64 << 10]byte
	for s.HasWriteBuffer() {
		for {
			if _, err := unix.Read(b, buf[:]); err != nil {
				break // EAGAIN: drained for now
			}
		}
		if err := s.Ready(core.Write); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.GetWriteBufferSize(); n != 0 {
		t.Errorf("write buffer size %d after the flush, want 0", n)
	}
	r.takeLog()
}
