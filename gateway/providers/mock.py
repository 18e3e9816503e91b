"""The mock dialect: in-process, deterministic upstream models for the built-in config, demos, tests and the
benchmark. No network, no keys.

Each model has a profile: `latency_ms` (time to first token), `ms_per_token` (streaming pace),
`failure_rate` (0-1; outcomes drawn from an RNG seeded by provider and model, so a run is reproducible), and a
`reply` template with `{model}`, `{provider}`, `{prompt}` (the last user message) and `{system}` (the system
messages, where strategies put the material a lead model works from) placeholders.

So that agent loops and structured-output clients work against it:

- With tools offered (and `tool_choice` not `none`) and no tool result yet, it calls the named or first tool
  with arguments valid against that tool's parameter schema.
- Once the conversation ends in a tool result, it answers in text (so an agent loop ends); `{prompt}` is then
  the tool result.
- With `response_format` `json_schema`, the answer is JSON valid against the schema (a minimal instance:
  `_schema_instance.py`); with `json_object`, a JSON object holding the reply text.

Embeddings are deterministic: each input is a unit vector drawn from an RNG seeded by the provider, model and
input, so equal inputs get equal vectors and different inputs nearly orthogonal ones; `dimensions` (default
256) and `encoding_format: base64` (little-endian float32, as OpenAI sends) are honoured.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import random
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from gateway.core.errors import UpstreamStatusError, UpstreamTimeout
from gateway.core.provider import CallOptions, Capabilities
from gateway.core.stream import response_to_chunks
from gateway.core.types import ChatRequest, ChatResponse, Chunk, Usage, text_of
from gateway.providers._embeddings import embedding_response
from gateway.providers._schema_instance import instance_of

__all__ = ["MockModel", "MockProvider"]

DEFAULT_REPLY = "[{provider}/{model}] {prompt}"


@dataclass(frozen=True, slots=True)
class MockModel:
    latency_ms: float = 0.0
    ms_per_token: float = 0.0
    failure_rate: float = 0.0
    reply: str = DEFAULT_REPLY


def _estimate_tokens(text: str) -> int:
    return max(1, len(text) // 4) if text else 0


def _formatted(text: str, response_format: Any) -> str:
    """The reply as the requested format asks: JSON valid against a json_schema, or a JSON object."""
    if not isinstance(response_format, dict):
        return text
    kind = response_format.get("type")
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema") or {"type": "object"}
        return json.dumps(instance_of(schema))
    if kind == "json_object":
        return json.dumps({"answer": text})
    return text


DEFAULT_DIMENSIONS = 256


def _vector(seed: str, dimensions: int) -> list[float]:
    rng = random.Random(hashlib.sha256(seed.encode()).digest())
    values = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def _embedding_inputs(value: Any) -> list[str]:
    """Each input as the text its vector is seeded from (token arrays by their JSON)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return [json.dumps(value)]
    if isinstance(value, list):
        return [v if isinstance(v, str) else json.dumps(v) for v in value]
    return [json.dumps(value)]


