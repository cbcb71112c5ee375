"""run_forever, run_until_complete, stop, close and the running/closed state;
asyncio.run and asyncio.Runner with a loop_factory."""

import asyncio
import gc
import sys
import warnings

import pytest

import support
from support import outcome, raised, run_briefly, run_forever_guarded, run_guarded, run_on_reference


async def answer(value=42):
    await asyncio.sleep(0)
    return value


async def fail(exc):
    await asyncio.sleep(0)
    raise exc


# -- run_until_complete ---------------------------------------------------

def test_run_until_complete_future(loop):
    fut = loop.create_future()
    loop.call_soon(fut.set_result, "result")
    assert loop.run_until_complete(fut) == "result"


def test_run_until_complete_coroutine(loop):
    assert loop.run_until_complete(answer("coro result")) == "coro result"


def test_run_until_complete_task(loop):
    task = loop.create_task(answer("task result"))
    assert loop.run_until_complete(task) == "task result"


def test_run_until_complete_awaitable(loop):
    class Awaitable:
        def __await__(self):
            return answer("from __await__").__await__()

    assert loop.run_until_complete(Awaitable()) == "from __await__"


def test_run_until_complete_raises_the_exception(loop):
    exc = ValueError("boom")
    with pytest.raises(ValueError, match="boom") as info:
        loop.run_until_complete(fail(exc))
    assert info.value is exc


def test_run_until_complete_future_exception(loop):
    fut = loop.create_future()
    loop.call_soon(fut.set_exception, KeyError("k"))
    with pytest.raises(KeyError):
        loop.run_until_complete(fut)


def test_run_until_complete_cancelled(loop):
    fut = loop.create_future()
    loop.call_soon(fut.cancel)
    with pytest.raises(asyncio.CancelledError):
        loop.run_until_complete(fut)


def test_run_until_complete_done_future_returns_at_once(loop):
    fut = loop.create_future()
    fut.set_result(7)
    assert loop.run_until_complete(fut) == 7


def test_run_until_complete_leaves_other_callbacks_queued(loop):
    calls = []
    fut = loop.create_future()
    loop.call_soon(fut.set_result, None)

    def chain(n):
        calls.append(n)
        loop.call_soon(chain, n + 1)

    loop.call_soon(chain, 0)
    loop.run_until_complete(fut)
    progress = len(calls)
    assert progress >= 1
    run_briefly(loop)
    assert len(calls) == progress + 1


def test_stop_before_future_completed(loop):
    fut = loop.create_future()
    loop.call_soon(loop.stop)
    with pytest.raises(RuntimeError) as info:
        loop.run_until_complete(fut)
    assert str(info.value) == "Event loop stopped before Future completed."
    assert not fut.done()


@pytest.mark.parametrize("owner", ["same kind", "stock asyncio"])
def test_run_until_complete_future_of_another_loop(loop, loop_factory, owner):
    other = loop_factory() if owner == "same kind" else asyncio.SelectorEventLoop()
    try:
        def scenario(lp):
            return outcome(lp.run_until_complete, other.create_future())

        expected = run_on_reference(scenario)
        assert raised(expected)[0] is ValueError
        assert scenario(loop) == expected
    finally:
        other.close()


def test_run_until_complete_rejects_non_awaitable(loop):
    expected = run_on_reference(lambda ref: outcome(ref.run_until_complete, 42))
    assert outcome(loop.run_until_complete, 42) == expected
    assert raised(expected)[0] is TypeError


# -- run_forever and stop -------------------------------------------------

def test_stop_in_callback_finishes_the_iteration_then_resumes(loop):
    calls = []

    def first():
        calls.append("first")
        loop.stop()
        loop.call_soon(calls.append, "scheduled after stop")

    loop.call_soon(first)
    loop.call_soon(calls.append, "same iteration")
    run_forever_guarded(loop)
    assert calls == ["first", "same iteration"]
    assert not loop.is_running()
    # run_forever again carries on with what is queued.
    loop.call_soon(loop.stop)
    run_forever_guarded(loop)
    assert calls == ["first", "same iteration", "scheduled after stop"]


def test_stop_before_run_forever_runs_one_iteration(loop):
    calls = []

    def first():
        calls.append("first")
        loop.call_soon(calls.append, "next iteration")

    loop.call_soon(first)
    loop.stop()
    loop.run_forever()
    assert calls == ["first"]
    run_briefly(loop)
    assert calls == ["first", "next iteration"]


