"""add_signal_handler / remove_signal_handler (Unix)."""

import asyncio
import contextvars
import os
import signal
import threading

import pytest

from support import GUARD, outcome, raised, run_guarded, run_on_reference

var = contextvars.ContextVar("var", default="default")


def current_wakeup_fd():
    fd = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(fd)
    return fd


def send(sig):
    """Send sig to this process, but only if a Python-level handler is
    installed: an uncaught SIGUSR1 would kill the whole test run, and an
    uncaught SIGINT would interrupt it."""
    handler = signal.getsignal(sig)
    assert handler not in (signal.SIG_DFL, signal.SIG_IGN, signal.default_int_handler, None), (
        f"no handler for {sig!r} visible to signal.getsignal(); not sending it")
    os.kill(os.getpid(), sig)


@pytest.fixture(autouse=True)
def signals_restored():
    """Each test leaves the signal dispositions and the wakeup fd as found."""
    before = {s: signal.getsignal(s) for s in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGINT)}
    wakeup = current_wakeup_fd()
    yield
    after = {s: signal.getsignal(s) for s in before}
    for sig, handler in before.items():
        signal.signal(sig, handler)
    signal.set_wakeup_fd(wakeup)
    assert after == before
    assert current_wakeup_fd() == wakeup


def test_signal_runs_handler_with_args_on_the_loop(loop):
    got = loop.create_future()

    def handler(*args):
        got.set_result((args, threading.get_ident(), asyncio.get_running_loop()))

    loop.add_signal_handler(signal.SIGUSR1, handler, "a", 2)
    loop.call_soon(send, signal.SIGUSR1)
    args, ident, running = run_guarded(loop, got)
    assert args == ("a", 2)
    assert ident == threading.get_ident()
    assert running is loop
    assert loop.remove_signal_handler(signal.SIGUSR1) is True


def test_signal_wakes_a_sleeping_loop(loop):
    # The loop sleeps (only a guard timer GUARD s away) when another thread
    # sends the signal.
    got = loop.create_future()
    loop.add_signal_handler(signal.SIGUSR1, lambda: got.set_result("woken"))
    loop_is_running = threading.Event()

    def sender():
        assert loop_is_running.wait(GUARD)
        send(signal.SIGUSR1)

    thread = threading.Thread(target=sender)
    thread.start()
    loop.call_soon(loop_is_running.set)
    try:
        assert run_guarded(loop, got) == "woken"
    finally:
        thread.join(GUARD)
        loop.remove_signal_handler(signal.SIGUSR1)


def test_signal_handler_runs_once_per_delivery(loop):
    calls = []
    waiter = [None]

    def handler():
        calls.append(len(calls))
        waiter[0].set_result(None)

    async def main():
        for _ in range(3):
            waiter[0] = loop.create_future()
            send(signal.SIGUSR1)
            await waiter[0]

    loop.add_signal_handler(signal.SIGUSR1, handler)
    try:
        run_guarded(loop, main())
    finally:
        loop.remove_signal_handler(signal.SIGUSR1)
    assert calls == [0, 1, 2]


def test_sigint_handler_replaces_keyboard_interrupt(loop):
    got = loop.create_future()
    loop.add_signal_handler(signal.SIGINT, got.set_result, "sigint handled")
    loop.call_soon(send, signal.SIGINT)
    assert run_guarded(loop, got) == "sigint handled"
    assert loop.remove_signal_handler(signal.SIGINT) is True
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_second_add_replaces_the_handler(loop):
    got = loop.create_future()
    loop.add_signal_handler(signal.SIGUSR1, got.set_result, "first")
    loop.add_signal_handler(signal.SIGUSR1, got.set_result, "second")
    loop.call_soon(send, signal.SIGUSR1)
    try:
        assert run_guarded(loop, got) == "second"
    finally:
        loop.remove_signal_handler(signal.SIGUSR1)


def test_remove_signal_handler(loop):
    assert loop.remove_signal_handler(signal.SIGUSR1) is False
    loop.add_signal_handler(signal.SIGUSR1, lambda: None)
    assert signal.getsignal(signal.SIGUSR1) not in (signal.SIG_DFL, None)
    assert loop.remove_signal_handler(signal.SIGUSR1) is True
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL
    assert loop.remove_signal_handler(signal.SIGUSR1) is False


def test_close_removes_signal_handlers(loop_factory):
    lp = loop_factory()
    lp.add_signal_handler(signal.SIGUSR1, lambda: None)
    lp.add_signal_handler(signal.SIGUSR2, lambda: None)
    lp.close()
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL
    assert signal.getsignal(signal.SIGUSR2) == signal.SIG_DFL


def test_signal_handler_context_is_the_one_at_add_time(loop):
    got = loop.create_future()
    token = var.set("at add time")
    try:
        loop.add_signal_handler(signal.SIGUSR1, lambda: got.set_result(var.get()))
    finally:
        var.reset(token)
    loop.call_soon(send, signal.SIGUSR1)
    try:
        assert run_guarded(loop, got) == "at add time"
    finally:
        loop.remove_signal_handler(signal.SIGUSR1)


def test_signal_handler_exception_goes_to_the_exception_handler(loop):
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
    done = loop.create_future()

    def bad():
        loop.call_soon(done.set_result, None)
        raise ValueError("in signal handler")

    loop.add_signal_handler(signal.SIGUSR1, bad)
    loop.call_soon(send, signal.SIGUSR1)
    try:
        run_guarded(loop, done)
    finally:
        loop.remove_signal_handler(signal.SIGUSR1)
    assert [type(c["exception"]) for c in contexts] == [ValueError]


async def coro_handler():
    pass


@pytest.mark.parametrize("sig,callback", [
    (signal.SIGKILL, lambda: None),
    (signal.SIGSTOP, lambda: None),
    (0, lambda: None),
    (signal.NSIG, lambda: None),
    (-1, lambda: None),
    ("SIGUSR1", lambda: None),
    (1.5, lambda: None),
    (signal.SIGUSR1, coro_handler),
], ids=["SIGKILL", "SIGSTOP", "0", "NSIG", "-1", "str", "float", "coroutine function"])
def test_invalid_add_signal_handler_as_asyncio(loop, sig, callback):
    expected = run_on_reference(lambda ref: outcome(ref.add_signal_handler, sig, callback))
    assert expected[0] == "raised"
    assert outcome(loop.add_signal_handler, sig, callback) == expected


@pytest.mark.parametrize("sig", [0, signal.NSIG, "SIGUSR1"], ids=["0", "NSIG", "str"])
def test_invalid_remove_signal_handler_as_asyncio(loop, sig):
    expected = run_on_reference(lambda ref: outcome(ref.remove_signal_handler, sig))
    assert expected[0] == "raised"
    assert outcome(loop.remove_signal_handler, sig) == expected


def test_add_signal_handler_on_closed_loop(loop_factory):
    lp = loop_factory()
    lp.close()
    assert raised(outcome(lp.add_signal_handler, signal.SIGUSR1, lambda: None)) == (
        RuntimeError, "Event loop is closed")
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


def test_add_signal_handler_from_another_thread_as_asyncio(loop):
    def in_thread(lp):
        box = []
        thread = threading.Thread(
            target=lambda: box.append(outcome(lp.add_signal_handler, signal.SIGUSR1, print)))
        thread.start()
        thread.join(GUARD)
        return box[0]

    expected = run_on_reference(in_thread)
    assert raised(expected)[0] is RuntimeError
    assert in_thread(loop) == expected
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL
