package core_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"goloop/core"
)

// closingSink is a sink that is also a core.ClosingSink.
type closingSink struct{ *sink }

func (c closingSink) Closing() { c.logf("closing") }

var _ core.ClosingSink = closingSink{}

// TestStreamClosingSink: Closing is called once, before the call that closes
// the stream returns and before Lost, whatever closes it: Close, Abort, an
// EOF not kept open, a read error.
func TestStreamClosingSink(t *testing.T) {
	cases := []struct {
		name  string
		close func(t *testing.T, s *core.Stream, peer int)
		want  []string
	}{
		{"close", func(t *testing.T, s *core.Stream, peer int) {
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			s.Close()
		}, []string{"s:closing", "s:lost:nil"}},
		{"abort", func(t *testing.T, s *core.Stream, peer int) {
			if err := s.Abort(); err != nil {
				t.Fatalf("Abort: %v", err)
			}
			s.ForceClose(nil)
		}, []string{"s:closing", "s:lost:nil"}},
		{"close then abort", func(t *testing.T, s *core.Stream, peer int) {
			s.Write(make([]byte, 8<<20)) // buffered: Close waits for the flush
			s.Close()
			s.Abort()
		}, []string{"s:pause", "s:closing", "s:lost:nil"}},
		{"eof", func(t *testing.T, s *core.Stream, peer int) {
			unix.Shutdown(peer, unix.SHUT_WR)
		}, []string{"s:eof", "s:closing", "s:lost:nil"}},
		{"read error", func(t *testing.T, s *core.Stream, peer int) {
			// An unread byte at close makes the kernel reset the connection.
			write(t, peer, "x")
			unix.SetsockoptLinger(peer, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
			unix.Close(peer)
		}, []string{"s:closing", "s:lost:ECONNRESET"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newLoop(t)
			a, b := tcpPair(t)
			k := closingSink{r.sink("s", a)}
			if c.name == "read error" {
				k.data = func([]byte) error { return nil }
			}
			s, err := core.NewStream(r.l, a, k)
			if err != nil {
				t.Fatalf("NewStream: %v", err)
			}
			if err := s.Start(); err != nil {
				t.Fatalf("Start: %v", err)
			}
			k.lost = func(error) error { r.l.Stop(); return nil }
			r.soon(r.item("close", func() error { c.close(t, s, b); return nil }))
			r.deadline(5)
			if err := r.run(); err != nil {
				t.Fatalf("Run: %v", err)
			}
			if diff := cmp.Diff(c.want, withoutPolls(r.takeLog())[1:]); diff != "" {
				t.Errorf("log (-want +got):\n%s", diff)
			}
		})
	}
}
