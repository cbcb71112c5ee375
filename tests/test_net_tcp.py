"""TCP: create_connection, create_server, connect_accepted_socket, the
Server object and the stream transport's API, on both loops.

Transport tests run on both ends of a connection: "client" is the transport
create_connection returns, "server" the one a server made for an accepted
connection. The other end is a plain non-blocking socket driven with the
loop's sock_* calls. Per-version differences (Server.wait_closed, 3.12's
all_errors, 3.13's keep_alive and close_clients) are taken from a run of
the same scenario on the stock loop.
"""

import asyncio
import contextlib
import contextvars
import errno
import gc
import io
import math
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import warnings

import pytest

import support
from support import iterations, outcome_of, wait

pytestmark = pytest.mark.fail_fast

Recorder = support.Recorder
SIDES = ("client", "server")


def free_port(family=socket.AF_INET, host="127.0.0.1"):
    with socket.socket(family) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def listening_socket(host="127.0.0.1", family=socket.AF_INET):
    lsock = socket.socket(family)
    lsock.bind((host, 0))
    lsock.listen(16)
    lsock.setblocking(False)
    return lsock


async def recv_exactly(loop, sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = await loop.sock_recv(sock, min(n - len(buf), 2**20))
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


async def recv_until_eof(loop, sock):
    buf = bytearray()
    while True:
        try:
            chunk = await loop.sock_recv(sock, 2**20)
        except ConnectionResetError:
            return bytes(buf), "reset"
        if not chunk:
            return bytes(buf), "eof"
        buf += chunk


async def connected_peer_to(loop, sock):
    """A non-blocking socket connected to the listening socket sock."""
    peer = socket.socket(sock.family)
    peer.setblocking(False)
    await wait(loop.sock_connect(peer, sock.getsockname()))
    return peer


async def connected_peer(loop, server):
    return await connected_peer_to(loop, server.sockets[0])


class Accepting:
    """A protocol factory for create_server that hands out its protocols.

    An error the loop reports (to its exception handler, which is chained)
    while next() waits fails next() at once with that context: a server
    whose transport could not be made for an accepted connection would
    otherwise leave the test waiting out the guard.
    """

    def __init__(self, factory=Recorder):
        self.factory = factory
        self.protocols = []
        self.queue = asyncio.Queue()
        loop = asyncio.get_running_loop()
        previous = loop.get_exception_handler()

        def on_error(lp, context):
            self.queue.put_nowait(context)
            if previous is None:
                lp.default_exception_handler(context)
            else:
                previous(lp, context)

        loop.set_exception_handler(on_error)

    def __call__(self):
        proto = self.factory()
        self.protocols.append(proto)
        self.queue.put_nowait(proto)
        return proto

    async def next(self):
        # 10 s, not GUARD: a loopback accept takes milliseconds, and outside
        # debug mode asyncio's accept path swallows a failure to make the
        # transport, so there is nothing to wait for but the timeout.
        proto = await asyncio.wait_for(self.queue.get(), 10)
        if isinstance(proto, dict):
            raise AssertionError(f"the loop reported an error instead of a connection: "
                                 f"{proto.get('message')!r}: {proto.get('exception')!r}")
        await wait(proto.made)
        return proto


@contextlib.asynccontextmanager
async def connection(loop, side, factory=Recorder):
    """(transport, protocol, peer socket) for one TCP connection."""
    server = None
    if side == "client":
        with listening_socket() as lsock:
            accept = loop.create_task(loop.sock_accept(lsock))
            try:
                transport, proto = await wait(loop.create_connection(factory, *lsock.getsockname()))
            except BaseException:
                # Leave no accepted socket behind for a later test's gc to find.
                accept.cancel()
                await asyncio.gather(accept, return_exceptions=True)
                if not accept.cancelled() and accept.exception() is None:
                    accept.result()[0].close()
                raise
            peer, _ = await wait(accept)
    else:
        accepting = Accepting(factory)
        server = await loop.create_server(accepting, "127.0.0.1", 0)
        try:
            peer = await connected_peer(loop, server)
            proto = await accepting.next()
            transport = proto.transport
        except BaseException:
            server.close()
            if "peer" in locals():
                peer.close()
            raise
    try:
        yield transport, proto, peer
    finally:
        current = transport.get_protocol()  # None once connection_lost ran
        if current is not None:
            # (Not after connection_lost: stock 3.11 fails in abort() then.)
            transport.abort()
            await wait(current.lost)
        peer.close()
        if server is not None:
            server.close()
            await wait(server.wait_closed())


# create_connection.


def test_create_connection_host_port(loop):
    async def main():
        accepting = Accepting()
        server = await loop.create_server(accepting, "127.0.0.1", 0)
        addr = server.sockets[0].getsockname()
        transport, proto = await wait(loop.create_connection(Recorder, *addr))
        assert isinstance(proto, Recorder) and proto.transport is transport
        assert proto.calls == ["made"]  # connection_made ran before create_connection returned
        assert transport.get_extra_info("peername") == addr
        other = await accepting.next()
        assert other.transport.get_extra_info("peername") == transport.get_extra_info("sockname")
        transport.write(b"ping")
        assert await wait(other.until(4)) == b"ping"
        transport.close()
        await wait(proto.lost)
        await wait(other.lost)
        assert proto.calls == ["made", "lost"] and proto.exc is None
        assert other.calls == ["made", "data", "eof", "lost"] and other.exc is None
        server.close()
        await wait(server.wait_closed())
    support.run_guarded(loop, main())


def test_create_connection_sock(loop):
    async def main():
        with listening_socket() as lsock:
            sock = socket.create_connection(lsock.getsockname())
            sock.setblocking(False)
            peer, _ = await wait(loop.sock_accept(lsock))
        with peer:
            transport, proto = await wait(loop.create_connection(Recorder, sock=sock))
            assert transport.get_extra_info("socket").fileno() == sock.fileno()
            await loop.sock_sendall(peer, b"via sock")
            assert await wait(proto.until(8)) == b"via sock"
            transport.close()
            await wait(proto.lost)
            assert sock.fileno() == -1  # the transport closed the socket it was given
    support.run_guarded(loop, main())


def test_create_connection_local_addr_and_family(loop):
    async def main():
        with listening_socket() as lsock:
            port = free_port()
            transport, proto = await wait(loop.create_connection(
                Recorder, "localhost", lsock.getsockname()[1],
                local_addr=("127.0.0.1", port), family=socket.AF_INET))
            peer, addr = await wait(loop.sock_accept(lsock))
            peer.close()
            assert transport.get_extra_info("sockname") == ("127.0.0.1", port) == addr
            assert transport.get_extra_info("socket").family == socket.AF_INET
            transport.close()
            await wait(proto.lost)
    support.run_guarded(loop, main())


def test_create_connection_ipv6(loop):
    async def main():
        try:
            lsock = listening_socket("::1", socket.AF_INET6)
        except OSError as exc:
            pytest.skip(f"no IPv6 loopback: {exc}")
        with lsock:
            transport, proto = await wait(loop.create_connection(
                Recorder, "::1", lsock.getsockname()[1], family=socket.AF_INET6))
            peer, _ = await wait(loop.sock_accept(lsock))
            peer.close()
            assert transport.get_extra_info("peername")[:2] == lsock.getsockname()[:2]
            transport.close()
            await wait(proto.lost)
    support.run_guarded(loop, main())


def test_create_connection_happy_eyeballs(loop):
    """happy_eyeballs_delay and interleave with a name: the first address
    that answers wins; a refused address before it is skipped."""
    async def main():
        with listening_socket() as lsock:
            port = lsock.getsockname()[1]
            transport, proto = await wait(loop.create_connection(
                Recorder, "localhost", port, happy_eyeballs_delay=0.05, interleave=1))
            peer, _ = await wait(loop.sock_accept(lsock))
            peer.close()
            assert transport.get_extra_info("peername") == ("127.0.0.1", port)
            transport.close()
            await wait(proto.lost)
    support.run_guarded(loop, main())


@pytest.mark.skipif(sys.version_info < (3, 12), reason="all_errors is new in 3.12")
def test_create_connection_all_errors(loop):
    port = free_port()

    def scenario(lp):
        async def main():
            try:
                await lp.create_connection(Recorder, "127.0.0.1", port, all_errors=True)
            except Exception as exc:
                return (type(exc), [(type(e), str(e)) for e in getattr(exc, "exceptions", [])])
        return support.run_guarded(lp, main())

    expected = support.run_on_reference(scenario)
    assert expected[0] is ExceptionGroup and expected[1][0][0] is ConnectionRefusedError
    assert scenario(loop) == expected


def argument_error(lp, case):
    async def main():
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tcp = socket.socket()
        try:
            kwargs = {
                "nothing": {},
                "sock and host": {"host": "127.0.0.1", "port": 1, "sock": tcp},
                "udp sock": {"sock": udp},
                "handshake timeout without ssl": {"host": "127.0.0.1", "port": 1,
                                                  "ssl_handshake_timeout": 1.0},
                "server_hostname without ssl": {"host": "127.0.0.1", "port": 1,
                                                "server_hostname": "x"},
                "ssl bool with sock": {"sock": udp, "ssl": False, "server_hostname": "x"},
            }[case]
            return await outcome_of(lp.create_connection(Recorder, **kwargs))
        finally:
            udp.close()
            tcp.close()
    return support.run_guarded(lp, main())


@pytest.mark.parametrize("case", [
    "nothing", "sock and host", "udp sock", "handshake timeout without ssl",
    "server_hostname without ssl", "ssl bool with sock"])
def test_create_connection_argument_errors_as_asyncio(loop, case):
    expected = support.run_on_reference(lambda lp: argument_error(lp, case))
    assert expected[0] == "raised"
    assert argument_error(loop, case) == expected


# create_server and the Server object.


def test_create_server_port_zero(loop):
    async def main():
        server = await loop.create_server(Recorder, "127.0.0.1", 0)
        assert server.get_loop() is loop
        assert server.is_serving()
        (sock,) = server.sockets
        assert isinstance(sock, asyncio.trsock.TransportSocket)
        host, port = sock.getsockname()
        assert host == "127.0.0.1" and port != 0
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
        peer = await connected_peer(loop, server)
        peer.close()
        server.close()
        assert not server.is_serving()
        assert server.sockets == ()
        await wait(server.wait_closed())
    support.run_guarded(loop, main())


def test_create_server_host_list(loop):
    async def main():
        hosts = ["127.0.0.1"]
        if socket.has_ipv6:
            try:
                listening_socket("::1", socket.AF_INET6).close()
                hosts.append("::1")
            except OSError:
                pass
        accepting = Accepting()
        server = await loop.create_server(accepting, hosts, 0)
        assert sorted(s.getsockname()[0] for s in server.sockets) == sorted(hosts)
        for sock in server.sockets:
            peer = await connected_peer_to(loop, sock)
            proto = await accepting.next()
            await loop.sock_sendall(peer, b"x")
            await wait(proto.until(1))
            peer.close()
            await wait(proto.lost)
        server.close()
        await wait(server.wait_closed())
    support.run_guarded(loop, main())


def test_create_server_all_interfaces_as_asyncio(loop):
    def scenario(lp):
        async def serve_anywhere():
            # A port free on 127.0.0.1 may be taken on another address by
            # a process running meanwhile: choose again then.
            for _ in range(10):
                try:
                    return await lp.create_server(Recorder, None, free_port())
                except OSError as exc:
                    if exc.errno != errno.EADDRINUSE:
                        raise
            raise AssertionError("no port free on every interface in 10 tries")

        async def main():
            server = await serve_anywhere()
            families = sorted(s.family for s in server.sockets)
            hosts = sorted(s.getsockname()[0] for s in server.sockets)
            server.close()
            await wait(server.wait_closed())
            return families, hosts
        return support.run_guarded(lp, main())

    assert scenario(loop) == support.run_on_reference(scenario)


def test_create_server_sock(loop):
    async def main():
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))  # bound, not listening yet: the server listens
        accepting = Accepting()
        server = await loop.create_server(accepting, sock=sock)
        assert [s.fileno() for s in server.sockets] == [sock.fileno()]
        peer = await connected_peer(loop, server)
        proto = await accepting.next()
        peer.close()
        await wait(proto.lost)
        server.close()
        await wait(server.wait_closed())
        assert sock.fileno() == -1
    support.run_guarded(loop, main())


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss(8) to read a listen backlog")
def test_create_server_backlog(loop):
    async def main():
        server = await loop.create_server(Recorder, "127.0.0.1", 0, backlog=7)
        port = server.sockets[0].getsockname()[1]
        out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True,
                             text=True, check=True).stdout.split()
        server.close()
        await wait(server.wait_closed())
        assert out[0] == "LISTEN" and out[2] == "7", out  # Send-Q of a listener: its backlog
    support.run_guarded(loop, main())


