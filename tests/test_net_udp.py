"""UDP and Unix datagrams: create_datagram_endpoint (local_addr,
remote_addr, family, reuse_port, allow_broadcast, sock=), sendto and
datagram_received, error_received (ConnectionRefusedError on a connected
endpoint whose peer is gone, a failed send), flow control with the send
queue, close and abort with datagrams queued, the transport's type and
repr. Argument errors and per-version details (empty datagrams are sent
from 3.13 on) are taken from the stock loop.
"""

import asyncio
import contextvars
import gc
import logging
import os
import re
import socket
import sys
import tempfile

import pytest

import support
from support import iterations, outcome_of, wait

pytestmark = pytest.mark.fail_fast


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

    def pause_writing(self):
        self.calls.append("pause")

    def resume_writing(self):
        self.calls.append("resume")

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
            return await outcome_of(coro)
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


def test_transport_type_and_repr(loop, loop_kind):
    def scenario(lp):
        async def main():
            a, _ = await endpoint(lp, local_addr=("127.0.0.1", 0))
            open_repr = repr(a)
            await close(a)
            return [re.sub(r"^<\w+ ", "<T ", re.sub(r"fd=\d+", "fd=N", r))
                    for r in (open_repr, repr(a))]
        return support.run_guarded(lp, main())

    assert scenario(loop) == support.run_on_reference(scenario)

    async def main():
        a, _ = await endpoint(loop, local_addr=("127.0.0.1", 0))
        # asyncio's own is a DatagramTransport from 3.12 on; goloop's always.
        assert isinstance(a, asyncio.DatagramTransport) or (
            loop_kind == "asyncio" and sys.version_info < (3, 12))
        assert isinstance(a, asyncio.BaseTransport)
        assert a.get_write_buffer_limits() == (16384, 65536)
        await close(a)
    support.run_guarded(loop, main())


def test_burst_of_datagrams(loop):
    """Many datagrams sent at once all arrive, in order, each with the
    sender's address."""
    n = 200

    async def main():
        b, pb = await endpoint(loop, local_addr=("127.0.0.1", 0))
        b.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        a, pa = await endpoint(loop, local_addr=("127.0.0.1", 0))
        for i in range(n):
            a.sendto(b"%05d" % i + b"." * 95, b.get_extra_info("sockname"))
        await pb.until(n)
        assert [d[:5] for d, _ in pb.datagrams] == [b"%05d" % i for i in range(n)]
        assert {addr for _, addr in pb.datagrams} == {a.get_extra_info("sockname")}
        await close(a, b)
    support.run_guarded(loop, main())


