"""The Provider protocol: one configured upstream (dialect, credentials, base URL, pooled client).

The upstream model arrives with each call. `complete` returns a whole `ChatResponse`; `stream` is an async
context manager: entering it sends the request and waits for the first chunk, so a failure up to there can
still be retried, fallen over or relayed as an HTTP status; after it, failures are final for that attempt.
Leaving it (normally, on error or on cancellation) closes the upstream response.

Retry, circuit breaking and telemetry are Providers that wrap another Provider: `WrappingProvider` gives them
the delegation, so a wrapper writes only what it adds.

Embeddings are optional: a provider that serves them says so in `capabilities.embeddings` and implements
`Embedder.embed` (a Protocol cannot declare an optional method, so it is a second, one-method protocol).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from gateway.core.errors import InvalidRequest, UpstreamError
from gateway.core.types import ChatRequest, ChatResponse, Chunk, Usage

__all__ = ["CallOptions", "Capabilities", "ChunkStream", "Embedder", "Provider", "WrappingProvider"]


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a dialect can serve, as data, so strategies can skip deployments that cannot."""

    streaming: bool = True
    tools: bool = True
    vision: bool = True
    json_mode: bool = True
    n: bool = True
    embeddings: bool = False


@dataclass(frozen=True, slots=True)
class CallOptions:
    """Per-call facts: the absolute deadline on `clock` and where the call comes from. The clock is the
    request's own (injected by the builder), so a test can run a whole call on a fake clock.

    `on_retry` hears of every failed try that the retry layer is about to retry (so a deployment's health
    counts each try, not each call), and answers whether retrying is still wanted: False when the deployment
    has just been taken out of rotation (its breaker opened, or a 429 cools it down), so the caller moves on to
    the next deployment instead of waiting to hammer this one."""

    deadline: float
    request_id: str = ""
    role: str = "attempt"
    clock: Callable[[], float] = time.monotonic
    on_retry: Callable[[UpstreamError], bool] | None = None

    def remaining(self) -> float:
        return self.deadline - self.clock()


class ChunkStream(Protocol):
    """OpenAI-shaped chunks from one upstream call; `usage`, `ttft_s` and `finish_reason` are known as it goes."""

    @property
    def usage(self) -> Usage | None: ...

    @property
    def ttft_s(self) -> float | None: ...

    def __aiter__(self) -> AsyncIterator[Chunk]: ...


@runtime_checkable
class Provider(Protocol):
    """`kind` is the configuration's dialect name; `system` the GenAI provider name spans and metrics use
    (`openai`, `anthropic`, `gcp.gemini`, …)."""

    name: str
    kind: str
    system: str
    capabilities: Capabilities

    async def complete(self, request: ChatRequest, *, model: str, options: CallOptions) -> ChatResponse: ...

    def stream(
        self, request: ChatRequest, *, model: str, options: CallOptions
    ) -> AbstractAsyncContextManager[ChunkStream]: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class Embedder(Protocol):
    """The optional embeddings call: an OpenAI `/v1/embeddings` body in (its `model` is replaced by `model`), an
    OpenAI embeddings response out (`object: list`, `data`, `usage`). Wrappers implement it by delegation, so
    whether a deployment serves embeddings is `capabilities.embeddings`, not the presence of the method."""

    async def embed(self, body: dict[str, Any], *, model: str, options: CallOptions) -> dict[str, Any]: ...


class WrappingProvider:
    """A Provider around another one: same name, kind, system and capabilities, every call delegated. A wrapper
    overrides what it adds (retries, a span, a breaker) and inherits the rest."""

    def __init__(self, inner: Provider) -> None:
        self.inner = inner
        self.name = inner.name
        self.kind = inner.kind
        self.system = inner.system
        self.capabilities = inner.capabilities

    async def complete(self, request: ChatRequest, *, model: str, options: CallOptions) -> ChatResponse:
        return await self.inner.complete(request, model=model, options=options)

    def stream(
        self, request: ChatRequest, *, model: str, options: CallOptions
    ) -> AbstractAsyncContextManager[ChunkStream]:
        return self.inner.stream(request, model=model, options=options)

    async def embed(self, body: dict[str, Any], *, model: str, options: CallOptions) -> dict[str, Any]:
        if not isinstance(self.inner, Embedder):  # callers check capabilities.embeddings first
            raise InvalidRequest(f"{self.name} does not serve embeddings", param="model")
        return await self.inner.embed(body, model=model, options=options)

    async def aclose(self) -> None:
        await self.inner.aclose()
