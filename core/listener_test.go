package core_test

import (
	"errors"
	"fmt"
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

func (s *lsink) Accepted(conns []core.Conn, err error) (int, error) {
	s.r.locked("Accepted")
	if err != nil {
		s.r.log = append(s.r.log, "accept-error:"+errName(err))
		if s.failed != nil {
			if err := s.failed(err); err != nil {
				return 0, err
			}
		}
	}
	for i, c := range conns {
		s.r.t.Cleanup(func() { unix.Close(c.Fd) })
		s.fds = append(s.fds, c.Fd)
		s.checkPeer(c.Fd, c.Peer)
		s.r.log = append(s.r.log, "accepted")
		if s.accepted != nil {
			if err := s.accepted(c.Fd); err != nil {
				return i + 1, err
			}
		}
	}
	return len(conns), nil
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
// connections, behind the item queued before the poll; the rest wait for
// the next tick.
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
	r.runExpecting("run:tick", "accepted", "accepted", "run:tick", "accepted", "accepted", "run:tick", "accepted")
	r.l.Clear() // the tick item
	r.takeLog()
}

// TestListenerStopStartClose: a stopped listener leaves connections
// queued; Start takes them; Close unregisters the fd for good.
func TestListenerStopStartClose(t *testing.T) {
	r := newLoop(t)
	ln, k, lfd, addr := newListener(t, r)
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
	r.runExpecting("run:start", "accepted", "run:stop")
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

// TestListenerAcceptsBehindReadyCallbacks: a connection waiting at the
// poll is accepted in the ready phase, after the callbacks queued before
// the poll, as asyncio queues the listener's reader handle behind them.
func TestListenerAcceptsBehindReadyCallbacks(t *testing.T) {
	r := newLoop(t)
	ln, k, _, addr := newListener(t, r)
	connected(t, addr)
	if err := ln.Start(); err != nil {
		t.Fatal(err)
	}
	r.soon(r.item("before", nil))
	k.accepted = func(int) error { r.l.Stop(); return nil }
	r.runExpecting("run:before", "accepted")
}

// TestListenerClosedBeforeItsTurn: a callback queued before the poll that
// closes the listener means the connection the poll reported is not
// accepted.
func TestListenerClosedBeforeItsTurn(t *testing.T) {
	r := newLoop(t)
	ln, _, _, addr := newListener(t, r)
	connected(t, addr)
	if err := ln.Start(); err != nil {
		t.Fatal(err)
	}
	r.soon(r.item("close", func() error {
		r.soon(r.stopper("next"))
		return ln.Close()
	}))
	r.runExpecting("run:close", "run:next")
}

// TestListenerStoppedBeforeItsTurn: a callback queued before the poll that
// stops and restarts the listener drops the readiness that poll reported,
// as asyncio's remove_reader cancels the queued handle: the connection is
// accepted after the next poll, behind what was queued meanwhile.
func TestListenerStoppedBeforeItsTurn(t *testing.T) {
	r := newLoop(t)
	ln, k, _, addr := newListener(t, r)
	connected(t, addr)
	if err := ln.Start(); err != nil {
		t.Fatal(err)
	}
	r.soon(r.undoRedo("toggle", ln.Stop, ln.Start))
	k.accepted = func(int) error { r.l.Stop(); return nil }
	r.runExpecting("run:toggle", "run:next", "accepted")
}

// errInterrupt stands for a KeyboardInterrupt from a protocol factory.
var errInterrupt = errors.New("KeyboardInterrupt")

// interruptedRound starts ln with three connections waiting and runs the
// loop until the sink, which accepted sets up to fail with errInterrupt on
// the first, stops it. It returns the clients, in the order they connected.
func (r *recorder) interruptedRound(ln *core.Listener, addr unix.Sockaddr) []int {
	r.t.Helper()
	var clients []int
	for range 3 {
		clients = append(clients, connected(r.t, addr))
	}
	if err := ln.Start(); err != nil {
		r.t.Fatal(err)
	}
	r.deadline(5)
	if err := r.run(); err != errInterrupt {
		r.t.Fatalf("Run = %v, want the sink's error", err)
	}
	if diff := cmp.Diff([]string{"accepted"}, withoutPolls(r.takeLog())); diff != "" {
		r.t.Errorf("log (-want +got):\n%s", diff)
	}
	return clients
}

// TestListenerRoundAfterAStoppedRun: a sink error that stops the loop in
// the middle of a round (a KeyboardInterrupt from a protocol factory)
// leaves the rest of the round to the listener, which hands it over, with
// no error, first thing in the next Run: ahead of what the round and the
// caller queued meanwhile, as asyncio's Tasks for the connections stay at
// the head of _ready.
func TestListenerRoundAfterAStoppedRun(t *testing.T) {
	r := newLoop(t)
	ln, k, _, addr := newListener(t, r)
	k.accepted = func(int) error {
		switch len(k.fds) {
		case 1:
			r.soon(r.item("made", nil)) // as connection_made is queued
			return errInterrupt
		case 3:
			r.soon(r.stopper("stop"))
		}
		return nil
	}
	clients := r.interruptedRound(ln, addr)
	r.soon(r.item("after", nil))
	r.runExpecting("accepted", "accepted", "run:made", "run:after", "run:stop")
	// The accept queue is first in, first out.
	for i, fd := range k.fds {
		checkPeerOf(t, fd, clients[i])
	}
	r.l.Clear() // the deadlines
	r.takeLog()
}

// TestListenerClosedAfterAStoppedRun: the rest of a round that a stopped
// loop left is closed if the listener is closed before the loop runs
// again, or was closed in that round, the clients seeing EOF; nothing
// is handed over then.
func TestListenerClosedAfterAStoppedRun(t *testing.T) {
	for _, inRound := range []bool{false, true} {
		t.Run(fmt.Sprintf("inRound=%v", inRound), func(t *testing.T) {
			r := newLoop(t)
			ln, k, _, addr := newListener(t, r)
			k.accepted = func(int) error {
				if inRound {
					if err := ln.Close(); err != nil {
						return err
					}
				}
				return errInterrupt
			}
			clients := r.interruptedRound(ln, addr)
			if err := ln.Close(); err != nil {
				t.Fatal(err)
			}
			for _, c := range clients[1:] {
				pfd := []unix.PollFd{{Fd: int32(c), Events: unix.POLLIN}}
				if n, err := unix.Poll(pfd, int(testTimeout.Milliseconds())); n != 1 || err != nil {
					t.Fatalf("poll on the client: %d, %v", n, err)
				}
				if data, eof := readAll(t, c); len(data) != 0 || !eof {
					t.Errorf("client read %q, eof %v; want EOF", data, eof)
				}
			}
			r.soon(r.stopper("stop"))
			r.runExpecting("run:stop")
			r.l.Clear() // the deadlines
			r.takeLog()
		})
	}
}

// checkPeerOf: fd is the accepted end of client's connection.
func checkPeerOf(t *testing.T, fd, client int) {
	t.Helper()
	peer, err := unix.Getpeername(fd)
	if err != nil {
		t.Fatal(err)
	}
	local, err := unix.Getsockname(client)
	if err != nil {
		t.Fatal(err)
	}
	if peer.(*unix.SockaddrInet4).Port != local.(*unix.SockaddrInet4).Port {
		t.Errorf("fd %d is not client %d's connection", fd, client)
	}
}

// TestListenerEMFILE runs out of descriptors for real: the soft
// RLIMIT_NOFILE is lowered to the lowest free number, so accept4 fails
// with EMFILE. The listener reports it, stops polling (no spinning on the
// still-readable socket), and once the test frees descriptors, accepts
// again after the retry delay.
func TestListenerEMFILE(t *testing.T) {
	r := newLoop(t)
	ln, k, _, addr := newListener(t, r)
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

	restore := lowerFDLimit(t, 0)

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
	err := r.run()
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

// lowerFDLimit lowers the soft RLIMIT_NOFILE so that only room more
// descriptors can be opened (the lowest free numbers must be free in a
// row); the returned func, also run at cleanup, restores it.
func lowerFDLimit(t *testing.T, room int) (restore func()) {
	t.Helper()
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	restore = func() {
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
			t.Errorf("restoring RLIMIT_NOFILE: %v", err)
		}
	}
	t.Cleanup(restore)
	free := make([]int, room+1)
	for i := range free {
		fd, err := unix.Dup(0)
		if err != nil {
			t.Fatal(err)
		}
		free[i] = fd
	}
	for _, fd := range free {
		unix.Close(fd)
	}
	if free[room] != free[0]+room {
		t.Fatalf("no %d free descriptors in a row: %v", room+1, free)
	}
	low := unix.Rlimit{Cur: uint64(free[0] + room), Max: old.Max}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	return restore
}

// TestListenerRoundErrorFirst: a round that accepts a connection and then
// runs out of descriptors reports the error before it hands the
// connection over, as asyncio's reader callback reports it before the Task
// serving the connection runs.
func TestListenerRoundErrorFirst(t *testing.T) {
	r := newLoop(t)
	ln, k, _, addr := newListener(t, r)
	ln.SetRetryDelay(0.01)
	for range 2 {
		connected(t, addr)
	}
	restore := lowerFDLimit(t, 1)
	k.failed = func(error) error {
		restore()
		return nil
	}
	k.accepted = func(int) error {
		if len(k.fds) == 2 {
			r.l.Stop()
		}
		return nil
	}
	if err := ln.Start(); err != nil {
		t.Fatal(err)
	}
	r.runExpecting("accept-error:EMFILE", "accepted", "accepted")
}

// TestListenerCloseMidRound: the sink closing the listener while it serves
// a round (a protocol factory calling Server.close()) still gets the rest
// of the round, as asyncio's Tasks for the connections its reader callback
// accepted still run; the fd is unregistered at once.
func TestListenerCloseMidRound(t *testing.T) {
	r := newLoop(t)
	ln, k, lfd, addr := newListener(t, r)
	for range 3 {
		connected(t, addr)
	}
	k.accepted = func(int) error {
		if len(k.fds) == 1 {
			if err := ln.Close(); err != nil {
				return err
			}
			if r.l.Owner(lfd) != nil {
				t.Errorf("listener fd still registered after Close")
			}
			r.at(core.Now()+0.02, r.item("stop", func() error { r.l.Stop(); return nil }))
		}
		return nil
	}
	if err := ln.Start(); err != nil {
		t.Fatal(err)
	}
	r.runExpecting("accepted", "accepted", "accepted", "run:stop")
}

// rawSink keeps a copy of each raw peer address.
type rawSink struct {
	r     *recorder
	addrs [][]byte
	want  int
}

func (s *rawSink) Accepted(conns []core.Conn, err error) (int, error) {
	for _, c := range conns {
		unix.Close(c.Fd)
		s.addrs = append(s.addrs, append([]byte(nil), c.Peer...))
	}
	if len(s.addrs) == s.want {
		s.r.l.Stop()
	}
	return len(conns), err
}

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

// newListener makes a listener on a fresh loopback socket (kernel backlog
// 16), accepting up to 100 a round into an lsink.
func newListener(t *testing.T, r *recorder) (*core.Listener, *lsink, int, *unix.SockaddrInet4) {
	t.Helper()
	lfd, addr := tcpListener(t, 16)
	k := &lsink{r: r}
	ln, err := core.NewListener(r.l, lfd, 100, k)
	if err != nil {
		t.Fatal(err)
	}
	return ln, k, lfd, addr
}
