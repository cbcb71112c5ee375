package core_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"unsafe"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"goloop/core"
)

// udpSocket returns a non-blocking UDP socket bound to 127.0.0.1 on a free
// port, closed at the end of the test.
func udpSocket(t *testing.T) (int, *unix.SockaddrInet4) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	closeLater(t, fd)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return fd, sa.(*unix.SockaddrInet4)
}

// inet4 renders an IPv4 socket address, a *unix.SockaddrInet4 or the
// kernel's struct sockaddr_in (core.Sockaddr).
func inet4(sa any) string {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return fmt.Sprintf("%d.%d.%d.%d:%d", a.Addr[0], a.Addr[1], a.Addr[2], a.Addr[3], a.Port)
	case core.Sockaddr:
		if len(a) == unix.SizeofSockaddrInet4 && a[0] == unix.AF_INET {
			return fmt.Sprintf("%d.%d.%d.%d:%d", a[4], a[5], a[6], a[7], int(a[2])<<8|int(a[3]))
		}
	}
	return fmt.Sprintf("%#v", sa)
}

// raw4 is a in the kernel's form: struct sockaddr_in, family in host
// order, port in network order.
func raw4(a *unix.SockaddrInet4) core.Sockaddr {
	b := make(core.Sockaddr, unix.SizeofSockaddrInet4)
	*(*uint16)(unsafe.Pointer(&b[0])) = unix.AF_INET
	b[2], b[3] = byte(a.Port>>8), byte(a.Port)
	copy(b[4:8], a.Addr[:])
	return b
}

func (r *recorder) datagram(name string, fd int) (*core.Datagram, *sink) {
	r.t.Helper()
	k := r.sink(name, fd)
	d, err := core.NewDatagram(r.l, fd, k)
	if err != nil {
		r.t.Fatalf("NewDatagram(%s): %v", name, err)
	}
	return d, k
}

// TestDatagramUDPEcho: a datagram sent to an address arrives with the
// sender's address, and the reply sent back to that address arrives too.
func TestDatagramUDPEcho(t *testing.T) {
	r := newLoop(t)
	afd, aaddr := udpSocket(t)
	bfd, baddr := udpSocket(t)
	a, ak := r.datagram("a", afd)
	b, bk := r.datagram("b", bfd)
	bk.datagram = func(p []byte, from core.Sockaddr) error {
		if inet4(from) != inet4(aaddr) {
			t.Errorf("sender address %s, want %s", inet4(from), inet4(aaddr))
		}
		return b.SendTo([]byte(strings.ToUpper(string(p))), from)
	}
	ak.datagram = func(p []byte, from core.Sockaddr) error {
		if inet4(from) != inet4(baddr) {
			t.Errorf("replier address %s, want %s", inet4(from), inet4(baddr))
		}
		if string(p) == "TWO" {
			r.l.Stop()
		}
		return nil
	}
	a.Start()
	b.Start()
	if err := a.SendTo([]byte("one"), raw4(baddr)); err != nil {
		t.Fatal(err)
	}
	if err := a.SendTo([]byte("two"), raw4(baddr)); err != nil {
		t.Fatal(err)
	}
	r.deadline(5)
	if err := r.run(); err != nil {
		t.Fatal(err)
	}
	want := []string{"b:dgram:one", "b:dgram:two", "a:dgram:ONE", "a:dgram:TWO"}
	got := withoutPolls(r.takeLog())
	// The two sockets' events may come in either order within a tick;
	// each socket's own datagrams may not.
	var gotA, gotB []string
	for _, e := range got {
		if strings.HasPrefix(e, "a:") {
			gotA = append(gotA, e)
		} else {
			gotB = append(gotB, e)
		}
	}
	if diff := cmp.Diff(want, append(gotB, gotA...)); diff != "" {
		t.Errorf("log (-want +got):\n%s", diff)
	}
}

