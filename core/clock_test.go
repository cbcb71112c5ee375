package core_test

import (
	"testing"

	"golang.org/x/sys/unix"

	"goloop/core"
)

// TestNowIsClockMonotonic: Now reads CLOCK_MONOTONIC, the clock of Python's
// time.monotonic() and so of asyncio's loop.time(), in seconds.
func TestNowIsClockMonotonic(t *testing.T) {
	mono := func() float64 {
		var ts unix.Timespec
		if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
			t.Fatalf("clock_gettime: %v", err)
		}
		return float64(ts.Sec) + float64(ts.Nsec)/1e9
	}
	// float64 seconds keep about 0.1 µs at a few weeks of uptime.
	const slack = 1e-6
	for range 100 {
		before := mono()
		now := core.Now()
		after := mono()
		if now < before-slack || now > after+slack {
			t.Fatalf("Now() = %.9f, outside CLOCK_MONOTONIC's [%.9f, %.9f]", now, before, after)
		}
	}
}

func TestNowNeverGoesBack(t *testing.T) {
	last := core.Now()
	for range 10000 {
		now := core.Now()
		if now < last {
			t.Fatalf("Now() went back from %.9f to %.9f", last, now)
		}
		last = now
	}
}
