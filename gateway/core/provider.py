"""The Provider protocol: one configured upstream (dialect, credentials, base URL, pooled client).

The upstream model arrives with each call. `complete` returns a whole `ChatResponse`; `stream` is an async
context manager: entering it sends the request and waits for the first chunk, so a failure up to there can
still be retried, fallen over or relayed as an HTTP status; after it, failures are final for that attempt.
Leaving it (normally, on error or on cancellation) closes the upstream response.

Retry, circuit breaking and telemetry are Providers that wrap another Provider (STYLE 8).

Embeddings are optional: a provider that serves them says so in `capabilities.embeddings` and implements
`Embedder.embed` (a Protocol cannot declare an optional method, so it is a second, one-method protocol).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from gateway.core.types import ChatRequest, ChatResponse, Chunk, Usage

__all__ = ["CallOptions", "Capabilities", "ChunkStream", "Embedder", "Provider"]


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a dialect can serve, as data, so strategies can skip deployments that cannot (STYLE 3)."""

    streaming: bool = True
    tools: bool = True
    vision: bool = True
    json_mode: bool = True
    n: bool = True
    embeddings: bool = False


@dataclass(frozen=True, slots=True)
class CallOptions:
    """Per-call facts: the absolute deadline (time.monotonic()) and where the call comes from."""

    deadline: float
    request_id: str = ""
    role: str = "attempt"
    extra_headers: dict[str, str] = field(default_factory=dict)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()


class ChunkStream(Protocol):
    """OpenAI-shaped chunks from one upstream call; `usage`, `ttft_s` and `finish_reason` are known as it goes."""

    @property
    def usage(self) -> Usage | None: ...

    @property
    def ttft_s(self) -> float | None: ...

    def __aiter__(self) -> AsyncIterator[Chunk]: ...


@runtime_checkable
class Provider(Protocol):
    name: str
    kind: str
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
