"""An asyncio event loop on virtual time, for the evaluation harness (`ultra-gateway eval`) and for tests of
code that waits on the loop's timers (sleeps, timeouts, hedge delays, deadlines): whenever the loop would block
waiting for the next timer and no I/O is ready, its clock jumps to that timer instead. A test that "waits" 30 s
finishes at once, and `loop.time()` says 30 s passed.

Only for code whose waiting is all on the loop's timers: real I/O still takes real time, and a timer due before
it arrives fires early (so no sockets, threads or subprocesses in these tests). Mark a test (or module) with
`pytest.mark.virtual_time`; `tests/unit/conftest.py` gives it this loop, and `loop.time` is the clock to
inject (its time starts at 0).
"""

from __future__ import annotations

import asyncio
import selectors
from typing import Any


class _Selector(selectors.BaseSelector):
    """The real selector, except that a wait with a timeout and nothing ready advances the clock instead."""

    def __init__(self, clock: VirtualTimeLoop) -> None:
        self._real = selectors.DefaultSelector()
        self._clock = clock

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = self._real.select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:  # no timer pending: only I/O (or another thread) can wake the loop
            return self._real.select(None)
        self._clock.advance(timeout)  # asyncio asked to sleep until its next timer: be there already
        return []

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def get_map(self) -> Any:
        return self._real.get_map()

    def close(self) -> None:
        self._real.close()


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self._now = 0.0
        super().__init__(_Selector(self))

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds
