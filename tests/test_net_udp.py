"""UDP: create_datagram_endpoint (local_addr, remote_addr, family,
reuse_port, allow_broadcast, sock=), sendto/datagram_received, and
error_received(ConnectionRefusedError) on a connected endpoint whose peer
is gone. Argument errors and per-version details (empty datagrams are sent
from 3.13 on) are taken from the stock loop.
"""

import asyncio
import re
import socket

import pytest

import support


def wait(aw):
    return asyncio.wait_for(aw, support.GUARD)


@pytest.fixture(autouse=True)
def _fail_fast(request):
    if "loop" in request.fixturenames:
        support.fail_fast_on_loop_errors(request.getfixturevalue("loop"))


async def iterations(n):
    for _ in range(n):
        await asyncio.sleep(0)


async def _outcome(aw):
    try:
        return ("returned", await aw)
    except Exception as exc:
        return ("raised", type(exc), re.sub(r"fd=\d+", "fd=N", str(exc)))


class DatagramRecorder(asyncio.DatagramProtocol):
    def __init__(self):
        loop = asyncio.get_running_loop()
        self.calls = []
        self.datagrams = []
        self.errors = []
        self.transport = None
        self.made, self.lost = loop.create_future(), loop.create_future()
        self._wanted = []

    def connection_made(self, transport):
        self.calls.append("made")
        self.transport = transport
        support._resolve(self.made, transport)

    def datagram_received(self, data, addr):
        assert type(data) is bytes
        self.datagrams.append((data, addr))
        self._wake()

    def error_received(self, exc):
        self.errors.append(exc)
        self._wake()

    def connection_lost(self, exc):
        self.calls.append("lost")
        support._resolve(self.lost, exc)

    def _wake(self):
        for n, fut in self._wanted:
            if len(self.datagrams) + len(self.errors) >= n:
                support._resolve(fut, None)

    async def until(self, n):
        """Wait until n datagrams and errors arrived in total."""
        if len(self.datagrams) + len(self.errors) < n:
            fut = asyncio.get_running_loop().create_future()
            self._wanted.append((n, fut))
            await wait(fut)


async def endpoint(loop, **kwargs):
    transport, proto = await wait(loop.create_datagram_endpoint(DatagramRecorder, **kwargs))
    assert proto.transport is transport and proto.calls == ["made"]
    return transport, proto


async def close(*transports):
    for transport in transports:
        proto = transport.get_protocol()
        transport.close()
        if proto is not None:
            assert await wait(proto.lost) is None


def test_local_addr_sendto_and_datagram_received(loop):
    async def main():
        a, pa = await endpoint(loop, local_addr=("127.0.0.1", 0))
        b, pb = await endpoint(loop, local_addr=("127.0.0.1", 0))
        addr_a, addr_b = a.get_extra_info("sockname"), b.get_extra_info("sockname")
        assert addr_a[0] == "127.0.0.1" and addr_a[1] != 0
        assert a.get_extra_info("peername") is None
        sock = a.get_extra_info("socket")
        assert sock.type == socket.SOCK_DGRAM and sock.getsockname() == addr_a
        for i in range(50):
            a.sendto(b"d%d" % i, addr_b)
        a.sendto(bytearray(b"ba"), addr_b)
        a.sendto(memoryview(b"mv"), addr_b)
        await pb.until(52)
        assert pb.datagrams == [(b"d%d" % i, addr_a) for i in range(50)] + [
            (b"ba", addr_a), (b"mv", addr_a)]
        b.sendto(b"back", addr_a)
        await pa.until(1)
        assert pa.datagrams == [(b"back", addr_b)]
        assert a.get_write_buffer_size() == 0
        assert not a.is_closing()
        await close(a, b)
        assert a.is_closing()
        assert pa.calls == ["made", "lost"] and pb.errors == []
    support.run_guarded(loop, main())


