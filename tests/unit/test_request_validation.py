"""Request validation names the offending field in `param` and keeps unknown fields for passthrough."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.core.errors import InvalidRequest
from gateway.core.types import parse_chat_request

OK: dict[str, Any] = {"model": "p/m", "messages": [{"role": "user", "content": "hi"}]}


def test_unknown_fields_are_kept_untouched() -> None:
    body = {**OK, "seed": 7, "vendor_knob": {"deep": [1, 2]}, "logprobs": True, "top_logprobs": 2}
    request = parse_chat_request(body)
    assert request.body is body
    assert request.body["vendor_knob"] == {"deep": [1, 2]}
    assert not request.stream


def test_stream_with_include_usage() -> None:
    request = parse_chat_request({**OK, "stream": True, "stream_options": {"include_usage": True}})
    assert request.stream
    assert request.include_usage


@pytest.mark.parametrize(
    ("patch", "param"),
    [
        ({"model": ""}, "model"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user"}]}, "messages[0]"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0]"),
        ({"temperature": 3}, "temperature"),
        ({"n": 0}, "n"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]}, "tools[0].function.name"),
        ({"response_format": {"type": "yaml"}}, "response_format.type"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"top_logprobs": 3}, "top_logprobs"),
    ],
)
def test_invalid_fields_are_named(patch: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_chat_request({**OK, **patch})
    assert caught.value.param == param
    assert caught.value.status == 400
    body = caught.value.to_body()["error"]
    assert set(body) == {"message", "type", "param", "code"}


@pytest.mark.parametrize("body", [[], "text", 3, None])
def test_body_must_be_an_object(body: Any) -> None:
    with pytest.raises(InvalidRequest):
        parse_chat_request(body)
