"""fd watching: add_reader/add_writer/remove_reader/remove_writer.

asyncio's selector loop semantics: level-triggered callbacks, fds given as
ints or as objects with fileno(), a second add_* replacing (and cancelling)
the first handler, remove_* answering whether a handler was removed, a
queued callback cancelled by a remove in the same iteration, asyncio's
ValueError/OSError for bad fds, and the RuntimeError for an fd a transport
owns.
"""

import asyncio
import errno
import os
import socket

import pytest

import support
from support import iterations

pytestmark = pytest.mark.fail_fast


METHODS = ("add_reader", "add_writer", "remove_reader", "remove_writer")


def noop(*args):
    pass


def call(loop, method, fd, *args):
    fn = getattr(loop, method)
    return fn(fd, noop, *args) if method.startswith("add") else fn(fd)


@pytest.fixture
def pair():
    with support.socketpair() as ab:
        yield ab


class Wrapper:
    """Any object with fileno(), as selectors accepts."""

    def __init__(self, sock):
        self.sock = sock

    def fileno(self):
        return self.sock.fileno()

    def __repr__(self):
        return "<Wrapper>"


def test_reader_with_int_fd(loop, pair):
    a, b = pair
    async def main():
        got = loop.create_future()
        assert loop.add_reader(a.fileno(), lambda *args: support._resolve(got, args), 1, "x") is None
        b.send(b"ping")
        assert await asyncio.wait_for(got, support.GUARD) == (1, "x")
        assert loop.remove_reader(a.fileno()) is True
        assert loop.remove_reader(a.fileno()) is False
    support.run_guarded(loop, main())


def test_reader_with_fileno_object_removed_by_int(loop, pair):
    a, b = pair
    async def main():
        got = loop.create_future()
        loop.add_reader(Wrapper(a), lambda: support._resolve(got, "read"))
        b.send(b"ping")
        assert await asyncio.wait_for(got, support.GUARD) == "read"
        # Keys are by fd: the object, the socket and the int are the same fd.
        assert loop.remove_reader(a) is True
        assert loop.remove_reader(Wrapper(a)) is False
        assert loop.remove_reader(a.fileno()) is False
    support.run_guarded(loop, main())


def test_writer_with_socket_object(loop, pair):
    a, _ = pair
    async def main():
        got = loop.create_future()
        loop.add_writer(a, lambda s: support._resolve(got, s), a)
        assert await asyncio.wait_for(got, support.GUARD) is a
        assert loop.remove_writer(a) is True
        assert loop.remove_writer(a) is False
        assert loop.remove_writer(a.fileno()) is False
    support.run_guarded(loop, main())


def test_remove_of_never_watched_fd(loop, pair):
    a, _ = pair
    assert loop.remove_reader(a.fileno()) is False
    assert loop.remove_writer(a) is False


def test_level_triggered(loop, pair):
    """A reader that does not consume the data is called again on every
    iteration; one that drains it is not called until new data arrives."""
    a, b = pair
    async def main():
        calls = []
        three = loop.create_future()

        def on_read():
            calls.append(1)
            if len(calls) == 3:
                support._resolve(three, None)

        loop.add_reader(a, on_read)
        b.send(b"x")
        await asyncio.wait_for(three, support.GUARD)
        loop.remove_reader(a)

        drained = []
        first = loop.create_future()

        def drain():
            drained.append(a.recv(100))
            support._resolve(first, None)

        loop.add_reader(a, drain)
        await asyncio.wait_for(first, support.GUARD)
        await iterations(5)
        assert drained == [b"x"]
        b.send(b"y")
        support.wait_readable(a.fileno())
        await iterations(3)
        assert drained == [b"x", b"y"]
        loop.remove_reader(a)
    support.run_guarded(loop, main())


def test_reader_and_writer_are_independent(loop, pair):
    a, b = pair
    async def main():
        wrote = loop.create_future()
        loop.add_reader(a, noop)
        loop.add_writer(a, lambda: support._resolve(wrote, None))
        await asyncio.wait_for(wrote, support.GUARD)
        assert loop.remove_writer(a) is True
        assert loop.remove_reader(a) is True
        assert loop.remove_writer(a) is False
        # The reader still works after its fd's writer went away.
        read = loop.create_future()
        loop.add_writer(a, noop)
        loop.add_reader(a, lambda: support._resolve(read, a.recv(10)))
        assert loop.remove_writer(a) is True
        b.send(b"r")
        assert await asyncio.wait_for(read, support.GUARD) == b"r"
        assert loop.remove_reader(a) is True
    support.run_guarded(loop, main())


