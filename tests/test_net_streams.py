"""asyncio streams over both loops: open_connection/start_server,
open_unix_connection/start_unix_server, drain() under back-pressure,
write_eof and what a writer sees once its peer is gone.
"""

import asyncio
import os
import shutil
import socket
import tempfile

import pytest

import support
from support import iterations, wait

pytestmark = pytest.mark.fail_fast


@pytest.fixture
def sockpath():
    path = tempfile.mkdtemp(prefix="gl-", dir="/tmp")
    yield os.path.join(path, "s.sock")
    shutil.rmtree(path, ignore_errors=True)


async def echo_lines(reader, writer):
    try:
        while line := await reader.readline():
            writer.write(line.upper())
            await writer.drain()
        writer.write_eof()
        await writer.drain()
    finally:
        writer.close()
        await writer.wait_closed()


async def talk(reader, writer):
    writer.write(b"hello\nworld\n")
    await writer.drain()
    assert await wait(reader.readline()) == b"HELLO\n"
    assert await wait(reader.readexactly(6)) == b"WORLD\n"
    assert writer.can_write_eof()
    writer.write_eof()
    assert await wait(reader.read()) == b""
    assert reader.at_eof()
    writer.close()
    await wait(writer.wait_closed())
    assert writer.is_closing()


def test_open_connection_and_start_server(loop):
    async def main():
        server = await asyncio.start_server(echo_lines, "127.0.0.1", 0)
        addr = server.sockets[0].getsockname()
        async with server:
            reader, writer = await wait(asyncio.open_connection(*addr))
            assert writer.get_extra_info("peername") == addr
            assert isinstance(writer.transport, asyncio.Transport)
            await talk(reader, writer)
        await wait(server.wait_closed())
    support.run_guarded(loop, main())


def test_open_unix_connection_and_start_unix_server(loop, sockpath):
    async def main():
        server = await asyncio.start_unix_server(echo_lines, sockpath)
        async with server:
            reader, writer = await wait(asyncio.open_unix_connection(sockpath))
            assert writer.get_extra_info("peername") == sockpath
            await talk(reader, writer)
        await wait(server.wait_closed())
    support.run_guarded(loop, main())


def test_open_connection_with_sock_and_limit(loop):
    async def main():
        server = await asyncio.start_server(echo_lines, "127.0.0.1", 0)
        sock = socket.create_connection(server.sockets[0].getsockname())
        reader, writer = await wait(asyncio.open_connection(sock=sock, limit=8))
        writer.write(b"0123456789abcdef\n")
        with pytest.raises(ValueError):
            await wait(reader.readline())  # longer than the limit
        writer.close()
        await wait(writer.wait_closed())
        server.close()
        await wait(server.wait_closed())
    support.run_guarded(loop, main())


async def backpressure(connect, start, address):
    """The handler reads nothing until released: the client's drain() waits
    while its transport holds more than the high-water mark, and finishes
    once the server has read everything."""
    release = asyncio.Event()
    done = asyncio.get_running_loop().create_future()
    payload = os.urandom(32 * 2**20)

    async def handler(reader, writer):
        await release.wait()
        data = await reader.readexactly(len(payload))
        support._resolve(done, data == payload)
        writer.close()
        await writer.wait_closed()

    server = await start(handler, *address)
    async with server:
        reader, writer = await wait(connect(*address))
        writer.transport.set_write_buffer_limits(high=256 * 1024)
        writer.write(payload)
        assert writer.transport.get_write_buffer_size() > 256 * 1024
        drain = asyncio.ensure_future(writer.drain())
        await iterations(5)
        assert not drain.done()  # the peer reads nothing: still above the mark
        release.set()
        await wait(drain)
        assert await wait(done) is True
        writer.close()
        await wait(writer.wait_closed())
    await wait(server.wait_closed())


def test_drain_under_back_pressure_tcp(loop):
    async def main():
        port = socket.socket()
        port.bind(("127.0.0.1", 0))
        addr = port.getsockname()
        port.close()
        await backpressure(asyncio.open_connection, asyncio.start_server, addr)
    support.run_guarded(loop, main())