def test_create_server_socket_options_as_asyncio(loop):
    """SO_REUSEADDR (reuse_address default and False), SO_REUSEPORT, and on
    3.13+ SO_KEEPALIVE (keep_alive), on the listener and on an accepted
    connection, as the stock loop sets them."""
    options = [("reuse_address", socket.SO_REUSEADDR), ("reuse_port", socket.SO_REUSEPORT),
               ("keep_alive", socket.SO_KEEPALIVE)]
    variants = [{}, {"reuse_address": False}, {"reuse_address": True}, {"reuse_port": True}]
    if sys.version_info >= (3, 13):
        variants += [{"keep_alive": True}, {"keep_alive": False}]

    def scenario(lp):
        async def main():
            seen = []
            for kwargs in variants:
                accepting = Accepting()
                server = await lp.create_server(accepting, "127.0.0.1", 0, **kwargs)
                peer = await connected_peer(lp, server)
                proto = await accepting.next()
                conn = proto.transport.get_extra_info("socket")
                seen.append([(kwargs, name, bool(s.getsockopt(socket.SOL_SOCKET, opt)))
                             for name, opt in options for s in (server.sockets[0], conn)])
                peer.close()
                await wait(proto.lost)
                server.close()
                await wait(server.wait_closed())
            return seen
        return support.run_guarded(lp, main())

    assert scenario(loop) == support.run_on_reference(scenario)


def test_create_server_reuse_port_shares_port(loop):
    async def main():
        port = free_port()
        first = await loop.create_server(Recorder, "127.0.0.1", port, reuse_port=True)
        second = await loop.create_server(Recorder, "127.0.0.1", port, reuse_port=True)
        assert first.sockets[0].getsockname() == second.sockets[0].getsockname()
        with pytest.raises(OSError):
            await loop.create_server(Recorder, "127.0.0.1", port)
        for server in (first, second):
            server.close()
            await wait(server.wait_closed())
    support.run_guarded(loop, main())


def test_create_server_address_in_use_as_asyncio(loop):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]

        def scenario(lp):
            return support.run_guarded(lp, outcome_of(lp.create_server(Recorder, "127.0.0.1", port)))

        expected = support.run_on_reference(scenario)
        assert expected[1] is OSError
        assert scenario(loop) == expected


