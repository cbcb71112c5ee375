"""Which contextvars.Context a stream transport's protocol callbacks run in,
and the debug-mode slow-callback warning for them, on both loops.

Stock asyncio runs each callback from a handle, so each sees the context
that handle carries: a copy of the creator's for connection_made, the
reader's (copied when reading starts or resumes) for data_received and
eof_received, the writer's (copied when a write is first queued) for
resume_writing, the closer's for connection_lost. 3.15 gives every
connection one context of its own instead. The expected trace is the same
scenario's on the stock loop of the running Python.
"""

import asyncio
import contextvars

import pytest

import support

pytestmark = pytest.mark.fail_fast

var = contextvars.ContextVar("var", default="unset")
FLOOD = 8 << 20


class Tracing(asyncio.Protocol):
    """Records (side, event, var) and sets var after each event, so the
    trace shows which callbacks share a context."""

    def __init__(self, trace, side):
        self.trace = trace
        self.side = side
        self.quiet = False
        self.got = asyncio.Queue()
        self.lost = asyncio.get_running_loop().create_future()
        self.resumed = asyncio.get_running_loop().create_future()
        self.unrecorded = 0
        self.flooded = asyncio.get_running_loop().create_future()

    def record(self, event, *detail):
        if not self.quiet:
            self.trace.append((self.side, event, *detail, var.get()))
            var.set(f"{self.side}-{event}")

    def connection_made(self, transport):
        self.transport = transport
        self.record("made")

    def data_received(self, data):
        if self.quiet:
            self.unrecorded += len(data)
            if self.unrecorded == FLOOD:
                self.flooded.set_result(None)
        else:
            self.record("data", data)
            self.got.put_nowait(data)

    def eof_received(self):
        self.record("eof")

    def pause_writing(self):
        self.record("pause")

    def resume_writing(self):
        self.record("resume")
        self.resumed.set_result(None)

    def connection_lost(self, exc):
        self.record("lost", repr(exc))
        self.lost.set_result(None)


async def in_context(value, fn, *args):
    """fn(*args) in a task whose context has var set to value."""
    async def run():
        var.set(value)
        return fn(*args)
    return await asyncio.create_task(run())


def trace_connection(loop):
    async def main():
        trace = []
        servers = []

        def server_protocol():
            servers.append(Tracing(trace, "server"))
            return servers[-1]

        var.set("server-start")
        server = await loop.create_server(server_protocol, "127.0.0.1", 0)
        var.set("creator")
        _, client = await loop.create_connection(
            lambda: Tracing(trace, "client"), *server.sockets[0].getsockname())
        var.set("main")
        while not servers:
            await asyncio.sleep(0)
        peer = servers[0]
        for chunk in (b"one", b"two"):
            await in_context("writer", client.transport.write, chunk)
            assert await asyncio.wait_for(peer.got.get(), support.GUARD) == chunk

        # Flow control: the server's writes queue (the client does not
        # read) past a high-water mark of 1, in a task with its own value;
        # resume_writing comes from the writer once the client reads again.
        client.transport.pause_reading()
        await in_context("paused", client.transport.pause_reading)
        client.quiet = True
        peer.transport.set_write_buffer_limits(high=1)
        await in_context("flood", peer.transport.write, b"x" * FLOOD)
        await in_context("resumer", client.transport.resume_reading)
        await asyncio.wait_for(peer.resumed, support.GUARD)
        await asyncio.wait_for(client.flooded, support.GUARD)
        client.quiet = False

        await in_context("closer", client.transport.close)
        await asyncio.wait_for(asyncio.gather(client.lost, peer.lost), support.GUARD)
        server.close()
        await server.wait_closed()
        return trace

    return loop.run_until_complete(main())


def test_protocol_callbacks_run_in_asyncio_contexts(loop):
    loop.set_debug(False)
    assert trace_connection(loop) == support.run_on_reference(trace_connection)


def test_slow_protocol_callback_is_logged(loop, asyncio_log):
    loop.set_debug(True)
    loop.slow_callback_duration = 0.0

    async def main():
        trace = []
        server = await loop.create_server(lambda: Tracing(trace, "server"), "127.0.0.1", 0)
        _, client = await loop.create_connection(
            lambda: Tracing(trace, "client"), *server.sockets[0].getsockname())
        client.transport.write(b"ping")
        client.transport.close()
        await asyncio.wait_for(client.lost, support.GUARD)
        server.close()
        await server.wait_closed()

    loop.run_until_complete(main())
    support.assert_logged_slow(asyncio_log.records, r"\w*SocketTransport\._read_ready\(\)")


def trace_pause_in_task(loop):
    """CPython's gh-140947 scenario: data_received pauses reading and starts
    a task that waits for the transport's _paused, sets variables and
    resumes reading; no callback sees the task's variables."""
    async def main():
        trace = []
        done = loop.create_future()

        class Handler(asyncio.Protocol):
            def connection_made(self, transport):
                self.transport = transport
                trace.append(("made", var.get()))

            def data_received(self, data):
                trace.append(("data", var.get()))
                self.task = asyncio.create_task(self.handle())
                self.transport.pause_reading()

            async def handle(self):
                var.set("task")
                while not self.transport._paused:
                    await asyncio.sleep(0)
                self.transport.resume_reading()
                trace.append(("resumed", self.transport._paused, var.get()))

            def connection_lost(self, exc):
                trace.append(("lost", var.get()))
                done.set_result(None)

        server = await loop.create_server(Handler, "127.0.0.1", 0)
        async with server:
            reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
            writer.write(b"anything")
            await writer.drain()
            writer.close()
            await writer.wait_closed()
            await asyncio.wait_for(done, support.GUARD)
        return trace

    return loop.run_until_complete(main())


def test_pause_reading_from_a_task_as_asyncio(loop):
    assert trace_pause_in_task(loop) == support.run_on_reference(trace_pause_in_task)
