"""Structured concurrency for strategies: gather-all, and one race engine (race-to-first with adaptive width,
refill and hedge-after-delay) that `race` runs on whole answers and `race_stream` on streams.

Every task is created here and awaited or cancelled here: losers are cancelled (their attempt is recorded as
`cancelled`, and the provider closes their upstream response), nothing is left running when a function returns.
No TaskGroup or timeout scope is held across a `yield`, because a stream may be consumed in another task.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TypeVar

from gateway.core.errors import AllProvidersFailed, UpstreamError
from gateway.core.pool import Deployment
from gateway.core.types import ChatRequest, ChatResponse, Chunk
from strategies._accept import Accept
from strategies.base import RecordedStream, Role, StrategyContext

__all__ = ["Prefixed", "gather_all", "has_content", "race", "race_stream", "until_content"]


def has_content(chunk: Chunk) -> bool:
    return any(
        (c.get("delta") or {}).get("content") or (c.get("delta") or {}).get("tool_calls")
        for c in chunk.get("choices") or ()
    )


async def until_content(chunks: AsyncIterator[Chunk]) -> AsyncIterator[Chunk]:
    """Chunks up to and including the first one with content or a tool call (or all of them, if none has)."""
    async for chunk in chunks:
        yield chunk
        if has_content(chunk):
            return


class Prefixed:
    """The held-back chunks, then the rest of the stream."""

    def __init__(self, held: list[Chunk], rest: AsyncIterator[Chunk]) -> None:
        self._held = held
        self._rest = rest

    async def __aiter__(self) -> AsyncIterator[Chunk]:
        for chunk in self._held:
            yield chunk
        async for chunk in self._rest:
            yield chunk


async def _wait_or_hedge(
    ctx: StrategyContext,
    running: Iterable[asyncio.Task[Any]],
    hedge_after_s: float | None,
    launch: Callable[[], None] | None,
) -> set[asyncio.Task[Any]]:
    """The tasks that finished first; if none within the hedge delay, start the next deployment (a hedge) and
    return nothing, so the caller waits again."""
    done, _ = await asyncio.wait(running, timeout=hedge_after_s, return_when=asyncio.FIRST_COMPLETED)
    if not done and launch is not None:
        launch()
        ctx.meta.extra["hedged"] = ctx.meta.extra.get("hedged", 0) + 1
    return done


async def _cancel(tasks: Sequence[asyncio.Task[Any]]) -> None:
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)


async def gather_all(
    ctx: StrategyContext, deployments: Sequence[Deployment], request: ChatRequest, *, role: Role, limit: int = 8
) -> list[tuple[Deployment, ChatResponse]]:
    """Call every deployment (at most `limit` at once) and wait for all; returns the successes in input order.
    Failures are recorded as attempts; raises AllProvidersFailed when nothing succeeded."""
    gate = asyncio.Semaphore(max(1, limit))

    async def one(d: Deployment) -> ChatResponse:
        async with gate:
            return await ctx.call(d, request, role)

    tasks = [asyncio.create_task(one(d)) for d in deployments]
    try:
        results = await asyncio.gather(*tasks, return_exceptions=True)
    except BaseException:
        await _cancel(tasks)
        raise
    ok = [(d, r) for d, r in zip(deployments, results, strict=True) if isinstance(r, ChatResponse)]
    if not ok:
        errors = [r for r in results if isinstance(r, UpstreamError)]
        final = next((e for e in errors if not ctx.fallback.falls_over(e)), None)
        raise final if final is not None else AllProvidersFailed(errors)
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, UpstreamError):
            raise result
    return ok


T = TypeVar("T")


async def _race(
    ctx: StrategyContext,
    ranked: Sequence[Deployment],
    start: Callable[[Deployment], Coroutine[Any, Any, T]],
    *,
    width: int,
    hedge_after_s: float | None,
    close: Callable[[T], Awaitable[None]] | None = None,
) -> tuple[Deployment, T]:
    """The race engine. `start(deployment)` runs one racer to the point where it has won (a whole answer that
    passed the acceptance check, or a stream past its first content token) or raises. The first `width`
    deployments start at once; a racer that fails (and the fallback policy says move on) starts the next one in
    the ranking, and so does `hedge_after_s` passing with no winner (a hedge, counted in `hedged`; at most one
    per request, since the hedge budget paid for one). The first
    winner is returned and recorded in `served_by`; the others are cancelled, and a racer that won anyway before
    its cancellation landed is handed to `close`. Raises the first error the policy calls final, else
    AllProvidersFailed with every failure."""
    queue = list(ranked)
    running: dict[asyncio.Task[T], Deployment] = {}
    errors: list[UpstreamError] = []

    def launch() -> None:
        deployment = queue.pop(0)
        running[asyncio.create_task(start(deployment))] = deployment

    hedge = hedge_after_s
    try:
        for _ in range(min(max(1, width), len(queue))):
            launch()
        while running:
            done = await _wait_or_hedge(ctx, running, hedge, launch if queue else None)
            if not done:
                hedge = None  # hedged once: from now on, wait for an answer
            for task in done:
                deployment = running.pop(task)
                error = task.exception()
                if error is None:
                    ctx.meta.served_by.append(deployment)
                    return deployment, task.result()
                if not ctx.fallback.falls_over(error):
                    raise error
                errors.append(error)
                if queue:
                    launch()
        raise AllProvidersFailed(errors)
    finally:
        losers = list(running)  # includes any that won in the same instant as the winner
        for task in losers:
            task.cancel()
        results = await asyncio.gather(*losers, return_exceptions=True)
        if close is not None:
            for result in results:
                if not isinstance(result, BaseException):  # finished before the cancellation landed
                    await close(result)


def _rejected(ctx: StrategyContext, deployment: Deployment, reason: str) -> UpstreamError:
    """Mark the deployment's latest successful attempt as rejected; the error a racer or chain moves on from."""
    for attempt in reversed(ctx.meta.attempts):
        if attempt.deployment is deployment and attempt.status == "ok":
            attempt.status, attempt.note = "rejected", reason
            break
    return UpstreamError(f"answer rejected: {reason}", deployment=deployment.name)


