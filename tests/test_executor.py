"""run_in_executor, the default executor and its shutdown."""

import asyncio
import concurrent.futures
import inspect
import sys
import threading
import warnings

import pytest

from support import GUARD, outcome, raised, run_guarded, run_on_reference


def where(*args):
    return threading.current_thread().name, threading.get_ident(), args


def test_run_in_executor_default(loop):
    name, ident, args = run_guarded(loop, loop.run_in_executor(None, where, 1, "two"))
    assert ident != threading.get_ident()
    assert args == (1, "two")
    assert name.startswith("asyncio")  # asyncio names its default executor's threads


def test_run_in_executor_returns_an_asyncio_future(loop):
    fut = loop.run_in_executor(None, where)
    assert isinstance(fut, asyncio.Future)
    assert fut.get_loop() is loop
    run_guarded(loop, fut)


def test_run_in_executor_exception(loop):
    def fail():
        raise LookupError("in worker")

    with pytest.raises(LookupError, match="in worker"):
        run_guarded(loop, loop.run_in_executor(None, fail))


def test_run_in_executor_custom_executor(loop):
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="custom") as pool:
        name, ident, _ = run_guarded(loop, loop.run_in_executor(pool, where))
    assert name.startswith("custom")
    assert ident != threading.get_ident()


def test_run_in_executor_many_concurrent(loop):
    async def main():
        lp = asyncio.get_running_loop()
        return await asyncio.gather(*(lp.run_in_executor(None, pow, i, 2) for i in range(200)))

    assert run_guarded(loop, main()) == [i * i for i in range(200)]


def test_set_default_executor(loop):
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="mydefault") as pool:
        loop.set_default_executor(pool)
        name, _, _ = run_guarded(loop, loop.run_in_executor(None, where))
        assert name.startswith("mydefault")


class NotAThreadPool(concurrent.futures.Executor):
    def submit(self, fn, *args, **kwargs):
        fut = concurrent.futures.Future()
        fut.set_result(fn(*args, **kwargs))
        return fut


def test_set_default_executor_rejects_non_thread_pool_as_asyncio_does(loop):
    def scenario(lp):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = outcome(lp.set_default_executor, NotAThreadPool())
        return result, [(w.category, str(w.message)) for w in caught]

    expected = run_on_reference(scenario)
    assert raised(expected[0]) or expected[1], "stock asyncio neither raised nor warned"
    assert scenario(loop) == expected


def test_shutdown_default_executor(loop):
    run_guarded(loop, loop.run_in_executor(None, where))
    run_guarded(loop, loop.shutdown_default_executor())

    def scenario(lp):
        return outcome(lp.run_in_executor, None, where)

    def reference(ref):
        ref.run_until_complete(ref.run_in_executor(None, where))
        ref.run_until_complete(ref.shutdown_default_executor())
        return scenario(ref)

    expected = run_on_reference(reference)
    assert raised(expected) == (RuntimeError, "Executor shutdown has been called")
    assert scenario(loop) == expected


def test_shutdown_default_executor_without_executor(loop):
    # Nothing was ever run in the default executor: shutdown is immediate.
    assert run_guarded(loop, loop.shutdown_default_executor()) is None


def test_shutdown_default_executor_waits_for_running_work(loop):
    release = threading.Event()
    started = threading.Event()

    def work():
        started.set()
        assert release.wait(GUARD)
        return "finished"

    fut = loop.run_in_executor(None, work)
    assert started.wait(GUARD)

    async def shutdown():
        shut = asyncio.ensure_future(loop.shutdown_default_executor())
        await asyncio.sleep(0.01)
        assert not shut.done()  # still waiting for work()
        release.set()
        await shut
        return await fut

    assert run_guarded(loop, shutdown()) == "finished"


def stock_honours_shutdown_timeout():
    # 3.12 added the timeout argument, but early 3.12 releases (3.12.1 here)
    # awaited the executor's shutdown in full and only then checked the
    # timeout; the fixed version awaits under asyncio.timeout().
    source = inspect.getsource(asyncio.BaseEventLoop.shutdown_default_executor)
    return "timeout(timeout)" in source


@pytest.mark.skipif(sys.version_info < (3, 12), reason="shutdown_default_executor(timeout) is 3.12+")
@pytest.mark.skipif(not stock_honours_shutdown_timeout(),
                    reason=f"stock asyncio {sys.version.split()[0]} waits past the timeout")
def test_shutdown_default_executor_timeout(loop):
    release = threading.Event()
    started = threading.Event()

    def work():
        started.set()
        release.wait(GUARD)

    fut = loop.run_in_executor(None, work)
    assert started.wait(GUARD)
    try:
        with pytest.warns(RuntimeWarning,
                          match=r"The executor did not finishing joining its threads "
                                r"within 0\.05 seconds\."):
            run_guarded(loop, loop.shutdown_default_executor(timeout=0.05))
    finally:
        release.set()
    run_guarded(loop, fut)


def test_shutdown_default_executor_signature_as_asyncio(loop):
    # 3.11 has no timeout argument; 3.12+ does.
    def scenario(lp):
        coro = None
        try:
            coro = lp.shutdown_default_executor(timeout=1)
        except TypeError:
            return "TypeError"
        lp.run_until_complete(coro)
        return "accepted"

    assert scenario(loop) == run_on_reference(scenario)


def test_executor_work_wakes_a_sleeping_loop(loop):
    # The loop has only a guard timer GUARD seconds away; completion in the
    # worker thread must wake it.
    proceed = threading.Event()

    def work():
        assert proceed.wait(GUARD)
        return "woke"

    fut = loop.run_in_executor(None, work)
    loop.call_soon(proceed.set)
    assert run_guarded(loop, fut) == "woke"
