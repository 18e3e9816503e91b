"""Chunks ⇄ responses: accumulate a stream into a completion, replay a completion as chunks, and keep
tool-call deltas in the shape the OpenAI SDK expects (docs/api.md, "Streams")."""

from __future__ import annotations

import time
from typing import Any

from gateway.core.types import ChatResponse, Chunk, Usage

__all__ = [
    "ClientChunks",
    "StreamAccumulator",
    "ToolCallDeltaNormalizer",
    "finish_stream",
    "replay",
    "response_to_chunks",
    "usage_chunk",
]


class StreamAccumulator:
    """Folds chunks into one `chat.completion`, as the SDK's accumulator does: strings appended, tool calls
    merged by index, the last finish_reason kept, usage taken from the chunk that carries it."""

    __slots__ = ("_choices", "_meta", "usage")

    def __init__(self) -> None:
        self._choices: dict[int, dict[str, Any]] = {}
        self._meta: dict[str, Any] = {}
        self.usage: Usage | None = None

    def add(self, chunk: Chunk) -> None:
        if not self._meta:
            for key in ("id", "created", "model", "system_fingerprint", "service_tier"):
                if chunk.get(key) is not None:
                    self._meta[key] = chunk[key]
        usage = Usage.from_dict(chunk.get("usage"))
        if usage is not None:
            self.usage = usage
        for choice in chunk.get("choices") or ():
            index = choice.get("index", 0)
            acc = self._choices.get(index)
            if acc is None:
                acc = self._choices[index] = {"message": {"role": "assistant"}, "finish_reason": None}
            delta = choice.get("delta") or {}
            message = acc["message"]
            for key in ("content", "refusal", "reasoning_content"):
                text = delta.get(key)
                if isinstance(text, str):
                    message[key] = message.get(key, "") + text
            for call in delta.get("tool_calls") or ():
                _merge_tool_call(message.setdefault("tool_calls", []), call)
            logprobs = choice.get("logprobs")
            if isinstance(logprobs, dict):
                acc_lp = acc.setdefault("logprobs", {})
                for key, items in logprobs.items():
                    if isinstance(items, list):
                        acc_lp.setdefault(key, []).extend(items)
            if choice.get("finish_reason") is not None:
                acc["finish_reason"] = choice["finish_reason"]

    @property
    def finish_reason(self) -> str | None:
        first = self._choices.get(0)
        return first["finish_reason"] if first else None

    @property
    def complete(self) -> bool:
        """True when every choice seen so far has its finish_reason."""
        return bool(self._choices) and all(c["finish_reason"] is not None for c in self._choices.values())

    def response(self) -> ChatResponse:
        choices = []
        for index in sorted(self._choices):
            acc = self._choices[index]
            message = acc["message"]
            message.setdefault("content", None if message.get("tool_calls") else "")
            choices.append(
                {
                    "index": index,
                    "message": message,
                    "finish_reason": acc["finish_reason"],
                    "logprobs": acc.get("logprobs"),
                }
            )
        data: dict[str, Any] = {
            "id": self._meta.get("id", ""),
            "object": "chat.completion",
            "created": self._meta.get("created", int(time.time())),
            "model": self._meta.get("model", ""),
            "choices": choices,
        }
        for key in ("system_fingerprint", "service_tier"):
            if key in self._meta:
                data[key] = self._meta[key]
        if self.usage is not None:
            data["usage"] = self.usage.to_dict()
        return ChatResponse(data)


def _merge_tool_call(calls: list[dict[str, Any]], fragment: dict[str, Any]) -> None:
    index = fragment.get("index", len(calls))
    while len(calls) <= index:
        calls.append({"id": "", "type": "function", "function": {"name": "", "arguments": ""}})
    call = calls[index]
    if fragment.get("id"):
        call["id"] = fragment["id"]
    if fragment.get("type"):
        call["type"] = fragment["type"]
    function = fragment.get("function") or {}
    if function.get("name"):
        call["function"]["name"] = function["name"]
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        call["function"]["arguments"] += arguments


class ToolCallDeltaNormalizer:
    """Strips `id`, `type` and `function.name` from every tool-call fragment after the first one per
    (choice, index): some upstreams repeat them, and the SDK, which merges fragments by index, would then
    concatenate them."""

    __slots__ = ("_seen",)

    def __init__(self) -> None:
        self._seen: set[tuple[int, int]] = set()

    def __call__(self, chunk: Chunk) -> Chunk:
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta")
            if not delta or not delta.get("tool_calls"):
                continue
            for call in delta["tool_calls"]:
                key = (choice.get("index", 0), call.get("index", 0))
                if key not in self._seen:
                    self._seen.add(key)
                    continue
                call.pop("id", None)
                call.pop("type", None)
                function = call.get("function")
                if isinstance(function, dict):
                    function.pop("name", None)
        return chunk


