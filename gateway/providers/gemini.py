"""The Google Gemini dialect (generateContent / streamGenerateContent?alt=sse), translated both ways.

Pure functions from data to data over the shared transport. Thought signatures (Gemini 3 / 2.5 thinking
models) ride round trip in the tool call's `extra_content.google.thought_signature`, the field Google's own
OpenAI-compatible endpoint uses: the openai SDK keeps and re-sends it when a client passes the returned message
back. `https://` image URLs are refused (send data URLs): fetching arbitrary URLs from the gateway would be a
server-side request forgery risk.

Embeddings go to `batchEmbedContents` (one request per input text, `dimensions` as `outputDimensionality`);
Gemini reports no usage for them, so it is estimated (a token per four characters).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any

import orjson

from gateway.core.errors import InvalidRequest, UpstreamError, UpstreamProtocolError
from gateway.core.provider import Capabilities
from gateway.core.redaction import bounded, register_secret
from gateway.core.types import ChatRequest, ChatResponse, Chunk, Usage, split_data_url, text_of
from gateway.providers._embeddings import embedding_response
from gateway.providers._http import HttpCall, redact
from gateway.providers._sse import SSEEvent
from gateway.providers._turns import Turns
from gateway.providers.openai_compat import error_from_status

__all__ = ["GeminiDialect", "build_body", "embedding_body", "parse_candidates", "parse_embeddings", "usage_from"]

_FILTERED = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
        "MODEL_ARMOR",
    }
)


def finish_reason(reason: str | None, saw_function_call: bool) -> str:
    """Gemini never says "tool calls": STOP with a functionCall is `tool_calls` (bug table #8, #9)."""
    if reason == "MAX_TOKENS":
        return "length"
    if reason in _FILTERED:
        return "content_filter"
    return "tool_calls" if saw_function_call else "stop"


def usage_from(data: Mapping[str, Any]) -> Usage:
    """Thoughts count as completion tokens; prompt includes tool-use prompt tokens (cached is a subset)."""
    thoughts = int(data.get("thoughtsTokenCount") or 0)
    return Usage(
        prompt_tokens=int(data.get("promptTokenCount") or 0) + int(data.get("toolUsePromptTokenCount") or 0),
        completion_tokens=int(data.get("candidatesTokenCount") or 0) + thoughts,
        cached_tokens=int(data.get("cachedContentTokenCount") or 0),
        reasoning_tokens=thoughts,
    )


# --- request -----------------------------------------------------------------------------------------------


def _parts(content: Any, where: str) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts: list[dict[str, Any]] = []
    for i, part in enumerate(content):
        kind = part.get("type")
        if kind == "text":
            if part.get("text"):
                parts.append({"text": part["text"]})
        elif kind == "image_url":
            inline = split_data_url((part.get("image_url") or {}).get("url", ""))
            if inline is None:
                raise InvalidRequest("send images to Gemini models as data: URLs", param=f"{where}[{i}].image_url.url")
            mime, data = inline
            parts.append({"inlineData": {"mimeType": mime, "data": data}})
        else:
            raise InvalidRequest(
                f"content part type {bounded(repr(kind))} is not supported by this model", param=f"{where}[{i}]"
            )
    return parts


def _function_call(call: dict[str, Any], where: str) -> dict[str, Any]:
    function = call.get("function") or {}
    try:
        args = orjson.loads(function.get("arguments") or "{}")
    except orjson.JSONDecodeError:
        raise InvalidRequest("tool call arguments must be valid JSON", param=f"{where}.function.arguments") from None
    part: dict[str, Any] = {"functionCall": {"name": function.get("name", ""), "args": args}}
    if call.get("id"):
        part["functionCall"]["id"] = call["id"]
    signature = ((call.get("extra_content") or {}).get("google") or {}).get("thought_signature")
    if signature:
        part["thoughtSignature"] = signature  # must come back exactly as it was sent (bug table #10)
    return part


def _contents(messages: list[dict[str, Any]]) -> Turns:
    turns = Turns("parts", lambda text: {"text": text})
    names: dict[str, str] = {}  # tool_call_id → function name: Gemini's functionResponse needs the name
    for i, message in enumerate(messages):
        if turns.take_system(message):
            continue
        role = message.get("role")
        where = f"messages[{i}]"
        if role == "user":
            turns.add("user", _parts(message.get("content"), f"{where}.content"))
        elif role == "assistant":
            parts = _parts(message.get("content"), f"{where}.content")
            for j, call in enumerate(message.get("tool_calls") or ()):
                names[call.get("id", "")] = (call.get("function") or {}).get("name", "")
                parts.append(_function_call(call, f"{where}.tool_calls[{j}]"))
            turns.add("model", parts)
        elif role == "tool":
            call_id = message.get("tool_call_id", "")
            if call_id not in names:
                raise InvalidRequest(
                    "tool_call_id matches no earlier assistant tool call", param=f"{where}.tool_call_id"
                )
            content = text_of(message.get("content"))
            try:
                output: Any = orjson.loads(content)
            except orjson.JSONDecodeError:
                output = content
            turns.add(
                "user", [{"functionResponse": {"name": names[call_id], "id": call_id, "response": {"output": output}}}]
            )
        else:
            raise InvalidRequest(f"role {bounded(repr(role))} is not supported by this model", param=f"{where}.role")
    return turns


def _tool_config(choice: Any) -> dict[str, Any] | None:
    if choice is None or choice == "auto":
        return None
    if choice == "required":
        return {"functionCallingConfig": {"mode": "ANY"}}
    if choice == "none":
        return {"functionCallingConfig": {"mode": "NONE"}}
    if isinstance(choice, dict) and choice.get("type") == "function":
        name = (choice.get("function") or {}).get("name", "")
        return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}
    raise InvalidRequest("this tool_choice is not supported by this model", param="tool_choice")


