"""`Batcher`: background writes that the answer does not wait for (token settlements, cache stores), collected
for a few milliseconds and handed over together, so a shared backend sees one round trip per batch instead of a
task and a call per request (bench/profile.py priced a settlement alone at ~130 us of CPU per request)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

__all__ = ["Batcher"]

T = TypeVar("T")


class Batcher(Generic[T]):
    """`add` items from the event loop; `delay_s` after the first of a batch, `write(items)` runs as one task.
    `write` must not raise for a backend being down (it logs and drops, as a single write would)."""

    def __init__(self, write: Callable[[list[T]], Coroutine[Any, Any, None]], *, delay_s: float) -> None:
        self._write = write
        self._delay_s = delay_s
        self._items: list[T] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def add(self, item: T) -> None:
        self._items.append(item)
        if len(self._items) == 1:
            asyncio.get_running_loop().call_later(self._delay_s, self._flush)

    def _flush(self) -> None:
        items, self._items = self._items, []
        if items:
            task = asyncio.get_running_loop().create_task(self._write(items))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @property
    def busy(self) -> bool:
        """Items waiting or being written (tests and shutdown wait for them)."""
        return bool(self._items or self._tasks)

    async def drain(self, timeout_s: float = 2.0) -> None:
        """Write what is waiting now, and wait (bounded) for every write in flight."""
        self._flush()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout_s)