def test_drain_under_back_pressure_unix(loop, sockpath):
    async def main():
        await backpressure(asyncio.open_unix_connection, asyncio.start_unix_server, (sockpath,))
    support.run_guarded(loop, main())


def test_writer_after_peer_reset_as_asyncio(loop):
    """The peer aborts (RST): the reader sees the reset, and the writer's
    drain() raises, as on the stock loop."""
    def scenario(lp):
        async def main():
            accepted = lp.create_future()

            async def handler(reader, writer):
                accepted.set_result(writer)

            server = await asyncio.start_server(handler, "127.0.0.1", 0)
            reader, writer = await wait(asyncio.open_connection(*server.sockets[0].getsockname()))
            peer = await wait(accepted)
            peer.transport.get_extra_info("socket").setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
            peer.transport.abort()
            results = []
            try:
                results.append(("read", await wait(reader.read())))
            except Exception as exc:
                results.append(("read raised", type(exc)))
            for _ in range(3):
                writer.write(b"x")
                try:
                    await wait(writer.drain())
                    results.append(("drain", None))
                except Exception as exc:
                    results.append(("drain raised", type(exc), str(exc)))
            writer.close()
            try:
                await wait(writer.wait_closed())
                results.append(("wait_closed", None))
            except Exception as exc:
                results.append(("wait_closed raised", type(exc)))
            server.close()
            await wait(server.wait_closed())
            return results
        return support.run_guarded(lp, main())

    expected = support.run_on_reference(scenario)
    assert expected[0] == ("read raised", ConnectionResetError)
    assert scenario(loop) == expected


# A StreamReaderProtocol's reads: goloop feeds asyncio's own StreamReader in
# C (pybridge/reader.c); these hold it to what feed_data does in Python.


async def connected_pair(limit=2**16):
    """A server-side (reader, writer) and a client-side writer, over TCP."""
    loop = asyncio.get_running_loop()
    accepted = loop.create_future()

    async def handler(reader, writer):
        accepted.set_result((reader, writer))

    server = await asyncio.start_server(handler, "127.0.0.1", 0, limit=limit)
    _, client = await wait(asyncio.open_connection(*server.sockets[0].getsockname()))
    reader, writer = await wait(accepted)
    server.close()
    return reader, writer, client


async def close_all(*writers):
    for w in writers:
        w.close()
    for w in writers:
        try:
            await wait(w.wait_closed())
        except ConnectionError:
            pass


def test_reader_over_its_limit_pauses_the_transport_until_read(loop):
    async def main():
        reader, writer, client = await connected_pair(limit=1024)
        payload = os.urandom(64 * 1024)
        client.write(payload)

        async def paused():  # past 2 * limit buffered
            while writer.transport.is_reading():
                await asyncio.sleep(0)

        await wait(paused())
        got = await wait(reader.readexactly(len(payload)))
        assert got == payload
        assert writer.transport.is_reading()
        await close_all(client, writer)
    support.run_guarded(loop, main())


@pytest.mark.parametrize("limit", [2**16, 2**22])
def test_large_reads_reach_the_reader_whole(loop, limit):
    """Reads of 64 KiB and more go straight into the reader's buffer on
    goloop while the reader stays under its limit (2**22), and through the
    plain path, pausing the transport, when it would pass it (2**16)."""
    async def main():
        reader, writer, client = await connected_pair(limit=limit)
        payload = os.urandom(3 * 2**20)
        for chunk in (1, 70_000, 300_000, 2**20):
            client.write(payload[:chunk])
            assert await wait(reader.readexactly(chunk)) == payload[:chunk]
        client.write(payload)
        client.write_eof()
        got = bytearray()
        while data := await wait(reader.read(100_000)):
            got += data
        assert got == payload
        assert reader.at_eof()
        await close_all(client, writer)
    support.run_guarded(loop, main())


