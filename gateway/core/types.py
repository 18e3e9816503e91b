"""OpenAI-shaped request, response, chunk and usage types.

The wire stays a dict: a request keeps the exact body the client sent (so OpenAI-compatible upstreams get it
untouched, fields we do not know included) and is validated once by a lenient pydantic schema that names the
offending field. Responses and chunks are the OpenAI JSON objects as dicts, wrapped where the domain needs
accessors. This keeps the hot path to one parse and one serialization.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gateway.core.errors import InvalidRequest
from gateway.core.redaction import bounded

__all__ = [
    "ChatRequest",
    "ChatResponse",
    "Chunk",
    "Usage",
    "loc_path",
    "new_completion_id",
    "parse_chat_request",
    "split_data_url",
    "text_of",
]

Chunk = dict[str, Any]
"""One `chat.completion.chunk` object, exactly as it goes on the wire."""


def text_of(content: Any) -> str:
    """The text of OpenAI message content: a string, or the `text` parts of a parts list joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def split_data_url(url: str) -> tuple[str, str] | None:
    """`data:<mime>;base64,<data>` → (mime, data); None for any other URL."""
    if not url.startswith("data:") or ";base64," not in url:
        return None
    mime, data = url[5:].split(";base64,", 1)
    return mime, data


_IDS = random.Random()  # ids must be unique, not secret: no urandom system call per request


def random_hex(chars: int) -> str:
    return f"{_IDS.getrandbits(chars * 4):0{chars}x}"


def new_completion_id() -> str:
    return f"chatcmpl-{random_hex(24)}"


@dataclass(slots=True)
class Usage:
    """Token usage of one or more calls; `+` sums calls (what a request reports is the sum over every call).
    `estimated` when the gateway counted the tokens itself (the upstream reported none, or the call was cut);
    it never goes on the wire as part of `usage`."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    estimated: bool = False

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.cached_tokens + other.cached_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
            self.estimated or other.estimated,
        )

    @classmethod
    def from_dict(cls, data: Any) -> Usage | None:
        """Read an OpenAI `usage` object; None when absent or not an object."""
        if not isinstance(data, dict):
            return None
        prompt_details = data.get("prompt_tokens_details") or {}
        completion_details = data.get("completion_tokens_details") or {}
        return cls(
            _int(data.get("prompt_tokens")),
            _int(data.get("completion_tokens")),
            _int(prompt_details.get("cached_tokens") if isinstance(prompt_details, dict) else 0),
            _int(completion_details.get("reasoning_tokens") if isinstance(completion_details, dict) else 0),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }
        if self.cached_tokens:
            out["prompt_tokens_details"] = {"cached_tokens": self.cached_tokens}
        if self.reasoning_tokens:
            out["completion_tokens_details"] = {"reasoning_tokens": self.reasoning_tokens}
        return out


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


@dataclass(slots=True)
class ChatResponse:
    """A `chat.completion` object as a dict, with the accessors strategies and the service need."""

    data: dict[str, Any]

    @property
    def choices(self) -> list[dict[str, Any]]:
        choices = self.data.get("choices")
        return choices if isinstance(choices, list) else []

    @property
    def usage(self) -> Usage | None:
        return Usage.from_dict(self.data.get("usage"))

    @property
    def content(self) -> str:
        """The first choice's text, '' when it has none (tool calls only, or no choices)."""
        for choice in self.choices:
            message = choice.get("message") or {}
            text = message.get("content")
            return text if isinstance(text, str) else ""
        return ""

    @property
    def finish_reason(self) -> str | None:
        for choice in self.choices:
            reason = choice.get("finish_reason")
            return reason if isinstance(reason, str) else None
        return None

    @property
    def finish_reasons(self) -> list[str]:
        return [c["finish_reason"] for c in self.choices if isinstance(c.get("finish_reason"), str)]

    @classmethod
    def build(
        cls,
        *,
        model: str,
        content: str | None,
        finish_reason: str = "stop",
        usage: Usage | None = None,
        tool_calls: list[dict[str, Any]] | None = None,
        completion_id: str | None = None,
    ) -> ChatResponse:
        """A one-choice completion, for providers that synthesise answers (mock, translated dialects)."""
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if tool_calls:
            message["tool_calls"] = tool_calls
        data: dict[str, Any] = {
            "id": completion_id or new_completion_id(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}],
        }
        if usage is not None:
            data["usage"] = usage.to_dict()
        return cls(data)


