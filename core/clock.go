package core

import _ "unsafe" // for go:linkname

// nanotime is the runtime's CLOCK_MONOTONIC read through the vDSO: the same
// clock as Python's time.monotonic(), which asyncio's loop.time() returns, so
// deadlines computed in Python and compared here agree. x/sys/unix's
// ClockGettime makes a real syscall and costs several times more.
//
//go:linkname nanotime runtime.nanotime
func nanotime() int64

// Now returns the monotonic clock in seconds, as loop.time() does.
func Now() float64 { return float64(nanotime()) / 1e9 }