def test_add_replaces_previous_handler(loop, pair):
    a, b = pair
    async def main():
        calls = []
        got = loop.create_future()
        loop.add_reader(a, lambda: calls.append("old"))
        loop.add_reader(a.fileno(), lambda: (calls.append("new"), support._resolve(got, None)))
        b.send(b"x")
        await asyncio.wait_for(got, support.GUARD)
        assert loop.remove_reader(a) is True
        assert set(calls) == {"new"}

        wcalls = []
        wrote = loop.create_future()
        loop.add_writer(a, lambda: wcalls.append("old"))
        loop.add_writer(Wrapper(a), lambda: (wcalls.append("new"), support._resolve(wrote, None)))
        await asyncio.wait_for(wrote, support.GUARD)
        assert loop.remove_writer(a) is True
        assert set(wcalls) == {"new"}
    support.run_guarded(loop, main())


@pytest.mark.parametrize("action", ["remove", "replace"])
def test_queued_callback_cancelled_by_remove_or_replace(loop, pair, action):
    """The fd is readable and writable: both handlers are due in the same
    iteration. Whichever runs first removes (or replaces) the other, whose
    already-queued handle is cancelled and must not run: asyncio cancels
    the old Handle."""
    a, b = pair
    async def main():
        calls = []
        done = loop.create_future()

        def make(kind):
            other_add, other_remove = (
                (loop.add_writer, loop.remove_writer) if kind == "reader"
                else (loop.add_reader, loop.remove_reader))
            mine = loop.remove_reader if kind == "reader" else loop.remove_writer

            def cb():
                calls.append(kind)
                mine(a)
                if action == "remove":
                    other_remove(a)
                    loop.call_soon(support._resolve, done, None)
                else:
                    other_add(a, replacement)
            return cb

        def replacement():
            calls.append("replacement")
            loop.remove_reader(a)
            loop.remove_writer(a)
            support._resolve(done, None)

        b.send(b"x")
        support.wait_readable(a.fileno())
        loop.add_reader(a, make("reader"))
        loop.add_writer(a, make("writer"))
        await asyncio.wait_for(done, support.GUARD)
        await iterations(3)
        assert len(calls) == (1 if action == "remove" else 2), calls
        if action == "replace":
            assert calls[1] == "replacement"
    support.run_guarded(loop, main())


def test_queued_callback_of_other_fd_cancelled(loop):
    """Two readable fds due in one iteration: the first callback removes the
    other fd's reader, whose queued handle must not run."""
    (a1, b1), (a2, b2) = socket.socketpair(), socket.socketpair()
    socks = [a1, b1, a2, b2]
    try:
        async def main():
            calls = []
            done = loop.create_future()

            def cb(mine, other):
                calls.append(mine)
                loop.remove_reader(mine)
                loop.remove_reader(other)
                loop.call_soon(support._resolve, done, None)

            b1.send(b"x")
            b2.send(b"x")
            support.wait_readable(a1.fileno())
            support.wait_readable(a2.fileno())
            loop.add_reader(a1, cb, a1, a2)
            loop.add_reader(a2, cb, a2, a1)
            await asyncio.wait_for(done, support.GUARD)
            await iterations(3)
            assert len(calls) == 1, calls
        support.run_guarded(loop, main())
    finally:
        for s in socks:
            s.close()


class NoFileno:
    def __repr__(self):
        return "<NoFileno>"


class StrFileno(NoFileno):
    def fileno(self):
        return "x"


class RaisingFileno(NoFileno):
    def fileno(self):
        raise ValueError("I/O operation on closed file")


class NegativeFileno(NoFileno):
    def fileno(self):
        return -5


def closed_fd_number():
    for fd in range(900, 1000):
        try:
            os.fstat(fd)
        except OSError as exc:
            assert exc.errno == errno.EBADF
            return fd
    raise AssertionError("no free fd number in 900..999")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("what", [
    "minus one", "negative fileno()", "no fileno", "str fileno", "raising fileno",
    "str", "float", "None", "closed fd", "regular file", "huge int"])
