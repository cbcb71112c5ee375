package core_test

import (
	"testing"
	"unsafe"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"goloop/core"
)

// lsink is a ListenerSink that logs into the recorder and keeps the fds.
type lsink struct {
	r        *recorder
	fds      []int
	accepted func(fd int) error
	failed   func(err error) error
}

func (s *lsink) Accepted(fd int, sa []byte) error {
	s.r.locked("Accepted")
	s.fds = append(s.fds, fd)
	s.r.t.Cleanup(func() { unix.Close(fd) })
	s.checkPeer(fd, sa)
	s.r.log = append(s.r.log, "accepted")
	if s.accepted != nil {
		return s.accepted(fd)
	}
	return nil
}

// checkPeer: the raw address is the peer's, as getpeername reports it.
func (s *lsink) checkPeer(fd int, sa []byte) {
	t := s.r.t
	if len(sa) != unix.SizeofSockaddrInet4 {
		t.Errorf("Accepted with a %d-byte address, want an IPv4 one (%d)", len(sa), unix.SizeofSockaddrInet4)
		return
	}
	peer, err := unix.Getpeername(fd)
	if err != nil {
		t.Errorf("getpeername: %v", err)
		return
	}
	p, ok := peer.(*unix.SockaddrInet4)
	if !ok {
		t.Errorf("getpeername gave %#v", peer)
		return
	}
	raw := (*unix.RawSockaddrInet4)(unsafe.Pointer(&sa[0]))
	port := int(raw.Port>>8 | raw.Port<<8) // network byte order
	if raw.Family != unix.AF_INET || raw.Addr != p.Addr || port != p.Port {
		t.Errorf("Accepted with %+v, want the peer %+v", raw, p)
	}
}

func (s *lsink) AcceptError(err error) error {
	s.r.locked("AcceptError")
	s.r.log = append(s.r.log, "accept-error:"+errName(err))
	if s.failed != nil {
		return s.failed(err)
	}
	return nil
}

// connected dials addr and waits until the handshake is done, so that the
// connection sits in the listener's queue before the loop runs.
func connected(t *testing.T, addr unix.Sockaddr) int {
	t.Helper()
	fd := dial(t, addr)
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
	if n, err := unix.Poll(pfd, int(testTimeout.Milliseconds())); n != 1 || err != nil {
		t.Fatalf("poll on the client: %d, %v", n, err)
	}
	return fd
}

// TestListenerBacklogPerReadiness: each readiness accepts at most backlog
// connections; the rest wait for the next tick.
func TestListenerBacklogPerReadiness(t *testing.T) {
	r := newLoop(t)
	lfd, addr := tcpListener(t, 16)
	k := &lsink{r: r}
	ln, err := core.NewListener(r.l, lfd, 2, k)
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		connected(t, addr)
	}
	k.accepted = func(int) error {
		if len(k.fds) == 5 {
			r.l.Stop()
		}
		return nil
	}
	var tick func() error
	tick = func() error { r.soon(r.item("tick", tick)); return nil }
	r.soon(r.item("tick", tick))
	if err := ln.Start(); err != nil {
		t.Fatal(err)
	}
	r.deadline(5)
	if err := r.run(); err != nil {
		t.Fatal(err)
	}
	want := []string{"accepted", "accepted", "run:tick", "accepted", "accepted", "run:tick", "accepted", "run:tick"}
	if diff := cmp.Diff(want, withoutPolls(r.takeLog())); diff != "" {
		t.Errorf("log (-want +got):\n%s", diff)
	}
	r.l.Clear() // the tick item
	r.takeLog()
}

// TestListenerStopStartClose: a stopped listener leaves connections
// queued; Start takes them; Close unregisters the fd for good.
func TestListenerStopStartClose(t *testing.T) {
	r := newLoop(t)
	lfd, addr := tcpListener(t, 16)
	k := &lsink{r: r}
	ln, err := core.NewListener(r.l, lfd, 100, k)
	if err != nil {
		t.Fatal(err)
	}
	if ln.Serving() {
		t.Errorf("serving before Start")
	}
	connected(t, addr)
	// A few ticks with the connection queued and the listener not started.
	r.at(core.Now()+0.02, r.item("start", func() error { return ln.Start() }))
	k.accepted = func(int) error {
		if err := ln.Stop(); err != nil {
			return err
		}
		connected(t, addr)
		r.at(core.Now()+0.02, r.item("stop", func() error { r.l.Stop(); return nil }))
		return nil
	}
	r.deadline(5)
	if err := r.run(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"run:start", "accepted", "run:stop"}, withoutPolls(r.takeLog())); diff != "" {
		t.Errorf("log (-want +got):\n%s", diff)
	}
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	if r.l.Owner(lfd) != nil {
		t.Errorf("listener fd still registered after Close")
	}
	if err := ln.Start(); err != core.ErrClosed {
		t.Errorf("Start after Close = %v, want ErrClosed", err)
	}
}