def test_cancelled_read_leaves_the_bytes_for_the_next(loop):
    async def main():
        reader, writer, client = await connected_pair()
        first = asyncio.ensure_future(reader.read(100))
        await iterations(2)  # first waits for data
        first.cancel()
        client.write(b"kept")
        await iterations(2)
        assert first.cancelled()
        assert await wait(reader.read(100)) == b"kept"
        await close_all(client, writer)
    support.run_guarded(loop, main())


def test_read_while_a_view_holds_the_buffer_is_a_fatal_error_as_asyncio(loop):
    """A memoryview of the reader's bytearray stops it growing: feed_data's
    extend() raises BufferError, which data_received passes on to the
    transport's fatal error, on both loops."""
    def scenario(lp):
        async def main():
            reader, writer, client = await connected_pair()
            client.write(b"first")
            assert await wait(reader.readexactly(2)) == b"fi"
            view = memoryview(reader._buffer)
            with support.captured_exceptions(lp) as contexts:
                client.write(b"second")
                closed = await support.outcome_of(wait(writer.wait_closed()))
            view.release()
            await close_all(client)
            return [(c["message"], type(c["exception"])) for c in contexts], closed[:2]
        return support.run_guarded(lp, main())

    expected = support.run_on_reference(scenario)
    assert expected == ([("Fatal error: protocol.data_received() call failed.", BufferError)],
                        ("raised", BufferError))
    assert scenario(loop) == expected


def test_data_after_feed_eof_is_a_fatal_error_as_asyncio(loop):
    def scenario(lp):
        async def main():
            reader, writer, client = await connected_pair()
            reader.feed_eof()
            with support.captured_exceptions(lp) as contexts:
                client.write(b"late")
                closed = await support.outcome_of(wait(writer.wait_closed()))
            await close_all(client)
            return ([(c["message"], type(c["exception"])) for c in contexts], closed[:2],
                    reader._buffer)
        return support.run_guarded(lp, main())

    expected = support.run_on_reference(scenario)
    assert expected == ([("Fatal error: protocol.data_received() call failed.",
                          AssertionError)], ("raised", AssertionError), bytearray())
    assert scenario(loop) == expected


class CountingReader(asyncio.StreamReader):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fed = []

    def feed_data(self, data):
        self.fed.append(bytes(data))
        super().feed_data(data)


def test_a_subclassed_or_patched_reader_sees_every_read(loop):
    async def greet(reader, writer):
        writer.write(b"hello")
        await writer.drain()
        await close_all(writer)

    async def main():
        lp = asyncio.get_running_loop()
        server = await asyncio.start_server(greet, "127.0.0.1", 0)
        addr = server.sockets[0].getsockname()
        # A StreamReader subclass.
        counting = CountingReader()
        t1, _ = await wait(lp.create_connection(
            lambda: asyncio.StreamReaderProtocol(counting), *addr))
        assert await wait(counting.read()) == b"hello"
        assert b"".join(counting.fed) == b"hello"
        # asyncio's classes, with data_received replaced on the instance.
        reader = asyncio.StreamReader()
        protocol = asyncio.StreamReaderProtocol(reader)
        seen = []

        def data_received(data):
            seen.append(bytes(data))
            asyncio.StreamReaderProtocol.data_received(protocol, data)

        protocol.data_received = data_received
        t2, _ = await wait(lp.create_connection(lambda: protocol, *addr))
        assert await wait(reader.read()) == b"hello"
        assert b"".join(seen) == b"hello"
        # asyncio's classes, with feed_data replaced on the reader.
        patched = asyncio.StreamReader()
        fed = []

        def feed_data(data):
            fed.append(bytes(data))
            asyncio.StreamReader.feed_data(patched, data)

        patched.feed_data = feed_data
        t3, _ = await wait(lp.create_connection(
            lambda: asyncio.StreamReaderProtocol(patched), *addr))
        assert await wait(patched.read()) == b"hello"
        assert b"".join(fed) == b"hello"
        t1.close()
        t2.close()
        t3.close()
        server.close()
        await wait(server.wait_closed())
    support.run_guarded(loop, main())