// TestDatagramConnRefused: a connected UDP socket whose peer port is
// closed gets ECONNREFUSED through Error (error_received), and stays open.
func TestDatagramConnRefused(t *testing.T) {
	r := newLoop(t)
	fd, _ := udpSocket(t)
	// A port nobody listens on: bound, then closed.
	gone, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	unix.Bind(gone, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}})
	goneAddr, err := unix.Getsockname(gone)
	unix.Close(gone)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Connect(fd, goneAddr); err != nil {
		t.Fatal(err)
	}
	d, k := r.datagram("d", fd)
	k.onError = func(err error) error {
		if !errors.Is(err, unix.ECONNREFUSED) {
			t.Errorf("Error(%v), want ECONNREFUSED", err)
		}
		r.l.Stop()
		return nil
	}
	d.Start()
	if err := d.SendTo([]byte("anyone?"), nil); err != nil {
		t.Fatal(err)
	}
	r.runExpecting("d:error:ECONNREFUSED")
	if d.IsClosing() {
		t.Errorf("an ICMP error closed the transport")
	}
}

// TestDatagramsPerReadiness: a burst is read 32 datagrams per readiness,
// each round after the callbacks that were ready before the poll (the
// ticker, which requeues itself every tick), as asyncio queues its reader.
func TestDatagramsPerReadiness(t *testing.T) {
	r := newLoop(t)
	fd, addr := udpSocket(t)
	src, _ := udpSocket(t)
	for i := range 40 {
		if err := unix.Sendto(src, []byte(fmt.Sprint(i)), 0, addr); err != nil {
			t.Fatal(err)
		}
	}
	d, k := r.datagram("d", fd)
	n := 0
	k.datagram = func([]byte, core.Sockaddr) error {
		if n++; n == 40 {
			r.l.Stop()
		}
		return nil
	}
	var tick func() error
	tick = func() error { r.soon(r.item("tick", tick)); return nil }
	r.soon(r.item("tick", tick))
	d.Start()
	r.deadline(5)
	if err := r.run(); err != nil {
		t.Fatal(err)
	}
	var runs []int
	count := 0
	for _, e := range withoutPolls(r.takeLog()) {
		if e == "run:tick" {
			runs = append(runs, count)
			count = 0
		} else {
			count++
		}
	}
	runs = append(runs, count)
	if diff := cmp.Diff([]int{0, 32, 8}, runs); diff != "" {
		t.Errorf("datagrams per tick (-want +got):\n%s", diff)
	}
	r.l.Clear()
}

// unixDgramPair returns a connected Unix datagram socketpair, the first
// end with a small send buffer so that sends soon get EAGAIN.
func unixDgramPair(t *testing.T) (a, b int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	closeLater(t, fds[0], fds[1])
	setInt(t, fds[0], unix.SOL_SOCKET, unix.SO_SNDBUF, 8<<10)
	return fds[0], fds[1]
}

// TestDatagramQueueAndWaterMarks: sends refused with EAGAIN are queued in
// order, count against the water marks, and go out once the peer reads;
// the writer is paused and resumed once each.
func TestDatagramQueueAndWaterMarks(t *testing.T) {
	r := newLoop(t)
	afd, bfd := unixDgramPair(t)
	a, ak := r.datagram("a", afd)
	a.SetWriteBufferLimits(5000, 1000)
	const total = 60
	for i := range total {
		if err := a.SendTo([]byte(fmt.Sprintf("%04d", i)+strings.Repeat(".", 996)), nil); err != nil {
			t.Fatal(err)
		}
	}
	queued := a.GetWriteBufferSize()
	if queued == 0 || queued%1000 != 0 {
		t.Fatalf("%d bytes queued, want a positive multiple of 1000", queued)
	}
	b, bk := r.datagram("b", bfd)
	var got []string
	bk.datagram = func(p []byte, _ core.Sockaddr) error {
		got = append(got, string(p[:4]))
		if len(got) == total {
			r.l.Stop()
		}
		return nil
	}
	ak.resume = func() error {
		if n := a.GetWriteBufferSize(); n > 1000 {
			t.Errorf("resumed with %d bytes queued", n)
		}
		return nil
	}
	// The peer starts reading only a few ticks later.
	r.at(core.Now()+0.01, r.item("start", func() error { return b.Start() }))
	r.deadline(5)
	if err := r.run(); err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := range total {
		want = append(want, fmt.Sprintf("%04d", i))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("datagrams (-want +got):\n%s", diff)
	}
	var flow []string
	for _, e := range r.takeLog() {
		if strings.HasPrefix(e, "a:") {
			flow = append(flow, e)
		}
	}
	if diff := cmp.Diff([]string{"a:pause", "a:resume"}, flow); diff != "" {
		t.Errorf("flow (-want +got):\n%s", diff)
	}
	if a.GetWriteBufferSize() != 0 {
		t.Errorf("%d bytes still queued", a.GetWriteBufferSize())
	}
}