def test_stop_twice_in_one_iteration(loop):
    loop.call_soon(loop.stop)
    loop.call_soon(loop.stop)
    run_forever_guarded(loop)
    # The second stop did not carry over into the next run.
    calls = []
    loop.call_soon(calls.append, 1)
    loop.call_soon(loop.stop)
    run_forever_guarded(loop)
    assert calls == [1]


# Each refused nested call gets a run of its own: on 3.13.0 a refused
# run_forever() wrongly resets the running state (fixed in 3.13.1), which
# would change what a second nested call in the same run does.

@pytest.mark.parametrize("nested_call", ["run_forever", "run_until_complete"])
def test_running_the_loop_while_it_runs(loop, nested_call):
    errors = []

    def nested():
        try:
            if nested_call == "run_forever":
                loop.run_forever()
            else:
                loop.run_until_complete(loop.create_future())
        except RuntimeError as exc:
            errors.append(str(exc))
        loop.stop()

    loop.call_soon(nested)
    run_forever_guarded(loop)
    assert errors == ["This event loop is already running"]


@pytest.mark.parametrize("nested_call", ["run_forever", "run_until_complete"])
@pytest.mark.parametrize("inner_kind", ["same kind", "stock asyncio"])
def test_running_another_loop_inside_a_running_loop(loop, loop_factory, inner_kind, nested_call):
    inner = loop_factory() if inner_kind == "same kind" else asyncio.SelectorEventLoop()
    errors = []

    def nested():
        try:
            if nested_call == "run_forever":
                inner.run_forever()
            else:
                inner.run_until_complete(inner.create_future())
        except RuntimeError as exc:
            errors.append(str(exc))
        loop.stop()

    try:
        loop.call_soon(nested)
        run_forever_guarded(loop)
    finally:
        inner.close()
    assert errors == ["Cannot run the event loop while another loop is running"]


def test_is_running(loop):
    seen = []
    loop.call_soon(lambda: seen.append(loop.is_running()))
    assert not loop.is_running()
    run_briefly(loop)
    assert seen == [True]
    assert not loop.is_running()


def test_running_loop_is_visible_to_asyncio(loop):
    async def main():
        assert asyncio.get_running_loop() is loop
        assert asyncio.get_event_loop() is loop
        assert asyncio._get_running_loop() is loop
        return True

    with pytest.raises(RuntimeError, match="no running event loop"):
        asyncio.get_running_loop()
    assert loop.run_until_complete(main())
    seen = []
    loop.call_soon(lambda: seen.append(asyncio.get_running_loop()))
    run_briefly(loop)
    assert seen == [loop]
    assert asyncio._get_running_loop() is None


def test_asyncgen_hooks_are_restored_after_running(loop):
    before = sys.get_asyncgen_hooks()
    during = []
    loop.call_soon(lambda: during.append(sys.get_asyncgen_hooks()))
    run_briefly(loop)
    assert sys.get_asyncgen_hooks() == before
    assert during[0].firstiter is not None and during[0].finalizer is not None


# -- close and the closed state -------------------------------------------

def test_close(loop_factory):
    lp = loop_factory()
    assert not lp.is_closed()
    lp.close()
    assert lp.is_closed()
    lp.close()  # closing twice is a no-op
    assert lp.is_closed()


def test_close_while_running(loop):
    errors = []

    def try_close():
        try:
            loop.close()
        except RuntimeError as exc:
            errors.append(str(exc))
        loop.stop()

    loop.call_soon(try_close)
    run_forever_guarded(loop)
    assert errors == ["Cannot close a running event loop"]
    assert not loop.is_closed()


def test_close_drops_queued_callbacks(loop_factory):
    lp = loop_factory()
    calls = []
    lp.call_soon(calls.append, "never")
    lp.call_later(0, calls.append, "never either")
    lp.close()
    assert calls == []


def _closed_loop_calls():
    def cb():
        pass
    return {
        "call_soon": lambda lp: lp.call_soon(cb),
        "call_later": lambda lp: lp.call_later(0, cb),
        "call_at": lambda lp: lp.call_at(lp.time(), cb),
        "call_soon_threadsafe": lambda lp: lp.call_soon_threadsafe(cb),
        "run_forever": lambda lp: lp.run_forever(),
        "run_in_executor": lambda lp: lp.run_in_executor(None, cb),
    }


