"""create_future, create_task, task factories and asyncio's task registry."""

import asyncio
import contextvars
import sys
import time

import pytest

from support import EARLY_SLACK, outcome, raised, run_guarded, run_on_reference

var = contextvars.ContextVar("var", default="default")


async def answer(value=42):
    await asyncio.sleep(0)
    return value


def test_create_future_is_an_asyncio_future_bound_to_the_loop(loop):
    fut = loop.create_future()
    assert type(fut) is asyncio.Future
    assert fut.get_loop() is loop
    assert not fut.done()
    fut.cancel()


def test_future_callbacks_are_scheduled_on_the_loop(loop):
    fut = loop.create_future()
    calls = []
    fut.add_done_callback(lambda f: calls.append(f.result()))
    fut.set_result("value")
    assert calls == []  # done callbacks go through call_soon
    assert loop.run_until_complete(fut) == "value"
    assert calls == ["value"]


def test_create_task_returns_a_real_asyncio_task(loop):
    task = loop.create_task(answer())
    assert type(task) is asyncio.Task
    assert task.get_loop() is loop
    assert task.get_name().startswith("Task-")
    assert loop.run_until_complete(task) == 42


def test_create_task_name(loop):
    task = loop.create_task(answer(), name="the-name")
    assert task.get_name() == "the-name"
    loop.run_until_complete(task)


def test_create_task_context(loop):
    ctx = contextvars.copy_context()
    ctx.run(var.set, "task ctx")

    async def read():
        await asyncio.sleep(0)
        value = var.get()
        var.set("changed in task")
        return value

    task = loop.create_task(read(), context=ctx)
    assert loop.run_until_complete(task) == "task ctx"
    assert ctx[var] == "changed in task"
    assert var.get() == "default"
    if hasattr(task, "get_context"):  # Task.get_context is 3.12+
        assert task.get_context() is ctx


def test_create_task_default_context_is_a_copy(loop):
    async def read_and_set():
        value = var.get()
        var.set("set in task")
        return value

    token = var.set("current")
    try:
        task = loop.create_task(read_and_set())
    finally:
        var.reset(token)
    assert loop.run_until_complete(task) == "current"
    assert var.get() == "default"


def test_current_task_and_all_tasks(loop):
    seen = {}

    async def child():
        seen["child"] = asyncio.current_task()
        await asyncio.sleep(0)

    async def main():
        seen["main"] = asyncio.current_task()
        task = asyncio.get_running_loop().create_task(child())
        seen["all"] = asyncio.all_tasks()
        seen["all for loop"] = asyncio.all_tasks(loop)
        await task
        return task

    main_task = loop.create_task(main())
    child_task = loop.run_until_complete(main_task)
    assert seen["main"] is main_task
    assert seen["child"] is child_task
    assert seen["all"] == {main_task, child_task}
    assert seen["all for loop"] == {main_task, child_task}
    assert asyncio.all_tasks(loop) == set()
    assert asyncio.current_task(loop) is None


def test_current_task_in_a_plain_callback_is_none(loop):
    seen = []
    loop.call_soon(lambda: seen.append(asyncio.current_task()))
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert seen == [None]


def test_sleep_is_not_early(loop):
    async def main():
        start = time.monotonic()
        await asyncio.sleep(0.03)
        return time.monotonic() - start

    assert run_guarded(loop, main()) >= 0.03 - EARLY_SLACK


def test_task_cancel(loop):
    state = []

    async def sleeper():
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            state.append("cancelled")
            raise

    async def main():
        task = asyncio.get_running_loop().create_task(sleeper())
        await asyncio.sleep(0)
        task.cancel("because")
        with pytest.raises(asyncio.CancelledError):
            await task
        return task

    task = run_guarded(loop, main())
    assert task.cancelled()
    assert state == ["cancelled"]


def test_gather_many_tasks(loop):
    async def main():
        return await asyncio.gather(*(answer(i) for i in range(1000)))

    assert run_guarded(loop, main()) == list(range(1000))


