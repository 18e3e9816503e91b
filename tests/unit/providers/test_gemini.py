"""Gemini dialect on golden payloads: requests, responses, stream chunks, errors. Tests named `bug_N` pin
translation bugs that gateways have shipped (the name says which rule the dialect must keep)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.core.errors import InvalidRequest, UpstreamBadRequest, UpstreamRateLimited, UpstreamStatusError
from gateway.core.stream import StreamAccumulator
from gateway.core.types import Usage, parse_chat_request
from gateway.providers._sse import SSEDecoder
from gateway.providers.gemini import GeminiDialect, build_body

KEY = "AIzaSyTEST-0123456789-SECRET"
WEATHER = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "Weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "additionalProperties": False},
    },
}


def body_for(payload: dict[str, Any]) -> dict[str, Any]:
    return build_body(parse_chat_request({"model": "g/m", **payload}))


def test_system_contents_roles_and_generation_config() -> None:
    body = body_for(
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello"},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "More"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    ],
                },
            ],
            "temperature": 0.3,
            "top_p": 0.9,
            "max_tokens": 50,
            "max_completion_tokens": 70,
            "stop": ["X"],
            "n": 2,
            "seed": 1,
            "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": {"type": "object"}}},
        }
    )
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
    assert body["contents"][2]["parts"][1] == {"inlineData": {"mimeType": "image/png", "data": "AAAA"}}
    assert body["generationConfig"] == {
        "temperature": 0.3,
        "topP": 0.9,
        "seed": 1,
        "candidateCount": 2,
        "maxOutputTokens": 70,
        "stopSequences": ["X"],
        "responseMimeType": "application/json",
        "responseJsonSchema": {"type": "object"},
    }


def test_tools_use_full_json_schema_and_tool_choice_maps() -> None:
    body = body_for(
        {
            "messages": [{"role": "user", "content": "x"}],
            "tools": [WEATHER],
            "tool_choice": {"type": "function", "function": {"name": "weather"}},
        }
    )
    declaration = body["tools"][0]["functionDeclarations"][0]
    assert declaration["parametersJsonSchema"]["additionalProperties"] is False
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["weather"]}}
    assert body_for({"messages": [{"role": "user", "content": "x"}], "tools": [WEATHER], "tool_choice": "none"})[
        "toolConfig"
    ] == {"functionCallingConfig": {"mode": "NONE"}}


def test_bug_10_tool_results_find_their_name_and_signatures_round_trip() -> None:
    body = body_for(
        {
            "tools": [WEATHER],
            "messages": [
                {"role": "user", "content": "Weather?"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "weather", "arguments": '{"city": "Oslo"}'},
                            "extra_content": {"google": {"thought_signature": "sig-abc"}},
                        },
                        {"id": "c2", "type": "function", "function": {"name": "time", "arguments": "{}"}},
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": '{"temp": 21}'},
                {"role": "tool", "tool_call_id": "c2", "content": "noon"},
            ],
        }
    )
    model_turn, results = body["contents"][1], body["contents"][2]
    assert model_turn["parts"][0] == {
        "functionCall": {"name": "weather", "args": {"city": "Oslo"}, "id": "c1"},
        "thoughtSignature": "sig-abc",
    }
    assert results["role"] == "user"
    assert [p["functionResponse"]["name"] for p in results["parts"]] == ["weather", "time"]
    assert results["parts"][0]["functionResponse"]["response"] == {"output": {"temp": 21}}
    assert results["parts"][1]["functionResponse"]["response"] == {"output": "noon"}


def test_unknown_tool_call_id_and_remote_images_are_refused() -> None:
    with pytest.raises(InvalidRequest) as caught:
        body_for({"messages": [{"role": "tool", "tool_call_id": "zz", "content": "x"}]})
    assert caught.value.param == "messages[0].tool_call_id"
    with pytest.raises(InvalidRequest) as caught:
        body_for(
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "http://169.254.169.254/latest"}}],
                    }
                ]
            }
        )
    assert caught.value.param == "messages[0].content[0].image_url.url"


def test_paths_headers_and_sse() -> None:
    dialect = GeminiDialect(KEY)
    request = parse_chat_request({"model": "m", "messages": [{"role": "user", "content": "x"}]})
    assert dialect.default_headers()["x-goog-api-key"] == KEY
    assert (
        dialect.build(request, model="gemini-2.5-pro", stream=False).path
        == "/v1beta/models/gemini-2.5-pro:generateContent"
    )
    streaming = dialect.build(request, model="gemini-2.5-pro", stream=True)
    assert streaming.path.endswith(":streamGenerateContent")
    assert streaming.params == {"alt": "sse"}
    assert KEY not in streaming.path


RESPONSE = {
    "responseId": "r1",
    "modelVersion": "gemini-2.5-pro",
    "candidates": [
        {
            "index": 0,
            "finishReason": "STOP",
            "content": {
                "role": "model",
                "parts": [
                    {"text": "thinking...", "thought": True},
                    {"text": "Calling."},
                    {"functionCall": {"name": "weather", "args": {"city": "Oslo"}}, "thoughtSignature": "sig-1"},
                ],
            },
        }
    ],
    "usageMetadata": {
        "promptTokenCount": 10,
        "cachedContentTokenCount": 4,
        "candidatesTokenCount": 6,
        "thoughtsTokenCount": 20,
        "totalTokenCount": 36,
    },
}


def test_bug_8_stop_with_function_call_is_tool_calls_and_thoughts_count_as_completion() -> None:
    response = GeminiDialect().parse_response(orjson.dumps(RESPONSE), model="m")
    message = response.choices[0]["message"]
    assert response.finish_reason == "tool_calls"
    assert message["content"] == "Calling."  # thought parts never reach content
    call = message["tool_calls"][0]
    assert call["function"] == {"name": "weather", "arguments": '{"city":"Oslo"}'}
    assert call["id"].startswith("call_")
    assert call["extra_content"] == {"google": {"thought_signature": "sig-1"}}
    assert response.usage == Usage(prompt_tokens=10, completion_tokens=26, cached_tokens=4, reasoning_tokens=20)


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("MALFORMED_FUNCTION_CALL", "stop"),
        ("OTHER", "stop"),
    ],
)
def test_bug_9_finish_reasons(reason: str, finish: str) -> None:
    data = {"candidates": [{"finishReason": reason, "content": {"parts": [{"text": "x"}]}}]}
    assert GeminiDialect().parse_response(orjson.dumps(data), model="m").finish_reason == finish


def test_blocked_prompt_is_content_filter() -> None:
    data = {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 3}}
    response = GeminiDialect().parse_response(orjson.dumps(data), model="m")
    assert response.finish_reason == "content_filter"
    assert response.choices[0]["message"]["content"] is None


def stream_of(*events: dict[str, Any]) -> bytes:
    return b"".join(b"data: " + orjson.dumps(e) + b"\r\n\r\n" for e in events)


STREAM = stream_of(
    {
        "candidates": [{"index": 0, "content": {"role": "model", "parts": [{"text": "Let me "}]}}],
        "usageMetadata": {"promptTokenCount": 8},
    },
    {"candidates": [{"index": 0, "content": {"parts": [{"text": "check."}]}}]},
    {
        "candidates": [
            {"index": 0, "content": {"parts": [{"functionCall": {"name": "weather", "args": {"city": "A"}}}]}}
        ]
    },
    {
        "candidates": [
            {
                "index": 0,
                "content": {
                    "parts": [{"functionCall": {"name": "weather", "args": {"city": "B"}}, "thoughtSignature": "s2"}]
                },
                "finishReason": "STOP",
            }
        ],
        "usageMetadata": {"promptTokenCount": 8, "candidatesTokenCount": 12, "totalTokenCount": 20},
    },
)


def test_bug_1_and_8_stream_indexes_tools_across_chunks_and_overrides_stop() -> None:
    translator = GeminiDialect().stream_translator(model="gemini-x")
    chunks = []
    for event in SSEDecoder().feed(STREAM):
        chunks += translator.feed(event)
    assert translator.done
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert sum(1 for c in chunks if "role" in c["choices"][0]["delta"]) == 1
    fragments = [f for c in chunks for f in c["choices"][0]["delta"].get("tool_calls", [])]
    assert [f["index"] for f in fragments] == [0, 1]
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    acc = StreamAccumulator()
    for c in chunks:
        acc.add(c)
    response = acc.response()
    assert response.content == "Let me check."
    assert [c["function"]["arguments"] for c in response.choices[0]["message"]["tool_calls"]] == [
        '{"city":"A"}',
        '{"city":"B"}',
    ]
    assert translator.usage == Usage(prompt_tokens=8, completion_tokens=12)  # the last usageMetadata wins


def test_mid_stream_error_raises_the_mapped_error() -> None:
    translator = GeminiDialect().stream_translator(model="g")
    event = SSEDecoder().feed(b'data: [{"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}]\n\n')
    with pytest.raises(UpstreamStatusError) as caught:
        translator.feed(event[0])
    assert caught.value.retryable


def error_body(code: int, status: str, message: str, details: list[dict[str, Any]] | None = None) -> bytes:
    return orjson.dumps({"error": {"code": code, "status": status, "message": message, "details": details or []}})


def test_bug_16_invalid_key_400_is_a_credentials_failure() -> None:
    error = GeminiDialect(KEY).parse_error(
        400,
        {},
        error_body(
            400,
            "INVALID_ARGUMENT",
            f"API key not valid {KEY}",
            [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}],
        ),
    )
    assert not isinstance(error, UpstreamBadRequest)
    assert "credentials" in error.message
    assert KEY not in error.message


def test_errors_map_with_retry_delay() -> None:
    dialect = GeminiDialect()
    limited = dialect.parse_error(
        429,
        {},
        error_body(
            429,
            "RESOURCE_EXHAUSTED",
            "quota",
            [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}],
        ),
    )
    assert isinstance(limited, UpstreamRateLimited)
    assert limited.retry_after == 7
    bad = dialect.parse_error(400, {}, error_body(400, "INVALID_ARGUMENT", "bad schema"))
    assert isinstance(bad, UpstreamBadRequest)
    assert bad.message == "bad schema"
    wrapped = dialect.parse_error(503, {}, b"[" + error_body(503, "UNAVAILABLE", "busy") + b"]")
    assert wrapped.retryable
    assert "busy" in wrapped.message