async def race(
    ctx: StrategyContext,
    ranked: Sequence[Deployment],
    request: ChatRequest,
    *,
    width: int,
    role: Role = "attempt",
    accept: Accept | None = None,
    hedge_after_s: float | None = None,
) -> tuple[Deployment, ChatResponse]:
    """Start the first `width` deployments; the first acceptable answer wins and the others are cancelled. A
    failure or rejected answer starts the next one in the ranking. With `hedge_after_s`, the next deployment is
    also started whenever that long passes without an answer (hedged requests)."""

    async def answer(deployment: Deployment) -> ChatResponse:
        response = await ctx.call(deployment, request, role)
        reason = accept(response) if accept is not None else None
        if reason is not None:
            raise _rejected(ctx, deployment, reason)
        return response

    return await _race(ctx, ranked, answer, width=width, hedge_after_s=hedge_after_s)


_Opened = tuple[AbstractAsyncContextManager[RecordedStream], Prefixed]
"""An opened stream's context manager, and its chunks from the start (the first token held back)."""


async def _close(opened: _Opened) -> None:
    await opened[0].__aexit__(None, None, None)


@asynccontextmanager
async def race_stream(
    ctx: StrategyContext,
    ranked: Sequence[Deployment],
    request: ChatRequest,
    *,
    width: int,
    role: Role = "attempt",
    hedge_after_s: float | None = None,
) -> AsyncIterator[Prefixed]:
    """Open streams on the first `width` deployments (plus hedges); the first to produce its first token wins;
    the others are cancelled (their upstream responses closed) before the winner is handed out."""

    async def open_one(d: Deployment) -> _Opened:
        """Opened and past its first token (content or a tool call): the role chunk alone does not win."""
        manager = ctx.open_stream(d, request, role)
        opened = await manager.__aenter__()
        try:
            chunks = opened.__aiter__()
            held = [chunk async for chunk in until_content(chunks)]
        except BaseException as exc:
            if not await manager.__aexit__(type(exc), exc, exc.__traceback__):
                raise
            raise
        if not has_content(held[-1] if held else {}):
            await manager.__aexit__(None, None, None)
            opened.attempt.status, opened.attempt.note = "rejected", "empty answer"
            raise UpstreamError("answer rejected: empty answer", deployment=d.name)
        return manager, Prefixed(held, chunks)

    _, (manager, stream) = await _race(ctx, ranked, open_one, width=width, hedge_after_s=hedge_after_s, close=_close)
    try:
        yield stream
    except BaseException as exc:
        if not await manager.__aexit__(type(exc), exc, exc.__traceback__):
            raise
    else:
        await manager.__aexit__(None, None, None)
