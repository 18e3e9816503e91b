"""Retries wrap a Provider: retryable errors retried with backoff, retry-after honoured, deadline respected."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from gateway.core.errors import UpstreamBadRequest, UpstreamError, UpstreamRateLimited, UpstreamStatusError
from gateway.core.provider import CallOptions, Capabilities
from gateway.core.types import ChatRequest, ChatResponse, parse_chat_request
from gateway.providers.mock import MockModel, MockProvider
from gateway.resilience.retry import RetryingProvider

REQUEST = parse_chat_request({"model": "p/m", "messages": [{"role": "user", "content": "hi"}]})


class Scripted:
    """A Provider that fails with the given errors, in order, then delegates to the real mock adapter."""

    name, kind, system, capabilities = "scripted", "mock", "ultra_gateway.mock", Capabilities()

    def __init__(self, failures: list[UpstreamError]) -> None:
        self.failures = failures
        self.calls = 0
        self.inner = MockProvider("scripted", {"m": MockModel()})

    def _next(self) -> None:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)

    async def complete(self, request: ChatRequest, *, model: str, options: CallOptions) -> ChatResponse:
        self._next()
        return await self.inner.complete(request, model=model, options=options)

    @asynccontextmanager
    async def stream(self, request: ChatRequest, *, model: str, options: CallOptions) -> AsyncIterator[object]:
        self._next()
        async with self.inner.stream(request, model=model, options=options) as s:
            yield s

    async def aclose(self) -> None:
        return None


def options(seconds: float = 10.0) -> CallOptions:
    return CallOptions(deadline=time.monotonic() + seconds)


async def test_retryable_errors_are_retried_until_success() -> None:
    scripted = Scripted(
        [UpstreamStatusError("boom", upstream_status=503), UpstreamRateLimited("slow", retry_after=0.01)]
    )
    provider = RetryingProvider(scripted, max_retries=2, backoff_initial_s=0.001)
    response = await provider.complete(REQUEST, model="m", options=options())
    assert scripted.calls == 3
    assert response.content


async def test_non_retryable_errors_are_not_retried() -> None:
    scripted = Scripted([UpstreamBadRequest("bad", upstream_status=400)])
    with pytest.raises(UpstreamBadRequest):
        await RetryingProvider(scripted, max_retries=3).complete(REQUEST, model="m", options=options())
    assert scripted.calls == 1


async def test_attempts_are_capped() -> None:
    scripted = Scripted([UpstreamStatusError("boom", upstream_status=500) for _ in range(5)])
    with pytest.raises(UpstreamStatusError):
        await RetryingProvider(scripted, max_retries=1, backoff_initial_s=0.001).complete(
            REQUEST, model="m", options=options()
        )
    assert scripted.calls == 2


async def test_no_retry_sleeps_past_the_deadline() -> None:
    scripted = Scripted([UpstreamRateLimited("slow", retry_after=30), UpstreamRateLimited("slow", retry_after=30)])
    started = time.monotonic()
    with pytest.raises(UpstreamRateLimited):
        await RetryingProvider(scripted, max_retries=5).complete(REQUEST, model="m", options=options(1.0))
    assert scripted.calls == 1
    assert time.monotonic() - started < 1.0


async def test_streams_are_retried_while_opening() -> None:
    scripted = Scripted([UpstreamStatusError("boom", upstream_status=502)])
    provider = RetryingProvider(scripted, max_retries=2, backoff_initial_s=0.001)
    request = parse_chat_request({**REQUEST.body, "stream": True})
    async with provider.stream(request, model="m", options=options()) as stream:
        chunks = [c async for c in stream]
    assert scripted.calls == 2
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