def test_start_serving_false_then_start_serving(loop):
    def scenario(lp):
        async def main():
            steps = []
            accepting = Accepting()
            server = await lp.create_server(accepting, "127.0.0.1", 0, start_serving=False)
            steps.append(("serving", server.is_serving()))
            with socket.socket() as probe:
                probe.setblocking(False)
                result = await outcome_of(lp.sock_connect(probe, server.sockets[0].getsockname()))
                steps.append(("connect before", result[:2]))
            await server.start_serving()
            steps.append(("serving", server.is_serving()))
            peer = await connected_peer(lp, server)
            proto = await accepting.next()
            steps.append(("accepted", proto.calls))
            await server.start_serving()  # a second call is a no-op
            peer.close()
            await wait(proto.lost)
            server.close()
            await wait(server.wait_closed())
            return steps
        return support.run_guarded(lp, main())

    expected = support.run_on_reference(scenario)
    assert expected[0] == ("serving", False) and expected[2] == ("serving", True)
    assert scenario(loop) == expected


def test_serve_forever_and_cancellation(loop):
    async def main():
        accepting = Accepting()
        server = await loop.create_server(accepting, "127.0.0.1", 0, start_serving=False)
        task = loop.create_task(server.serve_forever())
        await iterations(2)
        assert server.is_serving()
        again = await outcome_of(server.serve_forever())
        assert again == ("raised", RuntimeError, re.sub(
            r"fd=\d+", "fd=N", f"server {server!r} is already being awaited on serve_forever()"))
        peer = await connected_peer(loop, server)
        proto = await accepting.next()
        peer.close()
        await wait(proto.lost)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await wait(task)
        assert not server.is_serving()
        assert server.sockets == ()
        closed = await outcome_of(server.serve_forever())
        assert closed == ("raised", RuntimeError, f"server {server!r} is closed")
        await wait(server.wait_closed())
    support.run_guarded(loop, main())


def test_server_close_and_wait_closed_as_asyncio(loop):
    """After close(): not serving, no sockets, new connections refused;
    whether wait_closed() waits for the open connection is per version."""
    def scenario(lp):
        async def main():
            steps = []
            accepting = Accepting()
            server = await lp.create_server(accepting, "127.0.0.1", 0)
            addr = server.sockets[0].getsockname()
            peer = await connected_peer(lp, server)
            proto = await accepting.next()
            pending_wait = lp.create_task(server.wait_closed())
            await iterations(3)
            steps.append(("wait_closed done while serving", pending_wait.done()))
            server.close()
            steps.append(("after close", server.is_serving(), server.sockets))
            with socket.socket() as probe:
                probe.setblocking(False)
                steps.append(("connect", (await outcome_of(lp.sock_connect(probe, addr)))[:2]))
            await iterations(3)
            steps.append(("wait_closed done with a connection open", pending_wait.done()))
            late_wait = lp.create_task(server.wait_closed())
            await iterations(3)
            steps.append(("late wait_closed done", late_wait.done()))
            proto.transport.write(b"still open")
            steps.append(("peer got", await recv_exactly(lp, peer, 10)))
            peer.close()
            await wait(proto.lost)
            await wait(pending_wait)
            await wait(late_wait)
            await wait(server.wait_closed())
            server.close()  # again: a no-op
            return steps
        return support.run_guarded(lp, main())

    expected = support.run_on_reference(scenario)
    assert expected[1] == ("after close", False, ())
    assert expected[2] == ("connect", ("raised", ConnectionRefusedError))
    assert scenario(loop) == expected


def test_server_async_context_manager(loop):
    async def main():
        accepting = Accepting()
        async with await loop.create_server(accepting, "127.0.0.1", 0) as server:
            assert server.is_serving()
            peer = await connected_peer(loop, server)
            proto = await accepting.next()
            peer.close()
            await wait(proto.lost)
        assert not server.is_serving()
        assert server.sockets == ()
    support.run_guarded(loop, main())


@pytest.mark.skipif(sys.version_info < (3, 13), reason="close_clients/abort_clients are 3.13+")
@pytest.mark.parametrize("method", ["close_clients", "abort_clients"])
def test_server_close_or_abort_clients(loop, method):
    def scenario(lp):
        async def main():
            accepting = Accepting()
            server = await lp.create_server(accepting, "127.0.0.1", 0)
            peers, protos = [], []
            for _ in range(3):
                peers.append(await connected_peer(lp, server))
                protos.append(await accepting.next())
            for proto in protos:
                proto.transport.write(b"bye")
            server.close()
            getattr(server, method)()
            results = []
            for proto, peer in zip(protos, peers):
                await wait(proto.lost)
                data, end = await wait(recv_until_eof(lp, peer))
                results.append((proto.calls, proto.exc, data, end))
                peer.close()
            await wait(server.wait_closed())
            return results
        return support.run_guarded(lp, main())

    expected = support.run_on_reference(scenario)
    assert all(r[0] == ["made", "lost"] and r[1] is None for r in expected)
    assert scenario(loop) == expected


# The accept path: what asyncio's _accept_connection and _accept_connection2
# do for each connection (goloop: the Go core accepts, listener.c serves).


def blocking_clients(server, n):
    """n clients connected before the loop runs again: the kernel completes
    the handshakes, so the connections wait in the listener's queue."""
    addr = server.sockets[0].getsockname()[:2]
    return [socket.create_connection(addr, timeout=support.GUARD) for _ in range(n)]


async def close_all(server, clients, protos):
    """The clients close, their connections are lost, then the server
    closes."""
    for c in clients:
        c.close()
    for p in protos:
        await wait(p.lost)
    server.close()
    await wait(server.wait_closed())


async def accept_one(loop, factory=Recorder):
    """A server accepts one client, which closes; then the server closes."""
    accepting = Accepting(factory)
    server = await loop.create_server(accepting, "127.0.0.1", 0)
    (client,) = blocking_clients(server, 1)
    await close_all(server, [client], [await accepting.next()])


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_accept_burst(loop, host):
    """Connections queued at once are all accepted, each with its own
    protocol and transport, with asyncio's extra info (IPv6 addresses with
    their flow info and scope id) and TCP_NODELAY."""
    if host == "::1":
        try:
            listening_socket("::1", socket.AF_INET6).close()
        except OSError as exc:
            pytest.skip(f"no IPv6 loopback: {exc}")

    def scenario(lp):
        async def main():
            accepting = Accepting()
            server = await lp.create_server(accepting, host, 0)
            clients = blocking_clients(server, 40)
            protos = [await accepting.next() for _ in clients]
            peers = sorted(p.transport.get_extra_info("peername") for p in protos)
            socks = [p.transport.get_extra_info("socket") for p in protos]
            facts = {
                "peernames are the clients'": peers == sorted(c.getsockname() for c in clients),
                "socknames": {p.transport.get_extra_info("sockname") for p in protos}
                == {server.sockets[0].getsockname()},
                "socket": {type(s).__name__ for s in socks},
                "nodelay": {s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
                            for s in socks},
                "timeout": {s.gettimeout() for s in socks},
                "family/type/proto": {(s.family, s.type, s.proto) for s in socks},
                "calls": {tuple(p.calls) for p in protos},
                "distinct transports": len({id(p.transport) for p in protos}),
            }
            await close_all(server, clients, protos)
            return facts
        return support.run_guarded(lp, main())

    expected = support.run_on_reference(scenario)
    assert expected["peernames are the clients'"] and expected["distinct transports"] == 40
    assert scenario(loop) == expected