_GENERATION = (
    ("temperature", "temperature"),
    ("top_p", "topP"),
    ("seed", "seed"),
    ("n", "candidateCount"),
    ("presence_penalty", "presencePenalty"),
    ("frequency_penalty", "frequencyPenalty"),
)


def build_body(request: ChatRequest) -> dict[str, Any]:
    body = request.body
    if body.get("logit_bias"):
        raise InvalidRequest("logit_bias is not available from this model", param="logit_bias")
    turns = _contents(request.messages)
    system, contents = turns.system, turns.turns
    out: dict[str, Any] = {"contents": contents}
    if any(system):
        out["systemInstruction"] = {"parts": [{"text": "\n\n".join(s for s in system if s)}]}
    config: dict[str, Any] = {k: body[o] for o, k in _GENERATION if body.get(o) is not None}
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if max_tokens:
        config["maxOutputTokens"] = max_tokens
    stop = body.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    if body.get("logprobs"):
        config["responseLogprobs"] = True
        if body.get("top_logprobs") is not None:
            config["logprobs"] = body["top_logprobs"]
    response_format = body.get("response_format") or {}
    if response_format.get("type") in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
        schema = (response_format.get("json_schema") or {}).get("schema")
        if schema:
            config["responseJsonSchema"] = schema
    if config:
        out["generationConfig"] = config
    tools = [t for t in body.get("tools") or () if t.get("type") == "function"]
    if tools:
        declarations = []
        for tool in tools:
            function = tool["function"]
            declaration: dict[str, Any] = {"name": function.get("name", "")}
            if function.get("description"):
                declaration["description"] = function["description"]
            if function.get("parameters"):
                declaration["parametersJsonSchema"] = function["parameters"]
            declarations.append(declaration)
        out["tools"] = [{"functionDeclarations": declarations}]
        tool_config = _tool_config(body.get("tool_choice"))
        if tool_config is not None:
            out["toolConfig"] = tool_config
    return out


# --- response ----------------------------------------------------------------------------------------------


def _tool_call(part: Mapping[str, Any]) -> dict[str, Any]:
    call = part["functionCall"]
    out: dict[str, Any] = {
        "id": call.get("id") or f"call_{uuid.uuid4().hex[:24]}",
        "type": "function",
        "function": {"name": call.get("name", ""), "arguments": orjson.dumps(call.get("args") or {}).decode()},
    }
    if part.get("thoughtSignature"):
        out["extra_content"] = {"google": {"thought_signature": part["thoughtSignature"]}}
    return out


