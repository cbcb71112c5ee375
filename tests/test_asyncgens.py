"""Async generator finalization: the loop's asyncgen hooks and
shutdown_asyncgens()."""

import asyncio
import gc
import re
import warnings

from support import run_guarded, run_on_reference


AGEN_REPR = r"<async_generator object .*? at 0x[0-9a-f]+>"


def make_agen(log, name="agen"):
    async def agen():
        try:
            for i in range(10):
                yield i
        finally:
            log.append((name, "finally", asyncio.get_running_loop()))
    return agen()


def test_shutdown_asyncgens_finalizes_suspended_generators(loop):
    log = []
    gens = [make_agen(log, f"g{i}") for i in range(3)]

    async def start():
        for g in gens:
            assert await g.__anext__() == 0

    run_guarded(loop, start())
    assert log == []
    run_guarded(loop, loop.shutdown_asyncgens())
    assert sorted(name for name, _, _ in log) == ["g0", "g1", "g2"]
    assert all(what == "finally" and lp is loop for _, what, lp in log)


def test_shutdown_asyncgens_with_nothing_to_do(loop):
    assert run_guarded(loop, loop.shutdown_asyncgens()) is None


def test_exhausted_generators_are_not_touched(loop):
    log = []
    gen = make_agen(log)

    async def drain():
        return [i async for i in gen]

    assert run_guarded(loop, drain()) == list(range(10))
    assert len(log) == 1
    run_guarded(loop, loop.shutdown_asyncgens())
    assert len(log) == 1


def test_garbage_collected_generator_is_closed_on_the_loop(loop):
    closed = loop.create_future()

    async def agen():
        try:
            yield 1
            yield 2
        finally:
            closed.set_result(asyncio.get_running_loop())

    async def main():
        gen = agen()
        await gen.__anext__()
        del gen
        gc.collect()
        # The loop's finalizer hook schedules aclose() on the loop.
        return await closed

    assert run_guarded(loop, main()) is loop


def test_error_while_closing_generator_goes_to_exception_handler(loop):
    def scenario(lp):
        contexts = []
        lp.set_exception_handler(lambda lp_, ctx: contexts.append(ctx))

        async def bad():
            try:
                yield 1
            finally:
                raise ValueError("in finally")

        gen = bad()

        async def start():
            await gen.__anext__()

        lp.run_until_complete(start())
        lp.run_until_complete(lp.shutdown_asyncgens())
        return [(re.sub(AGEN_REPR, "<agen>", c["message"]), type(c["exception"]),
                 c.get("asyncgen") is gen) for c in contexts]

    expected = run_on_reference(scenario)
    assert len(expected) == 1 and expected[0][1] is ValueError
    assert scenario(loop) == expected


def test_first_iteration_after_shutdown_as_asyncio(loop):
    def scenario(lp):
        log = []
        lp.run_until_complete(lp.shutdown_asyncgens())
        gen = make_agen(log)

        async def start():
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                await gen.__anext__()
            # The message shows the generator's repr; compare the rest.
            return [(w.category, re.sub(AGEN_REPR, "<agen>", str(w.message)))
                    for w in caught]

        caught = lp.run_until_complete(start())
        lp.run_until_complete(gen.aclose())
        return caught

    expected = run_on_reference(scenario)
    assert [cat for cat, _ in expected] == [ResourceWarning]
    assert scenario(loop) == expected