def test_accept_without_tcp_proto_leaves_nagle_on(loop):
    """asyncio sets TCP_NODELAY only on sockets whose proto is IPPROTO_TCP:
    a listener made with socket.socket() (proto 0) gives sockets without."""
    def scenario(lp):
        async def main():
            accepting = Accepting()
            lsock = listening_socket()
            server = await lp.create_server(accepting, sock=lsock)
            (client,) = blocking_clients(server, 1)
            proto = await accepting.next()
            sock = proto.transport.get_extra_info("socket")
            result = (sock.proto, sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            client.close()
            await wait(proto.lost)
            server.close()
            await wait(server.wait_closed())
            return result
        return support.run_guarded(lp, main())

    assert scenario(loop) == support.run_on_reference(scenario)


@pytest.mark.parametrize("debug", [False, True])
def test_accept_protocol_factory_raising(loop, debug):
    """A failing protocol factory: the accepted connection is closed, the
    exception handler hears of it in debug mode only, and the server keeps
    serving."""
    def scenario(lp):
        async def main():
            lp.set_debug(debug)
            reports = []
            lp.set_exception_handler(lambda _, ctx: reports.append(
                (ctx["message"], type(ctx.get("exception")).__name__, sorted(ctx))))
            made = []

            def factory():
                if not made:
                    made.append("failed")
                    raise ZeroDivisionError("no protocol")
                proto = Recorder()
                made.append(proto)
                return proto

            server = await lp.create_server(factory, "127.0.0.1", 0)
            first = await connected_peer(lp, server)
            while not made:
                await asyncio.sleep(0)
            await iterations(3)
            # asyncio leaves the accepted socket to the garbage collector
            # (in a reference cycle with the exception in debug mode); goloop
            # has closed it.
            gc.collect()
            outcome = await wait(recv_until_eof(lp, first))
            first.close()
            second = await connected_peer(lp, server)
            while len(made) < 2:
                await asyncio.sleep(0)
            proto = made[1]
            await wait(proto.made)
            second.close()
            await wait(proto.lost)
            server.close()
            await wait(server.wait_closed())
            lp.set_debug(False)
            return outcome, reports, proto.calls
        # asyncio's accepted socket, left to the garbage collector, warns.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            return support.run_guarded(lp, main())

    expected = support.run_on_reference(scenario)
    assert expected[0] == (b"", "eof")
    assert len(expected[1]) == (1 if debug else 0)
    assert scenario(loop) == expected


@pytest.mark.parametrize("debug", [False, True])
def test_server_closed_by_the_protocol_factory_mid_burst(loop, debug):
    """A burst is accepted in one go before any connection is served, so a
    protocol factory closing the server cannot undo it: each connection
    still gets its protocol, and then fails Server._attach()'s assertion
    (reported in debug mode), its socket closed; none is reset."""
    def scenario(lp):
        async def main():
            lp.set_debug(debug)
            reports = []
            lp.set_exception_handler(lambda _, ctx: reports.append(
                (ctx["message"], type(ctx.get("exception")).__name__)))
            protos = []

            def factory():
                server.close()
                proto = Recorder()
                protos.append(proto)
                return proto

            server = await lp.create_server(factory, "127.0.0.1", 0)
            clients = blocking_clients(server, 3)
            await wait(server.wait_closed())
            while len(protos) < 3:
                await asyncio.sleep(0)
            await iterations(3)
            # asyncio leaves each socket to the transport's __del__.
            gc.collect()
            outcomes = []
            for c in clients:
                c.setblocking(False)
                outcomes.append(await wait(recv_until_eof(lp, c)))
                c.close()
            lp.set_debug(False)
            return [p.calls for p in protos], reports, outcomes

        # asyncio's half-made transports warn, and 3.13+'s __del__ fails
        # in Server._detach(); goloop's do neither.
        hook = sys.unraisablehook
        sys.unraisablehook = lambda _: None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ResourceWarning)
                return support.run_guarded(lp, main())
        finally:
            sys.unraisablehook = hook

    expected = support.run_on_reference(scenario)
    report = ("Error on transport creation for incoming connection", "AssertionError")
    assert expected == ([[]] * 3, [report] * 3 if debug else [], [(b"", "eof")] * 3)
    assert scenario(loop) == expected


@pytest.mark.parametrize("then", ["nothing", "close"])
def test_accept_behind_callbacks_ready_before_the_poll(loop, then):
    """A connection waiting at the poll is accepted behind the callbacks
    that were ready before it, where asyncio's _process_events queues the
    listener's reader handle: the protocol factory runs after them, and not
    at all if one of them closes the server (the client is reset)."""
    def scenario(lp):
        log, protos = [], []

        def factory():
            log.append("factory")
            protos.append(Recorder())
            return protos[-1]

        async def main():
            server = await lp.create_server(factory, "127.0.0.1", 0)
            (client,) = blocking_clients(server, 1)
            support.wait_readable(server.sockets[0].fileno())

            def callback():
                log.append("callback")
                if then == "close":
                    server.close()

            lp.call_soon(callback)
            await iterations(3)
            client.setblocking(False)
            if then == "close":
                outcome = await wait(recv_until_eof(lp, client))
                client.close()
            else:
                while not protos:
                    await asyncio.sleep(0)
                client.close()
                await wait(protos[0].lost)
                outcome = protos[0].calls
            server.close()
            await wait(server.wait_closed())
            return log, outcome
        return support.run_guarded(lp, main())

    expected = support.run_on_reference(scenario)
    assert expected == ((["callback", "factory"], ["made", "eof", "lost"]) if then == "nothing"
                        else (["callback"], (b"", "reset")))
    assert scenario(loop) == expected


@pytest.mark.parametrize("exc", [KeyboardInterrupt, SystemExit])
def test_accept_burst_stopped_by_the_protocol_factory(loop, exc):
    """A KeyboardInterrupt or SystemExit from the protocol factory of the
    first of a burst of connections stops the loop, and the others are
    served when it runs again, first thing, as asyncio's Tasks for them
    stay queued: their factories run before the next main task's first
    step. The first connection is closed (asyncio leaves it to the garbage
    collector)."""
    class Echo(Recorder):
        def connection_made(self, transport):
            log.append("made")
            super().connection_made(transport)

        def data_received(self, data):
            super().data_received(data)
            self.transport.write(data)

    def factory():
        log.append("factory")
        if log.count("factory") == 1:
            raise exc
        protos.append(Echo())
        return protos[-1]

    def scenario(lp):
        log.clear()
        protos.clear()
        reports = []
        lp.set_exception_handler(lambda _, ctx: reports.append(ctx["message"]))
        server = lp.run_until_complete(lp.create_server(factory, "127.0.0.1", 0))
        clients = blocking_clients(server, 3)
        for c in clients:
            c.setblocking(False)
        try:
            support.run_guarded(lp, lp.create_future())
        except exc:
            log.append(exc.__name__)

        async def main():
            log.append("main")
            # asyncio's first socket is in a cycle with the exception.
            gc.collect()
            outcomes = [await wait(recv_until_eof(lp, clients[0]))]
            for c in clients[1:]:
                await lp.sock_sendall(c, b"ping")
                outcomes.append(await wait(recv_exactly(lp, c, 4)))
            await close_all(server, clients, protos)
            return outcomes

        outcomes = support.run_guarded(lp, main())
        # The Task asyncio's factory failed in was never awaited.
        reports = [r for r in reports if r != "Task exception was never retrieved"]
        return log, outcomes, reports

    log, protos = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        expected = support.run_on_reference(scenario)
        assert expected == (
            ["factory", exc.__name__, "factory", "factory", "main", "made", "made"],
            [(b"", "eof"), b"ping", b"ping"], [])
        assert scenario(loop) == expected


