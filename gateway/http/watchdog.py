"""One timer for every running chat request, instead of timers and watcher tasks per request.

A request registers its task with an end time (the request deadline plus a short grace for writing); a tick
every `TICK_S` looks at the running requests and cancels a task when:

- its end time has passed: the pipeline stops itself at the deadline, so this only happens while the gateway is
  writing to a client that does not read (its stream is then abandoned and the upstream closed);
- a graceful shutdown's grace is about to run out (`drain`): the request ends with a `service_unavailable`
  error rather than being cut by the server;
- its client hung up: a request running longer than `WATCH_AFTER_S` gets a task that watches `receive()` for
  `http.disconnect` (short requests finish before it would matter, and pay nothing for it).

The route learns why from `Guard.fired` after catching the cancellation. Per request this costs a dict entry;
an asyncio timeout costs a timer-heap entry and a cancel, which measured more than the rest of the route's own
work on a mock upstream.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Literal

__all__ = ["TICK_S", "WATCHDOG", "WATCH_AFTER_S", "Guard", "Watchdog"]

TICK_S = 0.1
WATCH_AFTER_S = 0.2

Reason = Literal["deadline", "drain", "hangup"]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]


class Guard:
    __slots__ = ("end", "fired", "receive", "task", "watch_after", "watcher")

    def __init__(self, task: asyncio.Task[Any], end: float, receive: Receive | None, watch_after: float) -> None:
        self.task = task
        self.end = end
        self.receive = receive
        self.watch_after = watch_after
        self.watcher: asyncio.Future[None] | None = None
        self.fired: Reason | None = None

    def fire(self, reason: Reason) -> None:
        if self.fired is None:
            self.fired = reason
            self.task.cancel()


class Watchdog:
    def __init__(self) -> None:
        self._guards: set[Guard] = set()
        self._tick: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop `_tick` runs on
        self._drain_at: float | None = None

    @property
    def draining(self) -> bool:
        return self._drain_at is not None

    def guard(self, within_s: float, receive: Receive | None = None) -> Guard:
        """Watch the current task until `release`, ending it if it runs longer than `within_s` from now. With
        `receive`, a client hang-up cancels it too."""
        task = asyncio.current_task()
        assert task is not None
        loop = task.get_loop()
        now = loop.time()
        guard = Guard(task, now + within_s, receive, now + WATCH_AFTER_S)
        self._guards.add(guard)
        if self._tick is None or self._loop is not loop:  # a tick left on another (closed) loop never comes
            self._schedule(loop)
        return guard

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._tick is not None:
            self._tick.cancel()
        self._loop = loop
        self._tick = loop.call_later(TICK_S, self._check)

    def release(self, guard: Guard) -> None:
        self._guards.discard(guard)
        # Forgotten as it is cancelled: the cancelled task keeps its CancelledError, whose traceback holds the
        # `_watch` frame and so the guard (a cycle that only the garbage collector would free).
        watcher, guard.watcher = guard.watcher, None
        if watcher is not None:
            watcher.cancel()

    def drain(self, after_s: float) -> None:
        """Shutdown has begun: end every request still running `after_s` seconds from now."""
        if self._drain_at is None:
            loop = asyncio.get_running_loop()
            self._drain_at = loop.time() + max(0.0, after_s)
            if self._guards and (self._tick is None or self._loop is not loop):
                self._schedule(loop)

    def _check(self) -> None:
        self._tick = None
        if not self._guards:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        drain_at = self._drain_at
        for guard in self._guards:
            if guard.fired is not None or guard.task.get_loop() is not loop:
                continue
            if now >= guard.end:
                guard.fire("deadline")
            elif drain_at is not None and now >= drain_at:
                guard.fire("drain")
            elif guard.receive is not None and guard.watcher is None and now >= guard.watch_after:
                guard.watcher = asyncio.ensure_future(_watch(guard, guard.receive))
        self._schedule(loop)

    def reset(self) -> None:
        """Forget a shutdown (tests that serve again in the same process)."""
        self._drain_at = None


async def _watch(guard: Guard, receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    guard.fire("hangup")


WATCHDOG = Watchdog()
