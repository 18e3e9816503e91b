"""One GenAI CLIENT span per upstream attempt, as a Provider wrapper. It sits inside the retry
wrapper, so each retry is its own span. Attributes follow the GenAI semantic conventions;
no prompt or answer content is recorded, and nothing here reads a key."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import orjson
from opentelemetry.trace import SpanKind, Tracer

from gateway.core.errors import GatewayError, UpstreamError
from gateway.core.provider import CallOptions, ChunkStream, Provider, WrappingProvider
from gateway.core.types import ChatRequest, ChatResponse, Usage
from gateway.telemetry.tracing import fail

__all__ = ["InstrumentedProvider"]


def _usage(usage: Usage | None) -> dict[str, int]:
    if usage is None:
        return {}
    attributes = {
        "gen_ai.usage.input_tokens": usage.prompt_tokens,
        "gen_ai.usage.output_tokens": usage.completion_tokens,
    }
    if usage.cached_tokens:
        attributes["gen_ai.usage.cache_read.input_tokens"] = usage.cached_tokens
    if usage.reasoning_tokens:
        attributes["gen_ai.usage.reasoning.output_tokens"] = usage.reasoning_tokens
    return attributes


class InstrumentedProvider(WrappingProvider):
    def __init__(
        self, inner: Provider, tracer: Tracer, *, base_url: str | None = None, capture_content: bool = False
    ) -> None:
        super().__init__(inner)
        self.capture_content = capture_content
        self._tracer = tracer
        self._static: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": inner.system,
            "ultra.provider": inner.name,
        }
        if base_url:
            parts = urlsplit(base_url)
            if parts.hostname:
                self._static["server.address"] = parts.hostname
                self._static["server.port"] = parts.port or (443 if parts.scheme == "https" else 80)

    def _attributes(self, request: ChatRequest, model: str, options: CallOptions, stream: bool) -> dict[str, Any]:
        body = request.body
        attributes = {**self._static, "gen_ai.request.model": model, "ultra.role": options.role}
        if stream:
            attributes["gen_ai.request.stream"] = True
        for field, name in (
            ("temperature", "gen_ai.request.temperature"),
            ("top_p", "gen_ai.request.top_p"),
            ("seed", "gen_ai.request.seed"),
        ):
            if body.get(field) is not None:
                attributes[name] = body[field]
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
        if max_tokens:
            attributes["gen_ai.request.max_tokens"] = max_tokens
        if (body.get("n") or 1) != 1:
            attributes["gen_ai.request.choice.count"] = body["n"]
        if self.capture_content:  # opt-in only (telemetry.capture_content): prompts may hold personal data
            attributes["gen_ai.input.messages"] = orjson.dumps(request.messages).decode()
        return attributes

    @staticmethod
    def _failed(span: Any, exc: BaseException) -> None:
        if isinstance(exc, asyncio.CancelledError):
            fail(span, "cancelled", "cancelled: a race loser, a hedge, or the client went away")
        elif isinstance(exc, UpstreamError):
            fail(span, exc.kind, exc.message)
        elif isinstance(exc, GatewayError):
            fail(span, type(exc).__name__, exc.message)
        else:
            fail(span, type(exc).__qualname__, "internal error")

    async def complete(self, request: ChatRequest, *, model: str, options: CallOptions) -> ChatResponse:
        # Not made current: nothing starts a span under it, and attaching a context costs on every call.
        span = self._tracer.start_span(
            f"chat {model}", kind=SpanKind.CLIENT, attributes=self._attributes(request, model, options, False)
        )
        try:
            response = await self.inner.complete(request, model=model, options=options)
        except BaseException as exc:
            self._failed(span, exc)
            span.end()
            raise
        data = response.data
        attributes: dict[str, Any] = {"gen_ai.response.finish_reasons": response.finish_reasons}
        if data.get("id"):
            attributes["gen_ai.response.id"] = str(data["id"])
        if data.get("model"):
            attributes["gen_ai.response.model"] = str(data["model"])
        attributes.update(_usage(response.usage))
        if self.capture_content:
            messages = [c.get("message") for c in response.choices]
            attributes["gen_ai.output.messages"] = orjson.dumps(messages).decode()
        span.set_attributes(attributes)  # one call: each set_attribute takes the span's lock
        span.end()
        return response

    @asynccontextmanager
    async def stream(self, request: ChatRequest, *, model: str, options: CallOptions) -> AsyncIterator[ChunkStream]:
        span = self._tracer.start_span(
            f"chat {model}", kind=SpanKind.CLIENT, attributes=self._attributes(request, model, options, True)
        )
        started = time.monotonic()
        try:
            async with self.inner.stream(request, model=model, options=options) as stream:
                span.set_attribute("gen_ai.response.time_to_first_chunk", time.monotonic() - started)
                try:
                    yield stream
                finally:
                    span.set_attributes(_usage(stream.usage))
        except BaseException as exc:
            self._failed(span, exc)
            raise
        finally:
            span.end()

    async def embed(self, body: dict[str, Any], *, model: str, options: CallOptions) -> dict[str, Any]:
        attributes = {
            **self._static,
            "gen_ai.operation.name": "embeddings",
            "gen_ai.request.model": model,
            "ultra.role": options.role,
        }
        span = self._tracer.start_span(f"embeddings {model}", kind=SpanKind.CLIENT, attributes=attributes)
        try:
            result = await super().embed(body, model=model, options=options)
        except BaseException as exc:
            self._failed(span, exc)
            span.end()
            raise
        usage = result.get("usage") or {}
        if isinstance(usage.get("prompt_tokens"), int):
            span.set_attribute("gen_ai.usage.input_tokens", usage["prompt_tokens"])
        span.end()
        return result
