"""The Responses inbound dialect on golden payloads: request → chat body, chat answer → response object, chat
chunks → the typed stream events; and the per-key store behind `previous_response_id`."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.cache.stored_responses import MemoryResponseStore, StoredResponse
from gateway.core.errors import InvalidRequest, UpstreamTimeout
from gateway.dialects.responses import ResponseEvents, output_messages, response_from_chat, translate

SCHEMA = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}


def test_a_full_request_maps_every_field() -> None:
    body = {
        "model": "ultra-cost",
        "instructions": "Be brief.",
        "input": [
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "Look: "},
                    {"type": "input_image", "image_url": "https://x/y.png", "detail": "low"},
                ],
            },
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": '{"x":1}'},
            {"type": "function_call", "call_id": "c2", "name": "g", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "one"},
            {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "two"}]},
        ],
        "tools": [{"type": "function", "name": "f", "description": "F", "parameters": SCHEMA, "strict": True}],
        "tool_choice": {"type": "function", "name": "f"},
        "parallel_tool_calls": False,
        "text": {"format": {"type": "json_schema", "name": "out", "schema": SCHEMA, "strict": True}},
        "max_output_tokens": 50,
        "temperature": 0.2,
        "top_p": 0.5,
        "safety_identifier": "user-9",
        "reasoning": {"effort": "low"},
        "stream": True,
        "store": False,
        "metadata": {"k": "v"},
    }
    call = translate(body, history=[{"role": "user", "content": "earlier"}])
    assert call.chat == {
        "model": "ultra-cost",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "earlier"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Look: "},
                    {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}},
                ],
            },
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"x":1}'}},
                    {"id": "c2", "type": "function", "function": {"name": "g", "arguments": "{}"}},
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "one"},
            {"role": "tool", "tool_call_id": "c2", "content": "two"},
        ],
        "tools": [
            {"type": "function", "function": {"name": "f", "parameters": SCHEMA, "description": "F", "strict": True}}
        ],
        "tool_choice": {"type": "function", "function": {"name": "f"}},
        "parallel_tool_calls": False,
        "response_format": {"type": "json_schema", "json_schema": {"name": "out", "schema": SCHEMA, "strict": True}},
        "max_completion_tokens": 50,
        "temperature": 0.2,
        "top_p": 0.5,
        "user": "user-9",
        "reasoning_effort": "low",
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    assert call.store is False
    assert call.conversation[0] == {"role": "user", "content": "earlier"}
    assert call.conversation[-1]["role"] == "tool"
    assert call.echo["metadata"] == {"k": "v"}
    assert call.echo["text"]["format"]["type"] == "json_schema"


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"input": [{"type": "item_reference", "id": "x"}]}, "input[0].type"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]},
            "input[0].content[0].image_url",
        ),
        ({"background": True}, "background"),
        ({"conversation": "conv_1"}, "conversation"),
        ({"text": {"format": {"type": "grammar"}}}, "text.format.type"),
        ({"max_output_tokens": 0}, "max_output_tokens"),
        ({"input": []}, "input"),
        ({"model": ""}, "model"),
    ],
)
def test_refused_fields_are_a_400_naming_the_field(change: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        translate({"model": "m", "input": "x", **change})
    assert caught.value.param == param


CALL = translate({"model": "m", "input": "hi", "instructions": "I"})


def test_a_completion_becomes_a_response() -> None:
    completion = {
        "id": "chatcmpl-1",
        "created": 7,
        "choices": [
            {
                "message": {
                    "content": "Sure.",
                    "tool_calls": [
                        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a":"b"}'}}
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 4}},
        "ultra": {"cache": "miss"},
    }
    response = response_from_chat(completion, CALL, response_id="resp_1", model="ultra-x")
    assert response["id"] == "resp_1"
    assert response["object"] == "response"
    assert response["status"] == "completed"
    assert response["created_at"] == 7
    assert response["model"] == "ultra-x"
    assert response["instructions"] == "I"
    assert response["ultra"] == {"cache": "miss"}
    message, call = response["output"]
    assert message["type"] == "message"
    assert message["content"] == [{"type": "output_text", "text": "Sure.", "annotations": [], "logprobs": []}]
    assert {k: call[k] for k in ("type", "call_id", "name", "arguments", "status")} == {
        "type": "function_call",
        "call_id": "call_1",
        "name": "f",
        "arguments": '{"a":"b"}',
        "status": "completed",
    }
    assert response["usage"] == {
        "input_tokens": 10,
        "input_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 0},
        "output_tokens": 3,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 13,
    }
    assert output_messages(response) == [
        {
            "role": "assistant",
            "content": "Sure.",
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a":"b"}'}}],
        }
    ]


def test_a_truncated_answer_is_incomplete() -> None:
    completion = {"choices": [{"message": {"content": "a"}, "finish_reason": "length"}]}
    response = response_from_chat(completion, CALL, response_id="r", model="m")
    assert response["status"] == "incomplete"
    assert response["incomplete_details"] == {"reason": "max_output_tokens"}


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"id": "c", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def test_chunks_become_the_event_sequence() -> None:
    events = ResponseEvents(CALL, response_id="resp_s", model="m")
    out = events.start()
    for c in [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Hi"}),
        chunk({"content": "!"}),
        chunk(
            {
                "tool_calls": [
                    {"index": 0, "id": "call_9", "type": "function", "function": {"name": "f", "arguments": ""}}
                ]
            }
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}),
        chunk({}, "tool_calls"),
        {"id": "c", "choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 1}, "ultra": {"x": 1}},
    ]:
        out += events.feed(c)
    out += events.finish()
    assert [e["type"] for e in out] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e["sequence_number"] for e in out] == list(range(len(out)))
    assert out[0]["response"]["status"] == "in_progress"
    assert out[2]["item"]["content"] == []
    assert out[6]["text"] == "Hi!"
    assert out[9]["output_index"] == 1
    assert out[9]["item"]["status"] == "in_progress"
    assert out[11]["arguments"] == "{}"
    final = out[-1]["response"]
    assert final == events.response
    assert [item["type"] for item in final["output"]] == ["message", "function_call"]
    assert final["usage"]["total_tokens"] == 3
    assert final["ultra"] == {"x": 1}


def test_a_failure_after_the_start_is_an_error_then_response_failed() -> None:
    events = ResponseEvents(CALL, response_id="resp_f", model="m")
    out = events.start() + events.feed(chunk({"content": "partial"}))
    failure = events.fail(UpstreamTimeout("too slow"))
    assert [e["type"] for e in failure] == ["error", "response.failed"]
    assert failure[0]["message"] == "too slow"
    assert failure[0]["code"] == "upstream_timeout"
    assert failure[0]["sequence_number"] == len(out)
    assert failure[1]["response"]["status"] == "failed"
    assert failure[1]["response"]["error"] == {"code": "upstream_timeout", "message": "too slow"}


async def test_the_memory_store_is_per_key_with_a_ttl_and_bounds() -> None:
    now = [0.0]
    store = MemoryResponseStore(ttl_s=10, max_entries=2, max_bytes=200, clock=lambda: now[0])
    entry = StoredResponse({"id": "r1"}, [{"role": "user", "content": "x"}])
    await store.put("team-a", "r1", entry)
    assert await store.get("team-a", "r1") == entry
    assert await store.get("team-b", "r1") is None
    assert not await store.delete("team-b", "r1")
    now[0] = 10.0
    assert await store.get("team-a", "r1") is None
    for name in ("a", "b", "c"):
        await store.put("k", name, entry)
    assert await store.get("k", "a") is None  # the oldest went first
    assert await store.delete("k", "c")
    assert await store.get("k", "c") is None
    await store.put("k", "big", StoredResponse({"id": "big"}, [{"content": "x" * 300}]))
    assert await store.get("k", "big") is None  # larger than the byte budget: not kept
    assert len(store) == 1
