"""Retries as a Provider wrapper: exponential backoff with full jitter (tenacity), honouring the upstream's
`retry-after`, bounded by attempts and by the call's deadline.

Retried: errors marked `retryable` (connection errors, timeouts, 408, 409, 429, 5xx). A stream is retried only
while it is being opened (until its first chunk); after that the attempt's failure is final.
A provider's `timeout.total_s` bounds the whole call, retries included: the deadline passed inward is the
earlier of the request's and `now + total_s`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_random_exponential

from gateway.core.errors import UpstreamError
from gateway.core.provider import CallOptions, ChunkStream, Provider, WrappingProvider
from gateway.core.types import ChatRequest, ChatResponse

__all__ = ["RetryingProvider"]

T = TypeVar("T")


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, UpstreamError) and exc.retryable


class RetryingProvider(WrappingProvider):
    """Wraps a Provider; same interface, with retries."""

    def __init__(
        self,
        inner: Provider,
        *,
        max_retries: int = 2,
        total_s: float | None = None,
        backoff_initial_s: float = 0.25,
        backoff_max_s: float = 8.0,
    ) -> None:
        super().__init__(inner)
        self.max_retries = max_retries
        self.total_s = total_s
        self._backoff = wait_random_exponential(multiplier=backoff_initial_s, max=backoff_max_s)

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, UpstreamError) and exc.retry_after is not None:
            return exc.retry_after
        return float(self._backoff(state))

    def _retrying(self, options: CallOptions) -> AsyncRetrying:
        deadline = options.deadline

        def stop(state: RetryCallState) -> bool:
            if state.attempt_number > self.max_retries:
                return True
            # Deadline-aware: never sleep into (or past) the deadline; the last error is raised instead.
            return options.clock() + (state.upcoming_sleep or 0.0) >= deadline

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome is not None else None
            if isinstance(exc, UpstreamError) and options.on_retry is not None and not options.on_retry(exc):
                raise exc  # the deployment was taken out of rotation: no retry, the caller moves on

        return AsyncRetrying(
            stop=stop, wait=self._wait, retry=retry_if_exception(_retryable), reraise=True, before_sleep=before_sleep
        )

    def _bounded(self, options: CallOptions) -> CallOptions:
        if self.total_s is None:
            return options
        deadline = options.clock() + self.total_s
        if deadline >= options.deadline:
            return options
        # built directly: dataclasses.replace() introspects the fields on every call (a few µs per request)
        return CallOptions(deadline, options.request_id, options.role, options.clock, options.on_retry)

    async def _call(self, options: CallOptions, call: Callable[[], Awaitable[T]]) -> T:
        try:  # the first try outside tenacity: its per-call machinery cost 8 % of a request's CPU (bench/profile)
            return await call()
        except UpstreamError as exc:
            if not exc.retryable or self.max_retries == 0:
                raise
            failed: UpstreamError | None = exc
        async for attempt in self._retrying(options):
            with attempt:
                if failed is not None:  # tenacity's attempt 1 is the try above: the same stops and waits as ever
                    first, failed = failed, None
                    raise first
                return await call()
        raise AssertionError("unreachable: tenacity reraises the last error")  # pragma: no cover

    async def complete(self, request: ChatRequest, *, model: str, options: CallOptions) -> ChatResponse:
        options = self._bounded(options)
        return await self._call(options, lambda: self.inner.complete(request, model=model, options=options))

    @asynccontextmanager
    async def stream(self, request: ChatRequest, *, model: str, options: CallOptions) -> AsyncIterator[ChunkStream]:
        options = self._bounded(options)
        async with AsyncExitStack() as stack:
            yield await self._call(
                options, lambda: stack.enter_async_context(self.inner.stream(request, model=model, options=options))
            )

    async def embed(self, body: dict[str, Any], *, model: str, options: CallOptions) -> dict[str, Any]:
        options = self._bounded(options)
        return await self._call(options, lambda: WrappingProvider.embed(self, body, model=model, options=options))
