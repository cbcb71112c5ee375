"""Unix stream sockets: create_unix_server/create_unix_connection with a
path, a pathlib.Path, bytes, the abstract namespace and sock=; removal of
a stale socket file at bind; what happens to the socket file when the
server closes (kept up to 3.12, removed from 3.13 unless
cleanup_socket=False, and only if it is still the server's own file),
taken from a run of the same scenario on the stock loop.
"""

import asyncio
import inspect
import os
import pathlib
import shutil
import socket
import stat
import tempfile

import pytest

import support
from support import iterations, outcome_of, wait
from test_net_tcp import Accepting

pytestmark = pytest.mark.fail_fast

Recorder = support.Recorder


@pytest.fixture
def sockdir():
    # Short: a Unix socket path has at most 107 bytes, pytest's tmp_path is long.
    path = tempfile.mkdtemp(prefix="gl-", dir="/tmp")
    yield pathlib.Path(path)
    shutil.rmtree(path, ignore_errors=True)


async def exchange(loop, server, connect_to, accepting):
    """Connect to the server, send both ways, close; returns the transports'
    extra info as seen on both ends."""
    transport, proto = await wait(loop.create_unix_connection(Recorder, connect_to))
    other = await accepting.next()
    transport.write(b"ping")
    assert await wait(other.until(4)) == b"ping"
    other.transport.write(b"pong")
    assert await wait(proto.until(4)) == b"pong"
    assert transport.can_write_eof() and other.transport.can_write_eof()
    transport.write_eof()
    await wait(other.eof)
    info = {
        "client sockname": transport.get_extra_info("sockname"),
        "client peername": transport.get_extra_info("peername"),
        "server sockname": other.transport.get_extra_info("sockname"),
        "family": transport.get_extra_info("socket").family,
    }
    await wait(other.lost)
    await wait(proto.lost)
    assert proto.calls == ["made", "data", "eof", "lost"]
    assert other.calls == ["made", "data", "eof", "lost"]
    return info


@pytest.mark.parametrize("kind", ["str", "pathlib", "bytes"])
def test_unix_server_and_connection_with_path(loop, sockdir, kind):
    path = str(sockdir / "s.sock")
    arg = {"str": path, "pathlib": pathlib.Path(path), "bytes": os.fsencode(path)}[kind]
    async def main():
        accepting = Accepting()
        server = await loop.create_unix_server(accepting, arg)
        assert server.is_serving() and server.get_loop() is loop
        assert stat.S_ISSOCK(os.stat(path).st_mode)
        info = await exchange(loop, server, arg, accepting)
        assert server.sockets[0].getsockname() == path  # a str even when bound with bytes
        assert info["family"] == socket.AF_UNIX
        assert info["client peername"] == path == info["server sockname"]
        server.close()
        await wait(server.wait_closed())
    support.run_guarded(loop, main())


def test_unix_abstract_namespace(loop):
    name = f"\0goloop-test-{os.getpid()}-{id(loop)}"
    async def main():
        accepting = Accepting()
        server = await loop.create_unix_server(accepting, name)
        assert server.sockets[0].getsockname() == os.fsencode(name)
        info = await exchange(loop, server, name, accepting)
        assert info["client peername"] == os.fsencode(name)
        server.close()
        await wait(server.wait_closed())
        # Nothing on disk to clean up, and the name is free again.
        with socket.socket(socket.AF_UNIX) as again:
            again.bind(name)
    support.run_guarded(loop, main())


def test_unix_sock_arguments(loop, sockdir):
    path = str(sockdir / "s.sock")
    async def main():
        lsock = socket.socket(socket.AF_UNIX)
        lsock.bind(path)
        accepting = Accepting()
        server = await loop.create_unix_server(accepting, sock=lsock)
        assert server.sockets[0].fileno() == lsock.fileno()
        client = socket.socket(socket.AF_UNIX)
        client.connect(path)
        client.setblocking(False)
        transport, proto = await wait(loop.create_unix_connection(Recorder, sock=client))
        other = await accepting.next()
        transport.write(b"x")
        await wait(other.until(1))
        transport.close()
        await wait(other.lost)
        await wait(proto.lost)
        assert client.fileno() == -1
        server.close()
        await wait(server.wait_closed())
    support.run_guarded(loop, main())


