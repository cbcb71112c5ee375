import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from ._loop import Loop as Loop

_T = TypeVar("_T")

__version__: str
__all__ = ("Loop", "new", "run")

def new() -> Loop: ...
def run(main: Coroutine[Any, Any, _T], *, debug: bool | None = None, **run_kwargs: Any) -> _T: ...