def unix_pair(directory, sndbuf=None):
    """Two Unix datagram sockets bound in directory, the first connected to
    the second. (Not socketpair(): its sockets have no names, peername is
    '', and asyncio then sends with sendto(data, None), which fails.)"""
    socks = []
    for name in ("a", "b"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.setblocking(False)
        s.bind(os.path.join(directory, name))
        socks.append(s)
    socks[0].connect(socks[1].getsockname())
    if sndbuf is not None:
        socks[0].setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    return socks


def test_back_pressure_pauses_then_resumes_writing(loop):
    """sendto() on a full socket queues the datagram; past the high water
    mark the protocol is paused, and resumed once the peer has read enough.
    Nothing is lost or reordered."""
    n = 300

    def scenario(lp):
        async def main():
            with tempfile.TemporaryDirectory() as d:
                return await run(*unix_pair(d, sndbuf=16 << 10))

        async def run(sa, sb):
            a, pa = await endpoint(lp, sock=sa)
            a.set_write_buffer_limits(high=20000)
            for i in range(n):
                a.sendto(b"%05d" % i + b"." * 995)
            queued = a.get_write_buffer_size()
            calls_before = list(pa.calls)
            b, pb = await endpoint(lp, sock=sb)
            await pb.until(n)
            await iterations(3)
            result = (queued > 20000, calls_before, list(pa.calls),
                      [d[:5] for d, _ in pb.datagrams] == [b"%05d" % i for i in range(n)],
                      {os.path.basename(addr) for _, addr in pb.datagrams})
            await close(a, b)
            return result
        return support.run_guarded(lp, main())

    expected = support.run_on_reference(scenario)
    assert expected[:4] == (True, ["made", "pause"], ["made", "pause", "resume"], True)
    assert scenario(loop) == expected


@pytest.mark.parametrize("how", ["close", "abort"])
def test_close_flushes_queue_abort_drops_it(loop, how):
    """close() with datagrams queued sends them all before connection_lost
    (as asyncio's _sendto_ready does); abort() drops them. connection_lost
    is called once, with None."""
    def scenario(lp):
        async def main():
            with tempfile.TemporaryDirectory() as d:
                return await run(*unix_pair(d, sndbuf=8 << 10))

        async def run(sa, sb):
            a, pa = await endpoint(lp, sock=sa)
            sent = 0
            while a.get_write_buffer_size() == 0:
                a.sendto(b"x" * 100)
                sent += 1
            a.sendto(b"last")
            sent += 1
            getattr(a, how)()
            closing = a.is_closing()
            await iterations(3)
            calls_meanwhile = list(pa.calls)
            b, pb = await endpoint(lp, sock=sb)
            assert await wait(pa.lost) is None
            if how == "close":
                await pb.until(sent)
            else:
                await iterations(5)
            await iterations(3)
            got = [d for d, _ in pb.datagrams]
            result = (closing, calls_meanwhile, list(pa.calls), len(got) == sent,
                      got[-1:] == [b"last"])
            await close(b)
            return result
        return support.run_guarded(lp, main())

    expected = support.run_on_reference(scenario)
    if how == "close":
        assert expected == (True, ["made"], ["made", "lost"], True, True)
    else:
        assert expected[2:] == (["made", "lost"], False, False)
    assert scenario(loop) == expected


def test_sendto_after_close_warns_from_the_fifth(loop, asyncio_log):
    """A connected endpoint drops what is sent once it is closed, and logs
    'socket.send() raised exception.' from the fifth such send on."""
    def scenario(lp):
        async def main():
            b, pb = await endpoint(lp, local_addr=("127.0.0.1", 0))
            a, pa = await endpoint(lp, remote_addr=b.get_extra_info("sockname"))
            asyncio_log.clear()
            a.close()
            for _ in range(3):
                a.sendto(b"x")
            await wait(pa.lost)
            for _ in range(4):
                a.sendto(b"y")
            await iterations(3)
            warnings = [r.getMessage() for r in asyncio_log.records
                        if r.levelno == logging.WARNING]
            asyncio_log.clear()
            result = (warnings, pb.datagrams, pa.calls)
            await close(b)
            return result
        return support.run_guarded(lp, main())

    expected = support.run_on_reference(scenario)
    assert expected[0] == ["socket.send() raised exception."] * 3
    assert scenario(loop) == expected


def test_sendto_after_connection_lost_is_never_silent(loop, asyncio_log):
    """Once connection_lost has run, an endpoint made without remote_addr
    cannot send: each sendto() either raises (asyncio: an AttributeError
    from the socket it has set to None, an accident of its code) or is
    dropped and logged from the fifth on, as a connected endpoint's are
    (goloop, as uvloop)."""
    def scenario(lp):
        async def main():
            b, pb = await endpoint(lp, local_addr=("127.0.0.1", 0))
            a, pa = await endpoint(lp, local_addr=("127.0.0.1", 0))
            a.close()
            await wait(pa.lost)
            asyncio_log.clear()
            to = b.get_extra_info("sockname")
            raised = [support.raised(support.outcome(a.sendto, b"x", to)) is not None
                      for _ in range(6)]
            await iterations(3)
            logged = [r.getMessage() for r in asyncio_log.records if r.levelno == logging.WARNING]
            asyncio_log.clear()
            result = (raised, logged, pb.datagrams)
            await close(b)
            return result
        return support.run_guarded(lp, main())

    raised, logged, received = scenario(loop)
    assert received == []
    assert raised == [True] * 6 or (
        raised == [False] * 6 and logged == ["socket.send() raised exception."] * 2)


@pytest.mark.parametrize("how", ["close", "abort"])
@pytest.mark.parametrize("made_with", ["local_addr", "connected sock"])
def test_sendto_after_close_without_remote_addr_still_sends(loop, how, made_with):
    """An endpoint made without remote_addr goes on sending once closed or
    aborted, until connection_lost: asyncio's sendto() checks _conn_lost
    only when the transport has an address. A send the kernel refuses
    still reaches error_received, whose close() is then a no-op (CPython's
    test_datagram_write_error_close_from_callback)."""
    def scenario(lp):
        async def main():
            b, pb = await endpoint(lp, local_addr=("127.0.0.1", 0))
            host, port = b.get_extra_info("sockname")
            if made_with == "local_addr":
                a, pa = await endpoint(lp, local_addr=("127.0.0.1", 0))
            else:
                raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                raw.setblocking(False)
                raw.connect((host, port))
                a, pa = await endpoint(lp, sock=raw)
            pa.error_received = lambda exc: (pa.errors.append(exc), a.close())
            getattr(a, how)()
            a.sendto(b"numeric", (host, port))
            a.sendto(b"by name", ("localhost", port))  # the slow path
            a.sendto(bytes(70000), (host, port))  # EMSGSIZE
            await wait(pa.lost)
            await pb.until(2)
            result = (sorted(d for d, _ in pb.datagrams), [type(e) for e in pa.errors],
                      pa.calls)
            await close(b)
            return result
        return support.run_guarded(lp, main())

    expected = support.run_on_reference(scenario)
    assert expected == ([b"by name", b"numeric"], [OSError], ["made", "lost"])
    assert scenario(loop) == expected


def test_send_error_goes_to_error_received(loop):
    """A send the kernel refuses (broadcast without SO_BROADCAST: EACCES)
    is reported through error_received, not raised, and the endpoint stays
    open; the same for an address given by a special name."""
    def scenario(lp):
        async def main():
            a, pa = await endpoint(lp, local_addr=("127.0.0.1", 0))
            r1 = support.outcome(a.sendto, b"x", ("255.255.255.255", 9))
            r2 = support.outcome(a.sendto, b"x", ("<broadcast>", 9))
            result = (r1, r2, [type(e) for e in pa.errors], a.is_closing())
            await close(a)
            return result
        return support.run_guarded(lp, main())

    expected = support.run_on_reference(scenario)
    assert expected[2] == [PermissionError, PermissionError]
    assert scenario(loop) == expected


class Raising(DatagramRecorder):
    def datagram_received(self, data, addr):
        super().datagram_received(data, addr)
        if data == b"raise":
            raise ZeroDivisionError("in datagram_received")

    def error_received(self, exc):
        super().error_received(exc)
        raise LookupError("in error_received")


def test_protocol_exceptions_as_asyncio(loop):
    """An exception from datagram_received reaches the exception handler
    and the endpoint keeps receiving; one from error_received inside
    sendto() propagates to sendto's caller."""
    def scenario(lp):
        async def main():
            with support.captured_exceptions(lp) as contexts:
                b, pb = await wait(lp.create_datagram_endpoint(
                    Raising, local_addr=("127.0.0.1", 0)))
                a, pa = await endpoint(lp, local_addr=("127.0.0.1", 0))
                a.sendto(b"raise", b.get_extra_info("sockname"))
                await pb.until(1)
                a.sendto(b"after", b.get_extra_info("sockname"))
                await pb.until(2)
                sent = support.outcome(b.sendto, b"x", ("255.255.255.255", 9))
                await iterations(3)
            result = ([d for d, _ in pb.datagrams], sent, b.is_closing(),
                      [(c["message"].split()[:3], type(c["exception"])) for c in contexts])
            await close(a, b)
            return result
        return support.run_guarded(lp, main())

    expected = support.run_on_reference(scenario)
    assert expected[1] == ("raised", LookupError, "in error_received")
    assert expected[3] == [(["Exception", "in", "callback"], ZeroDivisionError)]
    assert scenario(loop) == expected


@pytest.mark.parametrize("addr", [None, "not an address", ("127.0.0.1",), ("127.0.0.1", 70000)])
def test_bad_address_as_asyncio(loop, addr):
    """sendto() to what socket.sendto() cannot take, on an unconnected
    endpoint: asyncio reports a fatal write error and closes."""
    def scenario(lp):
        async def main():
            with support.captured_exceptions(lp) as contexts:
                a, pa = await endpoint(lp, local_addr=("127.0.0.1", 0))
                r = support.outcome(a.sendto, b"x", addr)
                exc = await wait(pa.lost)
                await iterations(2)
            return (r, [(c["message"], type(c["exception"]), str(c["exception"]))
                        for c in contexts], type(exc), str(exc), pa.calls)
        return support.run_guarded(lp, main())

    expected = support.run_on_reference(scenario)
    assert expected[1][0][0] == "Fatal write error on datagram transport"
    assert scenario(loop) == expected


def test_host_names_and_keywords(loop):
    async def main():
        b, pb = await endpoint(loop, local_addr=("127.0.0.1", 0))
        a, pa = await endpoint(loop, local_addr=("127.0.0.1", 0))
        port = b.get_extra_info("sockname")[1]
        a.sendto(b"by name", ("localhost", port))
        a.sendto(data=b"keywords", addr=("127.0.0.1", port))
        a.sendto(b"tuple subclass", type("T", (tuple,), {})(("127.0.0.1", port)))
        await pb.until(3)
        assert sorted(d for d, _ in pb.datagrams) == [b"by name", b"keywords", b"tuple subclass"]
        await close(a, b)
    support.run_guarded(loop, main())


def test_connected_sock_sends_to_its_peer(loop):
    """Given a connected socket (sock=, no remote_addr), sendto() sends to
    the peer whatever address it is given, as asyncio's send() does."""
    def scenario(lp):
        async def main():
            b, pb = await endpoint(lp, local_addr=("127.0.0.1", 0))
            raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            raw.setblocking(False)
            raw.connect(b.get_extra_info("sockname"))
            a, pa = await endpoint(lp, sock=raw)
            a.sendto(b"one")
            a.sendto(b"two", ("127.0.0.1", 9))
            await pb.until(2)
            result = ([d for d, _ in pb.datagrams], pa.errors,
                      a.get_extra_info("peername") == b.get_extra_info("sockname"))
            await close(a, b)
            return result
        return support.run_guarded(lp, main())

    expected = support.run_on_reference(scenario)
    assert expected == ([b"one", b"two"], [], True)
    assert scenario(loop) == expected


def test_ipv6_addresses(loop):
    async def main():
        try:
            b, pb = await endpoint(loop, local_addr=("::1", 0), family=socket.AF_INET6)
        except OSError as exc:
            pytest.skip(f"no IPv6 loopback: {exc}")
        a, pa = await endpoint(loop, local_addr=("::1", 0), family=socket.AF_INET6)
        addr_a, addr_b = a.get_extra_info("sockname"), b.get_extra_info("sockname")
        assert len(addr_b) == 4
        a.sendto(b"four", addr_b)
        a.sendto(b"two", addr_b[:2])
        await pb.until(2)
        assert pb.datagrams == [(b"four", addr_a), (b"two", addr_a)]
        b.sendto(b"reply", pb.datagrams[0][1])
        await pa.until(1)
        assert pa.datagrams == [(b"reply", addr_b)]
        await close(a, b)
    support.run_guarded(loop, main())


def test_unix_datagram_sockets(loop):
    """AF_UNIX SOCK_DGRAM through sock=: path names (str), abstract names
    (bytes) and an unbound sender, with the addresses the socket module
    gives."""
    def scenario(lp):
        async def main():
            with tempfile.TemporaryDirectory() as d:
                socks = []
                for name in (os.path.join(d, "a"), os.path.join(d, "b"),
                             b"\0goloop-udp-%d" % os.getpid(), None):
                    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                    s.setblocking(False)
                    if name is not None:
                        s.bind(name)
                    socks.append(s)
                (a, pa), (b, pb), (c, pc), (u, pu) = [await endpoint(lp, sock=s) for s in socks]
                path_b = b.get_extra_info("sockname")
                abstract = c.get_extra_info("sockname")
                a.sendto(b"to path", path_b)
                a.sendto(b"to abstract", abstract)
                u.sendto(b"unbound", path_b)
                await pb.until(2)
                await pc.until(1)
                b.sendto(b"reply", pb.datagrams[0][1])
                await pa.until(1)
                result = [[(data, addr.replace(d, "D") if isinstance(addr, str) else addr)
                           for data, addr in p.datagrams] for p in (pa, pb, pc)]
                await close(a, b, c, u)
            return result
        return support.run_guarded(lp, main())

    expected = support.run_on_reference(scenario)
    assert expected[0] == [(b"reply", "D/b")]
    assert scenario(loop) == expected


def test_pause_and_resume_reading(loop):
    async def main():
        b, pb = await endpoint(loop, local_addr=("127.0.0.1", 0))
        a, pa = await endpoint(loop, local_addr=("127.0.0.1", 0))
        assert b.is_reading()
        b.pause_reading()
        assert not b.is_reading()
        a.sendto(b"held", b.get_extra_info("sockname"))
        support.wait_readable(b.get_extra_info("socket").fileno())
        await iterations(3)
        assert pb.datagrams == []
        b.resume_reading()
        await pb.until(1)
        assert pb.datagrams[0][0] == b"held"
        await close(a, b)
        assert not b.is_reading()
    support.run_guarded(loop, main())


def test_many_endpoints_leave_no_descriptors(loop):
    def fds():
        gc.collect()
        return len(os.listdir("/proc/self/fd"))

    async def cycle(n):
        for _ in range(n):
            b, pb = await endpoint(loop, local_addr=("127.0.0.1", 0))
            a, pa = await endpoint(loop, remote_addr=b.get_extra_info("sockname"))
            a.sendto(b"x")
            await pb.until(1)
            await close(a, b)

    async def main():
        await cycle(20)
        before = fds()
        await cycle(300)
        assert fds() == before
    support.run_guarded(loop, main())


def test_callbacks_ready_before_the_datagram_run_first(loop):
    """A datagram that is waiting when the loop polls is delivered after
    the callbacks that were ready before the poll, as asyncio queues its
    reader behind them (a task ready to create the future that
    datagram_received resolves must run first)."""
    async def main():
        order = []
        b, pb = await endpoint(loop, local_addr=("127.0.0.1", 0))
        pb.datagram_received = lambda data, addr: order.append("datagram")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"x", b.get_extra_info("sockname"))
        support.wait_readable(b.get_extra_info("socket").fileno())
        loop.call_soon(order.append, "ready before")
        await iterations(3)
        assert order == ["ready before", "datagram"]
        await close(b)
    support.run_guarded(loop, main())


