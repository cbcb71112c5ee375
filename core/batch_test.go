package core_test

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"goloop/core"
)

// runReader is a StreamReader as the bridge's, in Go: it reads each stream
// into buf and hands the bytes to its sink, and records the runs.
type runReader struct {
	sinks map[*core.Stream]*sink
	runs  []int
}

func (f *runReader) ReadStreams(streams []*core.Stream, buf []byte) (int, bool, int, error, error) {
	f.runs = append(f.runs, len(streams))
	for i, s := range streams {
		if !s.IsReading() || s.IsClosing() {
			return i, false, 0, nil, nil
		}
		n, err := unix.Read(s.Fd(), buf)
		switch {
		case err == unix.EAGAIN:
			continue
		case err != nil:
			return i, true, 0, err, nil
		case n == 0:
			return i, true, 0, nil, nil
		}
		if err := f.sinks[s].Data(buf[:n]); err != nil {
			return i + 1, false, 0, nil, err
		}
	}
	return len(streams), false, 0, nil, nil
}

// readRun starts three streams, a, b and c, whose peers wrote before the
// poll (c's peer shut down instead when eofC), with a StreamReader set; a
// callback queued before the poll runs first.
func readRun(t *testing.T, eofC bool) (*recorder, *runReader, [3]*core.Stream, [3]*sink) {
	r := newLoop(t)
	f := &runReader{sinks: map[*core.Stream]*sink{}}
	r.l.SetStreamReader(f)
	var ss [3]*core.Stream
	var ks [3]*sink
	for i, name := range []string{"a", "b", "c"} {
		x, y := socketpair(t)
		ss[i], ks[i] = r.stream(name, x)
		f.sinks[ss[i]] = ks[i]
		if i == 2 && eofC {
			unix.Shutdown(y, unix.SHUT_WR)
		} else {
			write(t, y, name)
		}
		ss[i].Start()
	}
	r.soon(r.item("before", nil))
	return r, f, ss, ks
}

// TestReadRunOneCall: streams ready in one poll are read by one call of
// the StreamReader, behind the callbacks queued before the poll.
func TestReadRunOneCall(t *testing.T) {
	r, f, _, ks := readRun(t, false)
	ks[2].data = func(b []byte) error { ks[2].logf("data:%s", b); r.l.Stop(); return nil }
	r.runExpecting("run:before", "a:data:1", "b:data:1", "c:data:c")
	if diff := cmp.Diff([]int{3}, f.runs); diff != "" {
		t.Errorf("runs (-want +got):\n%s", diff)
	}
}

// TestReadRunStopsAtPaused: a stream the one before it paused is left
// unread, and the rest of the run is read after it, as each would be on
// its own.
func TestReadRunStopsAtPaused(t *testing.T) {
	r, f, ss, ks := readRun(t, false)
	ks[0].data = func(b []byte) error { ks[0].logf("data:%s", b); return ss[1].PauseReading() }
	ks[2].data = func(b []byte) error { ks[2].logf("data:%s", b); r.l.Stop(); return nil }
	r.runExpecting("run:before", "a:data:a", "c:data:c")
	if diff := cmp.Diff([]int{3}, f.runs); diff != "" {
		t.Errorf("runs (-want +got):\n%s", diff)
	}
}

// TestReadRunEOF: a read that meets EOF ends the run there; the stream
// handles it as its own read would.
func TestReadRunEOF(t *testing.T) {
	r, f, _, ks := readRun(t, true)
	ks[2].lost = func(error) error { r.l.Stop(); return nil }
	r.runExpecting("run:before", "a:data:1", "b:data:1", "c:eof", "c:lost:nil")
	if diff := cmp.Diff([]int{3}, f.runs); diff != "" {
		t.Errorf("runs (-want +got):\n%s", diff)
	}
}

// TestReadRunErrorEndsRun: a sink's error ends Run at once; the streams
// after it in the run are read when the loop runs again.
func TestReadRunErrorEndsRun(t *testing.T) {
	r, f, _, ks := readRun(t, false)
	boom := errors.New("boom")
	ks[0].data = func(b []byte) error { ks[0].logf("data:%s", b); return boom }
	if err := r.run(); err != boom {
		t.Fatalf("Run = %v, want %v", err, boom)
	}
	ks[2].data = func(b []byte) error { ks[2].logf("data:%s", b); r.l.Stop(); return nil }
	r.runExpecting("run:before", "a:data:a", "b:data:1", "c:data:c")
	if diff := cmp.Diff([]int{3, 2}, f.runs); diff != "" {
		t.Errorf("runs (-want +got):\n%s", diff)
	}
}
