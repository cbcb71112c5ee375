"""goloop: an asyncio event loop whose core is written in Go.

    import asyncio, goloop
    asyncio.run(main(), loop_factory=goloop.new)   # Python 3.12+
    goloop.run(main())                              # any supported Python

goloop never touches asyncio's policy system (deprecated in 3.14, removed in
3.16): a loop is made by a factory. The Go runtime is loaded when the first
loop is created, not on import, because it starts threads at once and
os.fork() then warns in every later child.
"""

import asyncio as _asyncio
import sys as _sys

__version__ = "0.1.0"
__all__ = ("Loop", "new", "run")


def new():
    """Return a new goloop event loop.

    This is the loop_factory for asyncio.run() and asyncio.Runner.
    """
    from ._loop import Loop

    return Loop()


def run(main, *, debug=None, **run_kwargs):
    """Run a coroutine on a new goloop event loop, as asyncio.run() does."""
    if _sys.version_info >= (3, 12):
        return _asyncio.run(main, loop_factory=new, debug=debug, **run_kwargs)
    # 3.11's asyncio.run() has no loop_factory; Runner does.
    if _asyncio.events._get_running_loop() is not None:
        raise RuntimeError("asyncio.run() cannot be called from a running event loop")
    with _asyncio.Runner(loop_factory=new, debug=debug, **run_kwargs) as runner:
        return runner.run(main)


def __getattr__(name):
    # goloop.Loop is resolved lazily so that `import goloop` does not load
    # the extension (and start the Go runtime).
    if name == "Loop":
        from ._loop import Loop

        return Loop
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
