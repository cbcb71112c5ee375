"""call_soon, call_soon_threadsafe and their handles."""

import asyncio
import contextvars
import threading

import pytest

from support import GUARD, run_briefly, run_guarded

var = contextvars.ContextVar("var", default="default")


def cb():
    """A module-level callback with a recognisable name for repr checks."""


def test_call_soon_runs_callbacks_in_order_with_args(loop):
    calls = []
    for i in range(5):
        loop.call_soon(calls.append, i)
    loop.call_soon(lambda *args: calls.append(args), "x", 2, None)
    loop.call_soon(calls.append, "last")
    run_briefly(loop)
    assert calls == [0, 1, 2, 3, 4, ("x", 2, None), "last"]


def test_call_soon_returns_handle_not_cancelled(loop):
    handle = loop.call_soon(cb)
    assert not handle.cancelled()
    run_briefly(loop)
    assert not handle.cancelled()


def test_handles_are_asyncio_handles(loop):
    # asyncio documents call_soon as returning an asyncio.Handle and the
    # timer methods as returning an asyncio.TimerHandle.
    assert isinstance(loop.call_soon(cb), asyncio.Handle)
    assert isinstance(loop.call_soon_threadsafe(cb), asyncio.Handle)
    timer = loop.call_later(0, cb)
    assert isinstance(timer, asyncio.TimerHandle)
    assert isinstance(timer, asyncio.Handle)
    run_briefly(loop)


def test_callbacks_scheduled_by_callbacks_run_in_a_later_iteration(loop):
    calls = []

    def first():
        calls.append("first")
        loop.call_soon(calls.append, "scheduled by first")

    loop.call_soon(first)
    loop.call_soon(calls.append, "second")
    run_briefly(loop)
    # One iteration runs exactly what was ready when it started.
    assert calls == ["first", "second"]
    run_briefly(loop)
    assert calls == ["first", "second", "scheduled by first"]


def test_cancel_before_run(loop):
    calls = []
    handle = loop.call_soon(calls.append, "cancelled")
    loop.call_soon(calls.append, "kept")
    handle.cancel()
    assert handle.cancelled()
    handle.cancel()  # a second cancel is a no-op
    assert handle.cancelled()
    run_briefly(loop)
    assert calls == ["kept"]


def test_cancel_by_an_earlier_callback_in_the_same_iteration(loop):
    calls = []
    loop.call_soon(lambda: later.cancel())
    later = loop.call_soon(calls.append, "must not run")
    run_briefly(loop)
    assert calls == []
    assert later.cancelled()


def test_cancel_after_run_is_harmless(loop):
    calls = []
    handle = loop.call_soon(calls.append, 1)
    run_briefly(loop)
    handle.cancel()
    run_briefly(loop)
    assert calls == [1]


def test_handle_repr_names_class_and_callback(loop):
    handle = loop.call_soon(cb)
    text = repr(handle)
    assert type(handle).__name__ in text
    assert "Handle" in text
    assert "cb" in text
    handle.cancel()
    assert "cancelled" in repr(handle)
    threadsafe = loop.call_soon_threadsafe(cb)
    assert "Handle" in repr(threadsafe) and "cb" in repr(threadsafe)
    run_briefly(loop)


def test_call_soon_runs_in_given_context(loop):
    ctx = contextvars.copy_context()
    ctx.run(var.set, "in ctx")
    seen = []
    loop.call_soon(lambda: seen.append(var.get()), context=ctx)
    # A callback's changes stay in the context it ran in.
    loop.call_soon(var.set, "set by callback", context=ctx)
    run_briefly(loop)
    assert seen == ["in ctx"]
    assert ctx[var] == "set by callback"
    assert var.get() == "default"


def test_call_soon_default_context_is_a_copy_of_the_current_one(loop):
    seen = []
    token = var.set("current")
    try:
        loop.call_soon(lambda: seen.append(var.get()))
    finally:
        var.reset(token)
    loop.call_soon(var.set, "leaks?")
    loop.call_soon(lambda: seen.append(var.get()))
    run_briefly(loop)
    # The first callback saw the context copied when it was scheduled; the
    # set in the second callback changed only its own copy.
    assert seen == ["current", "default"]
    assert var.get() == "default"


def test_call_soon_threadsafe_context(loop):
    ctx = contextvars.copy_context()
    ctx.run(var.set, "threadsafe ctx")
    seen = []
    loop.call_soon_threadsafe(lambda: seen.append(var.get()), context=ctx)
    run_briefly(loop)
    assert seen == ["threadsafe ctx"]


@pytest.mark.skipif(not hasattr(asyncio.Handle, "get_context"),
                    reason="stock asyncio has Handle.get_context from 3.12")
def test_handle_get_context(loop):
    ctx = contextvars.copy_context()
    assert loop.call_soon(cb, context=ctx).get_context() is ctx
    assert loop.call_later(0, cb, context=ctx).get_context() is ctx
    assert loop.call_soon_threadsafe(cb, context=ctx).get_context() is ctx
    default = loop.call_soon(cb).get_context()
    assert isinstance(default, contextvars.Context)
    run_briefly(loop)


def test_call_soon_threadsafe_from_another_thread_wakes_sleeping_loop(loop):
    # The loop has nothing to do but a guard timer GUARD seconds away, so it
    # sleeps in its poller until the other thread's call wakes it.
    loop_is_running = threading.Event()
    fut = loop.create_future()

    def worker():
        assert loop_is_running.wait(GUARD)
        loop.call_soon_threadsafe(fut.set_result, threading.get_ident())

    thread = threading.Thread(target=worker)
    thread.start()
    loop.call_soon(loop_is_running.set)
    try:
        worker_ident = run_guarded(loop, fut)
    finally:
        thread.join(GUARD)
    assert worker_ident == thread.ident


def test_call_soon_threadsafe_callback_runs_on_the_loop_thread(loop):
    ran_on = loop.create_future()

    def worker():
        loop.call_soon_threadsafe(lambda: ran_on.set_result(threading.get_ident()))

    thread = threading.Thread(target=worker)
    loop.call_soon(thread.start)
    try:
        assert run_guarded(loop, ran_on) == threading.get_ident()
    finally:
        thread.join(GUARD)


def test_call_soon_threadsafe_many_threads_keep_per_thread_order(loop):
    n_threads, per_thread = 4, 2000
    received = {t: [] for t in range(n_threads)}
    done = loop.create_future()
    remaining = [n_threads * per_thread]

    def receive(t, i):
        received[t].append(i)
        remaining[0] -= 1
        if remaining[0] == 0:
            done.set_result(None)

    start = threading.Event()

    def worker(t):
        assert start.wait(GUARD)
        for i in range(per_thread):
            loop.call_soon_threadsafe(receive, t, i)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
    for thread in threads:
        thread.start()
    loop.call_soon(start.set)
    try:
        run_guarded(loop, done)
    finally:
        start.set()
        for thread in threads:
            thread.join(GUARD)
    for t in range(n_threads):
        assert received[t] == list(range(per_thread))


def test_call_soon_threadsafe_cancel_from_other_thread(loop):
    calls = []
    cancelled = threading.Event()
    handle_box = []

    def worker():
        handle_box.append(loop.call_soon_threadsafe(calls.append, "cancelled"))
        handle_box[0].cancel()
        cancelled.set()

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(GUARD)
    assert cancelled.is_set()
    run_briefly(loop)
    assert calls == []
    assert handle_box[0].cancelled()