def test_invalid_fd_errors_as_asyncio(loop, tmp_path, method, what):
    """ValueError('Invalid file descriptor: ...'/'Invalid file object: ...'),
    OSError from epoll (EBADF, EPERM for a regular file), exactly as the
    stock loop raises them for the same argument."""
    path = tmp_path / "f"
    path.write_bytes(b"x")
    with open(path, "rb") as regular:
        arg = {
            "minus one": -1, "negative fileno()": NegativeFileno(), "no fileno": NoFileno(),
            "str fileno": StrFileno(), "raising fileno": RaisingFileno(), "str": "3",
            "float": 3.0, "None": None, "closed fd": closed_fd_number(),
            "regular file": regular, "huge int": 2**40,
        }[what]
        expected = support.run_on_reference(lambda ref: support.outcome(call, ref, method, arg))
        got = support.outcome(call, loop, method, arg)
        if got[0] == "returned" and method.startswith("add"):
            call(loop, "remove" + method[3:], arg)
    assert got == expected


def test_fd_owned_by_transport(loop):
    """A socket a transport owns cannot be watched directly until the
    transport is closing: RuntimeError naming the fd (as given) and the
    transport."""
    async def main():
        a, b = socket.socketpair()
        try:
            transport, proto = await loop.connect_accepted_socket(support.Recorder, a)
            fd = a.fileno()
            for method in METHODS:
                for arg in (fd, a, Wrapper(a)):
                    got = support.outcome(call, loop, method, arg)
                    assert got == (
                        "raised", RuntimeError,
                        f"File descriptor {arg!r} is used by transport {transport!r}"), (method, arg)
            transport.close()
            assert transport.is_closing()
            # Closing: allowed again (nothing is watched for the caller).
            assert loop.remove_reader(fd) is False
            assert loop.remove_writer(fd) is False
            await asyncio.wait_for(proto.lost, support.GUARD)
        finally:
            b.close()
    support.run_guarded(loop, main())


def test_fd_watching_on_closed_loop(loop_factory, pair):
    lp = loop_factory()
    lp.close()
    a, _ = pair
    assert support.raised(support.outcome(lp.add_reader, a, noop)) == (
        RuntimeError, "Event loop is closed")
    assert support.raised(support.outcome(lp.add_writer, a, noop)) == (
        RuntimeError, "Event loop is closed")
    assert lp.remove_reader(a) is False
    assert lp.remove_writer(a) is False


def test_closed_fd_under_a_watcher(loop):
    """A watched socket closed without remove_reader: its callback does not
    run (epoll forgot the fd), the loop keeps working, remove_reader still
    answers True, and the fd number reused by a new socket can be watched."""
    async def main():
        a, b = socket.socketpair()
        fd = a.fileno()
        calls = []
        b.send(b"x")
        support.wait_readable(fd)
        loop.add_reader(fd, calls.append, "stale")
        a.close()
        other = loop.create_future()
        loop.call_soon(support._resolve, other, None)
        await asyncio.wait_for(other, support.GUARD)
        await iterations(5)
        assert calls == []
        assert loop.remove_reader(fd) is True
        c, d = socket.socketpair()
        try:
            assert fd in (c.fileno(), d.fileno())
            reused = c if c.fileno() == fd else d
            peer = d if reused is c else c
            got = loop.create_future()
            loop.add_reader(fd, lambda: support._resolve(got, reused.recv(10)))
            peer.send(b"fresh")
            assert await asyncio.wait_for(got, support.GUARD) == b"fresh"
            assert loop.remove_reader(fd) is True
            assert calls == []
        finally:
            b.close()
            c.close()
            d.close()
    support.run_guarded(loop, main())


def test_callback_exception_goes_to_handler_and_watch_continues(loop, pair):
    a, b = pair
    async def main():
        calls = []
        second = loop.create_future()

        def cb():
            calls.append(1)
            if len(calls) == 2:
                support._resolve(second, None)
                loop.remove_reader(a)
            raise ZeroDivisionError("boom")

        with support.captured_exceptions(loop) as contexts:
            loop.add_reader(a, cb)
            b.send(b"x")
            await asyncio.wait_for(second, support.GUARD)
        assert len(contexts) == 2
        assert isinstance(contexts[0]["exception"], ZeroDivisionError)
        assert contexts[0]["message"].startswith("Exception in callback ")
    support.run_guarded(loop, main())
