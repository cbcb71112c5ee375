"""A small asyncio program run on goloop, then on stock asyncio for scale.

    make example

A thousand tasks take turns on the loop (asyncio.sleep(0)), hand results
back through futures and sleep on timers; the program is ordinary asyncio
code, and only the loop_factory differs between the two runs.
"""

import asyncio
import sys
import time

import goloop

TASKS = 1_000
TURNS = 200


async def worker(i, results):
    loop = asyncio.get_running_loop()
    for turn in range(TURNS):
        await asyncio.sleep(0)
        fut = loop.create_future()
        loop.call_soon(fut.set_result, turn)
        await fut
    await asyncio.sleep(0.001 * (i % 10))
    results.append(i)


async def main():
    results = []
    start = time.perf_counter()
    await asyncio.gather(*(worker(i, results) for i in range(TASKS)))
    elapsed = time.perf_counter() - start
    assert sorted(results) == list(range(TASKS))
    return elapsed


def run(name, factory):
    with asyncio.Runner(loop_factory=factory) as runner:
        elapsed = runner.run(main())
    switches = TASKS * TURNS * 2
    print(f"{name:8} {switches:,} task switches in {elapsed:.2f} s: "
          f"{switches / elapsed / 1e3:,.0f}k/s")
    return elapsed


if __name__ == "__main__":
    print(f"Python {sys.version.split()[0]}, goloop {goloop.__version__}")
    fast = run("goloop", goloop.new)
    slow = run("asyncio", asyncio.SelectorEventLoop)
    print(f"goloop is {slow / fast:.2f}x stock asyncio on this program")