// TestListenerEMFILE runs out of descriptors for real: the soft
// RLIMIT_NOFILE is lowered to the lowest free number, so accept4 fails
// with EMFILE. The listener reports it, stops polling (no spinning on the
// still-readable socket), and once the test frees descriptors, accepts
// again after the retry delay.
func TestListenerEMFILE(t *testing.T) {
	r := newLoop(t)
	lfd, addr := tcpListener(t, 16)
	k := &lsink{r: r}
	ln, err := core.NewListener(r.l, lfd, 100, k)
	if err != nil {
		t.Fatal(err)
	}
	const delay = 0.05
	ln.SetRetryDelay(delay)
	for range 3 {
		connected(t, addr)
	}
	var ballast [4]int // freed in AcceptError
	for i := 0; i < len(ballast); i += 2 {
		if err := unix.Pipe2(ballast[i:i+2], unix.O_CLOEXEC); err != nil {
			t.Fatal(err)
		}
	}

	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	restore := func() {
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
			t.Errorf("restoring RLIMIT_NOFILE: %v", err)
		}
	}
	t.Cleanup(restore)
	free, err := unix.Dup(0)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(free)
	low := unix.Rlimit{Cur: uint64(free), Max: old.Max}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}

	var failedAt float64
	polls := 0
	k.failed = func(err error) error {
		failedAt = core.Now()
		for _, fd := range ballast {
			unix.Close(fd)
		}
		r.before = func() { polls++ }
		return nil
	}
	k.accepted = func(int) error {
		if len(k.fds) == 1 && core.Now()-failedAt < delay {
			t.Errorf("accepted %.3fs after EMFILE, before the retry delay", core.Now()-failedAt)
		}
		if len(k.fds) == 3 {
			r.l.Stop()
		}
		return nil
	}
	if err := ln.Start(); err != nil {
		t.Fatal(err)
	}
	r.deadline(5)
	err = r.run()
	restore()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"accept-error:EMFILE", "accepted", "accepted", "accepted"}
	if diff := cmp.Diff(want, withoutPolls(r.takeLog())); diff != "" {
		t.Errorf("log (-want +got):\n%s", diff)
	}
	if polls > 3 {
		t.Errorf("%d polls during the retry delay: the loop spun on the readable listener", polls)
	}
	if !ln.Serving() {
		t.Errorf("not serving after the retry")
	}
}

// rawSink keeps a copy of each raw peer address.
type rawSink struct {
	r     *recorder
	addrs [][]byte
	want  int
}

func (s *rawSink) Accepted(fd int, sa []byte) error {
	unix.Close(fd)
	s.addrs = append(s.addrs, append([]byte(nil), sa...))
	if len(s.addrs) == s.want {
		s.r.l.Stop()
	}
	return nil
}

func (s *rawSink) AcceptError(err error) error { return err }

// TestListenerRawUnixAddresses: the address is what the kernel wrote, with
// its length: just the family for an unnamed Unix peer, the family and
// name (leading NUL included) for an abstract one. The buffer is reused,
// so the length is what tells them apart.
func TestListenerRawUnixAddresses(t *testing.T) {
	r := newLoop(t)
	path := t.TempDir() + "/l.sock"
	lfd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	closeLater(t, lfd)
	if err := unix.Bind(lfd, &unix.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(lfd, 4); err != nil {
		t.Fatal(err)
	}
	abstract := "@goloop-core-test-" + t.Name()
	for _, name := range []string{abstract, ""} {
		c, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		closeLater(t, c)
		if name != "" {
			if err := unix.Bind(c, &unix.SockaddrUnix{Name: name}); err != nil {
				t.Fatal(err)
			}
		}
		if err := unix.Connect(c, &unix.SockaddrUnix{Name: path}); err != nil {
			t.Fatal(err)
		}
	}
	k := &rawSink{r: r, want: 2}
	ln, err := core.NewListener(r.l, lfd, 4, k)
	if err != nil {
		t.Fatal(err)
	}
	if err := ln.Start(); err != nil {
		t.Fatal(err)
	}
	r.deadline(5)
	if err := r.run(); err != nil {
		t.Fatal(err)
	}
	family := []byte{unix.AF_UNIX, 0}
	want := [][]byte{
		append(append(family[:2:2], 0), abstract[1:]...),
		family,
	}
	if diff := cmp.Diff(want, k.addrs); diff != "" {
		t.Errorf("raw addresses (-want +got):\n%s", diff)
	}
	r.takeLog()
}