def usage_chunk(template: Chunk | dict[str, Any], usage: Usage) -> Chunk:
    """The final usage chunk OpenAI sends with `include_usage`: `choices: []` and the whole usage."""
    return {
        "id": template.get("id", ""),
        "object": "chat.completion.chunk",
        "created": template.get("created", int(time.time())),
        "model": template.get("model", ""),
        "choices": [],
        "usage": usage.to_dict(),
    }


def response_to_chunks(response: ChatResponse, *, include_usage: bool = False) -> list[Chunk]:
    """Replay a completion as the chunks a stream of it would have had (cache hits, non-streaming upstreams)."""
    data = response.data
    base = {
        "id": data.get("id", ""),
        "object": "chat.completion.chunk",
        "created": data.get("created", int(time.time())),
        "model": data.get("model", ""),
    }
    if data.get("system_fingerprint"):
        base["system_fingerprint"] = data["system_fingerprint"]
    chunks: list[Chunk] = []
    for choice in response.choices:
        index = choice.get("index", 0)
        message = choice.get("message") or {}
        delta: dict[str, Any] = {"role": "assistant", "content": message.get("content") or ""}
        if message.get("refusal"):
            delta["refusal"] = message["refusal"]
        if message.get("tool_calls"):
            delta["tool_calls"] = [
                {
                    "index": i,
                    "id": call.get("id"),
                    "type": call.get("type", "function"),
                    "function": {
                        "name": (call.get("function") or {}).get("name", ""),
                        "arguments": (call.get("function") or {}).get("arguments", ""),
                    },
                }
                for i, call in enumerate(message["tool_calls"])
            ]
            if not message.get("content"):
                delta.pop("content")
        first = {"index": index, "delta": delta, "finish_reason": None}
        if choice.get("logprobs"):
            first["logprobs"] = choice["logprobs"]
        chunks.append({**base, "choices": [first]})
        chunks.append(
            {**base, "choices": [{"index": index, "delta": {}, "finish_reason": choice.get("finish_reason")}]}
        )
    usage = response.usage
    if include_usage and usage is not None:
        chunks.append(usage_chunk(base, usage))
    return chunks


class ClientChunks:
    """Turns a strategy's chunks into the client's: the model name the client asked for, SDK-shaped tool-call
    deltas, no upstream usage chunks (usage is summed over every call and sent once, at the end), and the
    finish chunks held back so the final account can ride on the last chunk. With `accumulate`, the stream is
    also folded into one `chat.completion` (for the cache).

    `feed` returns what to send now; `tail` what to send once the strategy's stream has ended."""

    __slots__ = ("_accumulator", "_held", "_model", "_normalize")

    def __init__(self, model: str, *, accumulate: bool) -> None:
        self._model = model
        self._accumulator = StreamAccumulator() if accumulate else None
        self._normalize = ToolCallDeltaNormalizer()
        self._held: list[Chunk] = []

    def feed(self, chunk: Chunk) -> list[Chunk]:
        choices = chunk.get("choices")
        if not choices:
            return []  # an upstream usage chunk
        chunk["model"] = self._model
        chunk.pop("usage", None)
        self._normalize(chunk)
        if self._accumulator is not None:
            self._accumulator.add(chunk)
        for choice in choices:
            if choice.get("finish_reason") is not None:
                self._held.append(chunk)
                return []
        if self._held:
            out, self._held = [*self._held, chunk], []
            return out
        return [chunk]

    def answer(self) -> ChatResponse | None:
        """The whole answer, when accumulating and the stream ended with a finish reason on every choice."""
        if self._accumulator is None or not self._accumulator.complete:
            return None
        return self._accumulator.response()

    def tail(self, usage: Usage | None, metadata: dict[str, Any] | None) -> list[Chunk]:
        """The held finish chunks, the usage chunk (when `usage` is given) and `ultra` metadata on the last."""
        return finish_stream(self._held, self._model, usage, metadata)


def finish_stream(held: list[Chunk], model: str, usage: Usage | None, metadata: dict[str, Any] | None) -> list[Chunk]:
    tail = list(held)
    if usage is not None:
        template = tail[-1] if tail else {"model": model}
        tail.append(usage_chunk({**template, "model": model}, usage))
    if tail and metadata is not None:
        tail[-1]["ultra"] = metadata
    return tail


def replay(response: ChatResponse, usage: Usage | None, metadata: dict[str, Any] | None) -> list[Chunk]:
    """A stored answer as the chunks of a stream: role and content, finish, usage when given, metadata last."""
    chunks = response_to_chunks(response)
    body = chunks[:-1] if chunks else []
    return [*body, *finish_stream(chunks[-1:], str(response.data.get("model", "")), usage, metadata)]
