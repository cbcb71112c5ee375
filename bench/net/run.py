"""Network benchmarks: echo and HTTP servers on every event loop, interleaved, one table each.

    python bench/net/run.py [--loops asyncio,uvloop,rloop,goloop] [--quick] [--rounds N]
                            [--kinds protocol,buffered,streams,sock,http] [--sizes 1k,10k,100k]
                            [--conns 10,1000] [--duration S] [--rss-conns N] [--rss-only]
                            [--no-ceiling]
                            [--pin] [--markdown FILE] [--json FILE] [--plot FILE.png]

Every sample is a fresh server process (``bench/net/server.py LOOP KIND``, or the pure-Go
``goecho`` ceiling) loaded by a fresh client process: the Go load generator ``loadgen`` for the
echo kinds and for the idle-connection RSS row, ``wrk`` for ``http``. Samples are taken round by
round; within a round, cell by cell, and within a cell every loop in an order rotated from cell
to cell and round to round, so drift on the machine lands on every loop alike. A cell is the
median over rounds; quote the ratios, not the absolute numbers.

Per sample: requests (round trips) per second, the server's user CPU time per request in µs
(utime of all its threads, read from /proc/PID/stat at the edges of the measured window), and
p50/p99 latency. RSS row: the server's resident memory grown by holding --rss-conns idle
connections, in kB per connection.
"""

import argparse
import json
import math
import os
import platform
import re
import resource
import select
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SERVER = os.path.join(HERE, "server.py")

sys.path.insert(0, os.path.dirname(HERE))  # bench/, for the shared table rendering
from tables import render_markdown, render_text  # noqa: E402

LOOPS = ("asyncio", "uvloop", "rloop", "goloop")
ECHO_KINDS = ("protocol", "buffered", "streams", "sock")
KINDS = (*ECHO_KINDS, "http")
SIZES = {"1k": 1024, "10k": 10 * 1024, "100k": 100 * 1024}
CEILING = "go"  # the pure-Go server, a column next to the loops

# Defaults, sized for ~10 minutes on 2 cores (full) and ~2 minutes (--quick). A sample costs
# its warm-up + window plus ~0.5-1 s of process start-up, connecting and teardown.
FULL = dict(rounds=3, duration=1.0, warmup=0.3, conns="10,1000", sizes="1k,10k,100k",
            kinds=",".join(KINDS), rss_rounds=None)
QUICK = dict(rounds=2, duration=0.5, warmup=0.15, conns="10,1000", sizes="1k",
             kinds=",".join(KINDS), rss_rounds=1)
HTTP_CONNS = 100          # wrk -t1 -c100
RSS_CONNS = 10_000
RSS_KIND = "protocol"

READY_TIMEOUT = 30        # server start-up, including the interpreter and the loop's import
IDLE_TIMEOUT = 120        # opening RSS_CONNS connections, each with one 1-byte round trip
CLIENT_SLACK = 60         # beyond warm-up + window before a load generator counts as hung

# Debug switches slow loops by different amounts; they must not leak into the servers.
_SCRUBBED_ENV = ("PYTHONASYNCIODEBUG", "PYTHONDEVMODE", "PYTHONTRACEMALLOC")
CLK_TCK = os.sysconf("SC_CLK_TCK")


class SampleError(Exception):
    """One sample failed; the message says why. unsupported=True: the server could not even
    start serving this kind, so later rounds need not try again."""

    def __init__(self, message, unsupported=False):
        super().__init__(message)
        self.unsupported = unsupported


# --- tools: Go binaries, wrk, fd limits ------------------------------------------------------

def build_go(outdir):
    """Build loadgen and goecho (stdlib only, in the repository's module)."""
    go = shutil.which("go")
    if not go:
        sys.exit("bench/net needs Go to build its load generator: `go` is not on PATH")
    paths = {}
    for name in ("loadgen", "goecho"):
        out = os.path.join(outdir, name)
        proc = subprocess.run([go, "build", "-o", out, f"./bench/net/{name}"], cwd=ROOT,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"go build ./bench/net/{name} failed:\n{proc.stderr}")
        paths[name] = out
    return paths


def find_wrk(may_install):
    """Path to wrk, installing Debian's package when we may (root, apt-get); else (None, why)."""
    path = shutil.which("wrk")
    if path:
        return path, None
    hint = "wrk not found: apt-get install -y wrk"
    if not may_install or os.geteuid() != 0 or not shutil.which("apt-get"):
        return None, hint
    print("wrk not found; trying `apt-get install -y wrk` (--no-install to skip)",
          file=sys.stderr, flush=True)
    for cmd in (["apt-get", "install", "-y", "wrk"], ["apt-get", "update"],
                ["apt-get", "install", "-y", "wrk"]):
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        if shutil.which("wrk"):
            return shutil.which("wrk"), None
    return None, hint + " (the attempt failed)"


