"""goloop's own surface: new, run, Loop, __version__, what importing it does,
fork safety, Ctrl-C; and the promises goloop makes beyond asyncio's.

The Ctrl-C scenario also runs on stock asyncio, as the reference the goloop
variants must match.
"""

import asyncio
import os
import re
import select
import signal
import subprocess
import sys
import time

import pytest

import support
from support import GUARD, child_env, run_python


@pytest.fixture
def goloop():
    reason = support.goloop_unavailable()
    if reason:
        pytest.skip(reason)
    import goloop
    return goloop


# -- the package surface --------------------------------------------------

def test_new_returns_a_goloop_loop(goloop):
    lp = goloop.new()
    try:
        assert isinstance(lp, goloop.Loop)
        assert isinstance(lp, asyncio.AbstractEventLoop)
        assert not lp.is_running() and not lp.is_closed()
        other = goloop.new()
        assert other is not lp
        other.close()
    finally:
        lp.close()


def test_version(goloop):
    assert isinstance(goloop.__version__, str)
    assert re.fullmatch(r"\d+\.\d+(\.\d+)?([.-]?\w+)*", goloop.__version__), goloop.__version__


def test_run(goloop):
    async def main(x):
        lp = asyncio.get_running_loop()
        return x, isinstance(lp, goloop.Loop), lp.get_debug(), lp

    value, is_goloop, debug, lp = goloop.run(main("v"))
    assert (value, is_goloop) == ("v", True)
    assert lp.is_closed()
    assert goloop.run(main(1), debug=True)[2] is True
    assert goloop.run(main(2), debug=False)[2] is False


def test_run_propagates_exceptions(goloop):
    async def main():
        raise LookupError("from main")

    with pytest.raises(LookupError, match="from main"):
        goloop.run(main())


def test_run_inside_a_running_loop_is_refused(goloop):
    async def outer():
        inner = asyncio.sleep(0)
        try:
            goloop.run(inner)
        finally:
            inner.close()

    with pytest.raises(RuntimeError, match="cannot be called from a running event loop"):
        goloop.run(outer())


def test_equal_deadlines_fire_in_scheduling_order(goloop):
    # Stronger than asyncio (which leaves the order undefined and, with its
    # heap, does not keep it): goloop's timer heap breaks ties by sequence.
    lp = goloop.new()
    try:
        fired = []
        when = lp.time() + 0.01
        for i in range(200):
            lp.call_at(when, fired.append, i)
        lp.call_at(when, lp.stop)
        support.run_forever_guarded(lp)
        assert fired == list(range(200))
    finally:
        lp.close()


def test_loops_are_freed(goloop):
    # goloop counts its Go core loops; each is freed with its Python loop.
    import gc
    from goloop import _goloop

    async def main():
        await asyncio.sleep(0)

    def live():
        gc.collect()
        return _goloop._live_loops()

    baseline = live()
    lp = goloop.new()
    assert live() == baseline + 1
    lp.call_later(3600, print)
    lp.run_until_complete(main())
    lp.close()
    del lp
    assert live() == baseline
    for _ in range(20):
        goloop.run(main())
        with asyncio.Runner(loop_factory=goloop.new) as runner:
            runner.run(main())
    assert live() == baseline
    unclosed = goloop.new()
    with pytest.warns(ResourceWarning, match="unclosed event loop"):
        del unclosed
        gc.collect()
    assert live() == baseline


# -- what importing goloop does --------------------------------------------

IMPORT_PROBE = """
import os, sys, threading
def os_threads():
    return len(os.listdir('/proc/self/task'))
before = os_threads()
import goloop
goloop.__version__
after_import = os_threads()
loaded_on_import = 'goloop._goloop' in sys.modules
lp = goloop.new()
loaded_on_new = 'goloop._goloop' in sys.modules
lp.close()
print(before, after_import, threading.active_count(), loaded_on_import, loaded_on_new)
"""


def test_import_starts_no_threads_and_loads_no_extension(goloop):
    proc = run_python(IMPORT_PROBE)
    assert proc.returncode == 0, proc.stderr
    before, after_import, py_threads, loaded_on_import, loaded_on_new = proc.stdout.split()
    assert after_import == before, "import goloop started OS threads"
    assert py_threads == "1"
    assert loaded_on_import == "False", "import goloop loaded the extension"
    assert loaded_on_new == "True"


WARNINGS_PROBE = """
import asyncio, sys
import goloop

async def main():
    await asyncio.sleep(0)
    t = asyncio.get_running_loop().create_task(asyncio.sleep(0.001))
    await t
    await asyncio.get_running_loop().run_in_executor(None, len, 'x')
    return 'ok'

assert goloop.run(main()) == 'ok'
assert goloop.run(main(), debug=True) == 'ok'
with asyncio.Runner(loop_factory=goloop.new) as runner:
    assert runner.run(main()) == 'ok'
if sys.version_info >= (3, 12):
    assert asyncio.run(main(), loop_factory=goloop.new) == 'ok'
lp = goloop.new()
lp.run_until_complete(main())
lp.close()
print('done')
"""


@pytest.mark.parametrize("flags", [("-W", "error"), ("-W", "error", "-X", "dev")],
                         ids=["-W error", "-W error -X dev"])
def test_no_warnings_on_import_and_run(goloop, flags):
    proc = run_python(WARNINGS_PROBE, flags=flags)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "done\n"
    assert proc.stderr == ""


# -- fork -----------------------------------------------------------------

