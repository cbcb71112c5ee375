"""Leak checks: a million callbacks, a hundred thousand timers (half of them
cancelled) and ten thousand tasks leave object counts and memory flat.

Each test runs its workload once to warm up (free lists, pymalloc arenas,
the Go heap reach their working size), then twice more between two
snapshots. One object or handle kept per callback would show as a million
objects and tens of MB, far beyond the tolerances.

Part of the normal suite; select or skip with ``-m leaks`` / ``-m "not leaks"``.
"""

import asyncio
import collections
import contextvars
import gc
import os
import sys

import pytest

import support

pytestmark = pytest.mark.leaks

N_CALLBACKS = 10**6
N_TIMERS = 10**5
N_TASKS = 10**4
BATCH = 1000

# Allowed growth over two measured rounds.
MAX_NEW_GC_OBJECTS = 1000
MAX_NEW_BLOCKS = 5000        # sys.getallocatedblocks(): every pymalloc/PyMem block
MAX_RSS_GROWTH = 8 * 2**20   # bytes

var = contextvars.ContextVar("var", default=0)


try:  # imported here: an import during a measurement would count as growth
    import psutil
except ImportError:
    psutil = None


def rss_bytes():
    if psutil is None:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return psutil.Process().memory_info().rss


def snapshot():
    for _ in range(3):
        gc.collect()
    objects = gc.get_objects()
    types = collections.Counter(type(o).__qualname__ for o in objects)
    del objects
    return {"gc objects": sum(types.values()),
            "allocated blocks": sys.getallocatedblocks(),
            "rss": rss_bytes()}, types


def assert_flat(workload, loop):
    if loop is not None:
        # Debug mode (PYTHONASYNCIODEBUG=1) records a stack per handle: too
        # slow for a million callbacks.
        loop.set_debug(False)
    workload(loop)  # warm-up
    before, types_before = snapshot()
    workload(loop)
    workload(loop)
    after, types_after = snapshot()
    growth = {k: after[k] - before[k] for k in before}
    growth["most grown types"] = (types_after - types_before).most_common(8)
    assert growth["gc objects"] <= MAX_NEW_GC_OBJECTS, growth
    assert growth["allocated blocks"] <= MAX_NEW_BLOCKS, growth
    assert growth["rss"] <= MAX_RSS_GROWTH, growth


def callbacks(loop):
    """N_CALLBACKS callbacks in batches: plain, with args, with a context,
    through call_soon_threadsafe, and cancelled ones."""
    done = loop.create_future()
    count = [0]
    ctx = contextvars.copy_context()

    def cb(*args):
        count[0] += 1

    def batch(remaining):
        for i in range(BATCH):
            kind = i % 10
            if kind == 0:
                loop.call_soon_threadsafe(cb, i)
            elif kind == 1:
                loop.call_soon(cb, i, context=ctx)
            elif kind == 2:
                loop.call_soon(cb, i).cancel()
                count[0] += 1
            elif kind == 3:
                loop.call_soon(cb, "x", i, None)
            else:
                loop.call_soon(cb)
        remaining -= BATCH
        if remaining > 0:
            loop.call_soon(batch, remaining)
        else:
            loop.call_soon(done.set_result, None)

    loop.call_soon(batch, N_CALLBACKS)
    support.run_guarded(loop, done)
    assert count[0] == N_CALLBACKS


def timers(loop):
    """N_TIMERS near timers in batches, every other one cancelled, plus far
    timers that are cancelled and never due."""
    async def main():
        lp = asyncio.get_running_loop()
        for _ in range(N_TIMERS // BATCH):
            fut = lp.create_future()
            fired = [0]

            def cb(i):
                fired[0] += 1
                if fired[0] == BATCH // 2:
                    fut.set_result(None)

            base = lp.time()
            handles = [lp.call_at(base + (i % 20) * 1e-4, cb, i) for i in range(BATCH)]
            for handle in handles[::2]:
                handle.cancel()
            for i in range(BATCH // 10):
                lp.call_later(3600 + i, cb, i).cancel()
            del handles
            await fut

    support.run_guarded(loop, main())


def tasks(loop):
    """N_TASKS tasks: gathered, some cancelled, some failing."""
    async def child(i):
        await asyncio.sleep(0)
        if i % 10 == 0:
            raise ValueError(i)
        return i

    async def sleeper():
        await asyncio.sleep(3600)

    async def main():
        lp = asyncio.get_running_loop()
        for _ in range(N_TASKS // BATCH):
            batch = [lp.create_task(child(i)) for i in range(BATCH - BATCH // 10)]
            doomed = [lp.create_task(sleeper()) for _ in range(BATCH // 10)]
            await asyncio.sleep(0)
            for task in doomed:
                task.cancel()
            results = await asyncio.gather(*batch, *doomed, return_exceptions=True)
            assert len(results) == BATCH

    support.run_guarded(loop, main())


def test_callbacks_do_not_leak(loop):
    assert_flat(callbacks, loop)


def test_timers_do_not_leak(loop):
    assert_flat(timers, loop)


def test_tasks_do_not_leak(loop):
    assert_flat(tasks, loop)


def test_loops_do_not_leak(loop_kind):
    def many_loops(_):
        for _ in range(200):
            lp = support.new_loop(loop_kind)
            lp.set_debug(False)
            lp.call_soon(lp.stop)
            lp.call_later(3600, print)
            lp.run_forever()
            lp.run_until_complete(asyncio.sleep(0))
            lp.close()

    assert_flat(many_loops, None)
