"""One benchmark, one loop, one fresh process: ``python bench/workloads.py LOOP BENCH [N]``.

Prints exactly one JSON object on stdout and exits 0, or prints ``{"error": ...}`` and exits 1.
``bench/run.py`` spawns this script once per (round, loop, benchmark) so that no loop ever
inherits another loop's heap, caches, imported modules or executor threads.

``python bench/workloads.py LOOP probe`` imports the loop, runs one trivial coroutine on it and
reports its version; run.py uses it to skip loops that do not import instead of crashing.

Each workload is ``async def bench_x(n) -> seconds``: it runs on the loop under test, does its
setup outside the timed region, and times only the core with ``time.perf_counter``. The
driver runs it once small (warm-up: imports, executor threads, free lists, branch predictors),
collects garbage, then once at full size, and reports ``n / seconds`` as ops/s.
"""

import asyncio
import gc
import json
import os
import random
import sys
import threading
import time
from typing import Awaitable, Callable, NamedTuple

# goloop lives in the repository root, one level above this file; the child's sys.path[0] is
# bench/, so make the package importable without requiring an install.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)


# --- loop factories --------------------------------------------------------------------------
# No event loop policies anywhere: each loop is built by its own factory and handed to
# asyncio.Runner(loop_factory=...), which is how goloop is meant to be used.

def _asyncio_factory():
    # What asyncio.new_event_loop() returns on Unix under the default policy, named directly.
    return asyncio.SelectorEventLoop


def _uvloop_factory():
    import uvloop
    return uvloop.new_event_loop


def _rloop_factory():
    import rloop
    return rloop.new_event_loop


def _goloop_factory():
    import goloop
    return goloop.new


LOOPS = {
    "asyncio": _asyncio_factory,
    "uvloop": _uvloop_factory,
    "rloop": _rloop_factory,
    "goloop": _goloop_factory,
}


def _loop_version(name):
    if name == "asyncio":
        return "stdlib " + sys.version.split()[0]
    module = sys.modules.get(name)
    return str(getattr(module, "__version__", "unknown"))


# --- workloads -------------------------------------------------------------------------------
# Each returns the elapsed seconds of its core. Results are signalled through a future so the
# measured span ends exactly when the last operation completes, not at some later tick.

async def bench_call_soon_chain(n):
    """One callback that re-schedules itself n times: one ready handle per loop iteration,
    so this measures the cost of a whole tick (poll with zero timeout + dispatch)."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    remaining = n

    def step():
        nonlocal remaining
        remaining -= 1
        if remaining:
            loop.call_soon(step)
        else:
            done.set_result(None)

    t0 = time.perf_counter()
    loop.call_soon(step)
    await done
    return time.perf_counter() - t0


async def bench_call_soon_burst(n):
    """n callbacks scheduled at once, then drained: the per-handle cost of call_soon and of the
    ready queue, amortised over very few ticks."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    count = 0

    def cb():
        nonlocal count
        count += 1

    t0 = time.perf_counter()
    for _ in range(n):
        loop.call_soon(cb)
    # The ready queue is FIFO, so this runs after the n callbacks above.
    loop.call_soon(done.set_result, None)
    await done
    elapsed = time.perf_counter() - t0
    assert count == n, (count, n)
    return elapsed


# Timer delays span this window. It is a floor on the measured time, so it is kept small next
# to the cost of scheduling 10^5 timers, but wide enough that timers keep arriving across many
# ticks and the heap really holds ~n entries while it is being drained.
TIMER_WINDOW = 0.010


async def bench_call_later(n):
    """n call_later timers with random delays in [0, TIMER_WINDOW): heap pushes with n pending,
    then expiry and dispatch; ops = timers fired per second, schedule start to last fire."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    # Same delays for every loop and every round; drawn before timing starts.
    rng = random.Random(n)
    delays = [rng.random() * TIMER_WINDOW for _ in range(n)]
    fired = 0

    def cb():
        nonlocal fired
        fired += 1
        if fired == n:
            done.set_result(None)

    t0 = time.perf_counter()
    for delay in delays:
        loop.call_later(delay, cb)
    await done
    return time.perf_counter() - t0


async def _noop():
    pass


async def bench_gather(n):
    """create_task for n trivial coroutines, then gather them: task creation, the first step
    of each task, and gather's per-child done-callbacks."""
    loop = asyncio.get_running_loop()
    t0 = time.perf_counter()
    await asyncio.gather(*[loop.create_task(_noop()) for _ in range(n)])
    return time.perf_counter() - t0


