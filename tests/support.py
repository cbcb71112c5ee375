"""Helpers shared by the test modules (fixtures live in conftest.py).

Most tests state asyncio's contract directly. Where stock asyncio's own
behaviour differs between Python versions, a test runs the same scenario on
a fresh stock loop (``run_on_reference``) and expects the loop under test to
do the same, instead of hard-coding one version's answer.
"""

import asyncio
import contextlib
import importlib.util
import os
import pathlib
import re
import socket
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parent.parent

# A test that waits for the loop gives up after this long; nothing in the
# suite needs more than a fraction of it on a quiet machine.
GUARD = 30.0

# Timers may fire this much before their deadline: asyncio itself treats a
# timer as due when it is within the monotonic clock's resolution (1 ns on
# Linux) of "now"; the slack also absorbs float rounding of when().
EARLY_SLACK = 1e-6


def goloop_unavailable():
    """Return None when goloop can be tested, else the reason it cannot."""
    try:
        import goloop  # the package alone must not load the extension
    except ImportError as exc:
        return f"goloop is not importable: {exc}"
    if not hasattr(goloop, "new"):
        return "goloop package has no new() yet (goloop/__init__.py missing?)"
    try:
        spec = importlib.util.find_spec("goloop._goloop")
    except (ImportError, ValueError) as exc:
        return f"goloop extension not found: {exc}"
    if spec is None:
        return "goloop extension not built (run `make build`)"
    return None


def new_loop(kind):
    """A new, untracked loop of the given kind ("asyncio" or "goloop")."""
    if kind == "asyncio":
        # Directly, not through new_event_loop(): the policy API is
        # deprecated on 3.14+ and the suite runs with warnings as errors.
        return asyncio.SelectorEventLoop()
    if kind == "goloop":
        import goloop
        return goloop.new()
    raise ValueError(f"unknown loop kind {kind!r}")


def finish_and_close(loop):
    """Shut a loop down the way asyncio.Runner does, then close it.

    Returns the tasks that were still pending (they are cancelled first).
    """
    if loop.is_closed():
        return []
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in pending:
        task.cancel()
    try:
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        loop.close()
    return pending


def run_on_reference(scenario):
    """Run ``scenario(loop)`` on a fresh stock asyncio loop and return its result."""
    loop = asyncio.SelectorEventLoop()
    try:
        return scenario(loop)
    finally:
        finish_and_close(loop)


def outcome(fn, *args, **kwargs):
    """What calling fn did: ('returned', value) or ('raised', type, message)."""
    try:
        return ("returned", fn(*args, **kwargs))
    except Exception as exc:
        return ("raised", type(exc), str(exc))


def raised(result):
    """The (type, message) of an outcome() that raised, else None."""
    return result[1:] if result[0] == "raised" else None


async def outcome_of(aw):
    """What awaiting aw did: ('returned', value) or ('raised', type,
    message), fd numbers in the message masked (they differ between loops)."""
    try:
        return ("returned", await aw)
    except Exception as exc:
        return ("raised", type(exc), re.sub(r"fd=\d+", "fd=N", str(exc)))


def wait(aw, timeout=GUARD):
    """asyncio.wait_for(aw, timeout): a test waiting on the loop fails
    instead of hanging."""
    return asyncio.wait_for(aw, timeout)


async def iterations(n):
    """Let the loop run n iterations (what n sleep(0)s give it)."""
    for _ in range(n):
        await asyncio.sleep(0)


def run_briefly(loop):
    """Run exactly one iteration of the loop: what is ready now, and stop."""
    loop.call_soon(loop.stop)
    loop.run_forever()


def run_guarded(loop, awaitable, timeout=GUARD):
    """loop.run_until_complete(awaitable), failing instead of hanging."""
    timed_out = []

    def expire():
        timed_out.append(True)
        loop.stop()

    guard = loop.call_later(timeout, expire)
    try:
        return loop.run_until_complete(awaitable)
    except RuntimeError:
        if timed_out:
            raise AssertionError(f"loop did not finish within {timeout} s") from None
        raise
    finally:
        guard.cancel()


def run_forever_guarded(loop, timeout=GUARD):
    """loop.run_forever(), failing if nothing stops it within timeout."""
    timed_out = []

    def expire():
        timed_out.append(True)
        loop.stop()

    guard = loop.call_later(timeout, expire)
    try:
        loop.run_forever()
    finally:
        guard.cancel()
    assert not timed_out, f"loop was not stopped within {timeout} s"


