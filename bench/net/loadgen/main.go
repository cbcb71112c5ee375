// Command loadgen is the load generator of goloop's network benchmarks
// (bench/net/run.py drives it; it can be run by hand too).
//
//	loadgen -mode echo -addr 127.0.0.1:PORT -conns 10 -size 1024 -warmup 500ms -duration 2s [-pid SERVERPID]
//	loadgen -mode idle -addr 127.0.0.1:PORT -conns 10000 [-hold 5m]
//
// echo: every connection is a goroutine doing lock-step round trips: write a
// request of -size bytes, read until the whole -size-byte echo is back (and is
// the same bytes), repeat. Nothing is counted during -warmup; then round trips
// that complete inside the -duration window are counted and timed. With -pid,
// the server's CPU time (see readCPU) is read exactly at the window's edges, so
// CPU per request covers the same span as the count.
//
// idle: open -conns connections, prove each is accepted and served by one
// 1-byte round trip, print one JSON line, then hold them all open until stdin
// reaches EOF (or -hold passes), close them and exit.
//
// Output is one JSON object per line on stdout; an error is {"error": ...} and
// exit status 1. Only the standard library: raw net.Conn, one goroutine per
// connection, GOMAXPROCS left at its default.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Phases of an echo run. Workers read the phase after each round trip; only
// round trips that complete while it is phaseMeasure count.
const (
	phaseWarmup int32 = iota
	phaseMeasure
	phaseDone
)

func main() {
	mode := flag.String("mode", "echo", "echo or idle")
	addr := flag.String("addr", "127.0.0.1:9000", "server address")
	conns := flag.Int("conns", 10, "connections")
	size := flag.Int("size", 1024, "echo: request (and response) size in bytes")
	warmup := flag.Duration("warmup", 500*time.Millisecond, "echo: load applied before counting starts")
	duration := flag.Duration("duration", 2*time.Second, "echo: measured window")
	pid := flag.Int("pid", 0, "echo: server pid whose CPU ticks to read at the window's edges")
	hold := flag.Duration("hold", 5*time.Minute, "idle: close everything after this even if stdin stays open")
	dialers := flag.Int("dialers", 128, "connections being dialled at once")
	flag.Parse()

	if *conns < 1 || *size < 1 || *dialers < 1 {
		fail(errors.New("-conns, -size and -dialers must be positive"))
	}
	raiseNoFile(*conns)
	switch *mode {
	case "echo":
		emit(runEcho(*addr, *conns, *size, *dialers, *warmup, *duration, *pid))
	case "idle":
		runIdle(*addr, *conns, *dialers, *hold)
	default:
		fail(fmt.Errorf("unknown -mode %q (echo or idle)", *mode))
	}
}

// raiseNoFile makes room for n sockets. Go already lifts the soft limit to the
// hard one at start-up (since 1.19); as root the hard limit can go up too.
func raiseNoFile(n int) {
	want := uint64(n) + 64 // stdio, epoll, the runtime's own descriptors
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) != nil || lim.Cur >= want {
		return
	}
	if lim.Max < want {
		lim.Max = want // succeeds only with CAP_SYS_RESOURCE
	}
	lim.Cur = want
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		fmt.Fprintf(os.Stderr, "loadgen: cannot raise RLIMIT_NOFILE to %d: %v\n", want, err)
	}
}

// dialAll opens n connections, at most `parallel` dials in flight so that a
// server with a short accept backlog is not flooded with SYNs it must drop.
func dialAll(addr string, n, parallel int) ([]net.Conn, error) {
	out := make([]net.Conn, n)
	errs := make([]error, n)
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	d := net.Dialer{Timeout: 15 * time.Second}
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			out[i], errs[i] = d.Dial("tcp", addr)
		}()
	}
	wg.Wait()
	failed, first := 0, error(nil)
	for i, err := range errs {
		if err != nil {
			failed++
			if first == nil {
				first = err
			}
			out[i] = nil
		}
	}
	if failed > 0 {
		closeAll(out)
		return nil, fmt.Errorf("%d of %d connections failed to open: %w", failed, n, first)
	}
	return out, nil
}

