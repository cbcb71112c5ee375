package core

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// The socket calls the transports make that x/sys/unix has no cheap form
// for. Linux-only like poller_linux.go: a BSD port needs SO_NOSIGPIPE
// where MSG_NOSIGNAL is used here.

// The transports' reads and writes are raw system calls (RawSyscall, not
// Syscall): they are made on non-blocking descriptors (checkNonblocking) and
// never block, so telling the Go scheduler about them (entersyscall and
// exitsyscall, a few hundred instructions a pair) buys nothing. That was
// about a tenth of the user CPU of a 1 KiB echo round trip. A descriptor
// switched back to blocking mode behind the transport's back would then
// stall the loop thread holding its P, where it would otherwise stall the
// loop thread alone.

// sendmsg writes iov to a connected socket with one system call. It is
// written out because unix.SendmsgBuffers allocates its iovecs on every
// call. MSG_NOSIGNAL turns a write to a reset connection into EPIPE instead
// of SIGPIPE whatever the process's signal disposition (CPython ignores
// SIGPIPE, but an embedder need not be CPython).
func sendmsg(fd int, iov []unix.Iovec) (int, error) {
	var msg unix.Msghdr
	msg.Iov = &iov[0]
	msg.SetIovlen(len(iov))
	n, _, e := unix.RawSyscall(unix.SYS_SENDMSG, uintptr(fd), uintptr(unsafe.Pointer(&msg)), unix.MSG_NOSIGNAL)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// sendto sends one datagram, to the connected peer if to is empty. It is
// a raw system call, as read and sendmsg are (sock_linux.go), and takes the
// address in the kernel's form, so a send allocates nothing.
func sendto(fd int, b []byte, to Sockaddr) error {
	var p, sa unsafe.Pointer
	if len(b) > 0 {
		p = unsafe.Pointer(&b[0])
	}
	if len(to) > 0 {
		sa = unsafe.Pointer(&to[0])
	}
	_, _, e := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(p), uintptr(len(b)),
		unix.MSG_NOSIGNAL, uintptr(sa), uintptr(len(to)))
	switch {
	case e == 0:
		return nil
	case again(e):
		return e
	case len(to) == 0:
		return wrap("send", e)
	}
	return wrap("sendto", e)
}

// recvfrom reads one datagram into b and its sender's address into from,
// returning the address's length (0 when there is none), as a raw system
// call (see sendto).
func recvfrom(fd int, b []byte, from *unix.RawSockaddrAny) (n, fromLen int, err error) {
	l := uint32(unix.SizeofSockaddrAny)
	r, _, e := unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&b[0])),
		uintptr(len(b)), 0, uintptr(unsafe.Pointer(from)), uintptr(unsafe.Pointer(&l)))
	if e != 0 {
		return 0, 0, e
	}
	return int(r), int(min(l, unix.SizeofSockaddrAny)), nil
}

// read is unix.Read as a raw system call (see above).
func read(fd int, b []byte) (int, error) {
	var p unsafe.Pointer
	if len(b) > 0 {
		p = unsafe.Pointer(&b[0])
	}
	n, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(p), uintptr(len(b)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// inQueue returns the bytes a stream socket holds unread (FIONREAD), as a
// raw system call (see above).
func inQueue(fd int) (int, error) {
	var n int32
	_, _, e := unix.RawSyscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCINQ, uintptr(unsafe.Pointer(&n)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// accept4 takes a connection off a listening socket, non-blocking and
// close-on-exec, and leaves the peer's address in rsa: it returns the new
// descriptor and the address's length. A raw system call as the reads and
// writes above (the listener is non-blocking), and without
// unix.Accept4's allocation of a parsed address per connection.
func accept4(fd int, rsa *unix.RawSockaddrAny) (int, int, error) {
	n := uint32(unix.SizeofSockaddrAny)
	nfd, _, e := unix.RawSyscall6(unix.SYS_ACCEPT4, uintptr(fd), uintptr(unsafe.Pointer(rsa)),
		uintptr(unsafe.Pointer(&n)), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
	if e != 0 {
		return -1, 0, e
	}
	return int(nfd), int(min(n, unix.SizeofSockaddrAny)), nil
}

// checkNonblocking fails for a descriptor in blocking mode, which would
// stall the whole loop on its first read or write.
func checkNonblocking(fd int) error {
	flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		return wrap("fcntl", err)
	}
	if flags&unix.O_NONBLOCK == 0 {
		return errBlocking
	}
	return nil
}

// again reports the errors after which a non-blocking call is simply
// retried at the next readiness: EAGAIN (nothing to do now) and EINTR (a
// signal arrived first; rare on non-blocking sockets, but the level-
// triggered poll reports the descriptor again either way, so nothing is
// lost by returning rather than looping).
func again(err error) bool { return err == unix.EAGAIN || err == unix.EINTR }