def child_env(**overrides):
    """Environment for a child Python: goloop importable, no asyncio debug
    switch inherited; an override of None removes the variable."""
    env = dict(os.environ)
    env.pop("PYTHONASYNCIODEBUG", None)
    env.pop("PYTHONDEVMODE", None)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def run_python(code, *args, flags=(), env=None, timeout=60):
    """Run code in a child interpreter; returns the CompletedProcess."""
    return subprocess.run(
        [sys.executable, *flags, "-c", code, *args],
        cwd=REPO, env=env if env is not None else child_env(),
        stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=timeout)


def assert_logged_slow(records, *handles):
    """Each of handles, a pattern of the callback in a Handle's repr, was
    logged among records as debug mode logs a slow callback: "Executing
    <Handle ...> took X seconds"."""
    slow = [r.getMessage() for r in records
            if r.getMessage().startswith("Executing <Handle")]
    for handle in handles:
        assert any(re.fullmatch(r"Executing <Handle " + handle +
                                r"( created at [^>]*)?> took \d+\.\d{3} seconds", m)
                   for m in slow), (handle, slow)


@contextlib.contextmanager
def captured_exceptions(loop):
    """Collect the contexts passed to the loop's exception handler."""
    contexts = []
    old = loop.get_exception_handler()
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
    try:
        yield contexts
    finally:
        loop.set_exception_handler(old)


# Networking (tests/test_net_*.py).


class Recorder(asyncio.Protocol):
    """A protocol that records what its transport calls, in order.

    ``calls`` holds "made", "data" (consecutive data_received calls are one
    entry), "eof", "pause", "resume" and "lost"; ``received`` the bytes,
    ``exc`` connection_lost's argument. The futures ``made``, ``eof`` and
    ``lost`` resolve at those calls; ``await rec.until(n)`` waits for n bytes
    in total. eof_received returns ``eof_result``. Make it while the loop
    runs (protocol factories are called there).
    """

    def __init__(self, eof_result=None):
        loop = asyncio.get_running_loop()
        self.eof_result = eof_result
        self.calls = []
        self.data_types = set()
        self.received = bytearray()
        self.transport = None
        self.exc = "not called"
        self.made = loop.create_future()
        self.eof = loop.create_future()
        self.lost = loop.create_future()
        self._wanted = []

    def connection_made(self, transport):
        self.calls.append("made")
        self.transport = transport
        _resolve(self.made, transport)

    def data_received(self, data):
        self.data_types.add(type(data))
        if self.calls[-1:] != ["data"]:
            self.calls.append("data")
        self.received += data
        for n, fut in self._wanted:
            if len(self.received) >= n:
                _resolve(fut, None)

    def eof_received(self):
        self.calls.append("eof")
        _resolve(self.eof, None)
        return self.eof_result

    def pause_writing(self):
        self.calls.append("pause")

    def resume_writing(self):
        self.calls.append("resume")

    def connection_lost(self, exc):
        self.calls.append("lost")
        self.exc = exc
        _resolve(self.lost, exc)
        for _, fut in self._wanted:
            _resolve(fut, None)

    async def until(self, nbytes, timeout=GUARD):
        """Wait until nbytes were received in total (or the connection was lost)."""
        if len(self.received) < nbytes and self.exc == "not called":
            fut = asyncio.get_running_loop().create_future()
            self._wanted.append((nbytes, fut))
            await asyncio.wait_for(fut, timeout)
        return bytes(self.received)


def _resolve(fut, value):
    if not fut.done():
        fut.set_result(value)


@contextlib.contextmanager
def socketpair(*args):
    """A connected pair of non-blocking sockets (socket.socketpair(*args)),
    closed on exit."""
    a, b = socket.socketpair(*args)
    with a, b:
        a.setblocking(False)
        b.setblocking(False)
        yield a, b


def wait_readable(fd, timeout=GUARD):
    """Block until fd is readable (data, EOF or an error is queued): a fact
    about the kernel's buffer, so a test can then assert what the loop does
    or does not deliver without sleeping."""
    import select
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    if not poller.poll(timeout * 1000):
        raise AssertionError(f"fd {fd} not readable within {timeout} s")


def fail_fast_on_loop_errors(loop):
    """Make any error the loop reports to its exception handler end what
    the loop runs at once: the default handler logs it, then every pending
    task is cancelled with the context as the message. A test that expects
    handler calls installs its own (captured_exceptions); without this, an
    error in a transport's or server's callback leaves the test waiting
    out GUARD."""
    def handler(lp, context):
        lp.default_exception_handler(context)
        why = f"loop error: {context.get('message')!r}: {context.get('exception')!r}"
        for task in asyncio.all_tasks(lp):
            task.cancel(why)

    loop.set_exception_handler(handler)
