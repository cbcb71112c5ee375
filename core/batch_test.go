package core_test

import (
	"errors"
	"math"
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
	r, f, ss, ks, rk := streamsReady(t, eofC, bufB)
	r.soon(r.item("before", nil))
	return r, f, ss, ks, rk
}

// streamsReady is readRun with nothing queued: the loop's first poll
// blocks, and finds the three streams ready.
func streamsReady(t *testing.T, eofC, bufB bool) (*recorder, *runReader, [3]*core.Stream, [3]*sink, *readSink) {
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

// pollReader is a runReader that also makes the blocking poll, as the
// bridge's (core.PollReader): when every event is one of its streams',
// ready only for reading, and no timer is due, it reads them all.
type pollReader struct {
	*runReader
	fds  map[int]*core.Stream
	read int // polls that read
	dues []float64
}

func (f *pollReader) PollRead(epfd int, events []unix.EpollEvent, msec int, due float64, buf []byte) (core.PolledRun, error) {
	f.dues = append(f.dues, due)
	n, err := unix.EpollWait(epfd, events, msec)
	r := core.PolledRun{N: n}
	if err != nil || n == 0 || due < core.Now() {
		return r, err
	}
	run := make([]*core.Stream, n)
	for i, e := range events[:n] {
		if run[i] = f.fds[int(e.Fd)]; run[i] == nil || e.Events != unix.EPOLLIN {
			return r, nil
		}
	}
	r.Read = true
	f.read++
	for i := 0; i < n; i++ { // the increment skips a paused or closed stream
		done, began, o, err := f.ReadStreams(run[i:], buf)
		i += done
		if err != nil {
			r.Err = err
			break
		}
		if began {
			r.Began, r.Out = run[i], o
			break
		}
	}
	for i := range events[:n] {
		events[i].Events = 0
	}
	return r, nil
}

// pollRun is streamsReady with a pollReader.
func pollRun(t *testing.T, eofC bool) (*recorder, *pollReader, [3]*core.Stream, [3]*sink) {
	r, f, ss, ks, _ := streamsReady(t, eofC, false)
	p := &pollReader{runReader: f, fds: map[int]*core.Stream{}}
	for _, s := range ss {
		p.fds[s.Fd()] = s
	}
	r.l.SetStreamReader(p)
	return r, p, ss, ks
}

// TestPollReadEndsTick: streams a PollReader read in its poll are the
// whole tick: a callback the first one's data queued runs on the next,
// so a Stop from the last one's returns before it runs.
func TestPollReadEndsTick(t *testing.T) {
	r, f, _, ks := pollRun(t, false)
	ks[0].data = func(b []byte) error { ks[0].logf("data:%s", b); r.soon(r.item("later", nil)); return nil }
	ks[2].data = func(b []byte) error { ks[2].logf("data:%s", b); r.l.Stop(); return nil }
	r.runExpecting("a:data:a", "b:data:1", "c:data:c")
	r.soon(r.stopper("stop"))
	r.runExpecting("run:later", "run:stop")
	f.wantRuns(t, 3)
	if f.read != 1 {
		t.Errorf("%d polls read, want 1", f.read)
	}
}

// TestPollReadSkipsPaused: a stream paused by a callback before it in the
// poll's reads is skipped, as its watcher would be, and read once resumed.
func TestPollReadSkipsPaused(t *testing.T) {
	r, _, ss, ks := pollRun(t, false)
	ks[0].data = func(b []byte) error { ks[0].logf("data:%s", b); return ss[1].PauseReading() }
	ks[2].data = func(b []byte) error {
		ks[2].logf("data:%s", b)
		r.soon(r.item("resume", ss[1].ResumeReading))
		return nil
	}
	ks[1].data = func(b []byte) error { ks[1].logf("data:%s", b); r.l.Stop(); return nil }
	r.runExpecting("a:data:a", "c:data:c", "run:resume", "b:data:b")
}

// TestPollReadBegan: a read the PollReader began and could not finish (EOF
// here) is finished by the core before anything else runs.
func TestPollReadBegan(t *testing.T) {
	r, _, _, ks := pollRun(t, true)
	ks[2].lost = func(error) error { r.l.Stop(); return nil }
	r.runExpecting("a:data:1", "b:data:1", "c:eof", "c:lost:nil")
}

// TestPollReadErrorEndsRun: a sink's error in the poll's reads ends Run;
// the streams after it, dropped, are reported again by the next poll.
func TestPollReadErrorEndsRun(t *testing.T) {
	r, f, _, ks := pollRun(t, false)
	boom := errors.New("boom")
	ks[0].data = func(b []byte) error { ks[0].logf("data:%s", b); return boom }
	if err := r.run(); err != boom {
		t.Fatalf("Run = %v, want %v", err, boom)
	}
	ks[2].data = func(b []byte) error { ks[2].logf("data:%s", b); r.l.Stop(); return nil }
	r.runExpecting("a:data:a", "b:data:1", "c:data:c")
	f.wantRuns(t, 3, 2)
}

// TestPollReadGetsDue: PollRead is told when the first timer is due, +Inf
// without one; once no stream is registered the loop polls through
// Hooks.Poll.
func TestPollReadGetsDue(t *testing.T) {
	when := core.Now() + 3600
	for _, timer := range []bool{false, true} {
		r, f, ss, ks := pollRun(t, false)
		want := math.Inf(1)
		if timer {
			r.at(when, r.item("timer", nil))
			want = when
		}
		ks[2].data = func(b []byte) error { r.l.Stop(); return nil }
		if err := r.run(); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]float64{want}, f.dues); diff != "" {
			t.Errorf("timer %v: dues (-want +got):\n%s", timer, diff)
		}
		for _, s := range ss {
			s.Abort()
		}
		ks[2].lost = func(error) error { r.at(core.Now(), r.stopper("stop")); return nil }
		r.takeLog()
		r.runExpecting("a:lost:nil", "b:lost:nil", "c:lost:nil", "run:stop")
		if len(f.dues) != 1 {
			t.Errorf("timer %v: %d more PollRead calls once the streams were gone", timer, len(f.dues)-1)
		}
	}
}