def test_unclosed_endpoint_warns_and_closes_its_socket(loop_factory):
    """An endpoint never closed lives as long as its loop; once the loop is
    closed and the transport collected, it warns 'unclosed transport' and
    closes its socket, as asyncio's __del__ does."""
    lp = loop_factory()

    async def main():
        t, _ = await endpoint(lp, local_addr=("127.0.0.1", 0))
        return t.get_extra_info("socket").fileno()

    fd = support.run_guarded(lp, main())
    gc.collect()
    os.fstat(fd)  # the loop keeps the endpoint open
    with pytest.warns(ResourceWarning, match="unclosed transport"):
        lp.close()
        gc.collect()
    with pytest.raises(OSError):
        os.fstat(fd)


def trace_contexts(lp):
    """Which value of a context variable each protocol callback sees, and
    what it sets, over reads, back-pressure, a send error and close."""
    var = contextvars.ContextVar("var", default="unset")

    class Tracing(asyncio.DatagramProtocol):
        def __init__(self, trace, side):
            self.trace, self.side = trace, side
            self.got = asyncio.Queue()
            self.resumed = lp.create_future()
            self.lost = lp.create_future()

        def record(self, event):
            self.trace.append((self.side, event, var.get()))
            var.set(f"{self.side}-{event}")

        def connection_made(self, transport):
            self.transport = transport
            self.record("made")

        def datagram_received(self, data, addr):
            if not data.startswith(b"flood"):
                self.record("datagram")
                self.got.put_nowait(data)

        def error_received(self, exc):
            self.record(f"error {type(exc).__name__}")
            self.got.put_nowait(exc)

        def pause_writing(self):
            self.record("pause")

        def resume_writing(self):
            self.record("resume")
            support._resolve(self.resumed, None)

        def connection_lost(self, exc):
            self.record("lost")
            support._resolve(self.lost, None)

    async def in_context(value, fn, *args):
        async def run():
            var.set(value)
            return fn(*args)
        return await asyncio.create_task(run())

    async def main():
        trace = []
        with tempfile.TemporaryDirectory() as d:
            sa, sb = unix_pair(d, sndbuf=8 << 10)
            var.set("creator")
            a, pa = await lp.create_datagram_endpoint(lambda: Tracing(trace, "a"), sock=sa)
            var.set("creator b")
            b, pb = await lp.create_datagram_endpoint(lambda: Tracing(trace, "b"), sock=sb)
            var.set("main")
            for chunk in (b"one", b"two"):
                await in_context("sender", a.sendto, chunk)
                assert await wait(pb.got.get()) == chunk
            b.pause_reading()
            # Big datagrams and a low-water mark well above 0: 3.13.0
            # counts 8 bytes per queued datagram it never takes back.
            a.set_write_buffer_limits(high=4000)

            def flood():
                while a.get_write_buffer_size() <= 4000:
                    a.sendto(b"flood" + b"." * 995)
            await in_context("flooder", flood)
            await in_context("resumer", b.resume_reading)
            await wait(pa.resumed)
            await in_context("closer", a.close)
            await in_context("closer b", b.abort)
            await wait(asyncio.gather(pa.lost, pb.lost))
        # error_received: from the reader (an ICMP error on a connected
        # socket) and from sendto() itself (EACCES, in the caller's).
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as gone:
            gone.bind(("127.0.0.1", 0))
            addr = gone.getsockname()
        var.set("creator c")
        c, pc = await lp.create_datagram_endpoint(lambda: Tracing(trace, "c"), remote_addr=addr)
        await in_context("sender", c.sendto, b"anyone?")
        await wait(pc.got.get())
        var.set("creator d")
        d, pd = await lp.create_datagram_endpoint(lambda: Tracing(trace, "d"),
                                                  local_addr=("127.0.0.1", 0))
        await in_context("sender", d.sendto, b"x", ("255.255.255.255", 9))
        await in_context("closer", c.close)
        await in_context("closer", d.close)
        await wait(asyncio.gather(pc.lost, pd.lost))
        return trace

    return lp.run_until_complete(main())


def test_protocol_callbacks_run_in_asyncio_contexts(loop):
    loop.set_debug(False)
    assert trace_contexts(loop) == support.run_on_reference(trace_contexts)


def test_slow_datagram_callback_is_logged(loop, asyncio_log):
    loop.set_debug(True)
    loop.slow_callback_duration = 0.0

    async def main():
        b, pb = await endpoint(loop, local_addr=("127.0.0.1", 0))
        a, pa = await endpoint(loop, remote_addr=b.get_extra_info("sockname"))
        a.sendto(b"ping")
        await pb.until(1)
        await close(a, b)

    support.run_guarded(loop, main())
    # asyncio names the class that defines the method: _SelectorTransport
    # for _call_connection_lost.
    support.assert_logged_slow(asyncio_log.records,
                               r"\w*DatagramTransport\._read_ready\(\)",
                               r"\w*Transport\._call_connection_lost\(None\)")
