package core_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"goloop/core"
)

// Helpers for the transport tests: real sockets, a recording sink, and a
// deadline that fails a test instead of letting it hang.

// closeLater closes fd at the end of the test.
func closeLater(t *testing.T, fds ...int) {
	t.Cleanup(func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	})
}

// tcpListener listens on 127.0.0.1 on a free port; non-blocking.
func tcpListener(t *testing.T, backlog int) (fd int, addr *unix.SockaddrInet4) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("socket: %v", err)
	}
	closeLater(t, fd)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatalf("bind: %v", err)
	}
	if err := unix.Listen(fd, backlog); err != nil {
		t.Fatalf("listen: %v", err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatalf("getsockname: %v", err)
	}
	return fd, sa.(*unix.SockaddrInet4)
}

// dial starts a non-blocking connect to addr; on loopback the handshake
// completes in the kernel, whether or not anyone accepts.
func dial(t *testing.T, addr unix.Sockaddr) int {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("socket: %v", err)
	}
	closeLater(t, fd)
	if err := unix.Connect(fd, addr); err != nil && err != unix.EINPROGRESS {
		t.Fatalf("connect: %v", err)
	}
	return fd
}

// tcpPair returns the two ends of a loopback TCP connection, non-blocking,
// closed at the end of the test.
func tcpPair(t *testing.T) (a, b int) {
	t.Helper()
	ln, addr := tcpListener(t, 1)
	a = dial(t, addr)
	pfd := []unix.PollFd{{Fd: int32(ln), Events: unix.POLLIN}}
	if n, err := unix.Poll(pfd, int(testTimeout.Milliseconds())); n != 1 || err != nil {
		t.Fatalf("poll on the listener: %d, %v", n, err)
	}
	b, _, err := unix.Accept4(ln, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
	if err != nil {
		t.Fatalf("accept4: %v", err)
	}
	closeLater(t, b)
	// As asyncio's transports do: without it, the small send buffers some
	// tests set meet Nagle and delayed ACKs, and stall 40 ms at a time.
	setInt(t, a, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	setInt(t, b, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	return a, b
}

func setInt(t *testing.T, fd, level, opt, v int) {
	t.Helper()
	if err := unix.SetsockoptInt(fd, level, opt, v); err != nil {
		t.Fatalf("setsockopt(%d, %d, %d): %v", fd, level, opt, err)
	}
}

// reset resets the connection of fd with a TCP RST: SO_LINGER with a zero
// timeout, then the socket's last reference dropped by dup3-ing a fresh
// socket over fd. The number stays open, so closeLater's close of it at the
// end of the test cannot hit a descriptor opened since.
func reset(t *testing.T, fd int) {
	t.Helper()
	if err := unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0}); err != nil {
		t.Fatalf("SO_LINGER: %v", err)
	}
	other, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("socket: %v", err)
	}
	defer unix.Close(other)
	if err := unix.Dup3(other, fd, unix.O_CLOEXEC); err != nil {
		t.Fatalf("dup3: %v", err)
	}
}

// fill writes to fd until its send buffer is full, and returns how much.
func fill(t *testing.T, fd int) int {
	t.Helper()
	buf := make([]byte, 4096)
	total := 0
	for {
		n, err := unix.Write(fd, buf)
		if err == unix.EAGAIN {
			return total
		}
		if err != nil {
			t.Fatalf("fill: %v", err)
		}
		total += n
	}
}

// readAll reads what fd holds now; eof reports a read of 0.
func readAll(t *testing.T, fd int) (data []byte, eof bool) {
	t.Helper()
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Read(fd, buf)
		switch {
		case err == unix.EAGAIN:
			return data, false
		case err != nil:
			t.Fatalf("read: %v", err)
		case n == 0:
			return data, true
		}
		data = append(data, buf[:n]...)
	}
}

// deadline stops the loop and fails the test if it is still running after
// secs: the tests drive the loop until their sinks stop it.
func (r *recorder) deadline(secs float64) {
	r.at(core.Now()+secs, r.item("deadline", func() error {
		r.t.Errorf("deadline of %vs reached", secs)
		r.l.Stop()
		return nil
	}))
}

// runExpecting drives the loop, under a deadline of 5 s, until a callback
// or sink stops it, and checks its log, the polls left out, against want.
func (r *recorder) runExpecting(want ...string) {
	r.t.Helper()
	r.deadline(5)
	if err := r.run(); err != nil {
		r.t.Fatal(err)
	}
	if diff := cmp.Diff(want, withoutPolls(r.takeLog())); diff != "" {
		r.t.Errorf("log (-want +got):\n%s", diff)
	}
}

// errName renders an error for a log: "nil", an errno's name, or the text.
func errName(err error) string {
	var errno unix.Errno
	switch {
	case err == nil:
		return "nil"
	case errors.As(err, &errno):
		return unix.ErrnoName(errno)
	}
	return err.Error()
}

// sink is a StreamSink (and DatagramSink) that logs into the recorder,
// with hooks a test may set.
type sink struct {
	r    *recorder
	name string
	fd   int
	got  []byte // what Data received, unless data is set

	data     func(b []byte) error
	eof      func() (bool, error)
	pause    func() error
	resume   func() error
	lost     func(err error) error
	datagram func(b []byte, from core.Sockaddr) error
	onError  func(err error) error
	// shutOnLost shuts the socket down in Lost, as the embedder closing
	// it would (the test's cleanup closes it): the peer sees EOF.
	shutOnLost bool

	lostErrs []error
}

func (r *recorder) sink(name string, fd int) *sink { return &sink{r: r, name: name, fd: fd} }

func (s *sink) logf(format string, args ...any) {
	s.r.locked(s.name)
	s.r.log = append(s.r.log, s.name+":"+fmt.Sprintf(format, args...))
}

func (s *sink) Data(b []byte) error {
	s.r.locked("Data")
	if s.data != nil {
		return s.data(b)
	}
	s.got = append(s.got, b...)
	s.logf("data:%d", len(b))
	return nil
}

func (s *sink) EOF() (bool, error) {
	s.logf("eof")
	if s.eof != nil {
		return s.eof()
	}
	return false, nil
}

func (s *sink) PauseWriting() error {
	s.logf("pause")
	if s.pause != nil {
		return s.pause()
	}
	return nil
}

func (s *sink) ResumeWriting() error {
	s.logf("resume")
	if s.resume != nil {
		return s.resume()
	}
	return nil
}

func (s *sink) Lost(err error) error {
	s.logf("lost:%s", errName(err))
	s.lostErrs = append(s.lostErrs, err)
	if s.shutOnLost {
		unix.Shutdown(s.fd, unix.SHUT_RDWR)
	}
	if s.lost != nil {
		return s.lost(err)
	}
	return nil
}

// Datagram logs the payload.
func (s *sink) Datagram(b []byte, from core.Sockaddr) error {
	s.logf("dgram:%s", b)
	if s.datagram != nil {
		return s.datagram(b, from)
	}
	return nil
}

func (s *sink) Error(err error) error {
	s.logf("error:%s", errName(err))
	if s.onError != nil {
		return s.onError(err)
	}
	return nil
}

// stream makes a Stream over fd with a new sink.
func (r *recorder) stream(name string, fd int) (*core.Stream, *sink) {
	r.t.Helper()
	k := r.sink(name, fd)
	s, err := core.NewStream(r.l, fd, k)
	if err != nil {
		r.t.Fatalf("NewStream(%s): %v", name, err)
	}
	return s, k
}