def test_remote_addr(loop):
    async def main():
        b, pb = await endpoint(loop, local_addr=("127.0.0.1", 0))
        addr_b = b.get_extra_info("sockname")
        a, pa = await endpoint(loop, remote_addr=addr_b)
        assert a.get_extra_info("peername") == addr_b
        a.sendto(b"no address")
        a.sendto(b"same address", addr_b)
        await pb.until(2)
        assert [d for d, _ in pb.datagrams] == [b"no address", b"same address"]
        b.sendto(b"reply", pb.datagrams[0][1])
        await pa.until(1)
        assert pa.datagrams == [(b"reply", addr_b)]
        await close(a, b)
    support.run_guarded(loop, main())


def test_family_only_and_ipv6(loop):
    async def main():
        b, pb = await endpoint(loop, local_addr=("127.0.0.1", 0))
        a, pa = await endpoint(loop, family=socket.AF_INET)  # unbound until it sends
        assert a.get_extra_info("socket").family == socket.AF_INET
        a.sendto(b"hi", b.get_extra_info("sockname"))
        await pb.until(1)
        assert pb.datagrams[0][1][1] == a.get_extra_info("socket").getsockname()[1]
        await close(a, b)
        try:
            c, pc = await endpoint(loop, local_addr=("::1", 0), family=socket.AF_INET6)
        except OSError as exc:
            pytest.skip(f"no IPv6 loopback: {exc}")
        d, pd = await endpoint(loop, remote_addr=c.get_extra_info("sockname")[:2],
                               family=socket.AF_INET6)
        d.sendto(b"six")
        await pc.until(1)
        assert pc.datagrams[0][0] == b"six"
        await close(c, d)
    support.run_guarded(loop, main())


def test_socket_options_as_asyncio(loop):
    def scenario(lp):
        async def main():
            seen = []
            for kwargs in ({}, {"reuse_port": True}, {"allow_broadcast": True}):
                t, _ = await endpoint(lp, local_addr=("127.0.0.1", 0), **kwargs)
                s = t.get_extra_info("socket")
                seen.append((kwargs, [bool(s.getsockopt(socket.SOL_SOCKET, opt)) for opt in (
                    socket.SO_REUSEADDR, socket.SO_REUSEPORT, socket.SO_BROADCAST)]))
                await close(t)
            return seen
        return support.run_guarded(lp, main())

    expected = support.run_on_reference(scenario)
    assert expected[1][1][1] and expected[2][1][2]
    assert scenario(loop) == expected


def test_reuse_port_shares_port(loop):
    async def main():
        a, _ = await endpoint(loop, local_addr=("127.0.0.1", 0), reuse_port=True)
        b, _ = await endpoint(loop, local_addr=a.get_extra_info("sockname"), reuse_port=True)
        assert a.get_extra_info("sockname") == b.get_extra_info("sockname")
        await close(a, b)
    support.run_guarded(loop, main())


def test_allow_broadcast_sends_to_broadcast_address(loop):
    def scenario(lp):
        async def main():
            b, pb = await endpoint(lp, local_addr=("0.0.0.0", 0))
            a, _ = await endpoint(lp, family=socket.AF_INET, allow_broadcast=True)
            port = b.get_extra_info("sockname")[1]
            a.sendto(b"all", ("255.255.255.255", port))
            a.sendto(b"direct", ("127.0.0.1", port))
            await pb.until(1)
            await iterations(3)
            result = sorted(d for d, _ in pb.datagrams), a.is_closing()
            await close(a, b)
            return result
        return support.run_guarded(lp, main())

    assert scenario(loop) == support.run_on_reference(scenario)


def test_sock_argument(loop):
    async def main():
        raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        raw.bind(("127.0.0.1", 0))
        raw.setblocking(False)
        t, p = await endpoint(loop, sock=raw)
        assert t.get_extra_info("socket").fileno() == raw.fileno()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
            other.sendto(b"to sock", raw.getsockname())
            await p.until(1)
            assert p.datagrams == [(b"to sock", ("127.0.0.1", other.getsockname()[1]))]
        await close(t)
        assert raw.fileno() == -1
    support.run_guarded(loop, main())


def test_error_received_connection_refused(loop):
    """A connected endpoint whose peer port has nothing bound: the ICMP
    port-unreachable comes back as error_received(ConnectionRefusedError);
    the endpoint stays open and usable."""
    def scenario(lp):
        async def main():
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as gone:
                gone.bind(("127.0.0.1", 0))
                addr = gone.getsockname()
            a, pa = await endpoint(lp, remote_addr=addr)
            a.sendto(b"anyone?")
            await pa.until(1)
            a.sendto(b"again?")
            await pa.until(2)
            result = ([type(e) for e in pa.errors], pa.datagrams, a.is_closing(), pa.calls)
            await close(a)
            return result
        return support.run_guarded(lp, main())

    expected = support.run_on_reference(scenario)
    assert expected[0][0] is ConnectionRefusedError
    assert scenario(loop) == expected


def test_empty_datagram_and_type_errors_as_asyncio(loop):
    def scenario(lp):
        async def main():
            b, pb = await endpoint(lp, local_addr=("127.0.0.1", 0))
            a, pa = await endpoint(lp, remote_addr=b.get_extra_info("sockname"))
            results = [support.outcome(a.sendto, b""),
                       support.outcome(a.sendto, "text"),
                       support.outcome(a.sendto, b"x", ("127.0.0.1", 1))]
            a.sendto(b"end")
            await pb.until(1)
            await iterations(3)
            results.append([d for d, _ in pb.datagrams])
            results.append(a.get_write_buffer_size())
            await close(a, b)
            return [re.sub(r"\d{4,5}", "PORT", repr(r)) for r in results]
        return support.run_guarded(lp, main())

    expected = support.run_on_reference(scenario)
    assert "TypeError" in expected[1] and "ValueError" in expected[2]
    assert scenario(loop) == expected


DATAGRAM_ERROR_CASES = ("nothing", "tcp sock", "sock and local_addr", "reuse_address true",
                        "remote and local mismatch", "unknown family")


def datagram_error(lp, case):
    async def main():
        tcp = socket.socket()
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            kwargs = {
                "nothing": {},
                "tcp sock": {"sock": tcp},
                "sock and local_addr": {"sock": udp, "local_addr": ("127.0.0.1", 0)},
                "reuse_address true": {"local_addr": ("127.0.0.1", 0), "reuse_address": True},
                "remote and local mismatch": {"local_addr": ("::1", 0),
                                              "remote_addr": ("127.0.0.1", 9)},
                "unknown family": {"family": 12345},
            }[case]
            try:
                coro = lp.create_datagram_endpoint(DatagramRecorder, **kwargs)
            except TypeError as exc:  # a keyword this Python does not have
                return ("raised", TypeError, re.sub(r"^[\w.]+\(\)", "()", str(exc)))
            return await _outcome(coro)
        finally:
            tcp.close()
            udp.close()
    result = support.run_guarded(lp, main())
    if result[0] == "returned":
        result[1][0].close()
        return ("returned",)
    return result


@pytest.mark.parametrize("case", DATAGRAM_ERROR_CASES)
def test_datagram_endpoint_errors_as_asyncio(loop, case):
    expected = support.run_on_reference(lambda lp: datagram_error(lp, case))
    got = datagram_error(loop, case)
    if got[0] == "returned":
        support.run_briefly(loop)  # let the closed endpoint's connection_lost run
    assert got == expected


def test_abort(loop):
    async def main():
        a, pa = await endpoint(loop, local_addr=("127.0.0.1", 0))
        a.abort()
        assert a.is_closing()
        assert await wait(pa.lost) is None
        await iterations(2)
        assert pa.calls == ["made", "lost"]
    support.run_guarded(loop, main())