// TestDatagramCloseFlushesAbortDrops: Close sends what is queued before
// Lost(nil); Abort drops it, and (with SetDropWhenLost) what is sent after
// it, and Lost(nil) follows in the next ready phase.
func TestDatagramCloseFlushesAbortDrops(t *testing.T) {
	for _, abort := range []bool{false, true} {
		t.Run(fmt.Sprint("abort=", abort), func(t *testing.T) {
			r := newLoop(t)
			afd, bfd := unixDgramPair(t)
			a, ak := r.datagram("a", afd)
			a.SetDropWhenLost(true)
			sent := 0
			for a.GetWriteBufferSize() == 0 {
				a.SendTo([]byte("x"), nil)
				sent++
			}
			a.SendTo([]byte("last"), nil)
			sent++
			if abort {
				a.Abort()
				if a.GetWriteBufferSize() != 0 {
					t.Errorf("Abort left %d bytes queued", a.GetWriteBufferSize())
				}
			} else {
				a.Close()
			}
			if abort {
				a.SendTo([]byte("dropped"), nil)
				if a.LostWrites() != 1 {
					t.Errorf("LostWrites = %d after a send past Abort, want 1", a.LostWrites())
				}
			}
			received := 0
			var last string
			b, bk := r.datagram("b", bfd)
			bk.datagram = func(p []byte, _ core.Sockaddr) error {
				received++
				last = string(p)
				return nil
			}
			ak.lost = func(error) error {
				r.at(core.Now()+0.01, r.item("stop", func() error { r.l.Stop(); return nil }))
				return nil
			}
			b.Start()
			r.deadline(5)
			if err := r.run(); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]string{"nil"}, errNames(ak.lostErrs)); diff != "" {
				t.Errorf("Lost (-want +got):\n%s", diff)
			}
			switch {
			case abort && (received >= sent || last == "last"):
				t.Errorf("after Abort the peer got %d of %d, the last %q", received, sent, last)
			case !abort && (received != sent || last != "last"):
				t.Errorf("after Close the peer got %d of %d, the last %q", received, sent, last)
			}
			r.takeLog()
		})
	}
}

// TestDatagramSendsUntilLost: without SetDropWhenLost, a send after Close
// or Abort goes out, and one the socket refuses reaches Error, until Lost
// is delivered; from then on sends are counted and dropped.
func TestDatagramSendsUntilLost(t *testing.T) {
	for _, abort := range []bool{false, true} {
		t.Run(fmt.Sprint("abort=", abort), func(t *testing.T) {
			r := newLoop(t)
			afd, _ := udpSocket(t)
			bfd, baddr := udpSocket(t)
			a, ak := r.datagram("a", afd)
			b, _ := r.datagram("b", bfd)
			if abort {
				a.Abort()
			} else {
				a.Close()
			}
			if !a.IsLost() || a.Dropping() {
				t.Errorf("IsLost %v, Dropping %v before Lost, want true, false", a.IsLost(), a.Dropping())
			}
			if err := a.SendTo([]byte("late"), raw4(baddr)); err != nil {
				t.Fatal(err)
			}
			// Larger than any UDP datagram: EMSGSIZE.
			if err := a.SendTo(make([]byte, 70000), raw4(baddr)); err != nil {
				t.Fatal(err)
			}
			ak.lost = func(error) error {
				if !a.Dropping() {
					t.Errorf("not Dropping in Lost")
				}
				if err := a.SendTo([]byte("after Lost"), raw4(baddr)); err != nil {
					t.Error(err)
				}
				// The datagram sent after Lost would arrive with the first.
				r.at(core.Now()+0.05, r.item("stop", func() error { r.l.Stop(); return nil }))
				return nil
			}
			b.Start()
			r.runExpecting("a:error:EMSGSIZE", "a:lost:nil", "b:dgram:late", "run:stop")
			if a.LostWrites() != 1 {
				t.Errorf("LostWrites = %d, want 1 (the send after Lost)", a.LostWrites())
			}
		})
	}
}

