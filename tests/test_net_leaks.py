"""Leak check for connections: connect/echo/close cycles over TCP and Unix
sockets leave gc object counts, open descriptors (/proc/self/fd) and RSS
flat.

N_CYCLES is 2*10^4 per loop, not 10^5: a cycle costs about 0.45 ms on
the stock loop on this machine, so 10^5 would take about a minute per loop
and interpreter. A leak of one object or one descriptor per cycle still
shows as thousands. The workload runs once to warm up (free lists, pymalloc
arenas, the Go heap), then twice between two snapshots.

Part of the normal suite; select or skip with ``-m leaks`` / ``-m "not leaks"``.
"""

import asyncio
import collections
import gc
import os
import shutil
import sys
import tempfile

import pytest

import support

pytestmark = pytest.mark.leaks

N_CYCLES = 2 * 10**4
WARM_UP = N_CYCLES // 5
ROUND = (N_CYCLES - WARM_UP) // 2
WORKERS = 50

MAX_NEW_GC_OBJECTS = 1000
MAX_NEW_BLOCKS = 5000
MAX_RSS_GROWTH = 8 * 2**20


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def snapshot():
    for _ in range(3):
        gc.collect()
    objects = gc.get_objects()
    types = collections.Counter(type(o).__qualname__ for o in objects)
    del objects
    return {"gc objects": sum(types.values()),
            "allocated blocks": sys.getallocatedblocks(),
            "open fds": len(os.listdir("/proc/self/fd")),
            "rss": rss_bytes()}, types


class Echo(asyncio.Protocol):
    # Server-side connections still open. A client's connection_lost can
    # come before the server has read its EOF, so a round ends only when
    # this is empty: otherwise the snapshot counts those sockets' fds.
    live = set()
    drained = None

    def connection_made(self, transport):
        self.transport = transport
        Echo.live.add(self)

    def connection_lost(self, exc):
        Echo.live.discard(self)
        if not Echo.live and Echo.drained is not None \
                and not Echo.drained.done():
            Echo.drained.set_result(None)

    def data_received(self, data):
        self.transport.write(data)

    def eof_received(self):
        return False  # close, as the default does


class Client(asyncio.Protocol):
    def __init__(self, done):
        self.done = done
        self.got = b""

    def connection_made(self, transport):
        self.transport = transport
        transport.write(b"ping")

    def data_received(self, data):
        self.got += data
        if self.got == b"ping":
            self.transport.close()

    def connection_lost(self, exc):
        self.done.set_result((self.got, exc))


async def cycles(n, tcp_addr, unix_path):
    loop = asyncio.get_running_loop()

    async def worker(count, index):
        for i in range(count):
            done = loop.create_future()
            if (index + i) % 2:
                await loop.create_connection(lambda: Client(done), *tcp_addr)
            else:
                await loop.create_unix_connection(lambda: Client(done), unix_path)
            assert await done == (b"ping", None)

    await asyncio.wait_for(
        asyncio.gather(*(worker(n // WORKERS, k) for k in range(WORKERS))), 120)
    if Echo.live:
        Echo.drained = loop.create_future()
        await asyncio.wait_for(Echo.drained, 30)
        Echo.drained = None


def test_connect_echo_close_cycles_leave_no_trace(loop):
    loop.set_debug(False)  # debug mode keeps a traceback per handle: too slow here
    sockdir = tempfile.mkdtemp(prefix="gl-", dir="/tmp")
    try:
        unix_path = os.path.join(sockdir, "echo.sock")

        async def start():
            tcp = await loop.create_server(Echo, "127.0.0.1", 0)
            unix = await loop.create_unix_server(Echo, unix_path)
            return tcp, unix

        tcp, unix = support.run_guarded(loop, start())
        tcp_addr = tcp.sockets[0].getsockname()

        support.run_guarded(loop, cycles(WARM_UP, tcp_addr, unix_path), timeout=180)
        before, types_before = snapshot()
        for _ in range(2):
            support.run_guarded(loop, cycles(ROUND, tcp_addr, unix_path), timeout=180)
        after, types_after = snapshot()

        async def stop():
            for server in (tcp, unix):
                server.close()
                await server.wait_closed()

        support.run_guarded(loop, stop())
    finally:
        shutil.rmtree(sockdir, ignore_errors=True)

    assert_flat(before, types_before, after, types_after)


def assert_flat(before, types_before, after, types_after):
    growth = {k: after[k] - before[k] for k in before}
    growth["most grown types"] = (types_after - types_before).most_common(8)
    assert growth["open fds"] == 0, growth
    assert growth["gc objects"] <= MAX_NEW_GC_OBJECTS, growth
    assert growth["allocated blocks"] <= MAX_NEW_BLOCKS, growth
    assert growth["rss"] <= MAX_RSS_GROWTH, growth


STREAM_MESSAGES = (b"x" * 100, b"y" * 100_000)


class StreamEcho:
    """The server's handler. A round ends only when every connection it
    served is closed (as Echo.live, above)."""
    live = 0
    drained = None

    @classmethod
    async def handle(cls, reader, writer):
        cls.live += 1
        try:
            while data := await reader.read(2**20):
                writer.write(data)
                await writer.drain()
            writer.close()
            await writer.wait_closed()
        finally:
            cls.live -= 1
            if not cls.live and cls.drained is not None and not cls.drained.done():
                cls.drained.set_result(None)


async def stream_cycles(n, addr):
    async def worker(count, index):
        for i in range(count):
            reader, writer = await asyncio.open_connection(*addr)
            message = STREAM_MESSAGES[(index + i) % 2]
            writer.write(message)
            assert await reader.readexactly(len(message)) == message
            writer.close()
            await writer.wait_closed()

    await asyncio.wait_for(
        asyncio.gather(*(worker(n // WORKERS, k) for k in range(WORKERS))), 120)
    if StreamEcho.live:
        StreamEcho.drained = asyncio.get_running_loop().create_future()
        await asyncio.wait_for(StreamEcho.drained, 30)
        StreamEcho.drained = None


def test_streams_cycles_leave_no_trace(loop):
    """asyncio streams, whose reads goloop feeds to the StreamReader in C
    (small ones copied in, large ones read straight into its buffer)."""
    loop.set_debug(False)
    n = N_CYCLES // 4
    server = support.run_guarded(loop, asyncio.start_server(StreamEcho.handle, "127.0.0.1", 0))
    addr = server.sockets[0].getsockname()
    support.run_guarded(loop, stream_cycles(n // 5, addr), timeout=180)
    before, types_before = snapshot()
    support.run_guarded(loop, stream_cycles(n, addr), timeout=180)
    after, types_after = snapshot()
    server.close()
    support.run_guarded(loop, server.wait_closed())
    assert_flat(before, types_before, after, types_after)
