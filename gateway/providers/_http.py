"""The one HTTP transport every remote dialect shares: a keep-alive connection pool per provider (`_h1.py`),
timeouts, SSE framing, and the translation of transport errors into ours.

A dialect is data-to-data (`Dialect`): it builds the request and parses responses, stream events and errors.
`HttpProvider` does the I/O.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from gateway.core.errors import (
    InvalidRequest,
    ServiceUnavailable,
    UpstreamConnectionError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeout,
    UpstreamTooLarge,
)
from gateway.core.provider import CallOptions, Capabilities
from gateway.core.redaction import redact
from gateway.core.types import ChatRequest, ChatResponse, Chunk, Usage
from gateway.providers._h1 import Pool, Response
from gateway.providers._sse import SSEDecoder, SSEEvent

__all__ = [
    "Dialect",
    "EmbeddingDialect",
    "HttpCall",
    "HttpProvider",
    "StreamTranslator",
    "Timeouts",
    "parse_retry_after",
    "redact",
]

RETRY_AFTER_CAP_S = 60.0
DEFAULT_MAX_RESPONSE_BYTES = 32 * 1024 * 1024
_ERROR_BODY_BYTES = 64 * 1024  # an error body is only summarised: more than this is never read


@dataclass(frozen=True, slots=True)
class HttpCall:
    """What a dialect asks the transport to send: a POST of `body` to `base_url + path`."""

    path: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)


class StreamTranslator(Protocol):
    done: bool
    usage: Usage | None

    def feed(self, event: SSEEvent) -> list[Chunk]: ...

    def finish(self) -> list[Chunk]: ...


@runtime_checkable
class EmbeddingDialect(Protocol):
    """A dialect that also speaks its API's embeddings endpoint (optional, like `Embedder`)."""

    def build_embeddings(self, body: dict[str, Any], *, model: str) -> HttpCall: ...

    def parse_embeddings(self, body: bytes, *, model: str, request: dict[str, Any]) -> dict[str, Any]: ...


class Dialect(Protocol):
    kind: str
    system: str
    capabilities: Capabilities

    def default_headers(self) -> dict[str, str]: ...

    def build(self, request: ChatRequest, *, model: str, stream: bool) -> HttpCall: ...

    def parse_response(self, body: bytes, *, model: str) -> ChatResponse: ...

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError: ...

    def stream_translator(self, *, model: str) -> StreamTranslator: ...


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Per-attempt socket timeouts; the bound on a whole call (retries included) is the retry layer's."""

    connect_s: float = 5.0
    read_s: float = 60.0


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from `retry-after-ms` (preferred) or `retry-after` (seconds or HTTP date), capped."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return min(max(float(raw_ms) / 1000, 0.0), RETRY_AFTER_CAP_S)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return min(max(float(raw), 0.0), RETRY_AFTER_CAP_S)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw).timestamp()
    except (TypeError, ValueError):
        return None
    return min(max(when - time.time(), 0.0), RETRY_AFTER_CAP_S)


