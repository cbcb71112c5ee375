package core

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// DatagramSink receives a Datagram's events, on the loop thread. See
// transport.go for what an error returned from any of its methods means.
type DatagramSink interface {
	TransportSink
	// Datagram is called with one datagram (datagram_received); b is
	// the loop's shared read buffer, valid only during the call. from
	// is the sender's address as the kernel wrote it (a struct sockaddr,
	// see Sockaddr), also valid only during the call; empty if the kernel
	// gave none (an unbound Unix socket).
	Datagram(b []byte, from Sockaddr) error
	// Error reports a failed send or receive (error_received): for
	// instance ECONNREFUSED on a connected UDP socket after the peer's
	// ICMP port unreachable. The transport stays open.
	Error(err error) error
}

// maxDatagramsPerReady bounds the datagrams read per readiness, as libuv's
// uv__udp_recvmsg reads up to 32. asyncio reads one, so a burst costs one
// poll and one loop tick per datagram; unbounded, one flooded socket would
// starve every other descriptor and the ready callbacks.
const maxDatagramsPerReady = 32

// Datagram is a UDP or Unix datagram socket serviced by the loop: asyncio's
// _SelectorDatagramTransport without its Python. Sends go out at once when
// nothing is queued; a send the socket refuses with EAGAIN is queued (a
// copy) and retried on writability, with the water marks applied to the
// queued bytes. Ownership is as for Stream: the embedder owns fd, the
// transport never closes it, and unregisters it before Lost.
type Datagram struct {
	transport
	sink     DatagramSink
	from     unix.RawSockaddrAny // filled by each recvfrom
	queue    []outDatagram       // unsent, oldest first from head
	head     int
	qbytes   int // bytes counted against the water marks
	overhead int // bytes counted per queued datagram besides its payload
	// dropLost: sends after the transport is lost are counted and dropped
	// (SetDropWhenLost); otherwise they go to the socket until Lost.
	dropLost bool
}

type outDatagram struct {
	b  []byte
	to Sockaddr
}

// Sockaddr is a socket address in the kernel's own form, the bytes of a
// struct sockaddr_in, sockaddr_in6 or sockaddr_un (whatever the socket's
// family uses), of the length the kernel reads or wrote. The transport
// passes addresses through as they are: the embedder converts them, which
// keeps the distinctions unix.Sockaddr loses (Linux abstract Unix names
// against paths that begin with '@') and spares an allocation per datagram.
type Sockaddr []byte

var _ IO = (*Datagram)(nil)

// NewDatagram makes fd, a non-blocking datagram socket, a transport of
// loop: registered, not read until Start.
func NewDatagram(loop IOLoop, fd int, sink DatagramSink) (*Datagram, error) {
	d := &Datagram{sink: sink}
	if err := d.init(loop, fd, d, sink); err != nil {
		return nil, err
	}
	return d, nil
}

// SetSink replaces the sink (set_protocol). A no-op after Lost.
func (d *Datagram) SetSink(sink DatagramSink) {
	if d.done {
		return
	}
	d.sink, d.transport.sink = sink, sink
}

// SetOverhead makes each queued datagram count n bytes more than its
// payload in GetWriteBufferSize and against the water marks. CPython 3.13
// counts 8 for the UDP header; earlier versions 0, the default. (3.13.0
// adds the 8 when queueing but does not subtract it when sending; this
// subtracts what it added.)
func (d *Datagram) SetOverhead(n int) {
	if d.Queued() == 0 {
		d.overhead = n
	}
}

// SetDropWhenLost makes sends after the transport is lost counted
// (LostWrites) and dropped, as asyncio's sendto does on a transport made
// with a remote address (it checks _conn_lost only when it has an
// _address). Without it, the default, they go on being sent until Lost:
// see SendTo.
func (d *Datagram) SetDropWhenLost(drop bool) { d.dropLost = drop }

// Dropping reports whether SendTo drops what it is given now (sendLost).
func (d *Datagram) Dropping() bool { return d.lost && (d.dropLost || d.done) }

