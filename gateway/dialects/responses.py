"""OpenAI's Responses API, inbound: a `/v1/responses` body → the gateway's chat body, and the chat answer (whole
or as chunks) → a `response` object (or the typed stream events the openai SDK's `responses.stream()` helper
accumulates). Pure functions and one small state machine; the HTTP route does the I/O and keeps the stored
responses that `previous_response_id` chains from.

Request fields and their fate:

- mapped: `model`, `input` (a string, or items: messages with `input_text`/`input_image`/`input_file`/
  `output_text` parts, `function_call`, `function_call_output`), `instructions` (a leading system message,
  never carried to a chained response), `tools` (function tools), `tool_choice`, `parallel_tool_calls`,
  `text.format` (`json_schema` / `json_object` → `response_format`), `max_output_tokens`
  (→ `max_completion_tokens`), `temperature`, `top_p`, `user`/`safety_identifier` (→ `user`),
  `reasoning.effort` (→ `reasoning_effort`), `stream`.
- the gateway's own: `previous_response_id` (the stored conversation is prepended), `store` (false: not kept,
  so it cannot be fetched or chained), `metadata` (echoed on the response).
- dropped: `reasoning` items in the input, `include`, `truncation`, `service_tier`, `prompt_cache_key`.
- refused with a 400 naming the field: built-in tools (web search, file search, computer use, code interpreter,
  MCP, image generation…), `background: true`, `conversation`, `prompt` templates, `item_reference` items,
  `input_image` by `file_id`, and any unknown item or part type.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

from gateway.core.errors import GatewayError, InvalidRequest
from gateway.core.types import Chunk, Usage, random_hex
from gateway.dialects._validation import validated

__all__ = ["ResponseEvents", "ResponsesCall", "new_response_id", "output_messages", "response_from_chat", "translate"]

_Lenient = ConfigDict(extra="allow")


class _Request(BaseModel):
    model_config = _Lenient
    model: Annotated[str, Field(min_length=1)]
    input: str | list[dict[str, Any]] | None = None
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    text: dict[str, Any] | None = None
    max_output_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    previous_response_id: str | None = None
    store: bool | None = None
    stream: bool | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    safety_identifier: str | None = None
    reasoning: dict[str, Any] | None = None
    background: bool | None = None


def new_response_id() -> str:
    return f"resp_{random_hex(32)}"


@dataclass(slots=True)
class ResponsesCall:
    """A translated request: the chat body to run, the conversation to store (history + this input, without the
    instructions), and the request fields the response object echoes."""

    chat: dict[str, Any]
    conversation: list[dict[str, Any]]
    echo: dict[str, Any]
    store: bool
    previous_response_id: str | None = None
    text_format: dict[str, Any] = field(default_factory=lambda: {"type": "text"})


# --- request -------------------------------------------------------------------------------------------------


def _part(part: dict[str, Any], where: str) -> dict[str, Any]:
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text"):
        return {"type": "text", "text": str(part.get("text") or "")}
    if kind == "refusal":
        return {"type": "text", "text": str(part.get("refusal") or "")}
    if kind == "input_image":
        url = part.get("image_url")
        if not isinstance(url, str) or not url:
            raise InvalidRequest(
                "input_image needs an image_url (file ids are not available)", param=f"{where}.image_url"
            )
        image: dict[str, Any] = {"url": url}
        if part.get("detail") in ("low", "high", "auto"):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "input_file":
        data = part.get("file_data")
        if not isinstance(data, str) or not data:
            raise InvalidRequest("input_file needs file_data (file ids are not available)", param=f"{where}.file_data")
        return {"type": "file", "file": {"filename": str(part.get("filename") or "file"), "file_data": data}}
    raise InvalidRequest(f"content part type {kind!r} is not supported", param=f"{where}.type")


def _content(content: Any, where: str) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidRequest("content must be a string or a list of parts", param=where)
    parts = [_part(p if isinstance(p, dict) else {}, f"{where}[{i}]") for i, p in enumerate(content)]
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def _input_messages(items: str | list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    if items is None:
        return []
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    messages: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        where = f"input[{i}]"
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "system", "developer", "assistant"):
                raise InvalidRequest(f"message role {role!r} is not supported", param=f"{where}.role")
            messages.append({"role": role, "content": _content(item.get("content"), f"{where}.content")})
        elif kind == "function_call":
            call_id, name = item.get("call_id"), item.get("name")
            if not isinstance(call_id, str) or not isinstance(name, str):
                raise InvalidRequest("a function_call item needs call_id and name", param=where)
            call = {
                "id": call_id,
                "type": "function",
                "function": {"name": name, "arguments": str(item.get("arguments") or "{}")},
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":  # calls of one turn share one assistant message
                last.setdefault("tool_calls", []).append(call)
                if last.get("content") == "":
                    last["content"] = None
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            call_id = item.get("call_id")
            if not isinstance(call_id, str) or not call_id:
                raise InvalidRequest("a function_call_output item needs call_id", param=f"{where}.call_id")
            output = item.get("output")
            text = output if isinstance(output, str) else _content(output, f"{where}.output")
            if not isinstance(text, str):
                raise InvalidRequest("a function_call_output may hold text only", param=f"{where}.output")
            messages.append({"role": "tool", "tool_call_id": call_id, "content": text})
        elif kind == "reasoning":
            continue  # a model's own reasoning summary: no chat equivalent, the answer does not depend on it
        else:
            raise InvalidRequest(f"input item type {kind!r} is not supported", param=f"{where}.type")
    return messages


def _tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for i, tool in enumerate(tools):
        if tool.get("type") != "function":
            raise InvalidRequest(
                f"tool type {tool.get('type')!r} is not available through this gateway; use function tools",
                param=f"tools[{i}].type",
            )
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidRequest("a function tool needs a name", param=f"tools[{i}].name")
        function: dict[str, Any] = {
            "name": name,
            "parameters": tool.get("parameters") or {"type": "object", "properties": {}},
        }
        if tool.get("description"):
            function["description"] = tool["description"]
        if tool.get("strict") is not None:
            function["strict"] = tool["strict"]
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: str | dict[str, Any]) -> Any:
    if isinstance(choice, str):
        if choice not in ("auto", "none", "required"):
            raise InvalidRequest(f"tool_choice {choice!r} is not supported", param="tool_choice")
        return choice
    if choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise InvalidRequest("tool_choice must be auto, none, required or a function", param="tool_choice")


def _response_format(text: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """`text.format` → (chat response_format or None, the format echoed on the response)."""
    fmt = text.get("format")
    if fmt is None:
        return None, {"type": "text"}
    if not isinstance(fmt, dict):
        raise InvalidRequest("text.format must be an object", param="text.format")
    kind = fmt.get("type")
    if kind == "text":
        return None, fmt
    if kind == "json_object":
        return {"type": "json_object"}, fmt
    if kind == "json_schema":
        name, schema = fmt.get("name"), fmt.get("schema")
        if not isinstance(name, str) or not isinstance(schema, dict):
            raise InvalidRequest("a json_schema format needs a name and a schema", param="text.format")
        spec: dict[str, Any] = {"name": name, "schema": schema}
        for key in ("strict", "description"):
            if fmt.get(key) is not None:
                spec[key] = fmt[key]
        return {"type": "json_schema", "json_schema": spec}, fmt
    raise InvalidRequest(f"text.format type {kind!r} is not supported", param="text.format.type")


def translate(body: Any, *, history: list[dict[str, Any]] | None = None) -> ResponsesCall:
    """A Responses request → the chat body (with `history`, the stored conversation of `previous_response_id`,
    before this input). Raises InvalidRequest naming the offending field."""
    request = validated(_Request, body)
    for name in ("conversation", "prompt"):
        if body.get(name):
            raise InvalidRequest(f"{name} is not available through this gateway", param=name)
    if request.background:
        raise InvalidRequest("background responses are not available through this gateway", param="background")
    this_turn = _input_messages(request.input)
    conversation = [*(history or []), *this_turn]
    if not conversation:
        raise InvalidRequest("input is required", param="input")
    messages = [{"role": "system", "content": request.instructions}] if request.instructions else []
    chat: dict[str, Any] = {"model": request.model, "messages": [*messages, *conversation]}
    if request.tools:
        chat["tools"] = _tools(request.tools)
    if request.tool_choice is not None and request.tools:
        chat["tool_choice"] = _tool_choice(request.tool_choice)
    if request.parallel_tool_calls is not None and request.tools:
        chat["parallel_tool_calls"] = request.parallel_tool_calls
    response_format, echoed_format = _response_format(request.text or {})
    if response_format is not None:
        chat["response_format"] = response_format
    if request.max_output_tokens is not None:
        chat["max_completion_tokens"] = request.max_output_tokens
    for name in ("temperature", "top_p"):
        value = getattr(request, name)
        if value is not None:
            chat[name] = value
    user = request.safety_identifier or request.user
    if user:
        chat["user"] = user
    effort = (request.reasoning or {}).get("effort")
    if isinstance(effort, str):
        chat["reasoning_effort"] = effort
    if request.stream:
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}  # the response's usage comes from the last chunk
    echo = {
        "instructions": request.instructions,
        "max_output_tokens": request.max_output_tokens,
        "metadata": request.metadata or {},
        "parallel_tool_calls": request.parallel_tool_calls if request.parallel_tool_calls is not None else True,
        "previous_response_id": request.previous_response_id,
        "store": request.store is not False,
        "temperature": request.temperature,
        "text": {"format": echoed_format},
        "tool_choice": request.tool_choice if request.tool_choice is not None else "auto",
        "tools": request.tools or [],
        "top_p": request.top_p,
        "user": request.user,
    }
    return ResponsesCall(chat, conversation, echo, request.store is not False, request.previous_response_id)


# --- response --------------------------------------------------------------------------------------------------


def _usage(usage: Usage | None) -> dict[str, Any] | None:
    if usage is None:
        return None
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_tokens, "cache_write_tokens": 0},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.total_tokens,
    }


def _status(finish: str | None) -> tuple[str, dict[str, Any] | None]:
    if finish == "length":
        return "incomplete", {"reason": "max_output_tokens"}
    if finish == "content_filter":
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def _message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    content = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
    return {"id": item_id, "type": "message", "role": "assistant", "status": status, "content": content}


def _call_item(item_id: str, call_id: str, name: str, arguments: str, status: str = "completed") -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "function_call",
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def _envelope(
    call: ResponsesCall, *, response_id: str, created_at: int, model: str, status: str, output: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": None,
        "model": model,
        "output": output,
        "usage": None,
        **call.echo,
    }


def response_from_chat(
    completion: dict[str, Any], call: ResponsesCall, *, response_id: str, model: str, created_at: int | None = None
) -> dict[str, Any]:
    """A `chat.completion` → a `response` object (first choice; the gateway's `ultra` metadata kept)."""
    choices = completion.get("choices") or [{}]
    choice = choices[0]
    message = choice.get("message") or {}
    output: list[dict[str, Any]] = []
    text = message.get("content")
    if isinstance(text, str) and text:
        output.append(_message_item(f"msg_{random_hex(32)}", text))
    for tool_call in message.get("tool_calls") or ():
        function = tool_call.get("function") or {}
        call_id = str(tool_call.get("id") or f"call_{random_hex(24)}")
        name = str(function.get("name") or "")
        output.append(_call_item(f"fc_{random_hex(32)}", call_id, name, str(function.get("arguments") or "")))
    status, incomplete = _status(choice.get("finish_reason"))
    created = created_at if created_at is not None else int(completion.get("created") or time.time())
    out = _envelope(call, response_id=response_id, created_at=created, model=model, status=status, output=output)
    out["incomplete_details"] = incomplete
    out["completed_at"] = int(time.time()) if status == "completed" else None
    out["usage"] = _usage(Usage.from_dict(completion.get("usage")))
    if "ultra" in completion:
        out["ultra"] = completion["ultra"]
    return out


def output_messages(response: dict[str, Any]) -> list[dict[str, Any]]:
    """A response's output as the chat assistant message it was, for the conversation a chained response
    continues."""
    text = ""
    calls = []
    for item in response.get("output") or ():
        if item.get("type") == "message":
            text += "".join(p.get("text", "") for p in item.get("content") or () if p.get("type") == "output_text")
        elif item.get("type") == "function_call":
            function = {"name": item.get("name", ""), "arguments": item.get("arguments") or "{}"}
            calls.append({"id": item.get("call_id", ""), "type": "function", "function": function})
    message: dict[str, Any] = {"role": "assistant", "content": text or (None if calls else "")}
    if calls:
        message["tool_calls"] = calls
    return [message]


def error_object(error: GatewayError) -> dict[str, Any]:
    return {"code": error.code or error.type, "message": error.message}


# --- streaming ---------------------------------------------------------------------------------------------------


class ResponseEvents:
    """Chat chunks → Responses stream events, each with its `sequence_number`: `response.created`,
    `response.in_progress`; per output item `response.output_item.added`, its content (a message's
    `content_part.added`, `output_text.delta`…, `output_text.done`, `content_part.done`; a function call's
    `function_call_arguments.delta`…, `.done`) and `response.output_item.done`; then `response.completed` (or
    `response.incomplete`). A failure after the start is an `error` event and `response.failed`."""

    def __init__(self, call: ResponsesCall, *, response_id: str, model: str) -> None:
        self._call = call
        self._id = response_id
        self._model = model
        self._created = int(time.time())
        self._sequence = 0
        self._output: list[dict[str, Any]] = []  # finished items, in output order
        self._open: dict[str, Any] | None = None  # the item being written
        self._calls: dict[int, dict[str, Any]] = {}  # chat tool-call index → its function_call item
        self._finish: str | None = None
        self._usage: Usage | None = None
        self._ultra: Any = None
        self.response: dict[str, Any] | None = None  # the final response object, once finished

    def _event(self, kind: str, **data: Any) -> dict[str, Any]:
        event = {"type": kind, "sequence_number": self._sequence, **data}
        self._sequence += 1
        return event

    def _snapshot(self, status: str) -> dict[str, Any]:
        output = [dict(item) for item in self._output]
        return _envelope(
            self._call, response_id=self._id, created_at=self._created, model=self._model, status=status, output=output
        )

    def start(self) -> list[dict[str, Any]]:
        return [
            self._event("response.created", response=self._snapshot("in_progress")),
            self._event("response.in_progress", response=self._snapshot("in_progress")),
        ]

    def _close(self) -> list[dict[str, Any]]:
        item = self._open
        if item is None:
            return []
        self._open = None
        index = len(self._output)
        events = []
        if item["type"] == "message":
            text = item["content"][0]["text"]
            part = {"type": "output_text", "text": text, "annotations": []}
            where = {"item_id": item["id"], "output_index": index, "content_index": 0}
            events.append(self._event("response.output_text.done", **where, text=text, logprobs=[]))
            events.append(self._event("response.content_part.done", **where, part=part))
        else:
            events.append(
                self._event(
                    "response.function_call_arguments.done",
                    item_id=item["id"],
                    output_index=index,
                    name=item["name"],
                    arguments=item["arguments"],
                )
            )
        item["status"] = "completed"
        self._output.append(item)
        events.append(self._event("response.output_item.done", output_index=index, item=dict(item)))
        return events

    def _open_item(self, item: dict[str, Any]) -> list[dict[str, Any]]:
        events = self._close()
        self._open = item
        index = len(self._output)
        added = {**item, "status": "in_progress"}
        if item["type"] == "message":
            added["content"] = []
        events.append(self._event("response.output_item.added", output_index=index, item=added))
        if item["type"] == "message":
            part = {"type": "output_text", "text": "", "annotations": []}
            events.append(
                self._event(
                    "response.content_part.added", item_id=item["id"], output_index=index, content_index=0, part=part
                )
            )
        return events

    def feed(self, chunk: Chunk) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
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
                if self._open is None or self._open["type"] != "message":
                    events += self._open_item(_message_item(f"msg_{random_hex(32)}", "", "in_progress"))
                assert self._open is not None
                self._open["content"][0]["text"] += text
                index = len(self._output)
                events.append(
                    self._event(
                        "response.output_text.delta",
                        item_id=self._open["id"],
                        output_index=index,
                        content_index=0,
                        delta=text,
                        logprobs=[],
                    )
                )
            for tool_call in delta.get("tool_calls") or ():
                events += self._tool_fragment(tool_call)
            if choice.get("finish_reason") is not None:
                self._finish = choice["finish_reason"]
        return events

    def _tool_fragment(self, tool_call: dict[str, Any]) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        position = tool_call.get("index", 0)
        function = tool_call.get("function") or {}
        item = self._calls.get(position)
        if item is None:
            call_id = str(tool_call.get("id") or f"call_{random_hex(24)}")
            item = _call_item(f"fc_{random_hex(32)}", call_id, str(function.get("name") or ""), "", "in_progress")
            self._calls[position] = item
            events += self._open_item(item)
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments and item is self._open:
            item["arguments"] += arguments
            events.append(
                self._event(
                    "response.function_call_arguments.delta",
                    item_id=item["id"],
                    output_index=len(self._output),
                    delta=arguments,
                )
            )
        elif isinstance(arguments, str) and arguments:
            item["arguments"] += arguments  # a late fragment of a call already closed: kept for the final object
        return events

    def finish(self) -> list[dict[str, Any]]:
        events = self._close()
        status, incomplete = _status(self._finish)
        response = self._snapshot(status)
        response["incomplete_details"] = incomplete
        response["completed_at"] = int(time.time()) if status == "completed" else None
        response["usage"] = _usage(self._usage)
        if self._ultra is not None:
            response["ultra"] = self._ultra
        self.response = response
        kind = "response.completed" if status == "completed" else "response.incomplete"
        events.append(self._event(kind, response=response))
        return events

    def fail(self, error: GatewayError) -> list[dict[str, Any]]:
        """After the stream has started: an `error` event (carrying an `error` object too, so the openai SDK
        raises rather than waiting for more) and `response.failed`."""
        detail = error_object(error)
        failed = self._snapshot("failed")
        failed["error"] = detail
        return [
            self._event(
                "error", code=detail["code"], message=error.message, param=error.param, error=error.to_body()["error"]
            ),
            self._event("response.failed", response=failed),
        ]


def sse(event: dict[str, Any]) -> bytes:
    return b"event: " + str(event["type"]).encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"
