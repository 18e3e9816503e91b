"""The OpenAI dialect: any OpenAI-compatible API (OpenAI, Azure OpenAI, Groq, Together, Mistral, DeepSeek,
OpenRouter, vLLM, Ollama, llama.cpp server, LM Studio).

Passthrough by design: the client's body goes upstream as sent, with `model` replaced by the upstream model id,
so fields the gateway does not know reach the upstream untouched. The one addition: streaming calls
ask for `stream_options.include_usage`, because the gateway bills and rate-limits on real usage whether or not
the client asked to see it (the service strips the upstream usage chunk and sends its own summed one).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from gateway.core.errors import (
    UpstreamBadRequest,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamRateLimited,
    UpstreamStatusError,
)
from gateway.core.provider import Capabilities
from gateway.core.redaction import register_secret
from gateway.core.types import ChatRequest, ChatResponse, Chunk, Usage
from gateway.providers._http import HttpCall, parse_retry_after, redact
from gateway.providers._sse import SSEEvent

__all__ = ["OpenAIDialect", "error_from_status"]

_MAX_MESSAGE = 500


def error_from_status(
    status: int, headers: Mapping[str, str], message: str, *, param: str | None = None, provider: str = "upstream"
) -> UpstreamError:
    """Map an upstream HTTP error status to our tree; shared by every dialect once it has the message."""
    retry_after = parse_retry_after(headers)
    if status in (401, 403):
        # Never relay: the upstream's text may quote our credentials. The operator sees the status.
        return UpstreamStatusError(
            f"{provider} rejected the gateway's credentials (HTTP {status})", upstream_status=status
        )
    text = f"{provider} answered HTTP {status}: {message}" if message else f"{provider} answered HTTP {status}"
    if status == 429:
        return UpstreamRateLimited(text, retry_after=retry_after)
    if status in (400, 413, 422):
        return UpstreamBadRequest(message or text, upstream_status=status, param=param)
    return UpstreamStatusError(text, upstream_status=status, retry_after=retry_after)


class OpenAIDialect:
    kind = "openai"
    system = "openai"
    capabilities = Capabilities(embeddings=True)

    def __init__(self, api_key: str | None = None, *, provider: str = "openai") -> None:
        self._api_key = api_key
        self._provider = provider
        register_secret(api_key)

    def default_headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def build(self, request: ChatRequest, *, model: str, stream: bool) -> HttpCall:
        body: dict[str, Any] = {**request.body, "model": model}
        if stream:
            body["stream"] = True
            body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        else:
            body.pop("stream", None)
            body.pop("stream_options", None)
        return HttpCall("/chat/completions", orjson.dumps(body))

    def parse_response(self, body: bytes, *, model: str) -> ChatResponse:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise UpstreamProtocolError(f"{self._provider} returned a body that is not JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
            raise UpstreamProtocolError(f"{self._provider} returned JSON without a choices list")
        return ChatResponse(data)

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
        message, param = "", None
        try:
            data = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            data = None
        if isinstance(data, dict):
            error = data.get("error", data)
            if isinstance(error, dict):
                message = str(error.get("message") or "")
                param = error.get("param") if isinstance(error.get("param"), str) else None
            elif isinstance(error, str):
                message = error
        elif body:
            message = body.decode("utf-8", errors="replace")
        message = redact(message, (self._api_key or "",))[:_MAX_MESSAGE]  # redacted whole, then cut
        return error_from_status(status, headers, message, param=param, provider=self._provider)

    def build_embeddings(self, body: dict[str, Any], *, model: str) -> HttpCall:
        """Passthrough, like chat: the client's embeddings body with the upstream model id."""
        return HttpCall("/embeddings", orjson.dumps({**body, "model": model}))

    def parse_embeddings(self, body: bytes, *, model: str, request: dict[str, Any]) -> dict[str, Any]:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise UpstreamProtocolError(f"{self._provider} returned a body that is not JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            raise UpstreamProtocolError(f"{self._provider} returned JSON without a data list")
        return data

    def stream_translator(self, *, model: str) -> _OpenAIStream:
        return _OpenAIStream(self)


class _OpenAIStream:
    """Upstream chunks are already ours: parse, note usage, stop at [DONE]; an in-band error event raises."""

    __slots__ = ("_dialect", "done", "usage")

    def __init__(self, dialect: OpenAIDialect) -> None:
        self._dialect = dialect
        self.done = False
        self.usage: Usage | None = None

    def feed(self, event: SSEEvent) -> list[Chunk]:
        data = event.data
        if data.startswith("[DONE]"):
            self.done = True
            return []
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise UpstreamProtocolError(f"{self._dialect._provider} sent a stream event that is not JSON") from None
        if not isinstance(chunk, dict):
            raise UpstreamProtocolError(f"{self._dialect._provider} sent a stream event that is not an object")
        if "error" in chunk and "choices" not in chunk:
            raise self._dialect.parse_error(500, {}, data.encode())
        usage = chunk.get("usage")
        if usage:
            self.usage = Usage.from_dict(usage)
        return [chunk]

    def finish(self) -> list[Chunk]:
        return []