class HttpProvider:
    """A Provider over HTTP: one dialect, one base URL, one connection pool for the process life."""

    def __init__(
        self,
        name: str,
        base_url: str,
        dialect: Dialect,
        *,
        timeouts: Timeouts | None = None,
        headers: Mapping[str, str] | None = None,
        max_connections: int = 256,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        self.name = name
        self.kind = dialect.kind
        self.system = dialect.system
        self.capabilities = dialect.capabilities
        self.dialect = dialect
        self.timeouts = timeouts or Timeouts()
        self._base = base_url.rstrip("/")
        self._headers = {**dialect.default_headers(), **(headers or {})}
        self.max_response_bytes = max_response_bytes
        self._pool = Pool(
            self._base,
            self._headers,
            limit=max_connections,
            connect_s=self.timeouts.connect_s,
            read_s=self.timeouts.read_s,
            max_body=max_response_bytes,
        )

    def _fail(self, exc: BaseException) -> UpstreamError:
        if isinstance(exc, asyncio.TimeoutError):
            return UpstreamTimeout(f"{self.name}: upstream timed out")
        return UpstreamConnectionError(f"{self.name}: connection failed ({type(exc).__name__})")

    async def _send(self, request: ChatRequest, model: str, options: CallOptions, stream: bool) -> Response:
        return await self._post(self.dialect.build(request, model=model, stream=stream), options)

    async def _post(self, call: HttpCall, options: CallOptions) -> Response:
        # After aclose() the provider refuses to send rather than quietly opening new connections.
        if self._pool.closed:
            raise ServiceUnavailable(f"{self.name}: the provider has been closed (the gateway is shutting down)")
        remaining = options.remaining()
        if remaining <= 0:
            raise UpstreamTimeout(f"{self.name}: no time left before the request deadline")
        deadline = asyncio.get_running_loop().time() + remaining
        try:
            return await self._pool.post(
                call.path, call.body, deadline=deadline, headers=call.headers, params=call.params
            )
        except (TimeoutError, OSError) as exc:
            raise self._fail(exc) from None

    def too_large(self) -> UpstreamTooLarge:
        return UpstreamTooLarge(
            f"{self.name}: the upstream answer was too large (over max_response_bytes, {self.max_response_bytes} bytes)"
        )

    async def _read(self, response: Response, limit: int, *, whole: bool) -> tuple[bytes, bool]:
        """The body, read no further than `limit` bytes; and whether it went past the limit. With `whole`, a
        declared length over the limit fails before anything is read."""
        length = response.content_length
        if whole and length is not None and response.headers.get("content-encoding") is None:
            return (b"", True) if length > limit else (await response.read(), False)  # the usual case
        parts: list[bytes] = []
        size = 0
        while True:
            data = await response.readany()
            if not data:
                return (parts[0] if len(parts) == 1 else b"".join(parts)), False
            size += len(data)
            if size > limit:
                return b"".join(parts)[:limit], True
            parts.append(data)

    async def _error(self, response: Response) -> UpstreamError:
        try:
            body, _ = await self._read(response, min(self.max_response_bytes, _ERROR_BODY_BYTES), whole=False)
        except (TimeoutError, OSError):
            body = b""
        return self.dialect.parse_error(response.status, response.headers, body)

    async def complete(self, request: ChatRequest, *, model: str, options: CallOptions) -> ChatResponse:
        response = await self._send(request, model, options, stream=False)
        try:
            if response.status >= 400:
                raise await self._error(response)
            try:
                body, over = await self._read(response, self.max_response_bytes, whole=True)
            except (TimeoutError, OSError) as exc:
                raise self._fail(exc) from None
            if over:
                response.close()  # the rest is never read: the connection cannot go back to the pool
                raise self.too_large()
        finally:
            response.release()
        return self.dialect.parse_response(body, model=model)

    @asynccontextmanager
    async def stream(self, request: ChatRequest, *, model: str, options: CallOptions) -> AsyncIterator[_HttpStream]:
        started = time.monotonic()
        response = await self._send(request, model, options, stream=True)
        stream = _HttpStream(self, response, self.dialect.stream_translator(model=model), started)
        try:
            if response.status >= 400:
                raise await self._error(response)
            await stream.prime()
            yield stream
        finally:
            if stream.finished:
                response.release(linger=True)  # read to its end: the connection goes back to the pool
            else:
                response.close()  # abandoned mid-stream (loser, client gone, error): drop the connection

    async def embed(self, body: dict[str, Any], *, model: str, options: CallOptions) -> dict[str, Any]:
        dialect = self.dialect
        if not isinstance(dialect, EmbeddingDialect):
            raise InvalidRequest(f"{self.name} does not serve embeddings", param="model")
        response = await self._post(dialect.build_embeddings(body, model=model), options)
        try:
            if response.status >= 400:
                raise await self._error(response)
            try:
                raw, over = await self._read(response, self.max_response_bytes, whole=True)
            except (TimeoutError, OSError) as exc:
                raise self._fail(exc) from None
            if over:
                response.close()
                raise self.too_large()
        finally:
            response.release()
        return dialect.parse_embeddings(raw, model=model, request=body)

    async def aclose(self) -> None:
        self._pool.close()


class _HttpStream:
    """A ChunkStream over an SSE response. `prime` reads up to the first chunk so failures before it surface
    while the caller can still retry, fall over or answer with an HTTP status."""

    def __init__(
        self, provider: HttpProvider, response: Response, translator: StreamTranslator, started: float
    ) -> None:
        self._provider = provider
        self._response = response
        self._translator = translator
        self._decoder = SSEDecoder()
        self._pending: deque[Chunk] = deque()
        self._started = started
        self._left = provider.max_response_bytes  # bytes this stream may still bring (events and all)
        self.ttft_s: float | None = None
        self.finished = False

    @property
    def usage(self) -> Usage | None:
        return self._translator.usage

    async def _read_more(self) -> bool:
        """Decode the next network read into pending chunks; False at end of body."""
        try:
            data = await self._response.readany()
        except (TimeoutError, OSError) as exc:
            raise self._provider._fail(exc) from None
        self._left -= len(data)
        if self._left < 0:
            raise self._provider.too_large()
        if not data:
            self._pending.extend(self._translator.finish())
            if not self._translator.done:
                raise UpstreamConnectionError(f"{self._provider.name}: the stream ended before it was complete")
            return False
        for event in self._decoder.feed(data):
            self._pending.extend(self._translator.feed(event))
        return True

    async def prime(self) -> None:
        while not self._pending:
            if self._translator.done or not await self._read_more():
                break
        if not self._pending and not self._translator.done:
            raise UpstreamProtocolError(f"{self._provider.name}: the stream produced no chunk")
        self.ttft_s = time.monotonic() - self._started

    async def __aiter__(self) -> AsyncIterator[Chunk]:
        pending = self._pending
        while True:
            while pending:
                yield pending.popleft()
            if self._translator.done or not await self._read_more():
                break
        while pending:  # what the translator flushed at the end of the body
            yield pending.popleft()
        self.finished = True