// SendTo sends b to to, or to the connected peer if to is empty (asyncio's
// sendto(data, addr): the bridge checks addr against the connected address
// and passes none then). Empty datagrams are sent (as CPython 3.13 does;
// 3.12 returns early, which the bridge does itself). A send error other
// than EAGAIN goes to Error, as error_received; SendTo itself fails only
// when the loop is closed or a sink method returns an error. Once the
// transport is lost, see sendLost.
func (d *Datagram) SendTo(b []byte, to Sockaddr) error {
	if d.lost {
		return d.sendLost(b, to)
	}
	if d.Queued() == 0 {
		err := sendto(d.fd, b, to)
		if err == nil {
			return nil
		}
		if !again(err) {
			return d.sink.Error(err)
		}
	}
	q := outDatagram{b: append([]byte(nil), b...)}
	if to != nil {
		q.to = append(Sockaddr(nil), to...)
	}
	d.queue = append(d.queue, q)
	d.qbytes += len(b) + d.overhead
	if err := d.sync(); err != nil {
		return err
	}
	return d.maybePause()
}

// sendLost is SendTo once the transport is lost: counted and dropped with
// SetDropWhenLost. Otherwise it is sent, as asyncio's sendto sends on the
// socket (still open until connection_lost) after close() or abort(), and
// reports its error to error_received; nothing is queued by then, as the
// buffer was flushed or dropped. What the socket refuses with EAGAIN is
// dropped: asyncio queues it behind a writer that could run only after
// connection_lost, which closes the socket. After Lost the embedder has
// closed fd, and the send is counted and dropped as with SetDropWhenLost,
// so that it is not lost silently: the embedder warns of such sends as
// uvloop does. asyncio's sendto fails then on the socket it has set to
// None, an AttributeError that is an accident of its code.
func (d *Datagram) sendLost(b []byte, to Sockaddr) error {
	if d.dropLost || d.done {
		d.lostWrites++
		return nil
	}
	if err := sendto(d.fd, b, to); err != nil && !again(err) {
		return d.sink.Error(err)
	}
	return nil
}

// Ready receives, then sends, in the ready phase (see IO).
func (d *Datagram) Ready(ev Events) error {
	if ev&Read != 0 && d.interest&Read != 0 {
		if err := d.receive(); err != nil {
			return err
		}
	}
	if ev&Write != 0 && d.interest&Write != 0 {
		return d.flush()
	}
	return nil
}

// receive is _read_ready, for up to maxDatagramsPerReady datagrams. An
// error ends the round: the socket's pending error was consumed with it,
// and the sink may want to react before more is read.
func (d *Datagram) receive() error {
	buf := d.loop.readBuffer()
	for i := 0; i < maxDatagramsPerReady && d.interest&Read != 0; i++ {
		n, fromLen, err := recvfrom(d.fd, buf, &d.from)
		if err != nil {
			if again(err) {
				return nil
			}
			return d.sink.Error(wrap("recvfrom", err))
		}
		from := unsafe.Slice((*byte)(unsafe.Pointer(&d.from)), fromLen)
		if err := d.sink.Datagram(buf[:n], from); err != nil {
			return err
		}
	}
	return nil
}

// flush is _sendto_ready: send the queue in order until the socket refuses.
// A datagram that fails otherwise is dropped and reported, and the round
// ends there (asyncio's return), the rest waiting for the next readiness.
func (d *Datagram) flush() error {
	for d.Queued() > 0 {
		p := &d.queue[d.head]
		err := sendto(d.fd, p.b, p.to)
		if err != nil && again(err) {
			break
		}
		d.qbytes -= len(p.b) + d.overhead
		*p = outDatagram{}
		d.head++
		if err != nil {
			d.compact()
			return d.sink.Error(err)
		}
	}
	d.compact()
	if err := d.maybeResume(); err != nil { // it may send, or close
		return err
	}
	if d.lost || d.Queued() > 0 {
		return nil
	}
	if err := d.sync(); err != nil {
		return err
	}
	if d.closing {
		return d.lostNow(nil)
	}
	return nil
}

// Queued is the number of datagrams waiting to be sent (asyncio's
// len(_buffer)).
func (d *Datagram) Queued() int { return len(d.queue) - d.head }

// compact reuses the queue's array once it has been sent in full, and
// otherwise moves the rest down once the sent part is the larger.
func (d *Datagram) compact() {
	switch n := d.Queued(); {
	case n == 0:
		d.queue, d.head = d.queue[:0], 0
	case d.head > n:
		copy(d.queue, d.queue[d.head:])
		clear(d.queue[n:])
		d.queue, d.head = d.queue[:n], 0
	}
}

// transportImpl.
func (d *Datagram) bufferSize() int { return d.qbytes }
func (d *Datagram) buffered() bool  { return d.Queued() > 0 }
func (d *Datagram) dropBuffer() {
	clear(d.queue)
	d.queue, d.head, d.qbytes = d.queue[:0], 0, 0
}
func (d *Datagram) forgetSink() { d.sink = nil }