FORK_PROBE = """
import asyncio, os, signal, sys, warnings
# 3.12+ warns that fork() in a multi-threaded process (the Go runtime's
# threads) may deadlock the child: that is what this probe is about.
warnings.simplefilter('ignore', DeprecationWarning)
import goloop

op = sys.argv[1]
loop = goloop.new()
loop.run_until_complete(asyncio.sleep(0))
sys.stdout.flush()
pid = os.fork()
if pid == 0:
    signal.alarm(15)  # a child that hangs dies instead of lingering
    try:
        if op == 'new':
            goloop.new()
        elif op == 'goloop.run':
            coro = asyncio.sleep(0)
            try:
                goloop.run(coro)
            finally:
                coro.close()
        elif op == 'run_until_complete':
            coro = asyncio.sleep(0)
            try:
                loop.run_until_complete(coro)
            finally:
                coro.close()
        elif op == 'run_forever':
            loop.stop()
            loop.run_forever()
        elif op == 'call_soon':
            loop.call_soon(print)
        else:
            raise SystemExit('unknown op ' + op)
    except BaseException as exc:
        print(f'child: {type(exc).__name__}: {exc}', flush=True)
    else:
        print('child: no error', flush=True)
    os._exit(0)
_, status = os.waitpid(pid, 0)
if os.WIFSIGNALED(status):
    print(f'child killed by signal {os.WTERMSIG(status)} (hung?)', flush=True)
loop.close()
print('parent: done', flush=True)
"""


@pytest.mark.parametrize("op", ["new", "goloop.run", "run_until_complete", "run_forever",
                                "call_soon"])
def test_use_after_fork_raises_runtime_error_naming_spawn_and_forkserver(goloop, op):
    try:
        proc = run_python(FORK_PROBE, op, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("the fork probe hung")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-1] == "parent: done", proc.stdout + proc.stderr
    child = [line for line in lines if line.startswith("child")]
    assert len(child) == 1, proc.stdout + proc.stderr
    assert child[0].startswith("child: RuntimeError: "), child[0]
    assert "spawn" in child[0] and "forkserver" in child[0], child[0]


# -- Ctrl-C -----------------------------------------------------------------

CTRL_C_CHILD = """
import asyncio, sys
kind, entry = sys.argv[1], sys.argv[2]

async def main():
    print('ready', flush=True)
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        print('main cancelled', flush=True)
        raise
    finally:
        print('main finally', flush=True)

if kind == 'goloop':
    import goloop
    factory = goloop.new
else:
    factory = asyncio.SelectorEventLoop

if entry == 'run':
    if kind == 'goloop':
        goloop.run(main())
    else:
        asyncio.run(main())
elif entry == 'Runner':
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())
elif entry == 'asyncio.run':
    asyncio.run(main(), loop_factory=factory)
print('returned normally', flush=True)
"""


def read_until(fd, marker, timeout):
    """Read from fd until marker appears; return all that was read."""
    data = b""
    deadline = time.monotonic() + timeout
    while marker not in data:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise AssertionError(f"no {marker!r} within {timeout} s; got {data!r}")
        chunk = os.read(fd, 4096)
        if not chunk:
            raise AssertionError(f"EOF before {marker!r}; got {data!r}")
        data += chunk
    return data


def interactive_sigint():
    # A suite started in the background (make test &, some CI runners)
    # inherits SIGINT ignored, and Python then installs no KeyboardInterrupt
    # handler; give the child the default disposition an interactive shell
    # gives it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("entry", ["run", "Runner", "asyncio.run"])
def test_ctrl_c_stops_a_sleeping_program(loop_kind, entry):
    if entry == "asyncio.run" and sys.version_info < (3, 12):
        pytest.skip("asyncio.run(loop_factory=) is 3.12+")
    proc = subprocess.Popen(
        [sys.executable, "-c", CTRL_C_CHILD, loop_kind, entry],
        cwd=support.REPO, env=child_env(), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        preexec_fn=interactive_sigint)
    try:
        out = read_until(proc.stdout.fileno(), b"ready\n", GUARD)
        proc.send_signal(signal.SIGINT)
        try:
            rest, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            rest, err = proc.communicate()
            pytest.fail(f"the program did not stop within 10 s of SIGINT; "
                        f"stdout={out + rest!r} stderr={err!r}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    out = (out + rest).decode()
    err = err.decode()
    assert out.splitlines() == ["ready", "main cancelled", "main finally"], out + err
    assert err.rstrip().splitlines()[-1] == "KeyboardInterrupt", err
    assert "Traceback (most recent call last)" in err
    # An uncaught KeyboardInterrupt ends Python by SIGINT, as a shell expects.
    assert proc.returncode == -signal.SIGINT, (proc.returncode, err)


def test_ctrl_c_probe_sends_nothing_before_ready(loop_kind):
    # Sanity check of the scenario itself: without SIGINT the child is still
    # asleep after 'ready' (so the test above measures the signal).
    proc = subprocess.Popen(
        [sys.executable, "-c", CTRL_C_CHILD, loop_kind, "Runner"],
        cwd=support.REPO, env=child_env(), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        read_until(proc.stdout.fileno(), b"ready\n", GUARD)
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=0.5)
    finally:
        proc.kill()
        proc.communicate()


def test_goloop_run_signature(goloop):
    import inspect
    params = inspect.signature(goloop.run).parameters
    assert list(params)[0] == "main"
    assert params["debug"].kind is inspect.Parameter.KEYWORD_ONLY
    assert params["debug"].default is None


def test_go_panic_becomes_runtime_error(goloop):
    # Every export recovers: a Go panic is a Python exception, never an abort,
    # and the interpreter and the loops go on working.
    goloop.new().close()
    from goloop import _goloop
    with pytest.raises(RuntimeError, match="Go panic"):
        _goloop._go_panic()
    loop = goloop.new()
    try:
        assert loop.run_until_complete(asyncio.sleep(0, "alive")) == "alive"
    finally:
        loop.close()