# --- request validation -------------------------------------------------------------------------------------
# Lenient schemas (extra="allow"): they check the fields we know and keep the rest; only the verdict is used,
# the client's dict is what travels on.

_Lenient = ConfigDict(extra="allow", strict=True)  # strict: "10" is not a number, "true" not a boolean
Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


class _Message(BaseModel):
    model_config = _Lenient
    role: Role
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_call_id: str | None = None
    tool_calls: list[dict[str, Any]] | None = None

    @model_validator(mode="after")
    def _role_rules(self) -> _Message:
        if self.role in ("system", "developer", "user", "tool") and self.content is None:
            raise ValueError(f"a {self.role} message needs content")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs tool_call_id")
        return self


class _Function(BaseModel):
    model_config = _Lenient
    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-zA-Z0-9_.:-]+$")]


class _Tool(BaseModel):
    model_config = _Lenient
    type: str
    function: _Function | None = None


class _StreamOptions(BaseModel):
    model_config = _Lenient
    include_usage: bool | None = None


class _ResponseFormat(BaseModel):
    model_config = _Lenient
    type: Literal["text", "json_object", "json_schema"]


class _ChatRequestSchema(BaseModel):
    model_config = _Lenient
    model: Annotated[str, Field(min_length=1)]
    messages: Annotated[list[_Message], Field(min_length=1)]
    stream: bool | None = None
    stream_options: _StreamOptions | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    n: Annotated[int, Field(ge=1, le=128)] | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    stop: str | Annotated[list[str], Field(max_length=4)] | None = None
    presence_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    seed: int | None = None
    tools: list[_Tool] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: _ResponseFormat | None = None
    user: str | None = None


_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "list", "dict", "none"})


def loc_path(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as a path: `('messages', 0, 'role')` → `messages[0].role`, skipping pydantic's
    union-member and validator tags (`str`, `literal[...]`, `function-after[...]`)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif "[" in part or part in _TYPE_TAGS or part.startswith("function-"):
            continue
        else:
            out += f".{part}" if out else part
    return out


@dataclass(slots=True)
class ChatRequest:
    """A validated chat completion request: the client's body dict plus the few facts the pipeline reads."""

    body: dict[str, Any]
    model: str
    stream: bool = False
    include_usage: bool = False

    @property
    def messages(self) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = self.body["messages"]
        return messages

    @property
    def has_tools(self) -> bool:
        return bool(self.body.get("tools"))

    def with_messages(self, messages: list[dict[str, Any]], **overrides: Any) -> ChatRequest:
        """A new request with other messages (and fields), e.g. the synthesis prompt of a strategy."""
        body = {**self.body, "messages": messages, **overrides}
        return ChatRequest(body, self.model, self.stream, self.include_usage)


MAX_JSON_DEPTH = 128
"""Deepest nesting of objects and arrays a request may have. Real requests (tool schemas included) stay far
below it; deeper bodies would only exercise recursion in the serializers that hash and forward them."""


def json_depth_exceeds(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether parsed JSON nests objects/arrays more than `limit` deep (iterative: no recursion of its own)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        node, depth = pop()
        children = node.values() if isinstance(node, dict) else node
        for child in children:
            if isinstance(child, (dict, list)):
                if depth >= limit:
                    return True
                push((child, depth + 1))
    return False


def parse_chat_request(body: Any) -> ChatRequest:
    """Validate a parsed JSON body; raise InvalidRequest naming the first offending field in `param`."""
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object", param=None)
    if json_depth_exceeds(body):
        raise InvalidRequest(
            f"the request body nests objects and arrays more than {MAX_JSON_DEPTH} levels deep", param=None
        )
    try:
        schema = _ChatRequestSchema.model_validate(body)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        param = loc_path(tuple(first["loc"])) or None
        param = bounded(param) if param else None
        raise InvalidRequest(f"invalid value for '{param or 'body'}': {first['msg']}", param=param) from None
    stream = bool(schema.stream)
    if schema.stream_options is not None and not stream:
        raise InvalidRequest("stream_options is only allowed when stream is true", param="stream_options")
    if schema.top_logprobs is not None and not schema.logprobs:
        raise InvalidRequest("top_logprobs requires logprobs to be true", param="top_logprobs")
    include_usage = bool(stream and schema.stream_options is not None and schema.stream_options.include_usage)
    return ChatRequest(body, schema.model, stream, include_usage)