async def bench_sleep0(n):
    """Two tasks each doing asyncio.sleep(0) n/2 times, so they alternate every tick: the cost
    of a task yielding and being resumed by the loop. ops = total sleep(0) calls."""
    async def spin(count):
        for _ in range(count):
            await asyncio.sleep(0)

    loop = asyncio.get_running_loop()
    t0 = time.perf_counter()
    await asyncio.gather(loop.create_task(spin(n // 2)), loop.create_task(spin(n - n // 2)))
    return time.perf_counter() - t0


async def bench_future(n):
    """loop.create_future, resolved from a call_soon callback, awaited by the task: the round
    trip every I/O wait in asyncio is built from."""
    loop = asyncio.get_running_loop()
    t0 = time.perf_counter()
    for i in range(n):
        fut = loop.create_future()
        loop.call_soon(fut.set_result, i)
        await fut
    return time.perf_counter() - t0


async def bench_threadsafe(n):
    """Another thread posts n callbacks with call_soon_threadsafe; time until the loop has run
    all of them: the cross-thread queue plus the loop's wake-up path."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    count = 0

    def cb():
        nonlocal count
        count += 1
        if count == n:
            done.set_result(None)

    def post():
        for _ in range(n):
            loop.call_soon_threadsafe(cb)

    poster = threading.Thread(target=post)
    t0 = time.perf_counter()
    poster.start()
    await done
    elapsed = time.perf_counter() - t0
    poster.join()
    return elapsed


async def bench_udp_echo(n):
    """n sequential UDP round trips over loopback, client and echo server both on the loop
    under test: per round trip two sendto() and two datagram_received(), each a readiness
    event. The client is connected (remote_addr), the server replies to the address it was
    given, as an echo server does."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    class Echo(asyncio.DatagramProtocol):
        def connection_made(self, transport):
            self.transport = transport

        def datagram_received(self, data, addr):
            self.transport.sendto(data, addr)

    class Client(asyncio.DatagramProtocol):
        left = n

        def connection_made(self, transport):
            self.transport = transport

        def datagram_received(self, data, addr):
            self.left -= 1
            if self.left:
                self.transport.sendto(data)
            else:
                done.set_result(None)

    server, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
    client, _ = await loop.create_datagram_endpoint(
        Client, remote_addr=server.get_extra_info("sockname"))
    t0 = time.perf_counter()
    client.sendto(b"x" * 64)
    await done
    elapsed = time.perf_counter() - t0
    client.close()
    server.close()
    return elapsed


def _trivial():
    return None


async def bench_executor(n):
    """n sequential run_in_executor round trips on the default executor: submit to a thread,
    then the completion crossing back via call_soon_threadsafe and a future."""
    loop = asyncio.get_running_loop()
    t0 = time.perf_counter()
    for _ in range(n):
        await loop.run_in_executor(None, _trivial)
    return time.perf_counter() - t0


async def bench_sock_echo(n):
    """n 1 KiB round trips over a socketpair with sock_sendall/sock_recv, an echo task on the
    other end: each trip parks two sock_recv (the echo's and the client's) on readiness."""
    import socket

    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    for s in (a, b):
        s.setblocking(False)

    async def echo():
        while data := await loop.sock_recv(b, 65536):
            await loop.sock_sendall(b, data)

    server = loop.create_task(echo())
    payload = b"x" * 1024
    t0 = time.perf_counter()
    for _ in range(n):
        await loop.sock_sendall(a, payload)
        got = 0
        while got < len(payload):
            got += len(await loop.sock_recv(a, 65536))
    elapsed = time.perf_counter() - t0
    a.shutdown(socket.SHUT_WR)
    await server
    a.close()
    b.close()
    return elapsed


class _Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


class _BufferedEcho(asyncio.BufferedProtocol):
    def __init__(self):
        self.buf = bytearray(256 * 1024)

    def connection_made(self, transport):
        self.transport = transport

    def get_buffer(self, sizehint):
        return self.buf

    def buffer_updated(self, nbytes):
        self.transport.write(self.buf[:nbytes])


async def bench_tcp_echo(n, size=1024, server_protocol=_Echo):
    """n sequential round trips of size bytes over loopback TCP between a Protocol echo server
    (create_server) and a Protocol client (create_connection), both on the loop under test:
    per trip two readiness events, two data_received and two transport.write."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    payload = b"x" * size

    class Client(asyncio.Protocol):
        left, got = n, 0

        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            self.got += len(data)
            if self.got < size:
                return
            self.got = 0
            self.left -= 1
            if self.left:
                self.transport.write(payload)
            else:
                done.set_result(None)

    server = await loop.create_server(server_protocol, "127.0.0.1", 0)
    transport, _ = await loop.create_connection(Client, *server.sockets[0].getsockname()[:2])
    t0 = time.perf_counter()
    transport.write(payload)
    await done
    elapsed = time.perf_counter() - t0
    transport.close()
    server.close()
    await server.wait_closed()
    return elapsed


async def bench_tcp_echo_buffered(n):
    """bench_tcp_echo with a BufferedProtocol server (get_buffer + buffer_updated per read)."""
    return await bench_tcp_echo(n, server_protocol=_BufferedEcho)


async def bench_tcp_echo_100k(n):
    """bench_tcp_echo with 100 KiB messages: the per-byte costs (copies) over the per-event
    ones."""
    return await bench_tcp_echo(n, 100 * 1024)


async def bench_streams_echo(n, size=1024):
    """n sequential round trips of size bytes between an asyncio.start_server echo
    (reader.read, writer.write, drain) and an open_connection client doing the same: the
    streams' Python over the loop's transports, futures and task wake-ups."""
    payload = b"x" * size

    async def echo(reader, writer):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname()[:2])
    t0 = time.perf_counter()
    for _ in range(n):
        writer.write(payload)
        await writer.drain()
        got = 0
        while got < len(payload):
            got += len(await reader.read(65536))
    elapsed = time.perf_counter() - t0
    writer.close()
    await writer.wait_closed()
    server.close()
    await server.wait_closed()
    return elapsed


async def bench_streams_echo_100k(n):
    """bench_streams_echo with 100 KiB messages: reads large enough to go straight into the
    StreamReader's buffer."""
    return await bench_streams_echo(n, 100 * 1024)


# The client of bench_accept: a separate process (callgrind does not follow it, so only the
# server's work is counted) that connects n times, each time waiting for the server to close.
_ACCEPT_CLIENT = """
import socket, sys
addr = (sys.argv[1], int(sys.argv[2]))
for _ in range(int(sys.argv[3])):
    s = socket.create_connection(addr)
    while s.recv(1):
        pass
    s.close()
"""


class _CloseAtOnce(asyncio.Protocol):
    def __init__(self, counter):
        self.counter = counter

    def connection_made(self, transport):
        transport.close()

    def connection_lost(self, exc):
        self.counter()


async def bench_accept(n):
    """n connections accepted by a create_server and closed by the server's protocol in
    connection_made: the per-connection cost of accepting, the protocol factory, the
    transport and its close. The client process connects one at a time."""
    import subprocess
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    lost = 0

    def counter():
        nonlocal lost
        lost += 1
        if lost == n:
            done.set_result(None)

    server = await loop.create_server(lambda: _CloseAtOnce(counter), "127.0.0.1", 0)
    host, port = server.sockets[0].getsockname()[:2]
    t0 = time.perf_counter()
    client = subprocess.Popen([sys.executable, "-c", _ACCEPT_CLIENT, host, str(port), str(n)])
    await done
    elapsed = time.perf_counter() - t0
    client.wait()
    server.close()
    await server.wait_closed()
    return elapsed


class Bench(NamedTuple):
    workload: Callable[[int], Awaitable[float]]
    n: int      # default size; run.py may scale it down (--quick)
    label: str  # row name in the report


# n is sized so stock asyncio spends roughly 0.3-1.5 s in the core on a slow 2-core machine:
# long enough to dwarf timer resolution and warm-up effects, short enough that 7 rounds x 4
# loops x 8 rows stays within about five minutes. Dict order is the report's row order.
BENCHMARKS = {
    "call_soon": Bench(bench_call_soon_chain, 100_000, "call_soon chain"),
    "call_soon_burst": Bench(bench_call_soon_burst, 150_000, "call_soon burst"),
    # 10^5 pending timers is the point of this row, so it keeps n = 10^5.
    "call_later": Bench(bench_call_later, 100_000, "call_later 1e5 timers"),
    "gather": Bench(bench_gather, 100_000, "create_task + gather"),
    "sleep0": Bench(bench_sleep0, 100_000, "sleep(0) ping-pong"),
    "future": Bench(bench_future, 50_000, "future resolve/await"),
    "threadsafe": Bench(bench_threadsafe, 50_000, "call_soon_threadsafe"),
    "executor": Bench(bench_executor, 5_000, "run_in_executor"),
    "sock_echo": Bench(bench_sock_echo, 10_000, "sock_recv/sendall echo"),
    "udp_echo": Bench(bench_udp_echo, 20_000, "UDP echo round trip"),
    "accept": Bench(bench_accept, 5_000, "accept + close"),
    "tcp_echo": Bench(bench_tcp_echo, 20_000, "TCP Protocol echo 1 KiB"),
    "tcp_echo_buffered": Bench(bench_tcp_echo_buffered, 20_000, "TCP BufferedProtocol echo 1 KiB"),
    "streams_echo": Bench(bench_streams_echo, 10_000, "streams echo 1 KiB"),
    "tcp_echo_100k": Bench(bench_tcp_echo_100k, 2_000, "TCP Protocol echo 100 KiB"),
    "streams_echo_100k": Bench(bench_streams_echo_100k, 2_000, "streams echo 100 KiB"),
}


# --- driver ----------------------------------------------------------------------------------

async def _measure(workload, n):
    # Warm-up at a tenth of the size (at least 100 ops) on the same loop.
    await workload(max(n // 10, 100))
    # Start the timed run from a clean heap so a collection left over from warm-up or setup
    # does not land inside one loop's measurement and not another's.
    gc.collect()
    return await workload(n)


def _run(loop_name, bench_name, n):
    factory = LOOPS[loop_name]()
    bench = BENCHMARKS[bench_name]
    n = n or bench.n
    with asyncio.Runner(loop_factory=factory) as runner:
        seconds = runner.run(_measure(bench.workload, n))
    return {
        "loop": loop_name,
        "bench": bench_name,
        "n": n,
        "seconds": seconds,
        "ops_per_sec": n / seconds,
    }


def _probe(loop_name):
    factory = LOOPS[loop_name]()
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(asyncio.sleep(0))
    return {"loop": loop_name, "ok": True, "version": _loop_version(loop_name)}


def main(argv):
    if len(argv) not in (2, 3) or argv[0] not in LOOPS or argv[1] not in (*BENCHMARKS, "probe"):
        names = "|".join(BENCHMARKS)
        sys.exit(f"usage: workloads.py {{{'|'.join(LOOPS)}}} {{probe|{names}}} [N]")
    loop_name, bench_name = argv[0], argv[1]
    try:
        if bench_name == "probe":
            result = _probe(loop_name)
        else:
            result = _run(loop_name, bench_name, int(argv[2]) if len(argv) == 3 else 0)
    except BaseException as exc:  # report anything, including SystemExit from an import
        print(json.dumps({"loop": loop_name, "bench": bench_name,
                          "error": f"{type(exc).__name__}: {exc}"}))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
