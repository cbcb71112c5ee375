"""Every behaviour test is written once and runs on both loops.

A test that takes the ``loop``, ``loop_factory`` or ``loop_kind`` fixture
runs twice, as ``test_x[asyncio]`` (stock ``asyncio.SelectorEventLoop``) and
``test_x[goloop]`` (``goloop.new()``), with the same expected result. The
goloop variants are skipped, with the reason, while the extension is not
built.

The policy API (get_event_loop_policy, set_event_loop, ...) is never used:
it is deprecated on 3.14+, and the suite turns warnings into errors.

Tests of behaviour that differs between Python versions of stock asyncio
run the scenario on a stock loop inside the test (support.run_on_reference)
and expect the same. After a fully passing run, the session fails if any
goloop loop was not freed.
"""

import ast
import faulthandler
import gc
import logging
import pathlib
import signal
import sys

import pytest

import support

LOOP_KINDS = ("asyncio", "goloop")

# Started in the background, the suite inherits SIGINT ignored and Python
# keeps it so; the signal tests expect the KeyboardInterrupt handler an
# interactive start installs.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# A hung test dumps every thread's stack and ends the run instead of hanging
# CI; the slowest test (a leak round) takes well under this.
WATCHDOG_SECONDS = 300


def pytest_configure(config):
    # As `python -W error`: a DeprecationWarning from the loop, an unclosed
    # loop or transport (ResourceWarning), an exception raised in __del__
    # (pytest's unraisable-exception warning) all fail the test.
    config.addinivalue_line("filterwarnings", "error")
    config.addinivalue_line(
        "markers", "leaks: long-running object/RSS leak checks (part of the normal suite)")
    config.addinivalue_line(
        "markers", "slow: the long loopback stream (GOLOOP_TEST_BIG=0 skips it, =1 makes it 1 GiB)")
    config.addinivalue_line(
        "markers", "fail_fast: an error the loop reports ends the test at once "
        "(support.fail_fast_on_loop_errors)")


def pytest_collection_modifyitems(session, config, items):
    """Refuse two test functions of the same name in one module or class: the
    second silently replaces the first, so a test would be lost."""
    seen = set()
    for item in items:
        path = pathlib.Path(str(item.fspath))
        if path in seen or path.suffix != ".py":
            continue
        seen.add(path)
        tree = ast.parse(path.read_text(), filename=str(path))
        for scope in [tree] + [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]:
            names = [n.name for n in scope.body
                     if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                     and n.name.startswith("test")]
            dups = sorted({n for n in names if names.count(n) > 1})
            if dups:
                raise pytest.UsageError(f"{path.name}: test defined twice: {', '.join(dups)}")


@pytest.fixture(autouse=True)
def _watchdog():
    faulthandler.dump_traceback_later(WATCHDOG_SECONDS, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture(autouse=True)
def _fail_fast(request):
    """The network modules are marked fail_fast: a transport's or server's
    failing callback ends the test instead of leaving it to wait out
    support.GUARD."""
    if request.node.get_closest_marker("fail_fast") and "loop" in request.fixturenames:
        support.fail_fast_on_loop_errors(request.getfixturevalue("loop"))


@pytest.fixture(params=LOOP_KINDS)
def loop_kind(request):
    """"asyncio" or "goloop"; the goloop variant skips while it is not built."""
    if request.param == "goloop":
        reason = support.goloop_unavailable()
        if reason:
            pytest.skip(reason)
    return request.param


@pytest.fixture
def loop_factory(loop_kind):
    """A zero-argument callable making new loops of the kind under test (as
    asyncio.Runner's loop_factory). Loops it made and the test left open are
    closed at teardown."""
    made = []

    def factory():
        loop = support.new_loop(loop_kind)
        made.append(loop)
        return loop

    factory.kind = loop_kind
    yield factory
    for loop in made:
        if not loop.is_closed() and not loop.is_running():
            loop.close()


@pytest.fixture
def loop(loop_factory):
    """A new loop of the kind under test, closed cleanly after the test.

    Teardown does what asyncio.Runner does (cancel leftover tasks, shut down
    async generators and the default executor), closes the loop, closes it a
    second time (a no-op), and fails the test if it left the loop running or
    left tasks pending.
    """
    lp = loop_factory()
    yield lp
    assert not lp.is_running(), "the test left the loop running"
    pending = support.finish_and_close(lp)
    lp.close()
    assert lp.is_closed()
    assert not pending, f"the test left tasks pending: {pending!r}"


@pytest.fixture
def asyncio_log(caplog):
    """caplog capturing the 'asyncio' logger from DEBUG up."""
    caplog.set_level(logging.DEBUG, logger="asyncio")
    return caplog


def pytest_sessionfinish(session, exitstatus):
    """Once every test passed, every goloop loop the suite made must have
    been freed (goloop counts the Go core loops still alive)."""
    native = sys.modules.get("goloop._goloop")
    if native is None or exitstatus != 0:
        return
    for _ in range(3):
        gc.collect()
    live = native._live_loops()
    if live:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        message = f"goloop leak check: {live} Go core loop(s) still alive after the suite"
        if reporter is not None:
            reporter.write_sep("=", message, red=True)
        else:
            print(message, file=sys.stderr)