// TestDatagramOverhead: each queued datagram counts its payload plus the
// overhead, both ways.
func TestDatagramOverhead(t *testing.T) {
	r := newLoop(t)
	afd, _ := unixDgramPair(t)
	a, _ := r.datagram("a", afd)
	a.SetOverhead(8)
	n := 0
	for a.GetWriteBufferSize() == 0 {
		a.SendTo([]byte("xy"), nil)
		n++
	}
	a.SendTo(nil, nil) // an empty datagram is queued too
	if got := a.GetWriteBufferSize(); got != 10+8 {
		t.Errorf("GetWriteBufferSize = %d, want 18", got)
	}
	a.Abort()
	if got := a.GetWriteBufferSize(); got != 0 {
		t.Errorf("after Abort GetWriteBufferSize = %d", got)
	}
	r.l.Clear()
}

// TestDatagramUnixAddresses: senders' addresses come in the kernel's form,
// abstract Unix names with their leading NUL, and none (an empty Sockaddr)
// from an unbound socket.
func TestDatagramUnixAddresses(t *testing.T) {
	r := newLoop(t)
	socket := func() int {
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		closeLater(t, fd)
		return fd
	}
	name := fmt.Sprintf("goloop-core-test-%d", unix.Getpid())
	recv, bound, unbound := socket(), socket(), socket()
	if err := unix.Bind(recv, &unix.SockaddrUnix{Name: "@" + name + "-r"}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(bound, &unix.SockaddrUnix{Name: "@" + name}); err != nil {
		t.Fatal(err)
	}
	to := &unix.SockaddrUnix{Name: "@" + name + "-r"}
	for _, fd := range []int{bound, unbound} {
		if err := unix.Sendto(fd, []byte("x"), 0, to); err != nil {
			t.Fatal(err)
		}
	}
	d, k := r.datagram("d", recv)
	var froms []string
	k.datagram = func(_ []byte, from core.Sockaddr) error {
		switch {
		case len(from) == 0:
			froms = append(froms, "none")
		case from[0] == unix.AF_UNIX:
			froms = append(froms, fmt.Sprintf("%q", from[2:]))
		default:
			froms = append(froms, fmt.Sprintf("% x", from))
		}
		if len(froms) == 2 {
			r.l.Stop()
		}
		return nil
	}
	d.Start()
	r.deadline(5)
	if err := r.run(); err != nil {
		t.Fatal(err)
	}
	want := []string{fmt.Sprintf("%q", "\x00"+name), "none"}
	if diff := cmp.Diff(want, froms); diff != "" {
		t.Errorf("senders (-want +got):\n%s", diff)
	}
	r.takeLog()
	d.Abort()
}

// TestDatagramClosedBeforeItsTurn: a datagram waiting at the poll is
// handled after the callbacks queued before it; one of them aborting the
// transport means the datagram is never delivered, and Lost comes once.
func TestDatagramClosedBeforeItsTurn(t *testing.T) {
	r := newLoop(t)
	fd, addr := udpSocket(t)
	src, _ := udpSocket(t)
	if err := unix.Sendto(src, []byte("late"), 0, addr); err != nil {
		t.Fatal(err)
	}
	d, k := r.datagram("d", fd)
	k.lost = func(error) error { r.l.Stop(); return nil }
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	r.soon(r.item("abort", func() error { return d.Abort() }))
	r.runExpecting("run:abort", "d:lost:nil")
}