@pytest.mark.parametrize("method", sorted(_closed_loop_calls()))
def test_closed_loop_refuses(loop_factory, method):
    lp = loop_factory()
    lp.close()
    call = _closed_loop_calls()[method]
    result = outcome(call, lp)
    assert raised(result) == (RuntimeError, "Event loop is closed")


def test_closed_loop_create_task_refuses_and_disposes_of_the_coroutine(loop_factory):
    def scenario(lp):
        lp.close()
        coro = answer()
        result = outcome(lp.create_task, coro)
        closed = coro.cr_frame is None
        coro.close()
        return result, closed

    expected = run_on_reference(scenario)
    assert raised(expected[0]) == (RuntimeError, "Event loop is closed")
    assert scenario(loop_factory()) == expected


def test_closed_loop_run_until_complete_refuses(loop_factory):
    def scenario(lp):
        lp.close()
        coro = answer()
        result = outcome(lp.run_until_complete, coro)
        coro.close()
        return result

    expected = run_on_reference(scenario)
    assert raised(expected) == (RuntimeError, "Event loop is closed")
    assert scenario(loop_factory()) == expected


def test_closed_loop_create_future_as_asyncio(loop_factory):
    def scenario(lp):
        lp.close()
        result = outcome(lp.create_future)
        return (result[0], type(result[1])) if result[0] == "returned" else result

    assert scenario(loop_factory()) == run_on_reference(scenario)


def test_unclosed_loop_warns_on_gc(loop_kind):
    lp = support.new_loop(loop_kind)
    lp.run_until_complete(answer())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del lp
        gc.collect()
    messages = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert any(m.startswith("unclosed event loop") for m in messages), messages


def test_closed_loop_does_not_warn_on_gc(loop_kind):
    lp = support.new_loop(loop_kind)
    lp.close()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del lp
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []


# -- asyncio.run / asyncio.Runner with the loop as factory ----------------

async def describe():
    lp = asyncio.get_running_loop()
    return {"loop": lp, "debug": lp.get_debug(),
            "task": type(asyncio.current_task()) is asyncio.Task}


def test_runner_with_loop_factory(loop_factory):
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        first = runner.run(describe())
        second = runner.run(answer("again"))
        lp = runner.get_loop()
    assert first["loop"] is lp
    assert first["task"]
    assert second == "again"
    assert lp.is_closed()
    # The loop is of the kind under test.
    probe = support.new_loop(loop_factory.kind)
    try:
        assert type(lp) is type(probe)
    finally:
        probe.close()


def test_runner_debug(loop_factory):
    with asyncio.Runner(loop_factory=loop_factory, debug=True) as runner:
        assert runner.run(describe())["debug"] is True
    with asyncio.Runner(loop_factory=loop_factory, debug=False) as runner:
        assert runner.run(describe())["debug"] is False


def test_runner_propagates_exception_and_closes(loop_factory):
    runner = asyncio.Runner(loop_factory=loop_factory)
    with runner:
        with pytest.raises(ZeroDivisionError):
            runner.run(fail(ZeroDivisionError()))
        lp = runner.get_loop()
    assert lp.is_closed()


def test_runner_cancels_leftover_tasks(loop_factory):
    state = {}

    async def leftover():
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            state["cancelled"] = True
            raise

    async def main():
        state["task"] = asyncio.get_running_loop().create_task(leftover())
        await asyncio.sleep(0)

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(main())
    assert state.get("cancelled") is True
    assert state["task"].cancelled()


@pytest.mark.skipif(sys.version_info < (3, 12), reason="asyncio.run(loop_factory=) is 3.12+")
def test_asyncio_run_with_loop_factory(loop_factory):
    info = asyncio.run(describe(), loop_factory=loop_factory)
    assert info["task"]
    assert info["loop"].is_closed()
    assert asyncio.run(answer("x"), loop_factory=loop_factory, debug=True) == "x"


def test_run_until_complete_many_times(loop):
    for i in range(100):
        assert loop.run_until_complete(answer(i)) == i


def test_run_guarded_helper_reports_hangs(loop):
    # The helper the suite relies on turns a hang into a failure.
    with pytest.raises(AssertionError, match="did not finish"):
        run_guarded(loop, loop.create_future(), timeout=0.01)