@pytest.mark.parametrize("close_server", [False, True])
def test_accept_burst_stopped_then_loop_closed(loop, close_server):
    """The connections a KeyboardInterrupt from the protocol factory left
    unserved are closed with the loop, or the server, if the loop does not
    run again: no other factory runs, and the clients see EOF."""
    def scenario(lp):
        made = []

        def factory():
            made.append("factory")
            raise KeyboardInterrupt

        lp.set_exception_handler(lambda *_: None)
        server = lp.run_until_complete(lp.create_server(factory, "127.0.0.1", 0))
        clients = blocking_clients(server, 3)
        with pytest.raises(KeyboardInterrupt):
            support.run_guarded(lp, lp.create_future())
        if close_server:
            server.close()
        lp.close()
        # asyncio's sockets are in its dropped Tasks, the first in a cycle.
        gc.collect()
        outcomes = []
        for c in clients:
            outcomes.append(c.recv(16))
            c.close()
        server.close()
        return made, outcomes

    # asyncio's dropped Tasks and their sockets warn and log.
    hook = sys.unraisablehook
    sys.unraisablehook = lambda _: None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            expected = support.run_on_reference(scenario)
            assert expected == (["factory"], [b""] * 3)
            assert scenario(loop) == expected
    finally:
        sys.unraisablehook = hook


def test_slow_accept_is_logged(loop, asyncio_log):
    """Debug mode times the accept as asyncio times its reader handle,
    _accept_connection (named with its arguments), and connection_made as
    the handle it is called in."""
    loop.set_debug(True)
    loop.slow_callback_duration = 0.0
    support.run_guarded(loop, accept_one(loop))
    # (reprlib shortens the arguments)
    support.assert_logged_slow(asyncio_log.records,
                               r"BaseSelectorEventLoop\._accept_connection\(.+, 100, .+\)",
                               r"Recorder\.connection_made\(<.+>\)")


def test_slow_protocol_factory_is_logged(loop, asyncio_log):
    """A protocol factory slower than slow_callback_duration is reported,
    as part of the accept (goloop: the _accept_connection handle) or of
    asyncio's Task that runs it (_accept_connection2)."""
    loop.set_debug(True)
    loop.slow_callback_duration = 0.05

    def factory():
        end = time.monotonic() + 0.06
        while time.monotonic() < end:
            pass
        return Recorder()

    support.run_guarded(loop, accept_one(loop, factory))
    took = [float(m.group(1)) for r in asyncio_log.records
            if (m := re.fullmatch(r"Executing <.*\._accept_connection2?\(.*> took (\d+\.\d{3}) "
                                  r"seconds", r.getMessage()))]
    assert len(took) == 1 and took[0] >= 0.05, [r.getMessage() for r in asyncio_log.records]


def test_server_close_with_connections_queued(loop):
    """close() with connections still in the listener's queue: none is
    accepted, the clients are reset, wait_closed() returns."""
    def scenario(lp):
        async def main():
            made = []
            server = await lp.create_server(lambda: made.append(1) or Recorder(), "127.0.0.1", 0)
            clients = blocking_clients(server, 5)
            server.close()
            await wait(server.wait_closed())
            outcomes = []
            for c in clients:
                c.setblocking(False)
                outcomes.append(await wait(recv_until_eof(lp, c)))
                c.close()
            await iterations(3)
            return made, outcomes
        return support.run_guarded(lp, main())

    expected = support.run_on_reference(scenario)
    assert expected == ([], [(b"", "reset")] * 5)
    assert scenario(loop) == expected


def test_server_close_and_wait_closed_with_live_clients(loop):
    """close() with three connections open: they go on working; whether
    wait_closed() waits for the last of them is per version."""
    def scenario(lp):
        async def main():
            accepting = Accepting()
            server = await lp.create_server(accepting, "127.0.0.1", 0)
            peers = [await connected_peer(lp, server) for _ in range(3)]
            protos = [await accepting.next() for _ in peers]
            server.close()
            waiting = lp.create_task(server.wait_closed())
            steps = [("serving", server.is_serving(), server.sockets)]
            for proto, peer in zip(protos, peers):
                proto.transport.write(b"open")
                got = await recv_exactly(lp, peer, 4)
                await iterations(3)
                steps.append((got, waiting.done()))
                peer.close()
                await wait(proto.lost)
                await iterations(3)
                steps.append(("closed one", waiting.done()))
            await wait(waiting)
            return steps
        return support.run_guarded(lp, main())

    assert scenario(loop) == support.run_on_reference(scenario)


def test_accept_runs_the_protocol_factory_in_a_context_copy(loop):
    """The factory runs in a copy of the context create_server ran in, as
    asyncio's Task per connection does: what it sets is seen by
    connection_made and goes no further."""
    var = contextvars.ContextVar("var", default="unset")

    def scenario(lp):
        async def main():
            var.set("server")
            seen = []

            class Proto(Recorder):
                def __init__(self):
                    seen.append(("factory", var.get()))
                    var.set("factory")
                    super().__init__()

                def connection_made(self, transport):
                    seen.append(("made", var.get()))
                    super().connection_made(transport)

            accepting = Accepting(Proto)
            server = await lp.create_server(accepting, "127.0.0.1", 0)
            var.set("later")
            peer = await connected_peer(lp, server)
            proto = await accepting.next()
            seen.append(("main", var.get()))
            peer.close()
            await wait(proto.lost)
            server.close()
            await wait(server.wait_closed())
            return seen
        return support.run_guarded(lp, main())

    expected = support.run_on_reference(scenario)
    assert expected == [("factory", "server"), ("made", "factory"), ("main", "later")]
    assert scenario(loop) == expected


def test_connect_accepted_socket(loop):
    async def main():
        with listening_socket() as lsock:
            client = socket.create_connection(lsock.getsockname())
            conn, _ = lsock.accept()
        with client:
            transport, proto = await wait(loop.connect_accepted_socket(Recorder, conn))
            assert proto.calls == ["made"]
            assert transport.get_extra_info("peername") == client.getsockname()
            client.sendall(b"hello")
            assert await wait(proto.until(5)) == b"hello"
            transport.write(b"back")
            client.settimeout(support.GUARD)
            assert client.recv(10) == b"back"
            client.shutdown(socket.SHUT_WR)
            await wait(proto.lost)
            assert proto.calls == ["made", "data", "eof", "lost"]
    support.run_guarded(loop, main())


def test_connect_accepted_socket_rejects_datagram_socket(loop):
    def scenario(lp):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            return support.run_guarded(lp, outcome_of(lp.connect_accepted_socket(Recorder, udp)))

    expected = support.run_on_reference(scenario)
    assert expected[1] is ValueError
    assert scenario(loop) == expected


# The transport API, on both ends of a connection.


@pytest.mark.parametrize("side", SIDES)
def test_write_and_writelines(loop, side):
    async def main():
        async with connection(loop, side) as (transport, proto, peer):
            transport.write(b"abc")
            transport.write(bytearray(b"def"))
            transport.write(memoryview(b"xxghix")[2:5])
            transport.write(b"")
            transport.writelines([b"jk", bytearray(b"lm"), memoryview(b"no")])
            transport.writelines([])
            assert await wait(recv_exactly(loop, peer, 15)) == b"abcdefghijklmno"
            assert proto.calls == ["made"]
    support.run_guarded(loop, main())


@pytest.mark.parametrize("side", SIDES)
def test_write_type_errors_as_asyncio(loop, side):
    def scenario(lp):
        async def main():
            async with connection(lp, side) as (transport, proto, peer):
                return [support.outcome(transport.write, "text"),
                        support.outcome(transport.write, 12),
                        support.outcome(transport.writelines, [b"ok", "text"]),
                        transport.is_closing()]
        return support.run_guarded(lp, main())

    expected = support.run_on_reference(scenario)
    assert expected[0][1] is TypeError
    assert scenario(loop) == expected