class MockProvider:
    kind = "mock"
    system = "ultra_gateway.mock"
    capabilities = Capabilities(embeddings=True)

    def __init__(self, name: str, models: Mapping[str, MockModel], *, seed: int = 0) -> None:
        self.name = name
        self._models = dict(models)
        self._rngs = {m: random.Random(zlib.crc32(f"{seed}:{name}/{m}".encode())) for m in self._models}

    def _profile(self, model: str) -> MockModel:
        return self._models.get(model) or MockModel()

    async def _wait(self, seconds: float, options: CallOptions) -> None:
        if seconds <= 0:
            return
        if seconds >= options.remaining():
            await asyncio.sleep(max(options.remaining(), 0))
            raise UpstreamTimeout(f"{self.name}: mock upstream timed out")
        await asyncio.sleep(seconds)

    def _check_failure(self, model: str, profile: MockModel) -> None:
        rng = self._rngs.get(model)
        if profile.failure_rate > 0 and rng is not None and rng.random() < profile.failure_rate:
            raise UpstreamStatusError(f"{self.name}: mock failure (simulated 503)", upstream_status=503)

    def _answer(self, request: ChatRequest, model: str) -> ChatResponse:
        profile = self._profile(model)
        body = request.body
        last = request.messages[-1] if request.messages else {}
        after_tool = last.get("role") == "tool"
        prompt = next(
            (text_of(m.get("content")) for m in reversed(request.messages) if m.get("role") in ("user", "tool")), ""
        )
        prompt_tokens = sum(_estimate_tokens(text_of(m.get("content"))) + 4 for m in request.messages)
        system = " ".join(
            text_of(m.get("content")) for m in request.messages if m.get("role") in ("system", "developer")
        )
        text = profile.reply.format(model=model, provider=self.name, prompt=prompt, system=system)
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        words = text.split(" ") if text else []
        finish = "stop"
        if isinstance(limit, int) and len(words) > limit:
            words, finish = words[:limit], "length"
        text = " ".join(words)
        tool_calls = None if after_tool else self._tool_calls(body)
        formatted = _formatted(text, body.get("response_format"))
        if formatted is not text:  # a structured answer is whole: the word limit shortened only the template
            text, finish = formatted, "stop"
        n = body.get("n") or 1
        message: dict[str, Any] = {"role": "assistant", "content": None if tool_calls else text}
        if tool_calls:
            message["tool_calls"] = tool_calls
            finish = "tool_calls"
        completion_tokens = (_estimate_tokens(text) if not tool_calls else 8) * n
        usage = Usage(prompt_tokens, completion_tokens)
        choices = [{"index": i, "message": dict(message), "finish_reason": finish, "logprobs": None} for i in range(n)]
        return ChatResponse(
            {
                "id": f"chatcmpl-mock{uuid.uuid4().hex[:20]}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": choices,
                "usage": usage.to_dict(),
            }
        )

    @staticmethod
    def _tool_calls(body: Mapping[str, Any]) -> list[dict[str, Any]] | None:
        tools = body.get("tools")
        choice = body.get("tool_choice")
        if not tools or choice == "none":
            return None
        functions = [t.get("function") or {} for t in tools if isinstance(t, dict)]
        function = functions[0] if functions else {}
        if isinstance(choice, dict):
            name = (choice.get("function") or {}).get("name")
            function = next((f for f in functions if f.get("name") == name), {"name": name})
        arguments = instance_of(function.get("parameters") or {"type": "object", "properties": {}})
        call = {"name": function.get("name") or "tool", "arguments": json.dumps(arguments, separators=(",", ":"))}
        return [{"id": f"call_{uuid.uuid4().hex[:12]}", "type": "function", "function": call}]

    async def complete(self, request: ChatRequest, *, model: str, options: CallOptions) -> ChatResponse:
        profile = self._profile(model)
        response = self._answer(request, model)
        usage = response.usage
        tokens = usage.completion_tokens if usage else 0
        await self._wait((profile.latency_ms + profile.ms_per_token * tokens) / 1000, options)
        self._check_failure(model, profile)
        return response

    @asynccontextmanager
    async def stream(self, request: ChatRequest, *, model: str, options: CallOptions) -> AsyncIterator[_MockStream]:
        profile = self._profile(model)
        started = options.clock()
        await self._wait(profile.latency_ms / 1000, options)
        self._check_failure(model, profile)
        response = self._answer(request, model)
        yield _MockStream(self, response, profile, options, options.clock() - started)

    async def embed(self, body: dict[str, Any], *, model: str, options: CallOptions) -> dict[str, Any]:
        profile = self._profile(model)
        await self._wait(profile.latency_ms / 1000, options)
        self._check_failure(model, profile)
        dimensions = body.get("dimensions")
        size = dimensions if isinstance(dimensions, int) and dimensions > 0 else DEFAULT_DIMENSIONS
        texts = _embedding_inputs(body.get("input"))
        vectors = [_vector(f"{self.name}/{model}:{text}", size) for text in texts]
        tokens = sum(max(_estimate_tokens(text), 1) for text in texts)
        return embedding_response(
            vectors, model=model, encoding_format=body.get("encoding_format"), prompt_tokens=tokens
        )

    async def aclose(self) -> None:
        return None


class _MockStream:
    def __init__(
        self, provider: MockProvider, response: ChatResponse, profile: MockModel, options: CallOptions, ttft: float
    ) -> None:
        self._provider = provider
        self._response = response
        self._profile = profile
        self._options = options
        self.ttft_s: float | None = ttft
        self.usage: Usage | None = None

    async def __aiter__(self) -> AsyncIterator[Chunk]:
        chunks = response_to_chunks(self._response)
        for chunk in chunks:
            for choice in chunk["choices"]:
                content = choice["delta"].get("content")
                if content and " " in content:  # stream word by word, as a model would
                    words = content.split(" ")
                    for i, word in enumerate(words):
                        piece = word if i == 0 else " " + word
                        delta = {**choice["delta"], "content": piece} if i == 0 else {"content": piece}
                        yield {**chunk, "choices": [{"index": choice["index"], "delta": delta, "finish_reason": None}]}
                        await self._provider._wait(self._profile.ms_per_token / 1000, self._options)
                    break
            else:
                yield chunk
        self.usage = self._response.usage
