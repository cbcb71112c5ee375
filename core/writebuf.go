package core

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// minBlock is the smallest block the write buffer allocates. Small writes
// made under back-pressure are copied into the tail block's spare room, so
// a thousand 100-byte writes cost a few allocations and one sendmsg, not a
// thousand of each; a write larger than this gets a block of its own size.
const minBlock = 16 << 10

// maxIovecs caps the iovecs of one sendmsg: Linux's IOV_MAX (UIO_MAXIOV),
// which is what asyncio reads from SC_IOV_MAX.
const maxIovecs = 1024

// writeBuf is a stream's unsent bytes, in order: blocks[0][off:], then the
// other blocks. The bytes are copies: a caller's buffer (Python memory the
// bridge lends for the length of the call) is never kept.
type writeBuf struct {
	blocks [][]byte
	off    int
	n      int // bytes held
}

func (w *writeBuf) size() int { return w.n }

// append copies b in.
func (w *writeBuf) append(b []byte) {
	w.n += len(b)
	if k := len(w.blocks); k > 0 {
		last := w.blocks[k-1]
		take := min(cap(last)-len(last), len(b))
		w.blocks[k-1] = append(last, b[:take]...)
		b = b[take:]
	}
	if len(b) > 0 {
		blk := make([]byte, len(b), max(len(b), minBlock))
		copy(blk, b)
		w.blocks = append(w.blocks, blk)
	}
}

// iovecs appends to iov an iovec per block, at most maxIovecs in all.
func (w *writeBuf) iovecs(iov []unix.Iovec) []unix.Iovec {
	for i, b := range w.blocks {
		if len(iov) == maxIovecs {
			break
		}
		if i == 0 {
			b = b[w.off:]
		}
		iov = append(iov, unix.Iovec{Base: unsafe.SliceData(b), Len: uint64(len(b))})
	}
	return iov
}

// consume drops the first n bytes, which were sent.
func (w *writeBuf) consume(n int) {
	w.n -= n
	i := 0
	for i < len(w.blocks) && n > 0 {
		rest := len(w.blocks[i]) - w.off
		if n < rest {
			w.off += n
			break
		}
		n -= rest
		w.off = 0
		i++
	}
	if i > 0 {
		k := copy(w.blocks, w.blocks[i:])
		clear(w.blocks[k:]) // let the sent blocks be collected
		w.blocks = w.blocks[:k]
	}
}
