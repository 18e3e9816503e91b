"""Anthropic dialect on golden payloads: requests, responses, every stream event, errors. Tests named `bug_N`
pin translation bugs that gateways have shipped (the name says which rule the dialect must keep)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.core.errors import (
    InvalidRequest,
    UpstreamBadRequest,
    UpstreamRateLimited,
    UpstreamStatusError,
)
from gateway.core.stream import StreamAccumulator
from gateway.core.types import Usage, parse_chat_request
from gateway.providers._sse import SSEDecoder
from gateway.providers.anthropic import AnthropicDialect, build_body

KEY = "sk-ant-test-0123456789SECRET"
WEATHER = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "Weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def body_for(payload: dict[str, Any], *, version: str = "2023-06-01", stream: bool = False) -> dict[str, Any]:
    request = parse_chat_request({"model": "claude/c", **payload})
    return build_body(request, model="claude-x", stream=stream, api_version=version, default_max_tokens=1000)


def test_system_messages_become_top_level_system_and_max_tokens_has_a_default() -> None:
    body = body_for(
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": [{"type": "text", "text": "Use metric."}]},
                {"role": "user", "content": "Hi"},
            ]
        }
    )
    assert body["system"] == "Be brief.\n\nUse metric."
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]
    assert body["max_tokens"] == 1000
    assert body["model"] == "claude-x"


def test_max_completion_tokens_wins_and_stop_becomes_a_list() -> None:
    body = body_for(
        {"messages": [{"role": "user", "content": "x"}], "max_tokens": 5, "max_completion_tokens": 9, "stop": "END"}
    )
    assert body["max_tokens"] == 9
    assert body["stop_sequences"] == ["END"]


def test_bug_11_tool_results_share_one_user_turn_after_the_tool_calls() -> None:
    body = body_for(
        {
            "tools": [WEATHER],
            "messages": [
                {"role": "user", "content": "Weather in Paris and Rome?"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "toolu_1",
                            "type": "function",
                            "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
                        },
                        {
                            "id": "toolu_2",
                            "type": "function",
                            "function": {"name": "weather", "arguments": '{"city": "Rome"}'},
                        },
                    ],
                },
                {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
                {"role": "tool", "tool_call_id": "toolu_2", "content": "24C"},
                {"role": "user", "content": "Thanks, which is warmer?"},
            ],
        }
    )
    assistant, results = body["messages"][1], body["messages"][2]
    assert [b["type"] for b in assistant["content"]] == ["tool_use", "tool_use"]
    assert assistant["content"][0]["input"] == {"city": "Paris"}
    assert results["role"] == "user"
    assert [b.get("tool_use_id") for b in results["content"]] == ["toolu_1", "toolu_2", None]
    assert results["content"][2] == {"type": "text", "text": "Thanks, which is warmer?"}
    assert len(body["messages"]) == 3


def test_bug_12_empty_text_blocks_are_dropped() -> None:
    body = body_for(
        {
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": ""}, {"type": "text", "text": "q"}]},
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [{"id": "t", "type": "function", "function": {"name": "weather", "arguments": "{}"}}],
                },
                {"role": "tool", "tool_call_id": "t", "content": "ok"},
            ]
        }
    )
    assert body["messages"][0]["content"] == [{"type": "text", "text": "q"}]
    assert [b["type"] for b in body["messages"][1]["content"]] == ["tool_use"]


def test_images_as_data_urls_and_https_urls() -> None:
    body = body_for(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                        {"type": "image_url", "image_url": {"url": "https://example.org/cat.jpg"}},
                    ],
                }
            ]
        }
    )
    blocks = body["messages"][0]["content"]
    assert blocks[0] == {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}
    assert blocks[1] == {"type": "image", "source": {"type": "url", "url": "https://example.org/cat.jpg"}}


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        ("auto", None, {"type": "auto"}),
        ("required", None, {"type": "any"}),
        ("none", None, {"type": "none"}),
        ({"type": "function", "function": {"name": "weather"}}, None, {"type": "tool", "name": "weather"}),
        ("auto", False, {"type": "auto", "disable_parallel_tool_use": True}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
    ],
)
def test_tool_choice(choice: Any, parallel: Any, expected: dict[str, Any]) -> None:
    payload: dict[str, Any] = {"messages": [{"role": "user", "content": "x"}], "tools": [WEATHER]}
    if choice is not None:
        payload["tool_choice"] = choice
    if parallel is not None:
        payload["parallel_tool_calls"] = parallel
    body = body_for(payload)
    assert body["tool_choice"] == expected
    assert body["tools"] == [
        {"name": "weather", "description": "Weather", "input_schema": WEATHER["function"]["parameters"]}
    ]


def test_bug_14_sampling_parameters_only_on_the_version_that_accepts_them() -> None:
    payload = {
        "messages": [{"role": "user", "content": "x"}],
        "temperature": 1.7,
        "top_p": 0.5,
        "seed": 3,
        "presence_penalty": 1,
    }
    old = body_for(payload, version="2023-06-01")
    new = body_for(payload, version="2026-10-21")
    assert old["temperature"] == 1.0  # clamped to Anthropic's 0..1
    assert old["top_p"] == 0.5
    assert "temperature" not in new
    assert "top_p" not in new
    assert "seed" not in old
    assert "presence_penalty" not in old


@pytest.mark.parametrize(
    ("patch", "param"), [({"n": 2}, "n"), ({"logprobs": True}, "logprobs"), ({"logit_bias": {"1": 5}}, "logit_bias")]
)
def test_semantics_changing_fields_are_refused_with_param(patch: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        body_for({"messages": [{"role": "user", "content": "x"}], **patch})
    assert caught.value.param == param


def test_invalid_tool_arguments_in_history_are_a_400() -> None:
    with pytest.raises(InvalidRequest) as caught:
        body_for(
            {
                "messages": [
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {"id": "t", "type": "function", "function": {"name": "f", "arguments": "{nope"}}
                        ],
                    }
                ]
            }
        )
    assert caught.value.param == "messages[0].tool_calls[0].function.arguments"


def test_response_formats() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    body = body_for(
        {
            "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}},
        }
    )
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    body = body_for({"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_object"}})
    assert "JSON object" in body["system"]


def test_user_becomes_an_opaque_metadata_id() -> None:
    body = body_for({"messages": [{"role": "user", "content": "x"}], "user": "alice@example.org"})
    assert "alice" not in body["metadata"]["user_id"]
    assert len(body["metadata"]["user_id"]) == 32


def test_headers_and_path() -> None:
    dialect = AnthropicDialect(KEY, api_version="2026-10-21")
    assert dialect.default_headers()["x-api-key"] == KEY
    assert dialect.default_headers()["anthropic-version"] == "2026-10-21"
    call = dialect.build(
        parse_chat_request({"model": "m", "messages": [{"role": "user", "content": "x"}]}),
        model="claude-x",
        stream=True,
    )
    assert call.path == "/v1/messages"
    assert orjson.loads(call.body)["stream"] is True


# --- responses ---------------------------------------------------------------------------------------------

MESSAGE = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-x",
    "content": [
        {"type": "thinking", "thinking": "hmm", "signature": "s"},
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
    ],
    "stop_reason": "tool_use",
    "usage": {"input_tokens": 10, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 5, "output_tokens": 7},
}


def test_bug_7_response_usage_counts_cache_reads_and_writes_in_prompt_tokens() -> None:
    response = AnthropicDialect().parse_response(orjson.dumps(MESSAGE), model="claude-x")
    assert response.usage == Usage(prompt_tokens=115, completion_tokens=7, cached_tokens=100)
    message = response.choices[0]["message"]
    assert message["content"] == "Let me check."  # thinking never mixed into content
    assert message["tool_calls"] == [
        {"id": "toolu_1", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Paris"}'}}
    ]
    assert response.finish_reason == "tool_calls"
    assert response.data["id"] == "msg_1"


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
        ("something_new", "stop"),
    ],
)
def test_stop_reasons(reason: str, finish: str) -> None:
    data = {**MESSAGE, "content": [{"type": "text", "text": "x"}], "stop_reason": reason}
    assert AnthropicDialect().parse_response(orjson.dumps(data), model="m").finish_reason == finish


def test_tool_only_answer_has_null_content() -> None:
    data = {**MESSAGE, "content": [MESSAGE["content"][2]]}
    response = AnthropicDialect().parse_response(orjson.dumps(data), model="m")
    assert response.choices[0]["message"]["content"] is None


# --- streams -----------------------------------------------------------------------------------------------


def sse(*events: dict[str, Any]) -> bytes:
    return b"".join(b"event: " + e["type"].encode() + b"\ndata: " + orjson.dumps(e) + b"\n\n" for e in events)


STREAM = sse(
    {
        "type": "message_start",
        "message": {
            "id": "msg_2",
            "model": "claude-x",
            "usage": {"input_tokens": 20, "cache_read_input_tokens": 30, "output_tokens": 1},
        },
    },
    {"type": "ping"},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "hm"}},
    {"type": "content_block_stop", "index": 0},
    {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Checking"}},
    {"type": "content_block_stop", "index": 1},
    {
        "type": "content_block_start",
        "index": 2,
        "content_block": {"type": "tool_use", "id": "toolu_a", "name": "weather", "input": {}},
    },
    {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": ""}},
    {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": '{"city":'}},
    {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": ' "Rome"}'}},
    {"type": "content_block_stop", "index": 2},
    {
        "type": "content_block_start",
        "index": 3,
        "content_block": {"type": "tool_use", "id": "toolu_b", "name": "now", "input": {}},
    },
    {"type": "content_block_stop", "index": 3},
    {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 40}},
    {"type": "message_stop"},
)


def translate(raw: bytes) -> tuple[list[dict[str, Any]], Any]:
    translator = AnthropicDialect().stream_translator(model="claude-x")
    chunks: list[dict[str, Any]] = []
    for event in SSEDecoder().feed(raw):
        chunks += translator.feed(event)
    chunks += translator.finish()
    return chunks, translator


def test_stream_translation_covers_bugs_1_to_6() -> None:
    chunks, translator = translate(STREAM)
    assert translator.done
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}  # bug 5
    roles = [c for c in chunks if "role" in c["choices"][0]["delta"]]
    assert len(roles) == 1
    fragments = [tc for c in chunks for tc in c["choices"][0]["delta"].get("tool_calls", [])]
    assert [f["index"] for f in fragments] == [0, 0, 0, 1, 1]  # bugs 1 and 2: tool counter, not block index
    assert [f.get("id") for f in fragments] == ["toolu_a", None, None, "toolu_b", None]  # bug 4
    assert all(f["function"].get("arguments") != "" for f in fragments[1:3])  # bug 3: no empty fragments
    acc = StreamAccumulator()
    for c in chunks:
        acc.add(c)
    calls = acc.response().choices[0]["message"]["tool_calls"]
    assert [c["function"]["arguments"] for c in calls] == ['{"city": "Rome"}', "{}"]  # bug 3: "{}" when none
    assert acc.response().content == "Checking"
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert all(c["id"] == "msg_2" for c in chunks)
    # bug 6: input tokens from message_start survive; message_delta usage is cumulative (replaced, not added)
    assert translator.usage == Usage(prompt_tokens=50, completion_tokens=40, cached_tokens=30)


def test_bug_15_mid_stream_error_event_raises() -> None:
    raw = sse(
        {"type": "message_start", "message": {"id": "m", "usage": {"input_tokens": 1}}},
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    )
    with pytest.raises(UpstreamStatusError) as caught:
        translate(raw)
    assert caught.value.upstream_status == 529
    assert caught.value.retryable


def test_stream_cut_before_message_stop_is_not_done() -> None:
    _, translator = translate(STREAM.split(b"event: message_delta")[0])
    assert not translator.done


# --- errors ------------------------------------------------------------------------------------------------


def error_body(kind: str, message: str) -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_1"})


def test_errors_map_to_our_tree() -> None:
    dialect = AnthropicDialect(KEY)
    limited = dialect.parse_error(429, {"retry-after": "7"}, error_body("rate_limit_error", "slow down"))
    assert isinstance(limited, UpstreamRateLimited)
    assert limited.retry_after == 7
    bad = dialect.parse_error(400, {}, error_body("invalid_request_error", "max_tokens: too large"))
    assert isinstance(bad, UpstreamBadRequest)
    assert bad.message == "max_tokens: too large"
    overloaded = dialect.parse_error(529, {}, error_body("overloaded_error", "Overloaded"))
    assert overloaded.retryable
    denied = dialect.parse_error(401, {}, error_body("authentication_error", f"invalid x-api-key {KEY}"))
    assert KEY not in denied.message
