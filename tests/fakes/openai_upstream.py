"""A fake OpenAI-compatible upstream for end-to-end tests, served over loopback from its own thread.

Behaviour is chosen by the requested model, so one gateway config can point several models at one fake:
`echo` (answers the last user message; honours n, tools, logprobs; streams by OpenAI's rules, the usage chunk
only with include_usage), `dupids` (like echo, but repeats id/type/name on every tool-call fragment, as some
upstreams do), `slow-<ms>`, `hang` (never answers), `badjson` (200 with a body that is not JSON), `cut`
(streams two chunks, then drops the connection without [DONE]), `flaky` (503 once, then answers),
`ratelimit` (always 429 with retry-after-ms), `ratelimit-<s>` (always 429 with `retry-after: <s>` seconds),
`drip` (streams a chunk every 100 ms for 20 s), `status-<code>` (always that status, echoing the caller's
Authorization header in the message, as careless upstreams do), `nousage` (like echo, but reports no usage,
whole or streamed, as llama.cpp's server does in streams), `var-<name>` (like echo after a delay the test sets
in `delays[model]` and may change between requests; 1 ms until set).
After a tool result (the last message has role `tool`) every model answers in text. `/v1/embeddings` answers
every model with small fixed vectors (see `_embeddings`).
Every request is recorded, and so is every `slow-<ms>` or `drip` request whose caller hung up before the
answer (`disconnected`).
"""

from __future__ import annotations

import asyncio
import base64
import struct
import threading
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.threaded import ThreadedApp

__all__ = ["FakeOpenAI"]


class FakeOpenAI:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.flaky_calls = 0
        self.received = threading.Event()  # set when any request arrives (for "in flight" tests)
        self.disconnected: list[str] = []  # models whose caller closed the connection before the answer
        self.disconnect = threading.Event()
        self.delays: dict[str, float] = {}  # seconds, for `var-<name>` models
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/embeddings", self._embeddings)
        self.server = ThreadedApp(app)

    @property
    def url(self) -> str:
        return self.server.url + "/v1"

    def __enter__(self) -> FakeOpenAI:
        self.server.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.__exit__(*exc)

    def bodies_for(self, model: str) -> list[dict[str, Any]]:
        return [body for body in self.requests if body.get("model") == model]

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        self.received.set()
        model = str(body.get("model"))
        if model == "hang":
            await asyncio.Event().wait()
        if model.startswith("var-"):
            await asyncio.sleep(self.delays.get(model, 0.001))
        if model.startswith("slow-"):
            try:
                await asyncio.sleep(int(model[5:]) / 1000)
            except asyncio.CancelledError:  # aiohttp cancels the handler when the client goes away
                self.disconnected.append(model)
                self.disconnect.set()
                raise
        if model == "badjson":
            return web.Response(body=b"<html>not json", content_type="application/json")
        if model == "ratelimit":
            return self._error(429, "Rate limit reached", {"retry-after-ms": "20"})
        if model.startswith("ratelimit-"):
            return self._error(429, "Rate limit reached", {"retry-after": model[10:]})
        if model == "flaky":
            self.flaky_calls += 1
            if self.flaky_calls == 1:
                return self._error(503, "temporarily overloaded", {"retry-after-ms": "10"})
        if model.startswith("status-"):
            secret = request.headers.get("Authorization", "")
            return self._error(int(model[7:]), f"upstream failure for {secret}")
        if body.get("stream"):
            return await self._stream(request, body, model)
        completion = self._completion(body, model)
        if model == "nousage":
            del completion["usage"]
        return web.json_response(completion)

    async def _embeddings(self, request: web.Request) -> web.Response:
        """Vectors `[index, len(text), 0.5]` per input (base64 float32 when asked); model `status-<code>` fails."""
        body = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        model = str(body.get("model"))
        if model.startswith("status-"):
            return self._error(int(model[7:]), "embeddings failed")
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = []
        for i, item in enumerate(inputs):
            vector = [float(i), float(len(item)), 0.5]
            embedding: Any = vector
            if body.get("encoding_format") == "base64":
                embedding = base64.b64encode(struct.pack("<3f", *vector)).decode()
            data.append({"object": "embedding", "index": i, "embedding": embedding})
        usage = {"prompt_tokens": 2 * len(inputs), "total_tokens": 2 * len(inputs)}
        return web.json_response({"object": "list", "data": data, "model": model, "usage": usage})

    @staticmethod
    def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
        error = {"error": {"message": message, "type": "server_error", "param": None, "code": None}}
        return web.json_response(error, status=status, headers=headers)

    @staticmethod
    def _after_tool(body: dict[str, Any]) -> bool:
        """The conversation ends in a tool result: answer in text, as a model would, so agent loops end."""
        return bool(body["messages"]) and body["messages"][-1].get("role") == "tool"

    @staticmethod
    def _answer(body: dict[str, Any]) -> str:
        for message in reversed(body["messages"]):
            if message["role"] == "user" and isinstance(message["content"], str):
                return f"echo: {message['content']}"
        return "echo"

    def _completion(self, body: dict[str, Any], model: str) -> dict[str, Any]:
        choices = []
        for i in range(body.get("n") or 1):
            message: dict[str, Any] = {"role": "assistant", "content": self._answer(body)}
            finish = "stop"
            if body.get("tools") and body.get("tool_choice") != "none" and not self._after_tool(body):
                name = body["tools"][0]["function"]["name"]
                message = {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": f"call_{i}", "type": "function", "function": {"name": name, "arguments": '{"q": 1}'}}
                    ],
                }
                finish = "tool_calls"
            logprobs = {"content": [{"token": "echo", "logprob": -0.1, "bytes": [101], "top_logprobs": []}]}
            choices.append(
                {
                    "index": i,
                    "message": message,
                    "finish_reason": finish,
                    "logprobs": logprobs if body.get("logprobs") else None,
                }
            )
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 1,
            "model": model,
            "system_fingerprint": "fp_fake",
            "choices": choices,
            "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
        }

    async def _stream(self, request: web.Request, body: dict[str, Any], model: str) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1, "model": model}

        async def send(delta: dict[str, Any], finish: str | None = None) -> None:
            chunk = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            await response.write(b"data: " + orjson.dumps(chunk) + b"\n\n")

        await send({"role": "assistant", "content": ""})
        if model == "drip":
            try:
                for i in range(200):
                    await asyncio.sleep(0.1)
                    await send({"content": f"drop{i} "})
            except (asyncio.CancelledError, ConnectionError):  # the caller hung up mid-stream
                self.disconnected.append(model)
                self.disconnect.set()
                raise
        if model == "cut":
            await send({"content": "partial "})
            assert request.transport is not None
            request.transport.close()
            return response
        if body.get("tools") and not self._after_tool(body):
            name = body["tools"][0]["function"]["name"]
            first = {"index": 0, "id": "call_s1", "type": "function", "function": {"name": name, "arguments": ""}}
            await send({"tool_calls": [first]})
            for piece in ('{"q":', " 1}"):
                fragment: dict[str, Any] = {"index": 0, "function": {"arguments": piece}}
                if model == "dupids":
                    fragment = {**first, "function": {"name": name, "arguments": piece}}
                await send({"tool_calls": [fragment]})
            await send({}, "tool_calls")
        else:
            for word in self._answer(body).split(" "):
                await send({"content": word + " "})
            await send({}, "stop")
        if (body.get("stream_options") or {}).get("include_usage") and model != "nousage":
            usage = {**base, "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}}
            await response.write(b"data: " + orjson.dumps(usage) + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        return response
