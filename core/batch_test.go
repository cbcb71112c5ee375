package core_test

import (
	"errors"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"goloop/core"
)

// runReader is a StreamReader as the bridge's, in Go: it reads each stream
// into buf and hands the bytes to its sink, or has a readSink read it, and
// records the runs.
type runReader struct {
	sinks map[*core.Stream]core.StreamSink
	runs  []int
}

func (f *runReader) ReadStreams(streams []*core.Stream, buf []byte) (int, bool, core.ReadOutcome, error) {
	f.runs = append(f.runs, len(streams))
	for i, s := range streams {
		if !s.IsReading() || s.IsClosing() {
			return i, false, core.ReadOutcome{}, nil
		}
		o, err := f.read(s, buf)
		switch {
		case err != nil:
			return i + 1, false, core.ReadOutcome{}, err
		case !o.Read:
			return i, true, o, nil
		case o.Err == unix.EAGAIN:
			continue
		case o.Err != nil || o.N == 0:
			return i, true, o, nil
		}
	}
	return len(streams), false, core.ReadOutcome{}, nil
}

func (f *runReader) read(s *core.Stream, buf []byte) (core.ReadOutcome, error) {
	k := f.sinks[s]
	if rk, ok := k.(*readSink); ok {
		return rk.ReadInto(s.Fd())
	}
	n, err := unix.Read(s.Fd(), buf)
	if err != nil {
		return core.ReadOutcome{Read: true, Err: err}, nil
	}
	o := core.ReadOutcome{Read: true, N: n}
	if n == 0 {
		return o, nil
	}
	return o, k.Data(buf[:n])
}

// wantRuns checks the sizes of the runs the reader was handed.
func (f *runReader) wantRuns(t *testing.T, want ...int) {
	t.Helper()
	if diff := cmp.Diff(want, f.runs); diff != "" {
		t.Errorf("runs (-want +got):\n%s", diff)
	}
}

// readRun starts three streams, a, b and c, whose peers wrote before the
// poll (c's peer shut down instead when eofC), with a StreamReader set; a
// callback queued before the poll runs first. b's sink is a readSink when
// bufB is set (a BufferedProtocol's, reading 4 bytes at a time), and the
// returned one: get runs in its GetBuffer.
func readRun(t *testing.T, eofC, bufB bool) (*recorder, *runReader, [3]*core.Stream, [3]*sink, *readSink) {
	r := newLoop(t)
	f := &runReader{sinks: map[*core.Stream]core.StreamSink{}}
	r.l.SetStreamReader(f)
	var ss [3]*core.Stream
	var ks [3]*sink
	var rk *readSink
	for i, name := range []string{"a", "b", "c"} {
		x, y := socketpair(t)
		ks[i] = r.sink(name, x)
		var k core.StreamSink = ks[i]
		if i == 1 && bufB {
			rk = &readSink{bufSink: &bufSink{lender: lender{sink: ks[i]}, size: 4}}
			k = rk
		}
		s, err := core.NewStream(r.l, x, k)
		if err != nil {
			t.Fatalf("NewStream(%s): %v", name, err)
		}
		ss[i], f.sinks[s] = s, k
		if rk != nil {
			rk.s = s
		}
		if i == 2 && eofC {
			unix.Shutdown(y, unix.SHUT_WR)
		} else {
			write(t, y, name)
		}
		s.Start()
	}
	r.soon(r.item("before", nil))
	return r, f, ss, ks, rk
}

// TestReadRunOneCall: streams ready in one poll are read by one call of
// the StreamReader, behind the callbacks queued before the poll; a
// BufferedProtocol's stream among them too.
func TestReadRunOneCall(t *testing.T) {
	for _, bufB := range []bool{false, true} {
		t.Run("buffered-b="+strconv.FormatBool(bufB), func(t *testing.T) {
			r, f, _, ks, _ := readRun(t, false, bufB)
			ks[2].data = func(b []byte) error { ks[2].logf("data:%s", b); r.l.Stop(); return nil }
			r.runExpecting("run:before", "a:data:1", "b:data:1", "c:data:c")
			f.wantRuns(t, 3)
		})
	}
}

// TestReadRunStopsAtPaused: a stream the one before it paused is left
// unread, and the rest of the run is read after it, as each would be on
// its own.
func TestReadRunStopsAtPaused(t *testing.T) {
	r, f, ss, ks, _ := readRun(t, false, false)
	ks[0].data = func(b []byte) error { ks[0].logf("data:%s", b); return ss[1].PauseReading() }
	ks[2].data = func(b []byte) error { ks[2].logf("data:%s", b); r.l.Stop(); return nil }
	r.runExpecting("run:before", "a:data:a", "c:data:c")
	f.wantRuns(t, 3)
}

// TestReadRunEOF: a read that meets EOF ends the run there; the stream
// handles it as its own read would.
func TestReadRunEOF(t *testing.T) {
	r, f, _, ks, _ := readRun(t, true, false)
	ks[2].lost = func(error) error { r.l.Stop(); return nil }
	r.runExpecting("run:before", "a:data:1", "b:data:1", "c:eof", "c:lost:nil")
	f.wantRuns(t, 3)
}

// TestReadRunErrorEndsRun: a sink's error ends Run at once; the streams
// after it in the run are read when the loop runs again.
func TestReadRunErrorEndsRun(t *testing.T) {
	r, f, _, ks, _ := readRun(t, false, false)
	boom := errors.New("boom")
	ks[0].data = func(b []byte) error { ks[0].logf("data:%s", b); return boom }
	if err := r.run(); err != boom {
		t.Fatalf("Run = %v, want %v", err, boom)
	}
	ks[2].data = func(b []byte) error { ks[2].logf("data:%s", b); r.l.Stop(); return nil }
	r.runExpecting("run:before", "a:data:a", "b:data:1", "c:data:c")
	f.wantRuns(t, 3, 2)
}

// TestReadRunBufferLentUnread: a get_buffer() that closes its transport
// ends the run there; the stream reads into the buffer lent, as asyncio
// does after get_buffer, and the rest is read as each would be on its own.
func TestReadRunBufferLentUnread(t *testing.T) {
	r, f, ss, ks, rk := readRun(t, false, true)
	rk.get = func() error { ks[1].logf("get"); return ss[1].Close() }
	ks[1].lost = func(error) error { r.l.Stop(); return nil }
	r.runExpecting("run:before", "a:data:1", "b:get", "b:data:1", "c:data:1", "b:lost:nil")
	f.wantRuns(t, 3)
}
