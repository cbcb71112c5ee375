package core

import (
	"fmt"
	"os"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// maxEvents bounds one epoll_wait. libuv uses 1024; 256 keeps the buffer in
// two pages while a burst larger than that is simply finished on the next,
// non-blocking, tick.
const maxEvents = 256

type poller struct {
	epfd   int
	wakefd int // eventfd(2): the cheapest wake-up Linux offers
	sigr   int // signal pipe, read end (watched)
	sigw   int // signal pipe, write end (handed to signal.set_wakeup_fd)

	// pending is 1 from the first wake() until the loop drains the eventfd,
	// so a burst of call_soon_threadsafe costs one write(2), as in
	// Go's netpollWakeSig.
	pending atomic.Uint32

	events [maxEvents]unix.EpollEvent
	sigbuf [64]byte
}

func newPoller() (*poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	p := &poller{epfd: epfd, wakefd: -1, sigr: -1, sigw: -1}
	if p.wakefd, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		p.close()
		return nil, os.NewSyscallError("eventfd", err)
	}
	var fds [2]int
	if err = unix.Pipe2(fds[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		p.close()
		return nil, os.NewSyscallError("pipe2", err)
	}
	p.sigr, p.sigw = fds[0], fds[1]
	for _, fd := range []int{p.wakefd, p.sigr} {
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}
		if err = unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
			p.close()
			return nil, os.NewSyscallError("epoll_ctl", err)
		}
	}
	return p, nil
}

func (p *poller) signalFD() int { return p.sigw }

func epollMask(e Events) uint32 {
	var m uint32
	if e&Read != 0 {
		m |= unix.EPOLLIN
	}
	if e&Write != 0 {
		m |= unix.EPOLLOUT
	}
	return m
}

func (p *poller) ctl(fd int, old, new Events) error {
	if fd == p.wakefd || fd == p.sigr || fd == p.sigw || fd == p.epfd {
		return fmt.Errorf("fd %d is used by the loop itself", fd)
	}
	ev := unix.EpollEvent{Events: epollMask(new), Fd: int32(fd)}
	var err error
	switch {
	case old == 0 && new == 0:
		return nil
	case old == 0:
		err = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &ev)
	case new == 0:
		err = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, fd, nil)
		if err == unix.EBADF || err == unix.ENOENT {
			// The descriptor was closed under the watcher; the kernel
			// dropped it from the epoll set already, as selectors expects.
			err = nil
		}
	default:
		err = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_MOD, fd, &ev)
		if err == unix.ENOENT {
			// Closed and reopened under the same number: register anew.
			err = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &ev)
		}
	}
	if err != nil {
		return os.NewSyscallError("epoll_ctl", err)
	}
	return nil
}

// blockingPoll is epoll_wait(2) for a poll that may block: Hooks.Poll or
// a PollReader's PollRead, which give up the embedder's lock around it.
type blockingPoll func(epfd int, events []unix.EpollEvent, msec int) (int, error)

// wait polls, calling fn for each ready descriptor other than the loop's
// own, and reports a wake-up and the signal numbers received.
func (p *poller) wait(msec int, block blockingPoll, fn func(fd int, ev Events)) (woken bool, sig []byte, err error) {
	var n int
	if msec == 0 {
		// A poll that cannot block is a raw system call, as the
		// transports' reads and writes are (sock_linux.go).
		n, err = epollWaitNow(p.epfd, p.events[:])
	} else {
		n, err = block(p.epfd, p.events[:], msec)
	}
	if err != nil {
		if err == unix.EINTR {
			return false, nil, nil
		}
		return false, nil, os.NewSyscallError("epoll_wait", err)
	}
	for i := 0; i < n; i++ {
		e := &p.events[i]
		if e.Events == 0 {
			continue // handled by a PollReader
		}
		fd := int(e.Fd)
		switch fd {
		case p.wakefd:
			woken = true
			// Drain, then clear the flag, in that order, as Go's netpoll
			// does with netpollWakeSig. Clearing first loses wake-ups for
			// good: a wake() between the two would see 0, write, and have
			// its write drained here, leaving the flag set over an empty
			// eventfd so that every later wake() is skipped. Draining first,
			// a wake() in between sees 1 and skips its write, which is safe:
			// we are awake already and the caller looks at the loop's state
			// after this poll returns.
			var buf [8]byte
			unix.Read(p.wakefd, buf[:]) // EAGAIN only if already drained
			p.pending.Store(0)
		case p.sigr:
			sig = p.drainSignals()
		default:
			var ev Events
			// An error or hang-up wakes both directions, as in selectors:
			// the callback's own read or write reports the error.
			if e.Events&(unix.EPOLLIN|unix.EPOLLERR|unix.EPOLLHUP) != 0 {
				ev |= Read
			}
			if e.Events&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) != 0 {
				ev |= Write
			}
			fn(fd, ev)
		}
	}
	return woken, sig, nil
}

func (p *poller) drainSignals() []byte {
	var out []byte
	for {
		n, err := unix.Read(p.sigr, p.sigbuf[:])
		if n > 0 {
			out = append(out, p.sigbuf[:n]...)
		}
		if err != nil || n < len(p.sigbuf) {
			return out
		}
	}
}

func (p *poller) wake() error {
	if !p.pending.CompareAndSwap(0, 1) {
		return nil
	}
	one := [8]byte{1}
	for {
		_, err := unix.Write(p.wakefd, one[:])
		switch err {
		case nil, unix.EAGAIN: // EAGAIN: the counter is full, so it is readable
			return nil
		case unix.EINTR:
			continue
		default:
			return os.NewSyscallError("write", err)
		}
	}
}

func (p *poller) close() error {
	var first error
	for _, fd := range []*int{&p.sigw, &p.sigr, &p.wakefd, &p.epfd} {
		if *fd >= 0 {
			if err := unix.Close(*fd); err != nil && first == nil {
				first = os.NewSyscallError("close", err)
			}
			*fd = -1
		}
	}
	return first
}

// epollWaitNow is epoll_wait with a zero timeout, as a raw system call.
func epollWaitNow(epfd int, events []unix.EpollEvent) (int, error) {
	n, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd),
		uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}