@pytest.mark.parametrize("side", SIDES)
def test_write_eof(loop, side):
    async def main():
        async with connection(loop, side, lambda: Recorder(eof_result=None)) as (transport, proto, peer):
            assert transport.can_write_eof() is True
            payload = os.urandom(4 * 2**20)  # more than the socket buffers: part is queued
            transport.set_write_buffer_limits(high=len(payload))  # no pause_writing here
            transport.write(payload)
            transport.write_eof()
            transport.write_eof()  # a no-op
            assert not transport.is_closing()
            assert support.outcome(transport.write, b"late") == (
                "raised", RuntimeError, "Cannot call write() after write_eof()")
            data, end = await wait(recv_until_eof(loop, peer))
            assert (len(data), end) == (len(payload), "eof") and data == payload
            # The read half still works.
            await loop.sock_sendall(peer, b"reply")
            assert await wait(proto.until(5)) == b"reply"
            peer.shutdown(socket.SHUT_WR)
            assert await wait(proto.lost) is None
            assert proto.calls == ["made", "data", "eof", "lost"]
    support.run_guarded(loop, main())


@pytest.mark.parametrize("side", SIDES)
def test_close(loop, side):
    async def main():
        async with connection(loop, side) as (transport, proto, peer):
            assert not transport.is_closing() and transport.is_reading()
            transport.write(b"last words")
            transport.close()
            assert transport.is_closing()
            assert not transport.is_reading()
            transport.close()  # a no-op
            assert await wait(recv_until_eof(loop, peer)) == (b"last words", "eof")
            assert await wait(proto.lost) is None
            await iterations(3)
            assert proto.calls == ["made", "lost"]
            assert transport.get_write_buffer_size() == 0
    support.run_guarded(loop, main())


@pytest.mark.parametrize("side", SIDES)
def test_abort(loop, side):
    async def main():
        async with connection(loop, side) as (transport, proto, peer):
            transport.abort()
            assert transport.is_closing()
            assert await wait(proto.lost) is None
            transport.abort()
            transport.close()
            await iterations(3)
            assert proto.calls == ["made", "lost"]
            data, _ = await wait(recv_until_eof(loop, peer))
            assert data == b""
    support.run_guarded(loop, main())


@pytest.mark.parametrize("side", SIDES)
def test_get_extra_info(loop, side):
    async def main():
        async with connection(loop, side) as (transport, proto, peer):
            sock = transport.get_extra_info("socket")
            assert isinstance(sock, asyncio.trsock.TransportSocket)
            assert sock.family == socket.AF_INET and sock.type == socket.SOCK_STREAM
            assert transport.get_extra_info("sockname") == sock.getsockname() == peer.getpeername()
            assert transport.get_extra_info("peername") == sock.getpeername() == peer.getsockname()
            assert transport.get_extra_info("no such key") is None
            assert transport.get_extra_info("no such key", 42) == 42
            assert transport.get_protocol() is proto
    support.run_guarded(loop, main())


@pytest.mark.parametrize("side", SIDES)
def test_get_extra_info_after_reset(loop, side):
    # Nothing asks for the extra info while the connection is up; after the
    # peer reset it and the transport closed its socket, the addresses are
    # still there (goloop makes the extra dict only when asked, or before
    # the socket closes).
    async def main():
        async with connection(loop, side) as (transport, proto, peer):
            sockname, peername = peer.getpeername(), peer.getsockname()
            peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            peer.close()
            await wait(proto.lost)
            assert isinstance(proto.exc, ConnectionResetError)
            assert transport.get_extra_info("peername") == peername
            assert transport.get_extra_info("sockname") == sockname
            sock = transport.get_extra_info("socket")
            assert isinstance(sock, asyncio.trsock.TransportSocket) and sock.fileno() == -1
            extra = transport._extra
            assert (extra["peername"], extra["sockname"], extra["socket"]) == (
                peername, sockname, sock)
            assert transport.get_extra_info("no such key", 42) == 42
    support.run_guarded(loop, main())


@pytest.mark.parametrize("side", SIDES)
def test_pause_and_resume_reading(loop, side):
    async def main():
        async with connection(loop, side) as (transport, proto, peer):
            assert transport.is_reading()
            transport.pause_reading()
            transport.pause_reading()  # idempotent
            assert not transport.is_reading()
            await loop.sock_sendall(peer, b"held")
            support.wait_readable(transport.get_extra_info("socket").fileno())
            await iterations(5)
            assert proto.calls == ["made"]  # the data is there but not delivered
            transport.resume_reading()
            transport.resume_reading()
            assert transport.is_reading()
            assert await wait(proto.until(4)) == b"held"
            # EOF waits for resume_reading too.
            transport.pause_reading()
            peer.shutdown(socket.SHUT_WR)
            support.wait_readable(transport.get_extra_info("socket").fileno())
            await iterations(5)
            assert proto.calls == ["made", "data"]
            transport.resume_reading()
            await wait(proto.lost)
            assert proto.calls == ["made", "data", "eof", "lost"]
            assert not transport.is_reading()
    support.run_guarded(loop, main())


def test_write_buffer_limits_as_asyncio(loop):
    def scenario(lp):
        async def main():
            async with connection(lp, "client") as (transport, proto, peer):
                results = [transport.get_write_buffer_limits(), transport.get_write_buffer_size()]
                for kwargs in ({"high": 100}, {"low": 10}, {"high": 50, "low": 20},
                               {"high": 0}, {"high": 0, "low": 0}, {}, {"high": 10, "low": 20},
                               {"high": -1}, {"low": -1}):
                    results.append((kwargs, support.outcome(transport.set_write_buffer_limits, **kwargs),
                                    transport.get_write_buffer_limits()))
                transport.set_write_buffer_limits(1000, 100)
                results.append(transport.get_write_buffer_limits())
                return results
        return support.run_guarded(lp, main())

    expected = support.run_on_reference(scenario)
    assert expected[0] == (16384, 65536)
    assert scenario(loop) == expected


@pytest.mark.parametrize("side", SIDES)
def test_flow_control_at_water_marks(loop, side):
    """A peer that does not read: pause_writing once the buffer is above the
    high-water mark (called from inside write()), resume_writing once it
    has drained to the low-water mark; never twice in a row."""
    async def main():
        async with connection(loop, side) as (transport, proto, peer):
            sizes = {}
            orig_pause, orig_resume = proto.pause_writing, proto.resume_writing

            def pause():
                sizes.setdefault("pause", transport.get_write_buffer_size())
                orig_pause()

            def resume():
                sizes.setdefault("resume", transport.get_write_buffer_size())
                orig_resume()

            proto.pause_writing, proto.resume_writing = pause, resume
            transport.set_write_buffer_limits(high=64 * 1024, low=16 * 1024)
            chunk = b"w" * 65536
            written = 0
            while "pause" not in proto.calls:
                transport.write(chunk)
                written += len(chunk)
                assert written < 256 * 2**20, "pause_writing never called"
            assert proto.calls == ["made", "pause"]
            assert sizes["pause"] > 64 * 1024
            assert transport.get_write_buffer_size() > 0
            transport.write(chunk)  # writing while paused is allowed, no second pause
            written += len(chunk)
            assert proto.calls == ["made", "pause"]
            reader = loop.create_task(recv_exactly(loop, peer, written))
            data = await wait(reader)
            assert len(data) == written
            assert proto.calls == ["made", "pause", "resume"]
            assert sizes["resume"] <= 16 * 1024
            assert transport.get_write_buffer_size() == 0
    support.run_guarded(loop, main())


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("keep_open", [None, False, True])
def test_eof_received(loop, side, keep_open):
    """eof_received is called once; a false result closes the transport
    (connection_lost(None)); True keeps it half-open: writes still reach the
    peer until close()."""
    async def main():
        async with connection(loop, side, lambda: Recorder(eof_result=keep_open)) as (
                transport, proto, peer):
            await loop.sock_sendall(peer, b"req")
            peer.shutdown(socket.SHUT_WR)
            await wait(proto.eof)
            if not keep_open:
                assert await wait(proto.lost) is None
                assert proto.calls == ["made", "data", "eof", "lost"]
                assert await wait(recv_until_eof(loop, peer)) == (b"", "eof")
                return
            await iterations(3)
            assert proto.calls == ["made", "data", "eof"]
            assert not transport.is_closing()
            transport.write(b"response")
            assert await wait(recv_exactly(loop, peer, 8)) == b"response"
            transport.close()
            assert await wait(proto.lost) is None
            assert await wait(recv_until_eof(loop, peer)) == (b"", "eof")
            assert proto.calls == ["made", "data", "eof", "lost"]
            assert bytes(proto.received) == b"req"
    support.run_guarded(loop, main())