func closeAll(cs []net.Conn) {
	for _, c := range cs {
		if c != nil {
			c.Close()
		}
	}
}

// worker is one connection's share of the result; each goroutine owns its
// own, so the hot loop touches no shared memory but the phase word.
type worker struct {
	count int
	lats  []time.Duration
	err   error
}

func runEcho(addr string, n, size, parallel int, warmup, duration time.Duration, pid int) map[string]any {
	t0 := time.Now()
	cs, err := dialAll(addr, n, parallel)
	if err != nil {
		return errResult(err)
	}
	connectS := time.Since(t0).Seconds()

	var phase atomic.Int32
	workers := make([]worker, n)
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			echoLoop(c, size, i, &phase, &workers[i])
		}()
	}

	time.Sleep(warmup)
	cpu0, cpuErr := readCPU(pid)
	ru0 := rusage()
	start := time.Now()
	phase.Store(phaseMeasure)
	time.Sleep(duration)
	phase.Store(phaseDone)
	window := time.Since(start)
	cpu1, cpuErr1 := readCPU(pid)
	ru1 := rusage()

	// Let in-flight round trips finish so both sides see a clean EOF; a stuck
	// server (or a 100 KiB echo to 1000 connections) gets 5 s, then the
	// sockets are closed under the workers' feet.
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(5 * time.Second):
	}
	closeAll(cs)
	<-finished

	total, errCount := 0, 0
	var firstErr error
	var lats []time.Duration
	for i := range workers {
		w := &workers[i]
		total += w.count
		lats = append(lats, w.lats...)
		if w.err != nil {
			errCount++
			if firstErr == nil {
				firstErr = w.err
			}
		}
	}
	res := map[string]any{
		"mode": "echo", "conns": n, "size": size,
		"warmup_s": warmup.Seconds(), "window_s": window.Seconds(), "connect_s": connectS,
		"round_trips": total, "rps": float64(total) / window.Seconds(),
		"conn_errors":  errCount,
		"client_cpu_s": ru1 - ru0,
		"gomaxprocs":   runtime.GOMAXPROCS(0),
	}
	if firstErr != nil {
		res["first_error"] = firstErr.Error()
	}
	if len(lats) > 0 {
		sort.Slice(lats, func(i, j int) bool { return lats[i] < lats[j] })
		q := func(p float64) float64 {
			return float64(lats[int(float64(len(lats)-1)*p)].Nanoseconds()) / 1e3
		}
		res["p50_us"], res["p99_us"], res["max_us"] = q(0.50), q(0.99), q(1)
	}
	if pid > 0 {
		if cpuErr != nil || cpuErr1 != nil {
			res["cpu_error"] = errors.Join(cpuErr, cpuErr1).Error()
		} else {
			res["server_utime_ticks"] = cpu1[0] - cpu0[0]
			res["server_stime_ticks"] = cpu1[1] - cpu0[1]
			res["server_cpu_ns"] = cpu1[2] - cpu0[2]
		}
	}
	if total == 0 {
		msg := "no round trip completed in the window"
		if firstErr != nil {
			msg += ": " + firstErr.Error()
		}
		res["error"] = msg
	}
	return res
}

// echoLoop does lock-step round trips on c until the phase is done or the
// connection fails. The request is filled with a per-connection pattern and
// the echo is compared with it, so a server that mixes up buffers is caught.
func echoLoop(c net.Conn, size, seed int, phase *atomic.Int32, w *worker) {
	req := make([]byte, size)
	for i := range req {
		req[i] = byte(i*7 + seed)
	}
	resp := make([]byte, size)
	for {
		t := time.Now()
		if _, err := c.Write(req); err != nil {
			w.fail(phase, err)
			return
		}
		if _, err := io.ReadFull(c, resp); err != nil {
			w.fail(phase, err)
			return
		}
		p := phase.Load()
		if p == phaseDone {
			return
		}
		if !bytes.Equal(req, resp) {
			w.fail(phase, errors.New("echo differs from the request"))
			return
		}
		if p == phaseMeasure {
			w.count++
			w.lats = append(w.lats, time.Since(t))
		}
	}
}

