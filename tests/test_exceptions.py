"""The exception handler family, errors raised by callbacks, and
SystemExit/KeyboardInterrupt escaping the loop."""

import asyncio
import contextvars
import logging

import pytest

from support import outcome, raised, run_briefly, run_forever_guarded, run_on_reference

var = contextvars.ContextVar("var", default="default")


def boom():
    raise ZeroDivisionError("boom in callback")


def asyncio_errors(caplog):
    """(level, message, exception type) of the warnings and errors the
    'asyncio' logger emitted, and clear them."""
    out = [(r.levelname, r.getMessage(), r.exc_info[0] if r.exc_info else None)
           for r in caplog.records if r.name == "asyncio" and r.levelno >= logging.WARNING]
    caplog.clear()
    return out


def normalise_handle_lines(message):
    """Handle reprs may differ between loops in detail (the class, the way
    the source is shown); the log must name the handle's class and callback.
    Return the message with each 'handle: <...>' line reduced to that."""
    lines = []
    for line in message.splitlines():
        if line.startswith("handle: "):
            assert "Handle" in line and "boom" in line, line
            line = "handle: <Handle boom>"
        lines.append(line)
    return "\n".join(lines)


def test_exception_handler_default_is_none(loop):
    assert loop.get_exception_handler() is None


def test_set_and_get_exception_handler(loop):
    def handler(lp, ctx):
        pass

    loop.set_exception_handler(handler)
    assert loop.get_exception_handler() is handler
    loop.set_exception_handler(None)
    assert loop.get_exception_handler() is None


def test_set_exception_handler_rejects_non_callable(loop):
    expected = run_on_reference(lambda ref: outcome(ref.set_exception_handler, "nope"))
    assert raised(expected)[0] is TypeError
    assert outcome(loop.set_exception_handler, "nope") == expected


def test_callback_exception_goes_to_handler_and_loop_keeps_running(loop):
    contexts = []
    calls = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append((lp, ctx)))
    handle = loop.call_soon(boom)
    loop.call_soon(calls.append, "after")
    run_briefly(loop)
    loop.call_soon(calls.append, "next iteration")
    run_briefly(loop)
    assert calls == ["after", "next iteration"]
    assert len(contexts) == 1
    lp, ctx = contexts[0]
    assert lp is loop
    assert {"message", "exception", "handle"} <= set(ctx)
    assert ctx["message"].startswith("Exception in callback ")
    assert "boom" in ctx["message"]
    assert isinstance(ctx["exception"], ZeroDivisionError)
    assert ctx["handle"] is handle


def test_timer_callback_exception_goes_to_handler(loop):
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
    timer = loop.call_later(0, boom)
    run_briefly(loop)
    assert [c["handle"] for c in contexts] == [timer]
    assert isinstance(contexts[0]["exception"], ZeroDivisionError)


def test_threadsafe_callback_exception_goes_to_handler(loop):
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
    handle = loop.call_soon_threadsafe(boom)
    run_briefly(loop)
    assert [c["handle"] for c in contexts] == [handle]


def test_call_exception_handler_passes_context_through(loop):
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
    context = {"message": "custom", "extra": object()}
    loop.call_exception_handler(context)
    assert contexts == [context]


def test_default_exception_handler_logs_like_asyncio(loop, asyncio_log):
    exc = KeyError("the key")
    context = {"message": "something happened", "exception": exc, "custom": 42, "alpha": "a"}

    def scenario(lp):
        lp.default_exception_handler(dict(context))
        lp.call_exception_handler(dict(context))  # no handler set: the default one
        lp.default_exception_handler({"custom": 1})  # no message: asyncio supplies one
        return asyncio_errors(asyncio_log)

    expected = run_on_reference(scenario)
    assert expected[0] == ("ERROR", "something happened\nalpha: 'a'\ncustom: 42", KeyError)
    assert scenario(loop) == expected


def test_callback_exception_is_logged_like_asyncio(loop, asyncio_log):
    def scenario(lp):
        lp.set_debug(False)  # debug adds the scheduling stack, which differs
        lp.call_soon(boom)
        run_briefly(lp)
        return [(level, normalise_handle_lines(msg), exc)
                for level, msg, exc in asyncio_errors(asyncio_log)]

    expected = run_on_reference(scenario)
    assert len(expected) == 1 and expected[0][2] is ZeroDivisionError
    assert scenario(loop) == expected


def test_failing_exception_handler_falls_back_to_the_default(loop, asyncio_log):
    def scenario(lp):
        calls = []

        def bad_handler(lp_, ctx):
            raise RuntimeError("handler is broken")

        lp.set_exception_handler(bad_handler)
        lp.call_soon(boom)
        lp.call_soon(calls.append, "still running")
        run_briefly(lp)
        lp.call_exception_handler({"message": "direct"})
        records = asyncio_errors(asyncio_log)
        # First line of each record: the context lines hold reprs.
        return calls, [(lvl, msg.splitlines()[0], exc) for lvl, msg, exc in records]

    expected = run_on_reference(scenario)
    assert expected[0] == ["still running"]
    assert expected[1][0] == ("ERROR", "Unhandled error in exception handler", RuntimeError)
    assert len(expected[1]) == 2
    assert scenario(loop) == expected


def test_exception_handler_runs_in_the_context_asyncio_uses(loop):
    # 3.12+ runs a custom handler in the failing handle's context.
    def scenario(lp):
        seen = []
        lp.set_exception_handler(lambda lp_, ctx: seen.append(var.get()))
        ctx = contextvars.copy_context()
        ctx.run(var.set, "handle ctx")
        lp.call_soon(boom, context=ctx)
        run_briefly(lp)
        return seen

    expected = run_on_reference(scenario)
    assert expected in (["handle ctx"], ["default"])
    assert scenario(loop) == expected


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_base_exception_in_callback_escapes_run_forever(loop, exc_type):
    calls = []

    def raiser():
        raise exc_type("escape")

    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
    loop.call_soon(raiser)
    loop.call_soon(calls.append, "queued behind")
    with pytest.raises(exc_type):
        run_forever_guarded(loop)
    assert not loop.is_running()
    assert contexts == []
    assert asyncio._get_running_loop() is None
    # The loop is usable again, and what was queued behind still runs.
    run_briefly(loop)
    assert calls == ["queued behind"]


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_base_exception_in_task_escapes_run_until_complete(loop, exc_type):
    async def main():
        await asyncio.sleep(0)
        raise exc_type("from task")

    task = loop.create_task(main())
    with pytest.raises(exc_type):
        loop.run_until_complete(task)
    assert not loop.is_running()
    assert task.done()
    with pytest.raises(exc_type):
        task.result()
    async def after():
        return "usable"
    assert loop.run_until_complete(after()) == "usable"


def test_base_exception_in_timer_escapes(loop):
    loop.call_later(0, lambda: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        run_forever_guarded(loop)
    assert not loop.is_running()


def test_exception_in_exception_handler_does_not_stop_the_loop(loop, asyncio_log):
    def handler(lp, ctx):
        raise ValueError("bad handler")

    loop.set_exception_handler(handler)
    for _ in range(3):
        loop.call_soon(boom)
    done = loop.create_future()
    loop.call_soon(done.set_result, "survived")
    assert loop.run_until_complete(done) == "survived"
    assert len([r for r in asyncio_log.records if r.levelno == logging.ERROR]) == 3
