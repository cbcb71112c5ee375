"""Debug mode: the switch, the environment, slow-callback warnings and the
extra checks asyncio makes only when debugging."""

import asyncio
import re
import sys
import threading
import time

import pytest

from support import (GUARD, child_env, outcome, raised, run_briefly, run_guarded,
                     run_on_reference, run_python)


def slow_callback():
    time.sleep(0.06)


async def coro_func():
    pass


def test_debug_default_matches_asyncio(loop):
    assert loop.get_debug() is run_on_reference(lambda ref: ref.get_debug())


def test_set_debug(loop):
    loop.set_debug(True)
    assert loop.get_debug() is True
    loop.set_debug(False)
    assert loop.get_debug() is False


CHILD_DEBUG = """
import asyncio, sys
sys.path.insert(0, '.')
kind = sys.argv[1]
if kind == 'goloop':
    import goloop
    loop = goloop.new()
else:
    loop = asyncio.SelectorEventLoop()
print(loop.get_debug())
loop.close()
"""


@pytest.mark.parametrize("flags,env,expected", [
    ((), {"PYTHONASYNCIODEBUG": "1"}, "True"),
    ((), {"PYTHONASYNCIODEBUG": None}, "False"),
    (("-X", "dev"), {}, "True"),
    (("-E",), {"PYTHONASYNCIODEBUG": "1"}, "False"),
], ids=["PYTHONASYNCIODEBUG=1", "unset", "-X dev", "-E ignores env"])
def test_debug_from_environment(loop_kind, flags, env, expected):
    proc = run_python(CHILD_DEBUG, loop_kind, flags=flags, env=child_env(**env))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == expected


def test_slow_callback_is_logged(loop, asyncio_log):
    loop.set_debug(True)
    loop.slow_callback_duration = 0.05
    loop.call_soon(slow_callback)
    run_briefly(loop)
    warnings = [r.getMessage() for r in asyncio_log.records if r.levelname == "WARNING"]
    assert len(warnings) == 1, warnings
    assert re.fullmatch(r"Executing <\w*Handle[^>]*slow_callback[^>]*> took \d+\.\d{3} seconds",
                        warnings[0]), warnings[0]
    took = float(re.search(r"took (\d+\.\d+) seconds", warnings[0]).group(1))
    assert took >= 0.05


def test_slow_task_step_is_logged(loop, asyncio_log):
    loop.set_debug(True)
    loop.slow_callback_duration = 0.05

    async def hog():
        time.sleep(0.06)

    loop.run_until_complete(hog())
    warnings = [r.getMessage() for r in asyncio_log.records if r.levelname == "WARNING"]
    assert any(re.match(r"Executing <Task .*hog.*> took \d+\.\d{3} seconds", w)
               for w in warnings), warnings


def test_fast_callbacks_are_not_logged(loop, asyncio_log):
    loop.set_debug(True)
    loop.slow_callback_duration = 10
    loop.call_soon(slow_callback)
    run_briefly(loop)
    assert [r for r in asyncio_log.records if r.levelname == "WARNING"] == []


def test_slow_callbacks_are_not_logged_without_debug(loop, asyncio_log):
    loop.set_debug(False)  # the suite may run with PYTHONASYNCIODEBUG=1
    loop.slow_callback_duration = 0.05
    loop.call_soon(slow_callback)
    run_briefly(loop)
    assert [r for r in asyncio_log.records if r.levelname == "WARNING"] == []


def _schedulers():
    return {
        "call_soon": lambda lp, f: lp.call_soon(f),
        "call_later": lambda lp, f: lp.call_later(10, f),
        "call_at": lambda lp, f: lp.call_at(lp.time() + 10, f),
        "call_soon_threadsafe": lambda lp, f: lp.call_soon_threadsafe(f),
        "run_in_executor": lambda lp, f: lp.run_in_executor(None, f),
    }


@pytest.mark.parametrize("what", ["coroutine", "coroutine function", "non-callable"])
@pytest.mark.parametrize("method", sorted(_schedulers()))
def test_debug_mode_rejects_bad_callbacks(loop, method, what):
    schedule = _schedulers()[method]

    def scenario(lp):
        lp.set_debug(True)
        callback = {"coroutine": coro_func, "coroutine function": lambda: coro_func,
                    "non-callable": lambda: 42}[what]()
        try:
            return outcome(schedule, lp, callback)
        finally:
            if what == "coroutine":
                callback.close()

    expected = run_on_reference(scenario)
    assert raised(expected)[0] is TypeError
    assert scenario(loop) == expected


def test_non_debug_coroutine_callback_behaves_as_asyncio(loop):
    # Without debug asyncio accepts it; calling the coroutine object fails
    # when the callback runs, and that goes to the exception handler.
    def scenario(lp):
        lp.set_debug(False)
        contexts = []
        lp.set_exception_handler(lambda lp_, ctx: contexts.append(ctx))
        coro = coro_func()
        result = outcome(lp.call_soon, coro)
        run_briefly(lp)
        coro.close()
        return (result[0] if result[0] == "returned" else result,
                [(type(c.get("exception")), str(c.get("exception"))) for c in contexts])

    expected = run_on_reference(scenario)
    assert scenario(loop) == expected


@pytest.mark.parametrize("method", ["call_soon", "call_later", "call_at"])
def test_debug_mode_refuses_non_threadsafe_calls_from_other_threads(loop, method):
    loop.set_debug(True)
    schedule = _schedulers()[method]
    result = loop.create_future()

    def worker():
        try:
            handle = schedule(loop, lambda: None)
        except BaseException as exc:
            loop.call_soon_threadsafe(result.set_result, exc)
        else:
            loop.call_soon_threadsafe(result.set_result, handle)

    thread = threading.Thread(target=worker)
    loop.call_soon(thread.start)
    try:
        exc = run_guarded(loop, result)
    finally:
        thread.join(GUARD)
    assert isinstance(exc, RuntimeError), exc
    assert str(exc) == ("Non-thread-safe operation invoked on an event loop "
                        "other than the current one")


def test_debug_mode_threadsafe_call_from_other_thread_is_fine(loop):
    loop.set_debug(True)
    result = loop.create_future()
    thread = threading.Thread(
        target=lambda: loop.call_soon_threadsafe(result.set_result, "ok"))
    loop.call_soon(thread.start)
    try:
        assert run_guarded(loop, result) == "ok"
    finally:
        thread.join(GUARD)


def test_coroutine_origin_tracking_follows_debug(loop):
    def scenario(lp):
        seen = []
        lp.set_debug(True)
        lp.call_soon(lambda: seen.append(sys.get_coroutine_origin_tracking_depth()))
        run_briefly(lp)
        lp.set_debug(False)
        lp.call_soon(lambda: seen.append(sys.get_coroutine_origin_tracking_depth()))
        run_briefly(lp)
        seen.append(sys.get_coroutine_origin_tracking_depth())
        return seen

    expected = run_on_reference(scenario)
    assert expected[0] > 0 and expected[1:] == [0, 0]
    assert scenario(loop) == expected


def test_debug_handle_records_where_it_was_created(loop):
    # In debug mode the default handler's log says where the failing
    # callback was scheduled.
    contexts = []
    loop.set_debug(True)
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))

    def boom():
        raise ValueError("x")

    loop.call_soon(boom)
    run_briefly(loop)
    assert len(contexts) == 1
    assert "source_traceback" in contexts[0]
    frames = contexts[0]["source_traceback"]
    assert any(f.name == "test_debug_handle_records_where_it_was_created" for f in frames)