class BufferedRecorder(asyncio.BufferedProtocol):
    """A BufferedProtocol with a small fixed buffer, recording its calls."""

    def __init__(self, size=1000):
        loop = asyncio.get_running_loop()
        self.buffer = bytearray(size)
        self.received = bytearray()
        self.calls = []
        self.hints = set()
        self.transport = None
        self.made, self.eof, self.lost = (loop.create_future() for _ in range(3))

    def connection_made(self, transport):
        self.calls.append("made")
        self.transport = transport
        support._resolve(self.made, transport)

    def get_buffer(self, sizehint):
        self.hints.add(type(sizehint))
        return memoryview(self.buffer)

    def buffer_updated(self, nbytes):
        assert 0 < nbytes <= len(self.buffer)
        if self.calls[-1:] != ["data"]:
            self.calls.append("data")
        self.received += self.buffer[:nbytes]

    def eof_received(self):
        self.calls.append("eof")
        support._resolve(self.eof, None)

    def connection_lost(self, exc):
        self.calls.append("lost")
        support._resolve(self.lost, exc)


@pytest.mark.parametrize("side", SIDES)
def test_buffered_protocol(loop, side):
    async def main():
        async with connection(loop, side, BufferedRecorder) as (transport, proto, peer):
            payload = os.urandom(3 * 2**20 + 17)
            await wait(loop.sock_sendall(peer, payload))
            peer.shutdown(socket.SHUT_WR)
            assert await wait(proto.lost) is None
            assert proto.calls == ["made", "data", "eof", "lost"]
            assert bytes(proto.received) == payload
            assert proto.hints == {int}
    support.run_guarded(loop, main())


@pytest.mark.parametrize("side", SIDES)
def test_set_protocol(loop, side):
    async def main():
        async with connection(loop, side) as (transport, first, peer):
            await loop.sock_sendall(peer, b"one")
            await wait(first.until(3))
            second = Recorder()
            transport.set_protocol(second)
            assert transport.get_protocol() is second
            await loop.sock_sendall(peer, b"two")
            assert await wait(second.until(3)) == b"two"
            peer.shutdown(socket.SHUT_WR)
            await wait(second.lost)
            assert bytes(first.received) == b"one" and first.calls == ["made", "data"]
            assert second.calls == ["data", "eof", "lost"]
    support.run_guarded(loop, main())


class OrderRecorder(Recorder):
    """A Recorder that also writes "data" into a shared ``order`` list."""

    order = None

    def data_received(self, data):
        self.order.append("data")
        super().data_received(data)


class BufferedOrderRecorder(BufferedRecorder):
    """BufferedRecorder's counterpart of OrderRecorder."""

    order = None

    def buffer_updated(self, nbytes):
        self.order.append("data")
        super().buffer_updated(nbytes)


def waiting_at_the_poll(transport, peer, data):
    """Send data from the peer and return once it is in the transport's
    socket, without leaving the current callback: the loop's next poll
    finds it there, and none before it could have."""
    assert peer.send(data) == len(data)
    support.wait_readable(transport.get_extra_info("socket").fileno())


@pytest.mark.parametrize("factory", (OrderRecorder, BufferedOrderRecorder),
                         ids=("Protocol", "BufferedProtocol"))
@pytest.mark.parametrize("side", SIDES)
def test_callbacks_ready_before_the_data_run_first(loop, side, factory):
    """Bytes that are waiting when the loop polls reach the protocol after
    the callbacks that were ready before the poll, as asyncio queues the
    transport's reader handle behind them (a task ready to create the
    future that data_received resolves must run first)."""
    async def main():
        async with connection(loop, side, factory) as (transport, proto, peer):
            order = proto.order = []
            waiting_at_the_poll(transport, peer, b"x")
            loop.call_soon(order.append, "ready before")
            await iterations(3)
            assert order == ["ready before", "data"]
    support.run_guarded(loop, main())


class Tagged:
    """An order list for an OrderRecorder that names its connection, and
    runs then() on the connection's first event."""

    def __init__(self, order, name, then=None):
        self.order, self.name, self.then = order, name, then

    def append(self, event):
        self.order.append(f"{self.name}:{event}")
        if self.then is not None:
            self.then()
            self.then = None


async def ready_in_one_poll(loop, conns, idle):
    """Make the connections' transports readable in that order, for one
    poll to find: one made while callbacks are queued (idle false), or one
    the loop blocks in (idle true, where goloop reads them in the same
    call); return once the last one got its bytes."""
    if idle:
        def send_all():
            for transport, _, peer in conns:
                waiting_at_the_poll(transport, peer, b"xy")
        loop.call_soon(send_all)
        await wait(conns[-1][1].until(2))
    else:
        for transport, _, peer in conns:
            waiting_at_the_poll(transport, peer, b"xy")
        await iterations(3)


@pytest.mark.parametrize("idle", (False, True), ids=("queued", "idle"))
@pytest.mark.parametrize("kinds", ("PPP", "BBB", "PBP", "BPB"))
def test_connections_ready_in_one_poll_are_read_in_turn(loop, kinds, idle):
    """The connections one poll finds readable get their bytes in turn, as
    asyncio's reader handles queued by that poll deliver them: the first
    one's callback pausing the second holds back the second's bytes, and
    closing the third drops its bytes; resume_reading() delivers the
    held ones (P: a Protocol, B: a BufferedProtocol)."""
    factories = {"P": OrderRecorder, "B": BufferedOrderRecorder}

    async def main():
        async with contextlib.AsyncExitStack() as stack:
            conns = [await stack.enter_async_context(connection(loop, "server", factories[k]))
                     for k in kinds + "P"]
            (a, pa, _), (b, pb, _), (c, pc, _), (d, pd, _) = conns
            order = []

            def pause_and_close():
                b.pause_reading()
                c.close()

            pa.order = Tagged(order, "a", pause_and_close)
            pb.order, pc.order, pd.order = (Tagged(order, n) for n in "bcd")
            await ready_in_one_poll(loop, conns, idle)
            assert order == ["a:data", "d:data"]
            b.resume_reading()
            assert await wait(pc.lost) is None
            await iterations(3)
            assert order == ["a:data", "d:data", "b:data"]
            assert bytes(pb.received) == b"xy" and bytes(pc.received) == b""
    support.run_guarded(loop, main())


@pytest.mark.parametrize("idle", (False, True), ids=("queued", "idle"))
@pytest.mark.parametrize("kinds", ("PPP", "BBB"))
def test_paused_and_resumed_in_the_poll_waits_for_the_next(loop, kinds, idle):
    """A connection that a callback before its turn in the poll's reads
    pauses and resumes gets its bytes from the next poll, after the rest of
    this one's, as asyncio's resume_reading() adds a new reader handle that
    no poll has queued yet."""
    factories = {"P": OrderRecorder, "B": BufferedOrderRecorder}

    async def main():
        async with contextlib.AsyncExitStack() as stack:
            conns = [await stack.enter_async_context(connection(loop, "server", factories[k]))
                     for k in kinds[:2] + "P"]
            (a, pa, _), (b, pb, _), (c, pc, _) = conns
            order = []

            def pause_and_resume():
                b.pause_reading()
                b.resume_reading()

            pa.order = Tagged(order, "a", pause_and_resume)
            pb.order, pc.order = Tagged(order, "b"), Tagged(order, "c")
            await ready_in_one_poll(loop, conns, idle)
            await iterations(3)
            assert order == ["a:data", "c:data", "b:data"]
    support.run_guarded(loop, main())


@pytest.mark.parametrize("factory", (OrderRecorder, BufferedOrderRecorder),
                         ids=("Protocol", "BufferedProtocol"))
def test_stop_in_data_received_leaves_what_it_queued(loop, factory):
    """loop.stop() in data_received ends run_forever() with the iteration
    that read the bytes, which arrive while the loop waits with nothing to
    run: a callback data_received queued runs on the next run_forever(),
    as asyncio runs it on the iteration after its reader handle's."""
    ours, peer = socket.socketpair()
    with peer:
        transport, proto = support.run_guarded(loop, loop.create_connection(factory, sock=ours))
        order = []

        def then():
            loop.call_soon(order.append, "queued")
            loop.stop()

        proto.order = Tagged(order, "conn", then)
        loop.call_soon(peer.send, b"x")
        support.run_forever_guarded(loop)
        assert order == ["conn:data"]
        loop.call_soon(loop.stop)
        support.run_forever_guarded(loop)
        assert order == ["conn:data", "queued"]
        transport.close()
        assert support.run_guarded(loop, proto.lost) is None


@pytest.mark.parametrize("factory", (OrderRecorder, BufferedOrderRecorder),
                         ids=("Protocol", "BufferedProtocol"))
def test_threadsafe_callback_runs_before_data_sent_after_it(loop, factory):
    """A callback another thread queues with call_soon_threadsafe() before
    it sends bytes runs before data_received gets them, also when both
    reach the loop while it waits in one poll."""
    ours, peer = socket.socketpair()
    with peer:
        transport, proto = support.run_guarded(loop, loop.create_connection(factory, sock=ours))
        order = []
        proto.order = Tagged(order, "conn", loop.stop)

        def other_thread():
            loop.call_soon_threadsafe(order.append, "threadsafe")
            peer.send(b"x")

        thread = threading.Thread(target=other_thread)
        loop.call_soon(thread.start)
        support.run_forever_guarded(loop)
        thread.join()
        assert order == ["threadsafe", "conn:data"]
        transport.close()
        assert support.run_guarded(loop, proto.lost) is None


def test_timer_runs_between_the_reads_of_busy_connections(loop):
    """A timer comes due while two Protocols on the loop echo bytes back and
    forth without a pause: it runs after at most two more reads, as
    asyncio's iteration queues it behind the reader handles of the first
    poll after it is due, however busy the connections keep the loop."""
    late, fired = [], []
    when = math.inf

    class Pong(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            if loop.time() >= when and not fired:
                late.append(data)
            self.transport.write(data)

    def fire():
        fired.append(True)
        loop.stop()

    a, b = socket.socketpair()
    ta, _ = support.run_guarded(loop, loop.create_connection(Pong, sock=a))
    tb, _ = support.run_guarded(loop, loop.create_connection(Pong, sock=b))
    when = loop.time() + 0.05
    loop.call_at(when, fire)
    ta.write(b"ping")
    support.run_forever_guarded(loop)
    assert fired and len(late) <= 2
    ta.abort()
    tb.abort()
    support.run_briefly(loop)


def test_loop_in_another_thread_does_not_hold_back_this_ones_work(loop, loop_factory):
    """A data_received that closes another transport and, before returning,
    waits for a loop in another thread to read: that connection_lost still
    comes at once, though the other loop ran meanwhile and no more bytes
    arrive here."""
    class Flag(Recorder):
        def data_received(self, data):
            super().data_received(data)
            b_read.set()

    class Closer(Recorder):
        def data_received(self, data):
            closed_at.append(loop.time())
            x.close()
            other_peer.send(b"x")
            assert b_read.wait(support.GUARD)

    b_read, closed_at, lost_at = threading.Event(), [], []
    other = loop_factory()
    theirs, other_peer = socket.socketpair()
    connected = threading.Event()

    def serve():
        transport, proto = other.run_until_complete(other.create_connection(Flag, sock=theirs))
        other.call_soon(connected.set)
        other.run_forever()
        transport.close()
        other.run_until_complete(proto.lost)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        assert connected.wait(support.GUARD)
        x_sock, x_peer = socket.socketpair()
        y_sock, y_peer = socket.socketpair()
        with x_peer, y_peer:
            x, px = support.run_guarded(loop, loop.create_connection(Recorder, sock=x_sock))
            y, py = support.run_guarded(loop, loop.create_connection(Closer, sock=y_sock))
            px.lost.add_done_callback(lambda _: lost_at.append(loop.time()))
            loop.call_soon(y_peer.send, b"y")
            assert support.run_guarded(loop, px.lost) is None
            assert lost_at[0] - closed_at[0] < 1.0
            y.close()
            support.run_guarded(loop, py.lost)
    finally:
        other.call_soon_threadsafe(other.stop)
        thread.join()
        other_peer.close()


@pytest.mark.parametrize("side", SIDES)
def test_pause_reading_ready_before_the_data_holds_it(loop, side):
    """pause_reading() in a callback that was ready before the poll holds
    back the bytes that poll found, as asyncio's remove_reader cancels the
    reader handle already queued; resume_reading() delivers them."""
    async def main():
        async with connection(loop, side) as (transport, proto, peer):
            waiting_at_the_poll(transport, peer, b"held")
            loop.call_soon(transport.pause_reading)
            await iterations(3)
            assert proto.calls == ["made"]
            transport.resume_reading()
            assert await wait(proto.until(4)) == b"held"
    support.run_guarded(loop, main())


@pytest.mark.parametrize("side", SIDES)
def test_loop_sendfile_over_transport(loop, side, tmp_path):
    """loop.sendfile(transport, file): data written before it arrives first,
    the file's bytes follow, the file position moves, writes work after."""
    data = os.urandom(2 * 2**20 + 333)
    path = tmp_path / "payload"
    path.write_bytes(data)
    async def main():
        async with connection(loop, side) as (transport, proto, peer):
            transport.write(b"head")
            reader = loop.create_task(recv_exactly(loop, peer, 4 + len(data) - 100 + 4))
            with open(path, "rb") as f:
                assert await wait(loop.sendfile(transport, f, 100)) == len(data) - 100
                assert f.tell() == len(data)
            transport.write(b"tail")
            assert await wait(reader) == b"head" + data[100:] + b"tail"
            assert proto.calls == ["made"]
    support.run_guarded(loop, main())


@pytest.mark.parametrize("case", ["closing transport", "BytesIO without fallback",
                                  "BytesIO with fallback", "text file"])
def test_loop_sendfile_rules_as_asyncio(loop, case, tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"file data")

    def scenario(lp):
        async def main():
            async with connection(lp, "client") as (transport, proto, peer):
                with open(path, "r" if case == "text file" else "rb") as f:
                    file, kwargs = f, {}
                    if case.startswith("BytesIO"):
                        file = io.BytesIO(b"bytes data")
                        kwargs = {"fallback": case.endswith("with fallback")}
                    if case == "closing transport":
                        transport.close()
                    result = await outcome_of(lp.sendfile(transport, file, **kwargs))
                    if result[0] == "returned":
                        result += (await wait(recv_exactly(lp, peer, result[1])),)
                    return result
        return support.run_guarded(lp, main())

    expected = support.run_on_reference(scenario)
    assert scenario(loop) == expected