def test_wait_for_timeout(loop):
    async def main():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.sleep(3600), 0.01)
        return "ok"

    assert run_guarded(loop, main()) == "ok"


def test_asyncio_timeout_context_manager(loop):
    async def main():
        start = loop.time()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.02):
                await asyncio.sleep(3600)
        return loop.time() - start

    assert run_guarded(loop, main()) >= 0.02 - EARLY_SLACK


# -- task factories -------------------------------------------------------

def test_task_factory_default_is_none(loop):
    assert loop.get_task_factory() is None


def test_set_task_factory_is_used_and_gets_the_same_arguments(loop_factory):
    def scenario(lp):
        calls = []

        def factory(fl, coro, **kwargs):
            calls.append((fl is lp, sorted(kwargs)))
            return asyncio.Task(coro, loop=fl, **kwargs)

        lp.set_task_factory(factory)
        assert lp.get_task_factory() is factory
        plain = lp.create_task(answer(1))
        named = lp.create_task(answer(2), name="named")
        with_ctx = lp.create_task(answer(3), context=contextvars.copy_context())
        results = lp.run_until_complete(asyncio.gather(plain, named, with_ctx))
        lp.set_task_factory(None)
        assert lp.get_task_factory() is None
        after = lp.create_task(answer(4))
        lp.run_until_complete(after)
        return calls, results, named.get_name(), type(after) is asyncio.Task

    expected = run_on_reference(scenario)
    assert expected[1] == [1, 2, 3] and expected[2] == "named"
    assert scenario(loop_factory()) == expected


def test_set_task_factory_rejects_non_callable(loop):
    expected = run_on_reference(lambda ref: outcome(ref.set_task_factory, 42))
    assert raised(expected)[0] is TypeError
    assert outcome(loop.set_task_factory, 42) == expected


@pytest.mark.skipif(not hasattr(asyncio, "eager_task_factory"),
                    reason="asyncio.eager_task_factory is 3.12+")
def test_eager_task_factory(loop):
    order = []

    async def eager():
        order.append("task body")
        return "eager result"

    async def main():
        task = asyncio.get_running_loop().create_task(eager())
        order.append("create_task returned")
        assert task.done()  # ran to completion inside create_task
        return await task

    loop.set_task_factory(asyncio.eager_task_factory)
    assert loop.get_task_factory() is asyncio.eager_task_factory
    assert run_guarded(loop, main()) == "eager result"
    assert order == ["task body", "create_task returned"]


def test_create_task_passes_extra_kwargs_as_asyncio_does(loop_factory):
    # 3.14 made create_task(coro, **kwargs) forward kwargs to Task (e.g.
    # eager_start); before that an unknown keyword is a TypeError.
    def scenario(lp):
        order = []

        async def body():
            order.append("body")

        async def main():
            coro = body()
            result = outcome(asyncio.get_running_loop().create_task, coro, eager_start=True)
            order.append("returned")
            if result[0] == "returned":
                await result[1]
                return "task", result[1].done(), order
            coro.close()
            # The message names the refusing function, which may differ.
            return result[:2], order

        return lp.run_until_complete(main())

    expected = run_on_reference(scenario)
    if sys.version_info >= (3, 14):
        assert expected == ("task", True, ["body", "returned"])
    else:
        assert expected == (("raised", TypeError), ["returned"])
    loop = loop_factory()
    if (3, 12) <= sys.version_info < (3, 14) and not isinstance(loop, asyncio.BaseEventLoop):
        # goloop's create_task forwards extra keywords to Task on every
        # version, as 3.14 does (its documented extension); Task itself
        # takes eager_start from 3.12 on.
        expected = ("task", True, ["body", "returned"])
    assert scenario(loop) == expected


def test_task_exception_never_retrieved_is_reported(loop):
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))

    async def boom():
        raise ValueError("never retrieved")

    task = loop.create_task(boom())
    loop.run_until_complete(asyncio.wait([task]))
    del task
    import gc
    gc.collect()
    assert [c["message"] for c in contexts] == ["Task exception was never retrieved"]
    assert isinstance(contexts[0]["exception"], ValueError)