// fail records err unless the run is already over (then the error is most
// likely our own close at the end).
func (w *worker) fail(phase *atomic.Int32, err error) {
	if phase.Load() != phaseDone {
		w.err = err
	}
}

func runIdle(addr string, n, parallel int, hold time.Duration) {
	t0 := time.Now()
	cs, err := dialAll(addr, n, parallel)
	if err != nil {
		emit(errResult(err))
		os.Exit(1)
	}
	// One 1-byte round trip per connection: a connection the kernel completed
	// but the server never accepted (still in the backlog) does not answer, so
	// after this every connection is known to be held by the server.
	errs := make([]error, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, parallel)
	for i, c := range cs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c.SetDeadline(time.Now().Add(30 * time.Second))
			b := []byte{'x'}
			if _, err := c.Write(b); err != nil {
				errs[i] = err
			} else if _, err := io.ReadFull(c, b); err != nil {
				errs[i] = err
			}
			c.SetDeadline(time.Time{})
		}()
	}
	wg.Wait()
	established, first := 0, error(nil)
	for _, err := range errs {
		if err == nil {
			established++
		} else if first == nil {
			first = err
		}
	}
	res := map[string]any{"mode": "idle", "conns": n, "established": established,
		"connect_s": time.Since(t0).Seconds()}
	if first != nil {
		res["first_error"] = first.Error()
	}
	if established == 0 {
		res["error"] = "no connection was served"
	}
	emit(res)
	// Hold until the driver closes our stdin.
	done := make(chan struct{})
	go func() { io.Copy(io.Discard, os.Stdin); close(done) }()
	select {
	case <-done:
	case <-time.After(hold):
	}
	closeAll(cs)
	if established == 0 {
		os.Exit(1)
	}
}

// readCPU returns, for pid: utime and stime in clock ticks (all threads, from
// /proc/PID/stat), and its on-CPU time in ns summed over its live threads
// (/proc/PID/task/*/schedstat). The tick counts give the user/system split
// but are sampled by the scheduler tick and reported in 10 ms units, coarse
// for a short window; the schedstat sum is exact. pid 0 reads nothing.
func readCPU(pid int) ([3]int64, error) {
	if pid <= 0 {
		return [3]int64{}, nil
	}
	dir := "/proc/" + strconv.Itoa(pid)
	data, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return [3]int64{}, err
	}
	// The command name (field 2) is in parentheses and may hold spaces, so
	// count fields after the last ')': utime and stime are fields 14 and 15.
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		return [3]int64{}, fmt.Errorf("short %s/stat", dir)
	}
	u, err1 := strconv.ParseInt(fields[11], 10, 64)
	st, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return [3]int64{}, err
	}
	tasks, err := os.ReadDir(dir + "/task")
	if err != nil {
		return [3]int64{}, err
	}
	var ns int64
	for _, t := range tasks {
		data, err := os.ReadFile(dir + "/task/" + t.Name() + "/schedstat")
		if err != nil {
			continue // the thread exited meanwhile
		}
		if f := strings.Fields(string(data)); len(f) > 0 {
			v, _ := strconv.ParseInt(f[0], 10, 64)
			ns += v
		}
	}
	return [3]int64{u, st, ns}, nil
}

// rusage is this process's own CPU (user + system) in seconds: how much of the
// machine the load generator itself took.
func rusage() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

func errResult(err error) map[string]any { return map[string]any{"error": err.Error()} }

func emit(v map[string]any) {
	b, err := json.Marshal(v)
	if err != nil {
		fail(err)
	}
	os.Stdout.Write(append(b, '\n'))
	if _, bad := v["error"]; bad {
		os.Exit(1)
	}
}

func fail(err error) {
	emit(errResult(err))
	os.Exit(1)
}