def test_stale_socket_file_is_replaced(loop, sockdir):
    path = str(sockdir / "s.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()  # the file stays
    async def main():
        accepting = Accepting()
        server = await loop.create_unix_server(accepting, path)
        await exchange(loop, server, path, accepting)
        server.close()
        await wait(server.wait_closed())
    support.run_guarded(loop, main())


UNIX_ERROR_CASES = ("regular file at path", "path and sock", "no path no sock",
                    "tcp sock for server", "connect missing", "connect stale", "connect tcp sock")


def unix_error(lp, sockdir, case):
    path = str(sockdir / f"{case.replace(' ', '-')}.sock")
    tcp = socket.socket()
    unix = socket.socket(socket.AF_UNIX)
    masks = {repr(tcp): "<tcp>", repr(unix): "<unix>"}

    async def main():
        try:
            if case == "regular file at path":
                pathlib.Path(path).write_bytes(b"not a socket")
                return await outcome_of(lp.create_unix_server(Recorder, path))
            if case == "path and sock":
                return await outcome_of(lp.create_unix_server(Recorder, path, sock=unix))
            if case == "no path no sock":
                return await outcome_of(lp.create_unix_server(Recorder))
            if case == "tcp sock for server":
                return await outcome_of(lp.create_unix_server(Recorder, sock=tcp))
            if case == "connect missing":
                return await outcome_of(lp.create_unix_connection(Recorder, path))
            if case == "connect stale":
                unix.bind(path)
                return await outcome_of(lp.create_unix_connection(Recorder, path))
            if case == "connect tcp sock":
                return await outcome_of(lp.create_unix_connection(Recorder, sock=tcp))
        finally:
            tcp.close()
            unix.close()
            if os.path.lexists(path):
                os.unlink(path)
    result = support.run_guarded(lp, main())
    if len(result) == 3:
        message = result[2]
        for text, mask in masks.items():
            message = message.replace(text, mask)
        result = result[:2] + (message,)
    return result


@pytest.mark.parametrize("case", UNIX_ERROR_CASES)
def test_unix_errors_as_asyncio(loop, sockdir, case):
    expected = support.run_on_reference(lambda lp: unix_error(lp, sockdir, case))
    assert expected[0] == "raised"
    assert unix_error(loop, sockdir, case) == expected


def stock_has_cleanup_socket():
    return "cleanup_socket" in inspect.signature(
        asyncio.SelectorEventLoop.create_unix_server).parameters


CLEANUP_CASES = ["default", "cleanup_socket=False", "file replaced before close",
                 "file removed before close", "sock= bound by caller"]


def cleanup_scenario(lp, sockdir, case):
    path = str(sockdir / "c.sock")
    async def main():
        kwargs = {"cleanup_socket": False} if case == "cleanup_socket=False" else {}
        if case == "sock= bound by caller":
            lsock = socket.socket(socket.AF_UNIX)
            lsock.bind(path)
            server = await lp.create_unix_server(Recorder, sock=lsock)
        else:
            server = await lp.create_unix_server(Recorder, path, **kwargs)
        if case == "file replaced before close":
            os.unlink(path)
            pathlib.Path(path).write_bytes(b"someone else's")
        elif case == "file removed before close":
            os.unlink(path)
        server.close()
        await wait(server.wait_closed())
        await iterations(2)
        result = os.path.lexists(path), (os.path.lexists(path) and stat.S_ISSOCK(os.lstat(path).st_mode))
        if os.path.lexists(path):
            os.unlink(path)
        return result
    return support.run_guarded(lp, main())


@pytest.mark.parametrize("case", CLEANUP_CASES)
def test_socket_file_after_close_as_asyncio(loop, sockdir, case):
    """Whether the socket file is there after close() and wait_closed():
    as the stock loop of this Python does it (3.13+ removes the file it
    bound unless cleanup_socket=False, and leaves someone else's)."""
    if case == "cleanup_socket=False" and not stock_has_cleanup_socket():
        pytest.skip("create_unix_server has no cleanup_socket before 3.13")
    expected = support.run_on_reference(lambda lp: cleanup_scenario(lp, sockdir, case))
    assert cleanup_scenario(loop, sockdir, case) == expected


def test_unix_server_close_with_connections(loop, sockdir):
    path = str(sockdir / "s.sock")
    async def main():
        accepting = Accepting()
        server = await loop.create_unix_server(accepting, path, start_serving=False)
        assert not server.is_serving()
        await server.start_serving()
        assert server.is_serving()
        transport, proto = await wait(loop.create_unix_connection(Recorder, path))
        other = await accepting.next()
        server.close()
        assert server.sockets == ()
        # The open connection still works after the listener is gone.
        other.transport.write(b"after close")
        assert await wait(proto.until(11)) == b"after close"
        transport.close()
        await wait(other.lost)
        await wait(proto.lost)
        await wait(server.wait_closed())
    support.run_guarded(loop, main())


def test_unix_accepted_peer_addresses_as_asyncio(loop, sockdir):
    """The accepted transports' peername: '' for an unnamed client, the
    path a client bound to, the bytes of an abstract-namespace name; and
    the server's own path as sockname."""
    path = str(sockdir / "s.sock")
    abstract = f"\0goloop-peer-{os.getpid()}".encode()

    def scenario(lp):
        async def main():
            accepting = Accepting()
            server = await lp.create_unix_server(accepting, path)
            clients = []
            for bind_to in (None, str(sockdir / "client.sock"), abstract):
                c = socket.socket(socket.AF_UNIX)
                if bind_to is not None:
                    c.bind(bind_to)
                c.connect(path)
                clients.append(c)
            protos = [await accepting.next() for _ in clients]
            result = sorted((repr(p.transport.get_extra_info("peername")),
                             p.transport.get_extra_info("sockname")) for p in protos)
            for c in clients:
                c.close()
            for p in protos:
                await wait(p.lost)
            os.unlink(sockdir / "client.sock")
            server.close()
            await wait(server.wait_closed())
            return result
        return support.run_guarded(lp, main())

    expected = support.run_on_reference(scenario)
    assert sorted(r[0] for r in expected) == sorted(
        ["''", repr(str(sockdir / "client.sock")), repr(abstract)])
    assert scenario(loop) == expected