def parse_candidates(data: Mapping[str, Any], *, model: str) -> ChatResponse:
    choices = []
    for position, candidate in enumerate(data.get("candidates") or ()):
        parts = (candidate.get("content") or {}).get("parts") or ()
        text = "".join(p.get("text", "") for p in parts if "text" in p and not p.get("thought"))
        calls = [_tool_call(p) for p in parts if "functionCall" in p]
        message: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None}
        if calls:
            message["tool_calls"] = calls
        choices.append(
            {
                "index": candidate.get("index", position),
                "message": message,
                "finish_reason": finish_reason(candidate.get("finishReason"), bool(calls)),
                "logprobs": None,
            }
        )
    if not choices and (data.get("promptFeedback") or {}).get("blockReason"):
        choices = [
            {
                "index": 0,
                "message": {"role": "assistant", "content": None},
                "finish_reason": "content_filter",
                "logprobs": None,
            }
        ]
    return ChatResponse(
        {
            "id": data.get("responseId") or f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": data.get("modelVersion") or model,
            "choices": choices,
            "usage": usage_from(data.get("usageMetadata") or {}).to_dict(),
        }
    )


def embedding_body(body: Mapping[str, Any], *, model: str) -> dict[str, Any]:
    """An OpenAI embeddings body → batchEmbedContents: one request per input text, `dimensions` as
    `outputDimensionality`. Token arrays have no Gemini form: a 400 naming `input`."""
    value = body.get("input")
    texts = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    if not texts or not all(isinstance(t, str) for t in texts):
        raise InvalidRequest("this model embeds text: input must be a string or a list of strings", param="input")
    requests = []
    for text in texts:
        item: dict[str, Any] = {"model": f"models/{model}", "content": {"parts": [{"text": text}]}}
        if isinstance(body.get("dimensions"), int):
            item["outputDimensionality"] = body["dimensions"]
        requests.append(item)
    return {"requests": requests}


