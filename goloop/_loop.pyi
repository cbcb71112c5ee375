import asyncio

from ._goloop import LoopBase

class Loop(LoopBase, asyncio.AbstractEventLoop):
    slow_callback_duration: float
    def __init__(self) -> None: ...
