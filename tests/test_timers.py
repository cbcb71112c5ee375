"""call_later, call_at, TimerHandle and loop.time()."""

import contextvars
import time

import pytest

from support import EARLY_SLACK, outcome, run_briefly, run_forever_guarded, run_on_reference

var = contextvars.ContextVar("var", default="default")


def tick():
    """A module-level callback with a recognisable name for repr checks."""


def test_time_is_the_monotonic_clock(loop):
    for _ in range(3):
        before = time.monotonic()
        now = loop.time()
        after = time.monotonic()
        assert before - 1e-3 <= now <= after + 1e-3
    assert isinstance(loop.time(), float)


def test_call_later_fires_in_order_of_deadline_and_not_early(loop):
    fired = []

    def record(name):
        fired.append((name, loop.time()))

    handles = {name: loop.call_later(delay, record, name)
               for name, delay in [("c", 0.03), ("a", 0.01), ("b", 0.02)]}
    loop.call_later(0.04, loop.stop)
    run_forever_guarded(loop)
    assert [name for name, _ in fired] == ["a", "b", "c"]
    for name, when in fired:
        assert when >= handles[name].when() - EARLY_SLACK


def test_call_at_fires_in_order_and_not_early(loop):
    fired = []
    base = loop.time()
    for offset in (0.02, 0.0, 0.01, -0.5):
        loop.call_at(base + offset, lambda o=offset: fired.append((o, loop.time())))
    loop.call_at(base + 0.03, loop.stop)
    run_forever_guarded(loop)
    assert [o for o, _ in fired] == [-0.5, 0.0, 0.01, 0.02]
    for offset, now in fired:
        assert now >= base + offset - EARLY_SLACK


def test_equal_deadlines_all_fire_in_one_iteration(loop):
    # asyncio documents the order of timers with the same deadline as
    # undefined (its heap does not keep scheduling order); goloop promises
    # scheduling order, tested in test_goloop_api.py.
    fired = []

    def finish():
        fired.append("next iteration")
        loop.stop()

    when = loop.time() + 0.01
    for i in range(50):
        loop.call_at(when, fired.append, i)
    # Scheduled by a timer due at the same time: it runs in the following
    # iteration, so after every timer of that deadline.
    loop.call_at(when, loop.call_soon, finish)
    run_forever_guarded(loop)
    assert sorted(fired[:50]) == list(range(50))
    assert fired[50:] == ["next iteration"]


def test_timer_handle_when(loop):
    before = loop.time()
    handle = loop.call_later(10, tick)
    after = loop.time()
    assert before + 10 <= handle.when() <= after + 10
    absolute = loop.time() + 123.5
    assert loop.call_at(absolute, tick).when() == absolute
    handle.cancel()
    # when() stays readable after cancel.
    assert before + 10 <= handle.when() <= after + 10


def test_timer_handle_repr_names_class_and_callback(loop):
    handle = loop.call_later(10, tick)
    text = repr(handle)
    assert type(handle).__name__ in text
    assert "TimerHandle" in text
    assert "tick" in text
    handle.cancel()
    assert "cancelled" in repr(handle)


def test_zero_and_negative_delays_run_after_ready_callbacks(loop):
    calls = []
    loop.call_later(0, calls.append, "later 0")
    loop.call_later(-1, calls.append, "later -1")
    loop.call_at(loop.time() - 100, calls.append, "at -100")
    loop.call_soon(calls.append, "soon")
    run_briefly(loop)
    # Due timers join the ready queue behind what was already there, in
    # deadline order, and run in the same iteration.
    assert calls == ["soon", "at -100", "later -1", "later 0"]


def test_cancelled_timer_does_not_fire(loop):
    calls = []
    handles = [loop.call_later(0.01 * (i % 3), calls.append, i) for i in range(30)]
    for handle in handles[::2]:
        handle.cancel()
        assert handle.cancelled()
    loop.call_later(0.03, loop.stop)
    run_forever_guarded(loop)
    assert sorted(calls) == list(range(1, 30, 2))
    assert not any(h.cancelled() for h in handles[1::2])


def test_timer_cancelled_by_earlier_callback_in_same_iteration(loop):
    calls = []
    when = loop.time() - 1
    loop.call_at(when - 1, lambda: victim.cancel())
    victim = loop.call_at(when, calls.append, "must not run")
    run_briefly(loop)
    assert calls == []
    assert victim.cancelled()


def test_far_timer_does_not_hold_up_near_one(loop):
    far = loop.call_later(3600, tick)
    start = loop.time()
    loop.call_later(0.02, loop.stop)
    run_forever_guarded(loop)
    assert loop.time() >= start + 0.02 - EARLY_SLACK
    assert not far.cancelled()
    far.cancel()


def test_loop_sleeps_until_timer(loop):
    start = time.monotonic()
    fut = loop.create_future()
    loop.call_later(0.05, fut.set_result, "done")
    assert loop.run_until_complete(fut) == "done"
    assert time.monotonic() >= start + 0.05 - EARLY_SLACK


def test_timer_scheduled_from_timer_callback(loop):
    fired = []

    def first():
        fired.append(("first", loop.time()))
        loop.call_later(0.01, second, loop.time() + 0.01)

    def second(deadline):
        fired.append(("second", loop.time()))
        assert loop.time() >= deadline - EARLY_SLACK
        loop.stop()

    loop.call_later(0.01, first)
    run_forever_guarded(loop)
    assert [name for name, _ in fired] == ["first", "second"]


def test_timer_context(loop):
    ctx = contextvars.copy_context()
    ctx.run(var.set, "timer ctx")
    seen = []
    loop.call_later(0, lambda: seen.append(var.get()), context=ctx)
    loop.call_at(loop.time(), lambda: seen.append(var.get()), context=ctx)
    run_briefly(loop)
    assert seen == ["timer ctx", "timer ctx"]


@pytest.mark.parametrize("call", [
    lambda lp: lp.call_later(None, tick),
    lambda lp: lp.call_at(None, tick),
    lambda lp: lp.call_later("1", tick),
], ids=["call_later-None", "call_at-None", "call_later-str"])
def test_invalid_delay_or_when_is_refused_as_asyncio_does(loop, call):
    expected = run_on_reference(lambda ref: outcome(call, ref))
    got = outcome(call, loop)
    assert expected[0] == "raised"
    assert got[:2] == expected[:2], got
    # Messages are compared only where asyncio words them itself (a
    # TypeError from float arithmetic names the operand types).
    if "None" in expected[2]:
        assert got[2] == expected[2]


def test_many_timers_fire_in_deadline_order(loop):
    import random
    rng = random.Random(1234)
    base = loop.time()
    offsets = [rng.uniform(-0.01, 0.02) for _ in range(2000)]
    fired = []
    for i, off in enumerate(offsets):
        loop.call_at(base + off, fired.append, i)
    loop.call_at(base + 0.03, loop.stop)
    run_forever_guarded(loop)
    assert len(fired) == len(offsets)
    assert [offsets[i] for i in fired] == sorted(offsets)
