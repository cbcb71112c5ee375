"""The low-level socket coroutines (sock_*), sock_sendfile and DNS.

sock_recv/recv_into/recvfrom/recvfrom_into/sendall/sendto/connect/accept
on non-blocking sockets; the debug-mode rejection of blocking sockets and of
SSL sockets, exactly as the stock loop does on this Python; cancellation of
a pending call leaves the socket usable and unwatched; sock_sendfile with a
real file and its fallback rules; getaddrinfo/getnameinfo return exactly
what the socket module returns.
"""

import asyncio
import io
import os
import socket
import ssl

import pytest

import support


async def iterations(n):
    for _ in range(n):
        await asyncio.sleep(0)


def wait(aw):
    return asyncio.wait_for(aw, support.GUARD)


@pytest.fixture(autouse=True)
def _fail_fast(request):
    if "loop" in request.fixturenames:
        support.fail_fast_on_loop_errors(request.getfixturevalue("loop"))


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


@pytest.fixture
def udp_pair():
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for s in (a, b):
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
    yield a, b
    a.close()
    b.close()


@pytest.fixture
def listener():
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(16)
    lsock.setblocking(False)
    yield lsock
    lsock.close()


async def recv_exactly(loop, sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = await loop.sock_recv(sock, n - len(buf))
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


def test_sendall_and_recv(loop, pair):
    a, b = pair
    async def main():
        assert await wait(loop.sock_sendall(a, b"hello")) is None
        assert await wait(loop.sock_recv(b, 100)) == b"hello"
        # A pending recv completes when data arrives.
        task = loop.create_task(loop.sock_recv(b, 100))
        await iterations(2)
        assert not task.done()
        await loop.sock_sendall(a, bytearray(b"later"))
        assert await wait(task) == b"later"
        # EOF is b"".
        a.shutdown(socket.SHUT_WR)
        assert await wait(loop.sock_recv(b, 100)) == b""
    support.run_guarded(loop, main())


def test_recv_into(loop, pair):
    a, b = pair
    async def main():
        buf = bytearray(10)
        task = loop.create_task(loop.sock_recv_into(b, buf))
        await iterations(2)
        await loop.sock_sendall(a, b"abc")
        assert await wait(task) == 3
        assert buf[:3] == b"abc"
        view = memoryview(buf)[5:]
        await loop.sock_sendall(a, b"0123456789")
        assert await wait(loop.sock_recv_into(b, view)) == 5
        assert bytes(buf) == b"abc\0\x0001234"
        assert await wait(loop.sock_recv(b, 100)) == b"56789"
    support.run_guarded(loop, main())


def test_sendall_larger_than_socket_buffers(loop, pair):
    a, b = pair
    payload = os.urandom(8 * 2**20)
    async def main():
        sender = loop.create_task(loop.sock_sendall(a, payload))
        await iterations(2)
        assert not sender.done()  # the peer has not read: it waits for room
        got = await wait(recv_exactly(loop, b, len(payload)))
        await wait(sender)
        assert got == payload
    support.run_guarded(loop, main())


def test_udp_sendto_recvfrom(loop, udp_pair):
    a, b = udp_pair
    async def main():
        pending = loop.create_task(loop.sock_recvfrom(b, 100))
        await iterations(2)
        assert not pending.done()
        assert await wait(loop.sock_sendto(a, b"one", b.getsockname())) == 3
        assert await wait(pending) == (b"one", a.getsockname())

        buf = bytearray(10)
        await loop.sock_sendto(a, b"two", b.getsockname())
        assert await wait(loop.sock_recvfrom_into(b, buf)) == (3, a.getsockname())
        assert buf[:3] == b"two"
        await loop.sock_sendto(a, b"three", b.getsockname())
        assert await wait(loop.sock_recvfrom_into(b, buf, 2)) == (2, a.getsockname())
        assert buf[:3] == b"tho"
        # Datagrams keep their boundaries.
        await loop.sock_sendto(a, b"x" * 5, b.getsockname())
        await loop.sock_sendto(a, b"y" * 7, b.getsockname())
        assert await wait(loop.sock_recvfrom(b, 100)) == (b"x" * 5, a.getsockname())
        assert await wait(loop.sock_recvfrom(b, 100)) == (b"y" * 7, a.getsockname())
    support.run_guarded(loop, main())


def test_connect_with_hostname_and_accept(loop, listener):
    port = listener.getsockname()[1]
    async def main():
        with socket.socket() as client:
            client.setblocking(False)
            accept = loop.create_task(loop.sock_accept(listener))
            await iterations(2)
            assert not accept.done()
            # 'localhost' is resolved (for the socket's family) before connect.
            assert await wait(loop.sock_connect(client, ("localhost", port))) is None
            assert client.getpeername() == ("127.0.0.1", port)
            conn, addr = await wait(accept)
            with conn:
                assert addr == client.getsockname()
                assert conn.gettimeout() == 0  # accepted sockets are non-blocking
                await loop.sock_sendall(client, b"hi")
                assert await wait(loop.sock_recv(conn, 10)) == b"hi"
    support.run_guarded(loop, main())


def test_connect_refused(loop):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, never listening: refused

        def scenario(lp):
            async def main():
                with socket.socket() as client:
                    client.setblocking(False)
                    return await _outcome(lp.sock_connect(client, ("127.0.0.1", port)))
            return support.run_guarded(lp, main())

        expected = support.run_on_reference(scenario)
        assert expected[1] is ConnectionRefusedError
        assert scenario(loop) == expected


async def _outcome(aw):
    try:
        return ("returned", await aw)
    except Exception as exc:
        return ("raised", type(exc), str(exc))


# Blocking and SSL sockets: which calls reject them, and with what message,
# is whatever the stock loop does on this Python, debug mode on or off.

BLOCKING_CALLS = (
    "sock_recv", "sock_recv_into", "sock_recvfrom", "sock_recvfrom_into", "sock_sendall",
    "sock_sendto", "sock_connect", "sock_accept", "sock_sendfile")


def blocking_call(lp, name, make_ssl, tmp_path):
    """Call lp.<name> with a blocking socket (1 s timeout, so an unchecked
    call cannot hang) set up so that the call could succeed at once."""
    async def main():
        with socket.socket() as lsock, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            lsock.bind(("127.0.0.1", 0))
            lsock.listen(4)
            udp.bind(("127.0.0.1", 0))
            addr = lsock.getsockname()
            with socket.create_connection(addr) as client, lsock.accept()[0] as server:
                client.sendall(b"data")
                udp.sendto(b"dgram", udp.getsockname())
                for s in (client, server, udp, lsock):
                    s.settimeout(1.0)
                stream = server
                if make_ssl:
                    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                    stream = ctx.wrap_socket(socket.socket(), do_handshake_on_connect=False,
                                             server_hostname="x")
                path = tmp_path / "payload"
                path.write_bytes(b"payload")
                try:
                    with open(path, "rb") as f, socket.create_connection(addr) as pending:
                        fresh = stream if make_ssl else socket.socket()
                        fresh.settimeout(1.0)
                        call = {
                            "sock_recv": lambda: lp.sock_recv(stream, 10),
                            "sock_recv_into": lambda: lp.sock_recv_into(stream, bytearray(10)),
                            "sock_recvfrom": lambda: lp.sock_recvfrom(udp, 10),
                            "sock_recvfrom_into": lambda: lp.sock_recvfrom_into(udp, bytearray(10)),
                            "sock_sendall": lambda: lp.sock_sendall(stream, b"x"),
                            "sock_sendto": lambda: lp.sock_sendto(udp, b"x", udp.getsockname()),
                            "sock_connect": lambda: lp.sock_connect(fresh, addr),
                            "sock_accept": lambda: lp.sock_accept(lsock),
                            "sock_sendfile": lambda: lp.sock_sendfile(stream, f),
                        }[name]
                        result = await _outcome(call())
                        if fresh is not stream:
                            fresh.close()
                        if result[0] == "returned":
                            value = result[1]
                            if isinstance(value, tuple) and isinstance(value[0], socket.socket):
                                value[0].close()
                            return ("returned",)
                        return result
                finally:
                    if make_ssl:
                        stream.close()
    return support.run_guarded(lp, main())


@pytest.mark.parametrize("name", BLOCKING_CALLS)
@pytest.mark.parametrize("debug", [True, False], ids=["debug", "nodebug"])
def test_blocking_socket_rejected_as_asyncio(loop, tmp_path, name, debug):
    loop.set_debug(debug)

    def scenario(lp):
        lp.set_debug(debug)
        return blocking_call(lp, name, False, tmp_path)

    expected = support.run_on_reference(scenario)
    if debug:
        assert expected == ("raised", ValueError, "the socket must be non-blocking")
    assert scenario(loop) == expected


@pytest.mark.parametrize("name", ["sock_recv", "sock_recv_into", "sock_sendall",
                                  "sock_connect", "sock_sendfile"])
def test_ssl_socket_rejected_as_asyncio(loop, tmp_path, name):
    def scenario(lp):
        return blocking_call(lp, name, True, tmp_path)

    expected = support.run_on_reference(scenario)
    assert scenario(loop) == expected


# Cancellation.


def test_cancelled_recv_leaves_socket_usable(loop, pair):
    a, b = pair
    async def main():
        task = loop.create_task(loop.sock_recv(b, 100))
        await iterations(2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await iterations(1)
        assert loop.remove_reader(b) is False  # the cancelled call unregistered
        await loop.sock_sendall(a, b"after")
        assert await wait(loop.sock_recv(b, 100)) == b"after"
        # Cancelled again, then data that was already queued is not lost.
        task = loop.create_task(loop.sock_recv_into(b, bytearray(10)))
        await iterations(2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await loop.sock_sendall(a, b"kept")
        assert await wait(loop.sock_recv(b, 100)) == b"kept"
    support.run_guarded(loop, main())


def test_cancelled_accept_leaves_listener_usable(loop, listener):
    async def main():
        task = loop.create_task(loop.sock_accept(listener))
        await iterations(2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await iterations(1)
        assert loop.remove_reader(listener) is False
        with socket.socket() as client:
            client.setblocking(False)
            await wait(loop.sock_connect(client, listener.getsockname()))
            conn, addr = await wait(loop.sock_accept(listener))
            conn.close()
            assert addr == client.getsockname()
    support.run_guarded(loop, main())


def test_cancelled_sendall_leaves_socket_usable(loop, pair):
    a, b = pair
    async def main():
        task = loop.create_task(loop.sock_sendall(a, b"x" * (16 * 2**20)))
        await iterations(2)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await iterations(1)
        assert loop.remove_writer(a) is False
        # Drain what got through, then the socket still carries data.
        while True:
            try:
                if not b.recv(2**20):
                    break
            except BlockingIOError:
                break
        await loop.sock_sendall(a, b"tail")
        data = await wait(loop.sock_recv(b, 100))
        assert data.endswith(b"tail") and set(data[:-4]) <= {ord("x")}
    support.run_guarded(loop, main())


# sock_sendfile.


@pytest.fixture
def payload_file(tmp_path):
    data = os.urandom(3 * 2**20 + 12345)
    path = tmp_path / "payload.bin"
    path.write_bytes(data)
    return path, data


@pytest.mark.parametrize("fallback", [True, False], ids=["fallback", "nofallback"])
@pytest.mark.parametrize("offset,count", [(0, None), (1000, 5000), (2**20, None)])
def test_sock_sendfile_real_file(loop, pair, payload_file, fallback, offset, count):
    a, b = pair
    path, data = payload_file
    expected = data[offset:offset + count if count else None]
    async def main():
        with open(path, "rb") as f:
            reader = loop.create_task(recv_exactly(loop, b, len(expected)))
            sent = await wait(loop.sock_sendfile(a, f, offset, count, fallback=fallback))
            assert sent == len(expected)
            assert await wait(reader) == expected
            assert f.tell() == offset + sent  # the file position follows what was sent
    support.run_guarded(loop, main())


def test_sock_sendfile_fallback_for_non_regular_file(loop, pair):
    a, b = pair
    data = os.urandom(300_000)
    async def main():
        f = io.BytesIO(data)
        reader = loop.create_task(recv_exactly(loop, b, len(data) - 10))
        assert await wait(loop.sock_sendfile(a, f, 10)) == len(data) - 10
        assert await wait(reader) == data[10:]
        assert f.tell() == len(data)
    support.run_guarded(loop, main())


@pytest.mark.parametrize("case", [
    "BytesIO without fallback", "text file", "udp socket", "count 0", "count str",
    "offset negative", "offset float", "empty file"])
def test_sock_sendfile_rules_as_asyncio(loop, tmp_path, case):
    path = tmp_path / "f.txt"
    path.write_bytes(b"" if case == "empty file" else b"some text")

    def scenario(lp):
        async def main():
            a, b = socket.socketpair()
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            for s in (a, b, udp):
                s.setblocking(False)
            try:
                with open(path, "r" if case == "text file" else "rb") as f:
                    sock, file, kw = a, f, {}
                    if case == "BytesIO without fallback":
                        file, kw = io.BytesIO(b"abc"), {"fallback": False}
                    elif case == "udp socket":
                        sock = udp
                    elif case == "count 0":
                        kw = {"count": 0}
                    elif case == "count str":
                        kw = {"count": "1"}
                    elif case == "offset negative":
                        kw = {"offset": -1}
                    elif case == "offset float":
                        kw = {"offset": 1.0}
                    return await _outcome(lp.sock_sendfile(sock, file, **kw))
            finally:
                for s in (a, b, udp):
                    s.close()
        return support.run_guarded(lp, main())

    expected = support.run_on_reference(scenario)
    got = scenario(loop)
    if case == "BytesIO without fallback":
        assert expected == ("raised", asyncio.SendfileNotAvailableError, "not a regular file")
    assert got == expected


# DNS.


ADDRINFO_CASES = {
    "localhost port": (("localhost", 80), {}),
    "localhost service": (("localhost", "http"), {}),
    "numeric stream": (("127.0.0.1", 0), {"type": socket.SOCK_STREAM}),
    "passive any": ((None, 8080), {"flags": socket.AI_PASSIVE}),
    "ipv6": (("::1", 443), {"family": socket.AF_INET6}),
    "udp inet": (("localhost", 53), {"family": socket.AF_INET, "type": socket.SOCK_DGRAM,
                                     "proto": socket.IPPROTO_UDP}),
    "canonname": (("localhost", None), {"flags": socket.AI_CANONNAME}),
    "bytes": ((b"localhost", b"80"), {}),
    "no host no port": ((None, None), {}),
    "unknown service": (("127.0.0.1", "no-such-service-goloop"), {}),
    "numerichost with name": (("localhost", 80), {"flags": socket.AI_NUMERICHOST}),
}


@pytest.mark.parametrize("case", ADDRINFO_CASES)
def test_getaddrinfo_is_socket_getaddrinfo(loop, case):
    args, kwargs = ADDRINFO_CASES[case]
    expected = support.outcome(socket.getaddrinfo, *args, **kwargs)
    got = support.run_guarded(loop, _outcome(loop.getaddrinfo(*args, **kwargs)))
    assert got == expected


NAMEINFO_CASES = {
    "names": ((("127.0.0.1", 80), 0)),
    "numeric": ((("127.0.0.1", 80), socket.NI_NUMERICHOST | socket.NI_NUMERICSERV)),
    "ipv6": ((("::1", 443, 0, 0), socket.NI_NUMERICHOST)),
    "dgram": ((("127.0.0.1", 53), socket.NI_DGRAM)),
    "bad sockaddr": ((("127.0.0.1",), 0)),
}


@pytest.mark.parametrize("case", NAMEINFO_CASES)
def test_getnameinfo_is_socket_getnameinfo(loop, case):
    sockaddr, flags = NAMEINFO_CASES[case]
    expected = support.outcome(socket.getnameinfo, sockaddr, flags)
    got = support.run_guarded(loop, _outcome(loop.getnameinfo(sockaddr, flags)))
    assert got == expected