def raise_nofile(want):
    """Lift RLIMIT_NOFILE so the children (which inherit it) can hold `want` sockets, as
    `ulimit -n` would; return the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return want
        except (ValueError, OSError):
            pass  # not root: the hard limit is what we get
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# --- processes -------------------------------------------------------------------------------

def _child_env():
    env = dict(os.environ)
    for name in _SCRUBBED_ENV:
        env.pop(name, None)
    return env


def _affinity(cpus):
    """preexec_fn pinning a child to cpus, or None for no pinning."""
    if not cpus:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def _exit_reason(returncode):
    if returncode is None:
        return "still running"
    if returncode < 0:
        return f"killed by {signal.Signals(-returncode).name}"
    return f"exit status {returncode}"


class Server:
    """A server subprocess: start it, wait for its READY line, stop it."""

    def __init__(self, cmd, cpus):
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self.stderr, env=_child_env(), cwd=ROOT,
                                     preexec_fn=_affinity(cpus))
        self.pid = self.proc.pid

    def wait_ready(self):
        """Return the port from 'READY <port>'; raise SampleError if the server reports an
        error, exits or stays silent."""
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SampleError(f"no READY line within {READY_TIMEOUT}s", unsupported=True)
            ready, _, _ = select.select([self.proc.stdout], [], [], remaining)
            if not ready:
                continue
            line = self.proc.stdout.readline().decode(errors="replace").strip()
            if line.startswith("READY "):
                return int(line.split()[1])
            if line.startswith("ERROR "):
                raise SampleError(line[len("ERROR "):], unsupported=True)
            if not line:  # EOF: exited without a word
                self.proc.wait()
                raise SampleError(f"server exited before READY ({_exit_reason(self.proc.returncode)}"
                                  f"{self._stderr_tail()})", unsupported=True)

    def death(self):
        """Why the server is no longer running, or None if it is."""
        if self.proc.poll() is None:
            return None
        reason = _exit_reason(self.proc.returncode)
        rest = self.proc.stdout.read().decode(errors="replace")
        errors = [line[len("ERROR "):] for line in rest.splitlines() if line.startswith("ERROR ")]
        return f"server died ({reason})" + (f": {errors[0]}" if errors else self._stderr_tail())

    def _stderr_tail(self):
        self.stderr.seek(0)
        lines = self.stderr.read().decode(errors="replace").strip().splitlines()
        return f": {lines[-1]}" if lines else ""

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self.stderr.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def read_cpu(pid):
    """(utime, stime, on-CPU ns) of pid, as loadgen's readCPU: ticks from /proc/PID/stat (all
    threads; sampled, 10 ms units) and the exact time summed over /proc/PID/task/*/schedstat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ns = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                ns += int(f.read().split()[0])
        except (OSError, IndexError, ValueError):
            pass  # the thread exited meanwhile
    return int(fields[11]), int(fields[12]), ns


def read_rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise SampleError(f"no VmRSS in /proc/{pid}/status")


# --- one sample of each sort -----------------------------------------------------------------

def server_cmd(tools, server, kind):
    if server == CEILING:
        return [tools["goecho"], "-kind", "http" if kind == "http" else "echo"]
    return [sys.executable, SERVER, "--loop", server, "--kind", kind]


def sample_echo(tools, opts, server, kind, size, conns):
    with Server(server_cmd(tools, server, kind), opts.server_cpus) as srv:
        port = srv.wait_ready()
        cmd = [tools["loadgen"], "-mode", "echo", "-addr", f"127.0.0.1:{port}",
               "-conns", str(conns), "-size", str(size), "-warmup", f"{opts.warmup}s",
               "-duration", f"{opts.duration}s", "-pid", str(srv.pid)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=_affinity(
                opts.client_cpus), timeout=opts.warmup + opts.duration + CLIENT_SLACK)
        except subprocess.TimeoutExpired:
            raise SampleError("load generator hung") from None
        died = srv.death()
        result = _last_json(proc, "loadgen")
        if died:
            raise SampleError(died)
        if "error" in result:
            raise SampleError(result["error"])
        if "server_utime_ticks" not in result:
            raise SampleError(f"no server CPU reading: {result.get('cpu_error')}")
        n = result["round_trips"]
        utime, stime = result["server_utime_ticks"], result["server_stime_ticks"]
        return {
            "rps": result["rps"],
            **_cpu_metrics(utime, stime, result["server_cpu_ns"], n),
            "p50_us": result.get("p50_us"), "p99_us": result.get("p99_us"),
            "client_cpu_s": result.get("client_cpu_s"), "window_s": result["window_s"],
            "requests": n, "conn_errors": result.get("conn_errors", 0),
        }


WRK_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.M)
WRK_TOTAL = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m)", re.M)
WRK_ERRORS = re.compile(r"Socket errors: (.*)|Non-2xx or 3xx responses: (\d+)")
WRK_LATENCY = re.compile(r"^\s+(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s)\s*$", re.M)
_TIME_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def sample_http(tools, opts, server):
    if not tools.get("wrk"):
        raise SampleError(tools["wrk_missing"], unsupported=True)
    seconds = max(1, round(opts.duration))  # wrk takes whole seconds
    with Server(server_cmd(tools, server, "http"), opts.server_cpus) as srv:
        port = srv.wait_ready()
        cmd = [tools["wrk"], "-t1", f"-c{HTTP_CONNS}", f"-d{seconds}s", "--latency",
               f"http://127.0.0.1:{port}/"]
        cpu0 = read_cpu(srv.pid)
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=_affinity(
                opts.client_cpus), timeout=seconds + CLIENT_SLACK)
        except subprocess.TimeoutExpired:
            raise SampleError("wrk hung") from None
        died = srv.death()
        if died:
            raise SampleError(died)
        cpu1 = read_cpu(srv.pid)
    out = proc.stdout
    rps, total = WRK_RPS.search(out), WRK_TOTAL.search(out)
    if proc.returncode != 0 or not rps or not total:
        tail = (proc.stderr.strip() or out.strip()).splitlines()[-1:]
        raise SampleError("wrk failed" + (f": {tail[0]}" if tail else ""))
    n = int(total.group(1))
    if n == 0:
        raise SampleError("wrk completed no request")
    lat = {m.group(1): float(m.group(2)) * _TIME_UNITS[m.group(3)] * 1e6
           for m in WRK_LATENCY.finditer(out)}
    errors = [m.group(0) for m in WRK_ERRORS.finditer(out)]
    # CPU is read around the whole wrk run (connect and teardown included, a few ms), so it
    # is divided by all requests wrk completed, not by Requests/sec times the nominal duration.
    return {
        "rps": float(rps.group(1)),
        **_cpu_metrics(*(b - a for a, b in zip(cpu0, cpu1)), n),
        "p50_us": lat.get("50"), "p99_us": lat.get("99"),
        "requests": n, "window_s": float(total.group(2)) * _TIME_UNITS[total.group(3)],
        **({"wrk_errors": errors} if errors else {}),
    }


def _cpu_metrics(utime, stime, ns, requests):
    return {
        "cpu_us": utime / CLK_TCK / requests * 1e6,   # user, from ticks
        "sys_us": stime / CLK_TCK / requests * 1e6,   # system, from ticks
        "total_us": ns / 1e3 / requests,              # user + system, exact
        "utime_ticks": utime,
    }


def sample_rss(tools, opts, server, kind, conns):
    with Server(server_cmd(tools, server, kind), opts.server_cpus) as srv:
        port = srv.wait_ready()
        time.sleep(0.2)  # let start-up allocations settle
        before = read_rss_kb(srv.pid)
        cmd = [tools["loadgen"], "-mode", "idle", "-addr", f"127.0.0.1:{port}",
               "-conns", str(conns), "-hold", f"{IDLE_TIMEOUT + 60}s"]
        client = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True,
                                  preexec_fn=_affinity(opts.client_cpus))
        result_seen = False
        try:
            ready, _, _ = select.select([client.stdout], [], [], IDLE_TIMEOUT)
            if not ready:
                raise SampleError(f"{conns} connections not served within {IDLE_TIMEOUT}s")
            line = client.stdout.readline()
            result_seen = bool(line)
            try:
                result = json.loads(line)
            except ValueError:
                client.wait(5)
                raise SampleError(f"loadgen idle: no result ({_exit_reason(client.returncode)}"
                                  f": {client.stderr.read().strip()[-200:]})") from None
            died = srv.death()
            if died:
                raise SampleError(died)
            if "error" in result:
                raise SampleError(result["error"] + (f" ({result['first_error']})"
                                                     if "first_error" in result else ""))
            time.sleep(0.3)
            after = read_rss_kb(srv.pid)
        finally:
            client.stdin.close()  # EOF: the load generator closes its connections and exits
            try:
                # Only a load generator that reported has reached the point of reading stdin.
                client.wait(30 if result_seen else 0.1)
            except subprocess.TimeoutExpired:
                client.kill()
                client.wait()
            client.stdout.close()
            client.stderr.close()
    established = result["established"]
    sample = {"kb_per_conn": (after - before) / established, "rss_before_kb": before,
              "rss_after_kb": after, "established": established,
              "connect_s": result["connect_s"]}
    if established < conns:
        # Fewer than asked: the number still stands per connection, but say so.
        sample["short"] = f"{established}/{conns} served: {result.get('first_error')}"
    return sample


def _last_json(proc, what):
    for line in reversed(proc.stdout.strip().splitlines()):
        try:
            return json.loads(line)
        except ValueError:
            continue
    tail = proc.stderr.strip().splitlines()[-1:]
    raise SampleError(f"{what}: no result ({_exit_reason(proc.returncode)}"
                      + (f": {tail[0]}" if tail else "") + ")")


# --- the plan --------------------------------------------------------------------------------

def size_label(size):
    return f"{size // 1024}KiB" if size % 1024 == 0 else f"{size}B"


class Row:
    """One row of the tables: what the servers do and under which load. `ceiling_key` is the
    row whose go sample this row shows (every echo kind shares the plain Go echo server)."""

    def __init__(self, table, kind, size=None, conns=None):
        self.table, self.kind, self.size, self.conns = table, kind, size, conns

    @property
    def key(self):
        return f"{self.table}/{self.kind}/{self.size}/{self.conns}"

    @property
    def ceiling_key(self):
        if self.table == "rss":
            return self.key
        kind = self.kind if self.kind == "http" else "echo"
        return f"{self.table}/{kind}/{self.size}/{self.conns}"

    @property
    def label(self):
        if self.table == "rss":
            return f"{self.kind} {self.conns:,} idle conns"
        if self.kind == "http":
            return f"http wrk c{self.conns}"
        return f"{self.kind} {size_label(self.size)} x{self.conns}"


def plan(opts, loops):
    """Rows in display order, and the schedule of one round as (row_key, servers) cells:
    throughput cells grouped by (size, conns) so that the go ceiling runs next to them."""
    rows, cells = [], []
    echo_kinds = [k for k in opts.kinds if k != "http"]
    for kind in echo_kinds:
        for conns in opts.conns:
            for size in opts.sizes:
                rows.append(Row("rps", kind, size, conns))
    for conns in opts.conns:
        for size in opts.sizes:
            if opts.ceiling and echo_kinds:
                cells.append((Row("rps", "echo", size, conns), [CEILING]))
            for kind in echo_kinds:
                cells.append((Row("rps", kind, size, conns), loops))
    if "http" in opts.kinds:
        row = Row("rps", "http", None, HTTP_CONNS)
        rows.append(row)
        cells.append((row, loops + ([CEILING] if opts.ceiling else [])))
    rss_rows = []
    if opts.rss_conns:
        row = Row("rss", RSS_KIND, None, opts.rss_conns)
        rss_rows.append(row)
        rss_cell = (row, loops + ([CEILING] if opts.ceiling else []))
    else:
        rss_cell = None
    return rows, rss_rows, cells, rss_cell


def schedule(opts, cells, rss_cell):
    """Yield (round, row, server) in run order. The server order within a cell is rotated by
    round + cell index, so each loop takes each position about equally often."""
    for r in range(opts.rounds):
        round_cells = list(cells)
        if rss_cell and r < opts.rss_rounds:
            round_cells.append(rss_cell)
        for i, (row, servers) in enumerate(round_cells):
            k = (r + i) % len(servers)
            for server in servers[k:] + servers[:k]:
                yield r, row, server


def run_sample(tools, opts, row, server):
    if row.table == "rss":
        return sample_rss(tools, opts, server, row.kind, row.conns)
    if row.kind == "http":
        return sample_http(tools, opts, server)
    kind = "protocol" if row.kind == "echo" else row.kind  # "echo": the go ceiling's own row
    return sample_echo(tools, opts, server, kind, row.size, row.conns)


# A server that failed to start serving a kind this many times in a row (NotImplementedError,
# an import error) is not started for that kind again: later samples record the same reason.
# Not after one failure: a rebuild of goloop's extension during the run breaks one start only.
GIVE_UP_AFTER = 2


def collect(tools, opts, loops, cells, rss_cell):
    results, start_failures = [], {}
    items = list(schedule(opts, cells, rss_cell))
    for i, (r, row, server) in enumerate(items, 1):
        kind_key = (server, row.kind if row.table == "rps" else f"rss/{row.kind}")
        sample = {"round": r, "row": row.key, "server": server}
        failures = start_failures.get(kind_key, [])
        if len(failures) >= GIVE_UP_AFTER:
            sample["error"] = failures[-1]
            sample["skipped"] = True
        else:
            t0 = time.monotonic()
            try:
                sample.update(run_sample(tools, opts, row, server))
                start_failures.pop(kind_key, None)
            except SampleError as exc:
                sample["error"] = str(exc)
                if exc.unsupported:
                    start_failures[kind_key] = failures + [str(exc)]
                else:
                    start_failures.pop(kind_key, None)
            except (OSError, ValueError) as exc:
                sample["error"] = f"{type(exc).__name__}: {exc}"
            sample["elapsed_s"] = round(time.monotonic() - t0, 2)
        results.append(sample)
        if "error" not in sample:
            shown = (f"{sample['kb_per_conn']:.2f} kB/conn" if row.table == "rss" else
                     f"{fmt_ops(sample['rps'])} req/s  {fmt_us(sample['cpu_us'])} µs/req")
        elif sample.get("skipped"):
            continue  # said once already
        else:
            shown = "failed: " + sample["error"]
        print(f"[{i:3}/{len(items)}] round {r + 1}/{opts.rounds}  {server:8} {row.label:22} "
              f"{shown}", file=sys.stderr, flush=True)
    return results


# --- summarising -----------------------------------------------------------------------------

METRICS = ("rps", "cpu_us", "sys_us", "total_us", "utime_ticks", "p50_us", "p99_us",
           "kb_per_conn")

# A user-CPU cell whose median rests on fewer ticks than this is marked "~": one tick more or
# less moves it by over 10%.
LOW_TICKS = 10


def summarize(results):
    """Per (row key, server): median and spread of each metric, and the failures."""
    cells = {}
    for sample in results:
        cell = cells.setdefault((sample["row"], sample["server"]), {"errors": []})
        if "error" in sample:
            cell["errors"].append(sample["error"])
            continue
        for metric in METRICS:
            if sample.get(metric) is not None:
                cell.setdefault(metric, {"samples": []})["samples"].append(sample[metric])
    for cell in cells.values():
        for metric in METRICS:
            if metric in cell:
                values = cell[metric]["samples"]
                median = statistics.median(values)
                cell[metric]["median"] = median
                # Half the min-max range relative to the median, as in bench/run.py.
                cell[metric]["spread"] = (max(values) - min(values)) / 2 / median if median else 0
    return cells


def median(cells, key, server, metric):
    return cells.get((key, server), {}).get(metric, {}).get("median")


def ratio_columns(loops):
    """Every loop against stock asyncio, plus goloop against uvloop (goloop's first)."""
    pairs = [(loop, "asyncio") for loop in loops if loop != "asyncio" and "asyncio" in loops]
    if "goloop" in loops and "uvloop" in loops:
        pairs.append(("goloop", "uvloop"))
    return sorted(pairs, key=lambda p: p[0] != "goloop")


# --- formatting ------------------------------------------------------------------------------

def fmt_ops(value):
    """3 significant digits and a k/M suffix: 1234567 -> '1.23M' (as in bench/run.py)."""
    value = float(f"{value:.3g}")
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            break
    else:
        scale, suffix = 1, ""
    scaled = value / scale
    decimals = max(0, 2 - math.floor(math.log10(scaled))) if scaled > 0 else 0
    return f"{scaled:.{decimals}f}{suffix}"


def fmt_us(value):
    """3 significant digits, no suffix: 3.412 -> '3.41', 18.06 -> '18.1', 250.4 -> '250'."""
    if value <= 0:
        return "0"
    value = float(f"{value:.3g}")
    decimals = max(0, 2 - math.floor(math.log10(value)))
    return f"{value:.{decimals}f}"


def fmt_ratio(value):
    if value is None:
        return "-"
    value = float(f"{value:.3g}")
    return f"{value:.0f}x" if value >= 100 else f"{value:#.3g}x"


def fmt_cell(cell, metric, fmt):
    if cell is None or not cell.get(metric):
        return "failed" if cell and cell["errors"] else "-"
    m = cell[metric]
    text = f"{fmt(m['median'])} ±{m['spread'] * 100:.0f}%"
    if metric == "cpu_us" and cell["utime_ticks"]["median"] < LOW_TICKS:
        text = "~" + text
    return text + ("*" if cell["errors"] else "")  # a median that hides failed rounds


TABLES = {
    # metric, title, value formatter, what a ratio above 1 means
    "rps": ("rps", "requests (round trips) per second, median ± half the min-max range",
            fmt_ops, ">1 = more requests/s"),
    "cpu": ("cpu_us", "server user CPU per request, µs (all threads' utime / requests; "
            f"~: fewer than {LOW_TICKS} clock ticks, coarse)",
            fmt_us, "<1 = less CPU per request"),
    "total": ("total_us", "server user+system CPU per request, µs (exact on-CPU time; system "
              "time is mostly the kernel's TCP work, alike for every loop)",
              fmt_us, "<1 = less CPU per request"),
    "rss": ("kb_per_conn", "server RSS per idle connection, kB ((RSS holding N) - (RSS before)) / N",
            lambda v: f"{v:.2f}", "<1 = less memory per connection"),
}


def table_rows(which, cells, rows, loops, ceiling):
    metric, _, fmt, _ = TABLES[which]
    pairs = ratio_columns(loops)
    servers = loops + ([CEILING] if ceiling else [])
    header = ["row", *(f"{s} (ceiling)" if s == CEILING else s for s in servers),
              *(f"{a}/{b}" for a, b in pairs)]
    out = [header]
    for row in rows:
        line = [row.label]
        for server in servers:
            key = row.ceiling_key if server == CEILING else row.key
            line.append(fmt_cell(cells.get((key, server)), metric, fmt))
        for a, b in pairs:
            x, y = median(cells, row.key, a, metric), median(cells, row.key, b, metric)
            line.append(fmt_ratio(x / y if x and y else None))
        out.append(line)
    return out


def describe(meta):
    loops = ", ".join(f"{name} {version}" for name, version in meta["loops"].items())
    lines = [
        f"Python {meta['python']} ({meta['implementation']}) on {meta['platform']}, "
        f"{meta['cpus']} CPUs, {meta['go']}",
        f"command: {meta['command']}",
        f"loops: {loops}" + ("; ceiling: pure-Go net server (goecho)" if meta["ceiling"] else ""),
    ]
    lines += [f"skipped {name}: {reason}" for name, reason in meta["skipped"].items()]
    pin = (f"server pinned to CPU {meta['server_cpus']}, clients to {meta['client_cpus']}"
           if meta["server_cpus"] else "not pinned: server and clients share all CPUs")
    lines.append(
        f"{meta['rounds']} rounds, interleaved (server order rotated per cell and round), each "
        f"sample a fresh server and client; echo: Go loadgen, {meta['warmup']}s warm-up + "
        f"{meta['duration']}s window; http: wrk -t1 -c{HTTP_CONNS}; {pin}; ratios compare "
        f"medians")
    return lines


def failure_notes(cells, rows, rss_rows):
    """One line per (server, reason), naming the rows it hit."""
    labels = {row.key: row.label for row in rows + rss_rows}
    for row in rows:
        labels.setdefault(row.ceiling_key, row.ceiling_key.split("/")[1] + " " +
                          row.label.split(" ", 1)[1])
    grouped = {}
    for (key, server), cell in cells.items():
        total = len(cell["errors"]) + len(cell.get("rps", cell.get("kb_per_conn", {}))
                                          .get("samples", []))
        for error in sorted(set(cell["errors"])):
            grouped.setdefault((server, error), []).append(
                (labels.get(key, key), cell["errors"].count(error), total))
    notes = []
    for (server, error), hits in grouped.items():
        if all(count == total for _, count, total in hits):
            where = _compress([label for label, _, _ in hits], [r.label for r in rows + rss_rows])
            notes.append(f"* {server}: {where}: failed every round: {error}")
        else:
            where = ", ".join(f"{label} ({count}/{total} rounds)" for label, count, total in hits)
            notes.append(f"* {server}: {where}: failed: {error}")
    return notes


def _compress(labels, all_labels):
    """'protocol 1KiB x10, protocol 10KiB x10, ...' -> 'all protocol rows' where that is so."""
    out, used = [], set()
    for kind in dict.fromkeys(label.split(" ")[0] for label in labels):
        every = [lb for lb in all_labels if lb.split(" ")[0] == kind]
        mine = [lb for lb in labels if lb.split(" ")[0] == kind]
        if len(every) > 1 and set(every) <= set(mine):
            out.append(f"all {kind} rows")
            used.update(mine)
    out += [lb for lb in labels if lb not in used]
    return ", ".join(out)


# --- plot ------------------------------------------------------------------------------------

def plot(path, cells, rows, rss_rows, loops, ceiling, may_install, meta):
    try:
        import matplotlib
    except ImportError:
        if not may_install:
            print("--plot needs matplotlib: pip install matplotlib", file=sys.stderr)
            return
        print("installing matplotlib for --plot (--no-install to skip)", file=sys.stderr)
        proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "matplotlib"],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"pip install matplotlib failed; no plot:\n{proc.stderr[-500:]}",
                  file=sys.stderr)
            return
        import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    servers = loops + ([CEILING] if ceiling else [])
    panels = [("rps", "requests/s (log)", rows, True), ("cpu_us", "user CPU µs/request (log)",
                                                           rows, True)]
    if rss_rows:
        panels.append(("kb_per_conn", "RSS kB per idle connection", rss_rows, False))
    ratios = [len(r) for _, _, r, _ in panels]
    fig, axes = plt.subplots(len(panels), 1, figsize=(11, 1.2 + 0.42 * sum(ratios) *
                                                       max(1, len(servers) / 4)),
                             gridspec_kw={"height_ratios": ratios}, squeeze=False)
    height = 0.8 / len(servers)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    # A loop that failed every row still gets a legend entry, marked, so that the reader sees
    # it missing rather than wondering whether it was run.
    has_data = {server: any(cells.get((row.ceiling_key if server == CEILING else row.key,
                                       server), {}).get("rps") for row in rows)
                for server in servers}
    for ax, (metric, title, prows, log) in zip(axes[:, 0], panels):
        for j, server in enumerate(servers):
            ys, xs, lo, hi = [], [], [], []
            for i, row in enumerate(prows):
                key = row.ceiling_key if server == CEILING else row.key
                m = cells.get((key, server), {}).get(metric)
                if not m:
                    continue
                samples = m["samples"]
                ys.append(i + (j - (len(servers) - 1) / 2) * height)
                xs.append(m["median"])
                lo.append(m["median"] - min(samples))
                hi.append(max(samples) - m["median"])
            if xs:
                ax.barh(ys, xs, height=height, xerr=[lo, hi], color=colors[j % len(colors)],
                        error_kw={"elinewidth": 0.8})
        ax.set_yticks(range(len(prows)), [row.label for row in prows])
        ax.invert_yaxis()
        ax.set_title(title, fontsize=10, loc="left")
        if log:
            ax.set_xscale("log")
        ax.grid(axis="x", alpha=0.3)
    rounds = f"{meta['rounds']} round" + ("s" if meta["rounds"] != 1 else "")
    # Title, legend and panels each get their own band, in inches from the top, so that they
    # cannot overlap whatever the figure's height.
    inch = 1 / fig.get_figheight()
    fig.suptitle(f"goloop network benchmarks — Python {meta['python']}, {meta['cpus']} CPUs, "
                 f"{rounds} (bars: median, whiskers: min-max)", fontsize=10,
                 y=1 - 0.15 * inch, va="top")
    # One legend for all panels, between the title and the first panel, clear of the bars.
    handles = [Patch(facecolor=colors[j % len(colors)] if has_data[server] else "white",
                     edgecolor=colors[j % len(colors)], hatch=None if has_data[server] else "//",
                     label=("go net (ceiling)" if server == CEILING else server)
                     + ("" if has_data[server] else " (failed: no data)"))
               for j, server in enumerate(servers)]
    fig.legend(handles=handles, loc="upper center", ncol=len(servers), fontsize=8,
               bbox_to_anchor=(0.5, 1 - 0.4 * inch), frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.75 * inch))
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- command line ----------------------------------------------------------------------------

def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loops", default=",".join(LOOPS))
    parser.add_argument("--kinds", help=f"server kinds (default {FULL['kinds']})")
    parser.add_argument("--sizes", help=f"echo sizes from {', '.join(SIZES)} "
                        f"(default {FULL['sizes']}; --quick {QUICK['sizes']})")
    parser.add_argument("--conns", help=f"echo connection counts (default {FULL['conns']})")
    parser.add_argument("--rounds", type=int, help=f"interleaved rounds (default "
                        f"{FULL['rounds']}; --quick {QUICK['rounds']})")
    parser.add_argument("--duration", type=float, help=f"measured seconds per sample (default "
                        f"{FULL['duration']}; --quick {QUICK['duration']}; wrk rounds it)")
    parser.add_argument("--warmup", type=float, help="unmeasured seconds of load first")
    parser.add_argument("--rss-conns", type=int, default=RSS_CONNS,
                        help=f"idle connections for the RSS row (default {RSS_CONNS}; 0: no row)")
    parser.add_argument("--rss-only", action="store_true",
                        help="only the RSS row: no echo or HTTP rows")
    parser.add_argument("--no-ceiling", dest="ceiling", action="store_false",
                        help="leave out the pure-Go server")
    parser.add_argument("--pin", action="store_true",
                        help="pin the server to the last CPU and the clients to the others")
    parser.add_argument("--quick", action="store_true",
                        help="about 2 minutes: 1 KiB only, shorter windows, fewer rounds")
    parser.add_argument("--no-install", dest="install", action="store_false",
                        help="do not apt-get install wrk or pip install matplotlib if missing")
    parser.add_argument("--markdown", metavar="FILE", help="also write the tables as markdown")
    parser.add_argument("--json", metavar="FILE", help="also write every sample as JSON")
    parser.add_argument("--plot", metavar="FILE.png", help="also draw a bar chart (matplotlib)")
    args = parser.parse_args(argv)

    base = QUICK if args.quick else FULL
    for name in ("rounds", "duration", "warmup", "kinds", "sizes", "conns"):
        if getattr(args, name) is None:
            setattr(args, name, base[name])
    args.rss_rounds = base["rss_rounds"] or args.rounds
    args.loops = _split(parser, args.loops, LOOPS, "loop")
    args.kinds = [] if args.rss_only else _split(parser, args.kinds, KINDS, "kind")
    if args.rss_only and not args.rss_conns:
        parser.error("--rss-only needs --rss-conns above 0")
    args.sizes = [SIZES[s] for s in _split(parser, args.sizes, SIZES, "size")]
    try:
        args.conns = [int(c) for c in args.conns.split(",")]
    except ValueError:
        parser.error("--conns takes comma-separated integers")
    if args.rounds < 1 or args.duration <= 0 or args.warmup < 0 or min(args.conns) < 1:
        parser.error("--rounds, --duration and --conns must be positive")
    cpus = sorted(os.sched_getaffinity(0))
    if args.pin and len(cpus) >= 2:
        args.server_cpus, args.client_cpus = {cpus[-1]}, set(cpus[:-1])
    else:
        args.server_cpus = args.client_cpus = None
    return args


def _split(parser, text, known, what):
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        parser.error(f"unknown {what}(s) {unknown}; choose from {', '.join(known)}")
    return names


def probe_loops(names):
    available, skipped = {}, {}
    for name in names:
        proc = subprocess.run([sys.executable, SERVER, "--loop", name, "--probe"],
                              capture_output=True, text=True, env=_child_env(), timeout=60)
        try:
            result = json.loads(proc.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            result = {"error": f"probe crashed ({_exit_reason(proc.returncode)})"}
        if "error" in result:
            skipped[name] = result["error"]
        else:
            available[name] = result["version"]
    return available, skipped


def main(argv):
    opts = parse_args(argv)
    available, skipped = probe_loops(opts.loops)
    for name, reason in skipped.items():
        print(f"skipping {name}: {reason}", file=sys.stderr)
    loops = [name for name in opts.loops if name in available]
    if not loops:
        print("no event loop could be imported; nothing to run", file=sys.stderr)
        return 1

    want_fds = max([*opts.conns, opts.rss_conns]) + 256
    nofile = raise_nofile(want_fds)
    if nofile < want_fds:
        print(f"warning: RLIMIT_NOFILE is {nofile} and cannot be raised (not root?); rows "
              f"with more connections will fail. Try `ulimit -n {want_fds}` first.",
              file=sys.stderr)

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="goloop-bench-net-") as tmp:
        tools = build_go(tmp)
        if "http" in opts.kinds:
            tools["wrk"], tools["wrk_missing"] = find_wrk(opts.install)
            if not tools["wrk"]:
                print(f"http rows will fail: {tools['wrk_missing']}", file=sys.stderr)
        rows, rss_rows, cells_plan, rss_cell = plan(opts, loops)
        results = collect(tools, opts, loops, cells_plan, rss_cell)
    cells = summarize(results)

    go_version = subprocess.run(["go", "env", "GOVERSION"], capture_output=True,
                                text=True).stdout.strip()
    meta = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": f"{platform.system()} {platform.machine()}",
        "cpus": os.cpu_count(),
        "go": go_version,
        "command": shlex.join(["python", *sys.argv]),
        "loops": available,
        "skipped": skipped,
        "ceiling": opts.ceiling,
        "rounds": opts.rounds,
        "rss_rounds": opts.rss_rounds if opts.rss_conns else 0,
        "quick": opts.quick,
        "duration": opts.duration,
        "warmup": opts.warmup,
        "http_conns": HTTP_CONNS,
        "rss_conns": opts.rss_conns,
        "nofile": nofile,
        "server_cpus": sorted(opts.server_cpus) if opts.server_cpus else None,
        "client_cpus": sorted(opts.client_cpus) if opts.client_cpus else None,
        "clk_tck": CLK_TCK,
        "elapsed_seconds": round(time.monotonic() - started, 1),
    }

    sections = []
    for which, table_rows_ in (("rps", rows), ("cpu", rows), ("total", rows),
                               ("rss", rss_rows)):
        if table_rows_:
            _, title, _, meaning = TABLES[which]
            sections.append((f"{title}; ratios: {meaning}",
                             table_rows(which, cells, table_rows_, loops, opts.ceiling)))
    notes = failure_notes(cells, rows, rss_rows)

    text = ["", *describe(meta)]
    for title, table in sections:
        text += ["", title, render_text(table)]
    print("\n".join([*text, *([""] + notes if notes else [])]))
    print(f"({meta['elapsed_seconds']:.0f} s)", file=sys.stderr)

    if opts.markdown:
        md = [f"- {line}" for line in describe(meta)]
        for title, table in sections:
            md += ["", f"{title}:", "", render_markdown(table)]
        _write(opts.markdown, "\n".join([*md, *([""] + notes if notes else [])]) + "\n")
    if opts.json:
        summary = {f"{key}/{server}": cell for (key, server), cell in cells.items()}
        _write(opts.json, json.dumps({"meta": meta, "summary": summary, "samples": results},
                                     indent=2) + "\n")
    if opts.plot:
        plot(opts.plot, cells, rows, rss_rows, loops, opts.ceiling, opts.install, meta)
    return 0


def _write(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
