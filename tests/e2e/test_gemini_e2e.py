"""End to end: the real gateway (subprocess) in front of a fake Gemini API that this test owns, with the real
`openai` SDK as the client: plain, streaming, a tool round trip carrying the thought signature back, a bad key
reported as the gateway's credentials problem, and a fallback from Gemini to another provider kind."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest
from aiohttp import web

from tests._gateway_process import GatewayProcess
from tests.fakes.threaded import ThreadedApp

pytestmark = pytest.mark.e2e

KEY = "AIzaE2E-gemini-SECRET-0123456789"
USAGE = {"promptTokenCount": 9, "candidatesTokenCount": 4, "thoughtsTokenCount": 3, "totalTokenCount": 16}


class FakeGemini:
    """`gemini-ok` answers (calls the first tool, with a thought signature, until the history has its result);
    `gemini-badkey` answers Google's 400 API_KEY_INVALID; `batchEmbedContents` answers small fixed vectors."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.queries: list[dict[str, str]] = []
        app = web.Application()
        app.router.add_post("/v1beta/models/{call}", self._generate)
        self.server = ThreadedApp(app)

    def _reply(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        answered = any("functionResponse" in p for c in body["contents"] for p in c["parts"])
        if body.get("tools") and not answered:
            name = body["tools"][0]["functionDeclarations"][0]["name"]
            return [{"functionCall": {"name": name, "args": {"city": "Oslo"}}, "thoughtSignature": "sig-e2e"}]
        return [{"text": "Gemini says "}, {"text": f"hi ({len(body['contents'])} turns)"}]

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        self.queries.append(dict(request.query))
        model, _, method = request.match_info["call"].partition(":")
        if model == "gemini-badkey":
            error = {
                "error": {
                    "code": 400,
                    "status": "INVALID_ARGUMENT",
                    "message": "API key not valid.",
                    "details": [{"reason": "API_KEY_INVALID"}],
                }
            }
            return web.json_response(error, status=400)
        if method == "batchEmbedContents":  # a vector per request: [its index, its text's length, its dimensions]
            embeddings = [
                {
                    "values": [
                        float(i),
                        float(len(r["content"]["parts"][0]["text"])),
                        float(r.get("outputDimensionality", 0)),
                    ]
                }
                for i, r in enumerate(body["requests"])
            ]
            return web.json_response({"embeddings": embeddings})
        parts = self._reply(body)
        if method == "generateContent":
            return web.json_response(
                {
                    "responseId": "resp-1",
                    "modelVersion": model,
                    "usageMetadata": USAGE,
                    "candidates": [{"index": 0, "finishReason": "STOP", "content": {"role": "model", "parts": parts}}],
                }
            )
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for i, part in enumerate(parts):
            candidate: dict[str, Any] = {"index": 0, "content": {"role": "model", "parts": [part]}}
            event: dict[str, Any] = {"candidates": [candidate]}
            if i == len(parts) - 1:
                candidate["finishReason"] = "STOP"
                event["usageMetadata"] = USAGE
            await response.write(b"data: " + orjson.dumps(event) + b"\r\n\r\n")
        return response


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeGemini]:
    gemini = FakeGemini()
    with gemini.server:
        yield gemini


@pytest.fixture(scope="module")
def client(fake: FakeGemini, tmp_path_factory: pytest.TempPathFactory) -> Iterator[openai.OpenAI]:
    config = tmp_path_factory.mktemp("gemini") / "gateway.yaml"
    config.write_text(f"""
providers:
  - name: google
    kind: gemini
    base_url: {fake.server.url}/v1beta
    api_key_env: E2E_GEMINI_KEY
    max_retries: 0
    models: [{{id: gemini-ok}}, {{id: gemini-badkey}}]
  - name: local
    kind: mock
    models: [{{id: backup, reply: "backup answer"}}]
fallbacks:
  google/gemini-badkey: [local/backup]
""")
    with GatewayProcess(Path(config), env={"E2E_GEMINI_KEY": KEY}) as gateway:
        yield openai.OpenAI(base_url=gateway.base_url + "/v1", api_key="unused", max_retries=0, timeout=20)
        assert not any(KEY in line for line in gateway.lines), "the upstream key reached a log line"


USER = [{"role": "user", "content": "hello"}]
WEATHER = {
    "type": "function",
    "function": {"name": "weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
}


@pytest.mark.timeout(60)
def test_plain_completion(client: openai.OpenAI, fake: FakeGemini) -> None:
    reply = client.chat.completions.create(model="google/gemini-ok", messages=USER, max_tokens=20)
    assert reply.choices[0].message.content == "Gemini says hi (1 turns)"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 7  # candidates 4 + thoughts 3
    assert fake.headers[-1]["x-goog-api-key"] == KEY
    assert "key" not in fake.queries[-1]
    assert fake.requests[-1]["generationConfig"] == {"maxOutputTokens": 20}


@pytest.mark.timeout(60)
def test_streaming(client: openai.OpenAI, fake: FakeGemini) -> None:
    chunks = list(
        client.chat.completions.create(
            model="gemini-ok", messages=USER, stream=True, stream_options={"include_usage": True}
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Gemini says hi (1 turns)"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 16
    assert fake.queries[-1] == {"alt": "sse"}


@pytest.mark.timeout(60)
def test_tool_round_trip_carries_the_thought_signature(client: openai.OpenAI, fake: FakeGemini) -> None:
    with client.chat.completions.stream(model="google/gemini-ok", messages=USER, tools=[WEATHER]) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].finish_reason == "tool_calls"
    message = final.choices[0].message
    assert message.tool_calls is not None
    call = message.tool_calls[0]
    assert orjson.loads(call.function.arguments) == {"city": "Oslo"}
    follow_up = client.chat.completions.create(
        model="google/gemini-ok",
        tools=[WEATHER],
        messages=[
            *USER,
            message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "Sunny"},
        ],
    )
    assert follow_up.choices[0].message.content == "Gemini says hi (3 turns)"
    sent = fake.requests[-1]["contents"]
    assert sent[1]["parts"][0]["thoughtSignature"] == "sig-e2e"
    assert sent[2]["parts"][0]["functionResponse"]["name"] == "weather"


@pytest.mark.timeout(60)
def test_invalid_key_falls_back_to_another_kind(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model="google/gemini-badkey", messages=USER)
    assert completion.choices[0].message.content == "backup answer"
    calls = completion.model_extra["ultra"]["calls"]
    assert calls[0]["status"] == "error"
    assert "credentials" in calls[0]["error"]


def test_embeddings_translate_to_batch_embed_contents(client: openai.OpenAI, fake: FakeGemini) -> None:
    response = client.embeddings.create(model="google/gemini-ok", input=["ab", "cde"], dimensions=3)
    assert [d.embedding for d in response.data] == [[0.0, 2.0, 3.0], [1.0, 3.0, 3.0]]  # decoded from base64
    assert response.usage.prompt_tokens == 2  # estimated: Gemini reports none
    assert fake.requests[-1] == {
        "requests": [
            {"model": "models/gemini-ok", "content": {"parts": [{"text": "ab"}]}, "outputDimensionality": 3},
            {"model": "models/gemini-ok", "content": {"parts": [{"text": "cde"}]}, "outputDimensionality": 3},
        ]
    }
    assert fake.headers[-1]["x-goog-api-key"] == KEY
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="google/gemini-ok", input=[[1, 2, 3]])
