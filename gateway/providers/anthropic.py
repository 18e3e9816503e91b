"""The Anthropic Messages dialect, translated both ways.

Pure functions from data to data; the shared transport (`_http.HttpProvider`) does the I/O. Every OpenAI field
has a stated fate: mapped (messages, system, tools, tool_choice, stop, max tokens, response_format, user),
version-gated (`temperature`/`top_p` only on API version 2023-06-01, which still accepts them), dropped
(`seed`, penalties, `store`, `metadata`, `service_tier`), or refused with a 400 naming the field (`n > 1`,
`logprobs`, `logit_bias`, audio input), because silently ignoring those would change the answer's meaning.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from typing import Any

import orjson

from gateway.core.errors import InvalidRequest, UpstreamError, UpstreamProtocolError
from gateway.core.provider import Capabilities
from gateway.core.redaction import bounded, register_secret
from gateway.core.types import ChatRequest, ChatResponse, Chunk, Usage, split_data_url
from gateway.providers._http import HttpCall, redact
from gateway.providers._sse import SSEEvent
from gateway.providers._turns import Turns
from gateway.providers.openai_compat import error_from_status

__all__ = ["DEFAULT_API_VERSION", "AnthropicDialect", "build_body", "parse_message", "usage_from"]

DEFAULT_API_VERSION = "2023-06-01"
_SAMPLING_VERSIONS = frozenset({"2023-06-01"})  # later versions answer 400 to temperature/top_p/top_k

STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_STREAM_ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}
_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})


# --- request -----------------------------------------------------------------------------------------------


def _blocks(content: Any, where: str) -> list[dict[str, Any]]:
    """OpenAI content (string or parts) → Anthropic content blocks; empty text is dropped (bug table #12)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for i, part in enumerate(content):
        kind = part.get("type")
        if kind == "text":
            if part.get("text"):
                blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            url = (part.get("image_url") or {}).get("url", "")
            inline = split_data_url(url)
            if inline is not None:
                media, data = inline
                if media not in _IMAGE_TYPES:
                    raise InvalidRequest(
                        f"image type {bounded(str(media))} is not supported by this model", param=f"{where}[{i}]"
                    )
                blocks.append({"type": "image", "source": {"type": "base64", "media_type": media, "data": data}})
            else:
                blocks.append({"type": "image", "source": {"type": "url", "url": url}})
        elif kind == "file":
            inline = split_data_url((part.get("file") or {}).get("file_data", ""))
            if inline is None or inline[0] != "application/pdf":
                raise InvalidRequest("only inline PDF files can be sent to this model", param=f"{where}[{i}]")
            source = {"type": "base64", "media_type": "application/pdf", "data": inline[1]}
            blocks.append({"type": "document", "source": source})
        else:
            raise InvalidRequest(
                f"content part type {bounded(repr(kind))} is not supported by this model", param=f"{where}[{i}]"
            )
    return blocks


def _tool_use(call: dict[str, Any], where: str) -> dict[str, Any]:
    function = call.get("function") or {}
    arguments = function.get("arguments") or "{}"
    try:
        parsed = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        raise InvalidRequest("tool call arguments must be valid JSON", param=f"{where}.function.arguments") from None
    if not isinstance(parsed, dict):
        raise InvalidRequest("tool call arguments must be a JSON object", param=f"{where}.function.arguments")
    return {"type": "tool_use", "id": call.get("id", ""), "name": function.get("name", ""), "input": parsed}


def _messages(messages: list[dict[str, Any]]) -> Turns:
    turns = Turns("content", lambda text: {"type": "text", "text": text})
    for i, message in enumerate(messages):
        if turns.take_system(message):
            continue
        role = message.get("role")
        where = f"messages[{i}]"
        if role == "user":
            turns.add("user", _blocks(message.get("content"), f"{where}.content"))
        elif role == "assistant":
            blocks = _blocks(message.get("content"), f"{where}.content")
            blocks += [_tool_use(c, f"{where}.tool_calls[{j}]") for j, c in enumerate(message.get("tool_calls") or ())]
            turns.add("assistant", blocks)
        elif role == "tool":
            content = message.get("content")
            result: Any = content if isinstance(content, str) else _blocks(content, f"{where}.content")
            turns.add(
                "user", [{"type": "tool_result", "tool_use_id": message.get("tool_call_id", ""), "content": result}]
            )
        else:
            raise InvalidRequest(f"role {bounded(repr(role))} is not supported by this model", param=f"{where}.role")
    return turns


def _tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    mapped: dict[str, Any] | None
    if choice is None:
        mapped = {"type": "auto"} if parallel is False else None
    elif choice == "auto":
        mapped = {"type": "auto"}
    elif choice == "required":
        mapped = {"type": "any"}
    elif choice == "none":
        mapped = {"type": "none"}
    elif isinstance(choice, dict) and choice.get("type") == "function":
        mapped = {"type": "tool", "name": (choice.get("function") or {}).get("name", "")}
    else:
        raise InvalidRequest("this tool_choice is not supported by this model", param="tool_choice")
    if mapped is not None and parallel is False and mapped["type"] != "none":
        mapped["disable_parallel_tool_use"] = True
    return mapped


def build_body(
    request: ChatRequest, *, model: str, stream: bool, api_version: str, default_max_tokens: int
) -> dict[str, Any]:
    body = request.body
    for field, message in (
        ("logprobs", "logprobs are not available from this model"),
        ("logit_bias", "logit_bias is not available from this model"),
        ("audio", "audio output is not available from this model"),
    ):
        if body.get(field):
            raise InvalidRequest(message, param=field)
    if (body.get("n") or 1) > 1:
        raise InvalidRequest("this model returns one choice per request (n must be 1)", param="n")
    turns = _messages(request.messages)
    system, messages = turns.system, turns.turns
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or default_max_tokens
    out: dict[str, Any] = {"model": model, "messages": messages, "max_tokens": max_tokens}
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_object":
        # No native JSON mode: an instruction, stated in the README, rather than a silent drop.
        system.append("Respond with a single valid JSON object and nothing else.")
    elif response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema") or {"type": "object"}
        out["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
    if system:
        out["system"] = "\n\n".join(s for s in system if s)
    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if api_version in _SAMPLING_VERSIONS:
        if body.get("temperature") is not None:
            out["temperature"] = min(float(body["temperature"]), 1.0)  # Anthropic's range is 0..1
        if body.get("top_p") is not None:
            out["top_p"] = body["top_p"]
    tools = body.get("tools")
    if tools:
        out["tools"] = [
            {
                "name": (t.get("function") or {}).get("name", ""),
                **(
                    {"description": t["function"]["description"]}
                    if (t.get("function") or {}).get("description")
                    else {}
                ),
                "input_schema": (t.get("function") or {}).get("parameters") or {"type": "object", "properties": {}},
            }
            for t in tools
            if t.get("type") == "function"
        ]
    choice = _tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls")) if tools else None
    if choice is not None:
        out["tool_choice"] = choice
    user = body.get("safety_identifier") or body.get("user")
    if isinstance(user, str) and user:
        out["metadata"] = {"user_id": hashlib.sha256(user.encode()).hexdigest()[:32]}  # opaque, as asked
    if stream:
        out["stream"] = True
    return out


# --- response ----------------------------------------------------------------------------------------------


def usage_from(data: Mapping[str, Any]) -> Usage:
    """Anthropic `input_tokens` excludes cache reads and writes; OpenAI's prompt tokens include them (#7)."""
    cache_read = int(data.get("cache_read_input_tokens") or 0)
    cache_write = int(data.get("cache_creation_input_tokens") or 0)
    details = data.get("output_tokens_details") or {}
    return Usage(
        prompt_tokens=int(data.get("input_tokens") or 0) + cache_read + cache_write,
        completion_tokens=int(data.get("output_tokens") or 0),
        cached_tokens=cache_read,
        reasoning_tokens=int(details.get("thinking_tokens") or 0) if isinstance(details, dict) else 0,
    )


def parse_message(data: Mapping[str, Any]) -> ChatResponse:
    text = "".join(b.get("text", "") for b in data.get("content") or () if b.get("type") == "text")
    tool_calls = [
        {
            "id": b.get("id", ""),
            "type": "function",
            "function": {"name": b.get("name", ""), "arguments": orjson.dumps(b.get("input") or {}).decode()},
        }
        for b in data.get("content") or ()
        if b.get("type") == "tool_use"
    ]
    return ChatResponse.build(
        model=str(data.get("model", "")),
        content=text if text or not tool_calls else None,
        finish_reason=STOP_REASONS.get(str(data.get("stop_reason")), "stop"),
        usage=usage_from(data.get("usage") or {}),
        tool_calls=tool_calls or None,
        completion_id=str(data.get("id") or "") or None,
    )


class AnthropicDialect:
    kind = "anthropic"
    system = "anthropic"
    capabilities = Capabilities(n=False)

    def __init__(
        self,
        api_key: str | None = None,
        *,
        provider: str = "anthropic",
        api_version: str = DEFAULT_API_VERSION,
        default_max_tokens: int = 4096,
    ) -> None:
        self._api_key = api_key
        self._provider = provider
        register_secret(api_key)
        self.api_version = api_version
        self.default_max_tokens = default_max_tokens

    def default_headers(self) -> dict[str, str]:
        headers = {"content-type": "application/json", "anthropic-version": self.api_version}
        if self._api_key:
            headers["x-api-key"] = self._api_key
        return headers

    def build(self, request: ChatRequest, *, model: str, stream: bool) -> HttpCall:
        body = build_body(
            request,
            model=model,
            stream=stream,
            api_version=self.api_version,
            default_max_tokens=self.default_max_tokens,
        )
        return HttpCall("/v1/messages", orjson.dumps(body))

    def parse_response(self, body: bytes, *, model: str) -> ChatResponse:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise UpstreamProtocolError(f"{self._provider} returned a body that is not JSON") from None
        if not isinstance(data, dict) or data.get("type") != "message":
            raise UpstreamProtocolError(f"{self._provider} returned JSON that is not a message")
        return parse_message(data)

    def _message_of(self, body: bytes) -> str:
        try:
            data = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            data = None
        error = data.get("error") if isinstance(data, dict) else None
        if data is None:
            message = body.decode("utf-8", errors="replace")
        else:
            message = str(error.get("message") or "") if isinstance(error, dict) else ""
        return redact(message, (self._api_key or "",))[:500]  # redacted whole, then cut

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
        return error_from_status(status, headers, self._message_of(body), provider=self._provider)

    def stream_translator(self, *, model: str) -> AnthropicStream:
        return AnthropicStream(self, model)


class AnthropicStream:
    """Anthropic's named SSE events → OpenAI chunks. Tool indices count tool_use blocks only, apart from
    content-block indices (#1, #2); the initial `{}` input is never emitted and a call that got no fragment gets
    `"{}"` (#3); id/name only in the first fragment (#4); the first chunk carries the role (#5); usage from
    `message_start` is kept and `message_delta` usage is cumulative, replacing rather than adding (#6)."""

    def __init__(self, dialect: AnthropicDialect, model: str) -> None:
        self._dialect = dialect
        self._base: dict[str, Any] = {
            "id": "",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }
        self._tools: dict[int, int] = {}  # content-block index → OpenAI tool index
        self._fragments: set[int] = set()  # tool indices that received argument text
        self._usage_fields: dict[str, Any] = {}
        self.done = False
        self.usage: Usage | None = None

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> Chunk:
        return {**self._base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    def _tool_delta(self, index: int, fragment: dict[str, Any]) -> Chunk:
        return self._chunk({"tool_calls": [{"index": index, **fragment}]})

    def feed(self, event: SSEEvent) -> list[Chunk]:
        try:
            data = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            raise UpstreamProtocolError(f"{self._dialect._provider} sent a stream event that is not JSON") from None
        kind = data.get("type") if isinstance(data, dict) else None
        if kind == "message_start":
            message = data.get("message") or {}
            self._base["id"] = message.get("id", "")
            self._usage_fields.update(message.get("usage") or {})
            self.usage = usage_from(self._usage_fields)
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            block = data.get("content_block") or {}
            if block.get("type") == "tool_use":
                tool_index = self._tools[data.get("index", 0)] = len(self._tools)
                fragment = {
                    "id": block.get("id", ""),
                    "type": "function",
                    "function": {"name": block.get("name", ""), "arguments": ""},
                }
                return [self._tool_delta(tool_index, fragment)]
            return []
        if kind == "content_block_delta":
            delta = data.get("delta") or {}
            if delta.get("type") == "text_delta" and delta.get("text"):
                return [self._chunk({"content": delta["text"]})]
            if delta.get("type") == "input_json_delta" and delta.get("partial_json"):
                target = self._tools.get(data.get("index", 0))
                if target is not None:
                    self._fragments.add(target)
                    return [self._tool_delta(target, {"function": {"arguments": delta["partial_json"]}})]
            return []  # thinking, signatures, citations: not OpenAI content
        if kind == "content_block_stop":
            stopped = self._tools.get(data.get("index", 0))
            if stopped is not None and stopped not in self._fragments:
                self._fragments.add(stopped)
                return [self._tool_delta(stopped, {"function": {"arguments": "{}"}})]
            return []
        if kind == "message_delta":
            self._usage_fields.update(data.get("usage") or {})
            self.usage = usage_from(self._usage_fields)
            reason = (data.get("delta") or {}).get("stop_reason")
            if reason is not None:
                return [self._chunk({}, STOP_REASONS.get(reason, "stop"))]
            return []
        if kind == "message_stop":
            self.done = True
            return []
        if kind == "error":
            error = data.get("error") or {}
            status = _STREAM_ERROR_STATUS.get(str(error.get("type")), 500)
            message = redact(str(error.get("message") or ""), (self._dialect._api_key or "",))[:500]
            raise error_from_status(status, {}, message, provider=self._dialect._provider)
        return []  # ping and event types added later

    def finish(self) -> list[Chunk]:
        return []
