"""The Anthropic Messages inbound dialect on golden payloads: request → chat body, chat answer → message, chat
chunks → the named stream events the Anthropic SDK accumulates."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.core.errors import InvalidRequest, ModelNotFound, RateLimited, UpstreamTimeout
from gateway.dialects.messages import MessageStream, chat_body, error_body, estimate_input_tokens, message_from_chat

TOOL = {"name": "weather", "description": "Weather", "input_schema": {"type": "object", "properties": {}}}


def test_a_full_request_maps_every_field() -> None:
    body = {
        "model": "ultra-speed",
        "max_tokens": 300,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Weather in Oslo?"}]},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "s"},
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Oslo"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "12 C"}]},
                    {"type": "text", "text": "And tomorrow?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
                ],
            },
        ],
        "tools": [TOOL],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "stop_sequences": ["END"],
        "temperature": 0.5,
        "top_p": 0.9,
        "top_k": 5,
        "metadata": {"user_id": "u-1"},
        "stream": True,
    }
    assert chat_body(body) == {
        "model": "ultra-speed",
        "max_tokens": 300,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in Oslo?"},
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    {
                        "id": "toolu_1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"city":"Oslo"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "12 C"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "And tomorrow?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                ],
            },
        ],
        "stop": ["END"],
        "temperature": 0.5,
        "top_p": 0.9,
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "weather",
                    "parameters": {"type": "object", "properties": {}},
                    "description": "Weather",
                },
            }
        ],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "user": "u-1",
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_a_failed_tool_result_says_so_in_the_text() -> None:
    body = {
        "model": "m",
        "max_tokens": 5,
        "messages": [
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "t", "content": "boom", "is_error": True}],
            }
        ],
    }
    assert chat_body(body)["messages"] == [{"role": "tool", "tool_call_id": "t", "content": "Error: boom"}]


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"max_tokens": None}, "max_tokens"),
        ({"messages": [{"role": "system", "content": "x"}]}, "messages[0].role"),
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0].type"),
        ({"stop_sequences": ["a", "b", "c", "d", "e"]}, "stop_sequences"),
        ({"mcp_servers": [{"url": "x"}]}, "mcp_servers"),
        ({"messages": [{"role": "user", "content": [{"type": "search_result"}]}]}, "messages[0].content[0].type"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "image"}]}],
                    }
                ]
            },
            "messages[0].content[0].content[0].type",
        ),
        ({"temperature": 1.5}, "temperature"),
    ],
)
def test_refused_fields_are_a_400_naming_the_field(change: dict[str, Any], param: str) -> None:
    body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], **change}
    body = {k: v for k, v in body.items() if v is not None}
    with pytest.raises(InvalidRequest) as caught:
        chat_body(body)
    assert caught.value.param == param


def test_count_tokens_needs_no_max_tokens_and_grows_with_the_input() -> None:
    small = chat_body({"model": "m", "messages": [{"role": "user", "content": "hi"}]}, for_counting=True)
    big = chat_body(
        {"model": "m", "messages": [{"role": "user", "content": "hi" * 400}], "tools": [TOOL]}, for_counting=True
    )
    assert estimate_input_tokens(small) == 5  # ceil(2 / 4) + 4 per message
    assert estimate_input_tokens(big) > 200


COMPLETION = {
    "id": "chatcmpl-abc",
    "object": "chat.completion",
    "model": "up/echo",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Let me look.",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"city":"Oslo"}'},
                    }
                ],
            },
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {
        "prompt_tokens": 20,
        "completion_tokens": 7,
        "total_tokens": 27,
        "prompt_tokens_details": {"cached_tokens": 5},
    },
    "ultra": {"strategy": "direct"},
}


def test_a_completion_becomes_a_message() -> None:
    assert message_from_chat(COMPLETION, model="ultra-speed") == {
        "id": "msg_abc",
        "type": "message",
        "role": "assistant",
        "model": "ultra-speed",
        "content": [
            {"type": "text", "text": "Let me look."},
            {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Oslo"}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 15,
            "output_tokens": 7,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 5,
        },
        "ultra": {"strategy": "direct"},
    }


@pytest.mark.parametrize(
    ("finish", "stop"), [("stop", "end_turn"), ("length", "max_tokens"), ("content_filter", "refusal")]
)
def test_stop_reasons(finish: str, stop: str) -> None:
    completion = {"id": "x", "choices": [{"message": {"content": "a"}, "finish_reason": finish}]}
    assert message_from_chat(completion, model="m")["stop_reason"] == stop


def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"id": "chatcmpl-s", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}


def test_chunks_become_the_named_events_with_sequential_block_indices() -> None:
    stream = MessageStream(model="m", input_tokens=9)
    events: list[Any] = []
    for c in [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Hi"}),
        chunk({"content": " there"}),
        chunk(
            {"tool_calls": [{"index": 0, "id": "c1", "type": "function", "function": {"name": "f", "arguments": ""}}]}
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
        chunk(
            {"tool_calls": [{"index": 1, "id": "c2", "type": "function", "function": {"name": "g", "arguments": "{}"}}]}
        ),
        chunk({}, "tool_calls"),
        {
            "id": "chatcmpl-s",
            "choices": [],
            "usage": {"prompt_tokens": 9, "completion_tokens": 4},
            "ultra": {"cache": "miss"},
        },
    ]:
        events += stream.feed(c)
    events += stream.finish()
    names = [name for name, _ in events]
    assert names == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    starts = [data for name, data in events if name == "content_block_start"]
    assert [s["index"] for s in starts] == [0, 1, 2]
    assert starts[1]["content_block"] == {"type": "tool_use", "id": "c1", "name": "f", "input": {}}
    assert events[0][1]["message"]["usage"] == {"input_tokens": 9, "output_tokens": 0}
    assert events[0][1]["message"]["id"] == "msg_s"
    assert events[6][1] == {
        "type": "content_block_delta",
        "index": 1,
        "delta": {"type": "input_json_delta", "partial_json": '{"a":'},
    }
    delta = events[-2][1]
    assert delta["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert delta["usage"]["output_tokens"] == 4
    assert delta["ultra"] == {"cache": "miss"}


def test_an_empty_stream_still_opens_and_closes_the_message() -> None:
    names = [name for name, _ in MessageStream(model="m", input_tokens=1).finish()]
    assert names == ["message_start", "message_delta", "message_stop"]


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (InvalidRequest("bad"), "invalid_request_error"),
        (ModelNotFound("none"), "not_found_error"),
        (RateLimited("slow down"), "rate_limit_error"),
        (UpstreamTimeout("late"), "api_error"),
    ],
)
def test_errors_in_anthropic_shape(error: Any, kind: str) -> None:
    assert error_body(error) == {"type": "error", "error": {"type": kind, "message": error.message}}
