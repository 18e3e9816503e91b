"""Anthropic's Messages API, inbound: a `/v1/messages` body → the gateway's chat body, and the chat answer (whole
or as chunks) → an Anthropic `message` (or its named stream events). Pure functions and one small state
machine; the HTTP route does the I/O.

This is the mirror image of the outbound dialect in `gateway/providers/anthropic.py` (which speaks Messages to an
upstream): the field mappings are the same table read the other way.

Request fields and their fate:

- mapped: `model`, `max_tokens`, `system` (string or text blocks), `messages` (text, image, PDF document,
  `tool_use`, `tool_result` blocks), `tools` (custom tools), `tool_choice` (auto/any/tool/none and
  `disable_parallel_tool_use`), `stop_sequences` (at most 4), `temperature`, `top_p`, `metadata.user_id`
  (→ `user`), `stream`.
- dropped, because the answer keeps its meaning without them: `top_k`, `thinking` blocks in the history and the
  `thinking` option, `cache_control` markers, `service_tier`.
- refused with a 400 naming the field: server tools (`web_search_…`, `bash_…`, any tool with a `type` other than
  `custom`), `mcp_servers`, `container`, images inside a `tool_result`, unknown block types, more than 4 stop
  sequences.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from gateway.core.errors import GatewayError, InvalidRequest
from gateway.core.types import Chunk, Usage, random_hex, text_of
from gateway.dialects._validation import validated

__all__ = [
    "ERROR_TYPES",
    "MessageStream",
    "chat_body",
    "error_body",
    "estimate_input_tokens",
    "message_from_chat",
    "sse",
]

# OpenAI finish_reason → Anthropic stop_reason (the outbound dialect's table read backwards; `stop` cannot tell a
# natural end from a stop sequence, so both are `end_turn`).
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal"}

# HTTP status → Anthropic's error `type`, which its SDKs and clients branch on.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}

_IMAGE_TOKENS = 1600  # an image's share of the estimate: about what a ~1.15-megapixel image costs on Claude
_MAX_STOP = 4  # the chat shape carries at most four stop sequences

_Lenient = ConfigDict(extra="allow")


class _Message(BaseModel):
    model_config = _Lenient
    role: Literal["user", "assistant"]
    content: str | list[dict[str, Any]]


class _Tool(BaseModel):
    model_config = _Lenient
    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-zA-Z0-9_.:-]+$")]
    type: str | None = None
    description: str | None = None
    input_schema: dict[str, Any] | None = None


class _Request(BaseModel):
    model_config = _Lenient
    model: Annotated[str, Field(min_length=1)]
    messages: list[_Message]
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    system: str | list[dict[str, Any]] | None = None
    stop_sequences: list[str] | None = None
    temperature: Annotated[float, Field(ge=0, le=1)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    top_k: Annotated[int, Field(ge=0)] | None = None
    tools: list[_Tool] | None = None
    tool_choice: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    stream: bool | None = None


# --- request -------------------------------------------------------------------------------------------------


def _text_blocks(value: str | list[dict[str, Any]], where: str) -> str:
    if isinstance(value, str):
        return value
    parts = []
    for i, block in enumerate(value):
        if block.get("type") != "text":
            raise InvalidRequest(
                f"only text blocks are accepted here, not {block.get('type')!r}", param=f"{where}[{i}]"
            )
        parts.append(str(block.get("text") or ""))
    return "\n\n".join(p for p in parts if p)


def _image(block: dict[str, Any], where: str) -> dict[str, Any]:
    source = block.get("source") or {}
    kind = source.get("type")
    if kind == "base64":
        url = f"data:{source.get('media_type', 'image/png')};base64,{source.get('data', '')}"
    elif kind == "url":
        url = str(source.get("url") or "")
    else:
        raise InvalidRequest(f"image source type {kind!r} is not supported", param=f"{where}.source.type")
    return {"type": "image_url", "image_url": {"url": url}}


def _document(block: dict[str, Any], where: str) -> dict[str, Any]:
    source = block.get("source") or {}
    kind = source.get("type")
    if kind == "base64" and source.get("media_type") == "application/pdf":
        data_url = f"data:application/pdf;base64,{source.get('data', '')}"
        return {"type": "file", "file": {"filename": str(block.get("title") or "document.pdf"), "file_data": data_url}}
    if kind == "text":
        return {"type": "text", "text": str(source.get("data") or "")}
    raise InvalidRequest("only base64 PDF and plain-text documents are supported", param=f"{where}.source")


def _tool_result_text(block: dict[str, Any], where: str) -> str:
    content = block.get("content")
    if content is None:
        text = ""
    elif isinstance(content, str):
        text = content
    else:
        parts = []
        for i, part in enumerate(content):
            if part.get("type") != "text":
                raise InvalidRequest(
                    "a tool_result may hold text only on this gateway", param=f"{where}.content[{i}].type"
                )
            parts.append(str(part.get("text") or ""))
        text = "\n\n".join(parts)
    # Chat has no error flag on a tool message: say it in the text, so the model still knows the call failed.
    return f"Error: {text}" if block.get("is_error") else text


def _user_turn(content: str | list[dict[str, Any]], where: str) -> list[dict[str, Any]]:
    """One Anthropic user turn → tool messages (its tool results, first, as chat requires) then a user message."""
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    out: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for i, block in enumerate(content):
        at = f"{where}[{i}]"
        kind = block.get("type")
        if kind == "text":
            parts.append({"type": "text", "text": str(block.get("text") or "")})
        elif kind == "image":
            parts.append(_image(block, at))
        elif kind == "document":
            parts.append(_document(block, at))
        elif kind == "tool_result":
            call_id = block.get("tool_use_id")
            if not isinstance(call_id, str) or not call_id:
                raise InvalidRequest("a tool_result needs tool_use_id", param=f"{at}.tool_use_id")
            out.append({"role": "tool", "tool_call_id": call_id, "content": _tool_result_text(block, at)})
        else:
            raise InvalidRequest(f"content block type {kind!r} is not supported in a user turn", param=f"{at}.type")
    if parts:
        if all(p["type"] == "text" for p in parts):
            out.append({"role": "user", "content": "\n\n".join(p["text"] for p in parts)})
        else:
            out.append({"role": "user", "content": parts})
    return out


def _assistant_turn(content: str | list[dict[str, Any]], where: str) -> dict[str, Any]:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for i, block in enumerate(content):
        kind = block.get("type")
        if kind == "text":
            texts.append(str(block.get("text") or ""))
        elif kind == "tool_use":
            arguments = orjson.dumps(block.get("input") or {}).decode()
            function = {"name": str(block.get("name") or ""), "arguments": arguments}
            calls.append({"id": str(block.get("id") or ""), "type": "function", "function": function})
        elif kind in ("thinking", "redacted_thinking"):
            continue  # a model's private reasoning: no chat equivalent, and the answer does not depend on it
        else:
            raise InvalidRequest(
                f"content block type {kind!r} is not supported in an assistant turn", param=f"{where}[{i}].type"
            )
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if calls:
        message["tool_calls"] = calls
    elif message["content"] is None:
        message["content"] = ""
    return message


def _tools(tools: list[_Tool]) -> list[dict[str, Any]]:
    out = []
    for i, tool in enumerate(tools):
        if tool.type not in (None, "custom"):
            raise InvalidRequest(
                f"server tool {tool.type!r} is not available through this gateway; declare a custom tool instead",
                param=f"tools[{i}].type",
            )
        function: dict[str, Any] = {
            "name": tool.name,
            "parameters": tool.input_schema or {"type": "object", "properties": {}},
        }
        if tool.description:
            function["description"] = tool.description
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: dict[str, Any]) -> tuple[Any, bool]:
    """Anthropic tool_choice → (chat tool_choice, parallel calls allowed)."""
    kind = choice.get("type")
    parallel = not choice.get("disable_parallel_tool_use", False)
    if kind == "auto":
        return "auto", parallel
    if kind == "any":
        return "required", parallel
    if kind == "none":
        return "none", parallel
    if kind == "tool":
        name = choice.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidRequest("tool_choice of type 'tool' needs a name", param="tool_choice.name")
        return {"type": "function", "function": {"name": name}}, parallel
    raise InvalidRequest(f"tool_choice type {kind!r} is not supported", param="tool_choice.type")


def chat_body(body: Any, *, for_counting: bool = False) -> dict[str, Any]:
    """A Messages request body → the equivalent chat-completions body. `max_tokens` is required unless the body
    is only being counted (`count_tokens` takes none). Raises InvalidRequest naming the offending field."""
    request = validated(_Request, body)
    if request.max_tokens is None and not for_counting:
        raise InvalidRequest("max_tokens: Field required", param="max_tokens")
    for field in ("mcp_servers", "container"):
        if body.get(field):
            raise InvalidRequest(f"{field} is not available through this gateway", param=field)
    messages: list[dict[str, Any]] = []
    if request.system:
        system = _text_blocks(request.system, "system")
        if system:
            messages.append({"role": "system", "content": system})
    if not request.messages:
        raise InvalidRequest("messages: at least one message is required", param="messages")
    for i, message in enumerate(request.messages):
        where = f"messages[{i}].content"
        if message.role == "user":
            messages.extend(_user_turn(message.content, where))
        else:
            messages.append(_assistant_turn(message.content, where))
    out: dict[str, Any] = {"model": request.model, "messages": messages}
    if request.max_tokens is not None:
        out["max_tokens"] = request.max_tokens
    if request.stop_sequences:
        if len(request.stop_sequences) > _MAX_STOP:
            raise InvalidRequest(f"at most {_MAX_STOP} stop_sequences are supported", param="stop_sequences")
        out["stop"] = list(request.stop_sequences)
    if request.temperature is not None:
        out["temperature"] = request.temperature
    if request.top_p is not None:
        out["top_p"] = request.top_p
    if request.tools:
        out["tools"] = _tools(request.tools)
        if request.tool_choice is not None:
            choice, parallel = _tool_choice(request.tool_choice)
            out["tool_choice"] = choice
            if not parallel:
                out["parallel_tool_calls"] = False
    user = (request.metadata or {}).get("user_id")
    if isinstance(user, str) and user:
        out["user"] = user
    if request.stream:
        out["stream"] = True
        # message_delta reports usage at the end, so the pipeline is always asked for it.
        out["stream_options"] = {"include_usage": True}
    return out


def estimate_input_tokens(chat: dict[str, Any]) -> int:
    """What `count_tokens` answers: an estimate, not the upstream tokenizer's count. About four characters per
    token for every message's text and tool-call arguments, plus four tokens of framing per message, plus the
    tool definitions' JSON at the same rate, plus a flat 1600 per image or document."""
    total = 0
    for message in chat.get("messages") or ():
        content = message.get("content")
        text = text_of(content)
        media = sum(1 for p in content if p.get("type") != "text") if isinstance(content, list) else 0
        for call in message.get("tool_calls") or ():
            function = call.get("function") or {}
            text += str(function.get("name") or "") + str(function.get("arguments") or "")
        total += -(-len(text) // 4) + 4 + media * _IMAGE_TOKENS
    tools = chat.get("tools")
    if tools:
        total += -(-len(orjson.dumps(tools)) // 4)
    return max(total, 1)


# --- response --------------------------------------------------------------------------------------------------


def message_id(completion_id: Any) -> str:
    text = str(completion_id or "")
    return "msg_" + (text.removeprefix("chatcmpl-") or random_hex(24))


def _usage(usage: Usage) -> dict[str, Any]:
    """OpenAI counts cached prompt tokens inside `prompt_tokens`; Anthropic's `input_tokens` excludes them."""
    return {
        "input_tokens": max(usage.prompt_tokens - usage.cached_tokens, 0),
        "output_tokens": usage.completion_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": usage.cached_tokens,
    }


def _tool_input(arguments: Any) -> dict[str, Any]:
    try:
        parsed = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def message_from_chat(completion: dict[str, Any], *, model: str) -> dict[str, Any]:
    """A `chat.completion` → an Anthropic `message` (first choice; the gateway's `ultra` metadata kept)."""
    choices = completion.get("choices") or [{}]
    choice = choices[0]
    message = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    text = message.get("content")
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": str(call.get("id") or f"toolu_{random_hex(24)}"),
                "name": str(function.get("name") or ""),
                "input": _tool_input(function.get("arguments")),
            }
        )
    out: dict[str, Any] = {
        "id": message_id(completion.get("id")),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": STOP_REASONS.get(str(choice.get("finish_reason")), "end_turn"),
        "stop_sequence": None,
        "usage": _usage(Usage.from_dict(completion.get("usage")) or Usage()),
    }
    if "ultra" in completion:
        out["ultra"] = completion["ultra"]
    return out