def parse_embeddings(data: Any, *, model: str, request: Mapping[str, Any]) -> dict[str, Any]:
    """batchEmbedContents' `embeddings[].values` → the OpenAI shape. Gemini reports no usage for embeddings, so
    it is estimated like the mock's: a token per four characters of each input."""
    embeddings = data.get("embeddings") if isinstance(data, dict) else None
    if not isinstance(embeddings, list) or not all(isinstance(e, dict) for e in embeddings):
        raise UpstreamProtocolError("the embeddings answer has no embeddings list")
    vectors = [[float(v) for v in e.get("values") or ()] for e in embeddings]
    value = request.get("input")
    texts = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    tokens = sum(max(-(-len(str(t)) // 4), 1) for t in texts)
    return embedding_response(
        vectors, model=model, encoding_format=request.get("encoding_format"), prompt_tokens=tokens
    )


class GeminiDialect:
    kind = "gemini"
    system = "gcp.gemini"
    capabilities = Capabilities(embeddings=True)

    def __init__(self, api_key: str | None = None, *, provider: str = "gemini") -> None:
        self._api_key = api_key
        self._provider = provider
        register_secret(api_key)

    def default_headers(self) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if self._api_key:
            headers["x-goog-api-key"] = self._api_key  # a header, never ?key= (it would reach access logs)
        return headers

    def build(self, request: ChatRequest, *, model: str, stream: bool) -> HttpCall:
        body = orjson.dumps(build_body(request))
        if stream:
            return HttpCall(f"/v1beta/models/{model}:streamGenerateContent", body, params={"alt": "sse"})
        return HttpCall(f"/v1beta/models/{model}:generateContent", body)

    def _load(self, body: bytes) -> Any:
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            raise UpstreamProtocolError(f"{self._provider} returned a body that is not JSON") from None

    def parse_response(self, body: bytes, *, model: str) -> ChatResponse:
        data = self._load(body)
        if not isinstance(data, dict):
            raise UpstreamProtocolError(f"{self._provider} returned JSON that is not a response object")
        return parse_candidates(data, model=model)

    def build_embeddings(self, body: dict[str, Any], *, model: str) -> HttpCall:
        return HttpCall(f"/v1beta/models/{model}:batchEmbedContents", orjson.dumps(embedding_body(body, model=model)))

    def parse_embeddings(self, body: bytes, *, model: str, request: dict[str, Any]) -> dict[str, Any]:
        return parse_embeddings(self._load(body), model=model, request=request)

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
        try:
            data = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            data = None
        if isinstance(data, list) and len(data) == 1:  # errors may come as a one-element array
            data = data[0]
        error = data.get("error") if isinstance(data, dict) else None
        message = ""
        retry_headers = dict(headers)
        if data is None and body:
            message = body.decode("utf-8", errors="replace")
        if isinstance(error, dict):
            message = str(error.get("message") or "")
            for detail in error.get("details") or ():
                if not isinstance(detail, dict):
                    continue
                if detail.get("reason") == "API_KEY_INVALID":
                    status = 401  # Google answers 400 for a bad key: a credentials failure (bug table #16)
                delay = detail.get("retryDelay")
                if isinstance(delay, str) and delay.endswith("s") and "retry-after" not in retry_headers:
                    retry_headers["retry-after"] = delay[:-1]
        message = redact(message, (self._api_key or "",))[:500]
        return error_from_status(status, retry_headers, message, provider=self._provider)

    def stream_translator(self, *, model: str) -> GeminiStream:
        return GeminiStream(self, model)


class GeminiStream:
    """Each SSE event is a partial GenerateContentResponse: text parts arrive incrementally, functionCall parts
    whole (one fragment with id, name and all arguments); the tool counter continues across chunks per
    candidate; a finishReason after any functionCall becomes `tool_calls` (#8); the last usageMetadata wins."""

    def __init__(self, dialect: GeminiDialect, model: str) -> None:
        self._dialect = dialect
        self._base: dict[str, Any] = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }
        self._started: set[int] = set()
        self._tools: dict[int, int] = {}  # candidate index → tool calls seen so far
        self._open: set[int] = set()
        self.done = False
        self.usage: Usage | None = None

    def feed(self, event: SSEEvent) -> list[Chunk]:
        data = self._dialect._load(event.data.encode())
        if isinstance(data, list) and len(data) == 1:
            data = data[0]
        if not isinstance(data, dict):
            raise UpstreamProtocolError(f"{self._dialect._provider} sent a stream event that is not an object")
        if "error" in data:
            raise self._dialect.parse_error(int((data["error"] or {}).get("code") or 500), {}, event.data.encode())
        if data.get("usageMetadata"):
            self.usage = usage_from(data["usageMetadata"])
        chunks: list[Chunk] = []
        for position, candidate in enumerate(data.get("candidates") or ()):
            index = candidate.get("index", position)
            self._open.add(index)
            delta: dict[str, Any] = {}
            if index not in self._started:
                self._started.add(index)
                delta = {"role": "assistant", "content": ""}
            parts = (candidate.get("content") or {}).get("parts") or ()
            text = "".join(p.get("text", "") for p in parts if "text" in p and not p.get("thought"))
            if text:
                delta["content"] = delta.get("content", "") + text
            fragments = []
            for part in parts:
                if "functionCall" in part:
                    tool_index = self._tools.get(index, 0)
                    self._tools[index] = tool_index + 1
                    fragments.append({"index": tool_index, **_tool_call(part)})
            if fragments:
                delta["tool_calls"] = fragments
            if delta:
                chunks.append({**self._base, "choices": [{"index": index, "delta": delta, "finish_reason": None}]})
            if candidate.get("finishReason"):
                reason = finish_reason(candidate["finishReason"], self._tools.get(index, 0) > 0)
                chunks.append({**self._base, "choices": [{"index": index, "delta": {}, "finish_reason": reason}]})
                self._open.discard(index)
        if self._started and not self._open:
            self.done = True  # every candidate has finished; Gemini then closes the stream (no [DONE])
        return chunks

    def finish(self) -> list[Chunk]:
        return []