def error_body(error: GatewayError) -> dict[str, Any]:
    """Anthropic's error shape: `{"type": "error", "error": {"type": ..., "message": ...}}`."""
    kind = ERROR_TYPES.get(error.status, "api_error" if error.status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": error.message}}


Event = tuple[str, dict[str, Any]]
"""One named stream event: (event name, data object)."""


class MessageStream:
    """Chat chunks → Anthropic stream events: `message_start`, then per content block `content_block_start`,
    its deltas (`text_delta`, `input_json_delta`) and `content_block_stop`, then `message_delta` (stop reason and
    usage) and `message_stop`. Block indices count every block in order, as the SDK's accumulator expects."""

    def __init__(self, *, model: str, input_tokens: int) -> None:
        self._model = model
        self._input_tokens = input_tokens
        self._started = False
        self._next_index = 0
        self._open: int | None = None  # the content block being written
        self._open_kind = ""
        self._tools: dict[int, int] = {}  # chat tool-call index → content block index
        self._finish: str | None = None
        self._usage: Usage | None = None
        self._ultra: Any = None
        self._id = ""

    def _start(self, chunk_id: Any) -> list[Event]:
        self._started = True
        self._id = message_id(chunk_id)
        message: dict[str, Any] = {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": self._input_tokens, "output_tokens": 0},
        }
        return [("message_start", {"type": "message_start", "message": message})]

    def _close(self) -> list[Event]:
        if self._open is None:
            return []
        index, self._open = self._open, None
        return [("content_block_stop", {"type": "content_block_stop", "index": index})]

    def _open_block(self, kind: str, block: dict[str, Any]) -> list[Event]:
        events = self._close()
        self._open, self._open_kind = self._next_index, kind
        self._next_index += 1
        events.append(
            ("content_block_start", {"type": "content_block_start", "index": self._open, "content_block": block})
        )
        return events

    def feed(self, chunk: Chunk) -> list[Event]:
        events = [] if self._started else self._start(chunk.get("id"))
        if "ultra" in chunk:
            self._ultra = chunk["ultra"]
        usage = Usage.from_dict(chunk.get("usage"))
        if usage is not None:
            self._usage = usage
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            text = delta.get("content")
            if isinstance(text, str) and text:
                if self._open_kind != "text" or self._open is None:
                    events += self._open_block("text", {"type": "text", "text": ""})
                delta_event = {"type": "text_delta", "text": text}
                events.append(
                    ("content_block_delta", {"type": "content_block_delta", "index": self._open, "delta": delta_event})
                )
            for call in delta.get("tool_calls") or ():
                events += self._tool_fragment(call)
            if choice.get("finish_reason") is not None:
                self._finish = choice["finish_reason"]
        return events

    def _tool_fragment(self, call: dict[str, Any]) -> list[Event]:
        events: list[Event] = []
        position = call.get("index", 0)
        function = call.get("function") or {}
        block = self._tools.get(position)
        if block is None:
            block_data = {
                "type": "tool_use",
                "id": str(call.get("id") or f"toolu_{random_hex(24)}"),
                "name": str(function.get("name") or ""),
                "input": {},
            }
            events += self._open_block("tool_use", block_data)
            assert self._open is not None
            block = self._tools[position] = self._open
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            delta = {"type": "input_json_delta", "partial_json": arguments}
            events.append(("content_block_delta", {"type": "content_block_delta", "index": block, "delta": delta}))
        return events

    def finish(self) -> list[Event]:
        """The closing events, once the chat stream has ended cleanly."""
        events = [] if self._started else self._start(None)
        events += self._close()
        usage = _usage(self._usage) if self._usage is not None else {"input_tokens": self._input_tokens}
        usage.setdefault("output_tokens", 0)
        delta: dict[str, Any] = {
            "type": "message_delta",
            "delta": {"stop_reason": STOP_REASONS.get(str(self._finish), "end_turn"), "stop_sequence": None},
            "usage": usage,
        }
        if self._ultra is not None:
            delta["ultra"] = self._ultra
        events.append(("message_delta", delta))
        events.append(("message_stop", {"type": "message_stop"}))
        return events


def sse(event: Event) -> bytes:
    """One named SSE event on the wire."""
    name, data = event
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"
