"""The mock fleet as agents need it: a tool result gets a text answer, tools get schema-valid arguments, and
`response_format` json_schema gets JSON valid against the schema."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from gateway.core.provider import CallOptions
from gateway.core.types import parse_chat_request
from gateway.providers._schema_instance import instance_of
from gateway.providers.mock import MockModel, MockProvider

MOCK = MockProvider("mock", {"m": MockModel(reply="said: {prompt}")})
OPTIONS = CallOptions(deadline=time.monotonic() + 3600)
TOOL = {
    "type": "function",
    "function": {
        "name": "book",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "minLength": 6},
                "nights": {"type": "integer", "minimum": 2, "maximum": 9},
                "price": {"type": "number", "exclusiveMinimum": 10},
                "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
                "class": {"enum": ["economy", "business"]},
                "member": {"type": "boolean"},
                "note": {"type": ["string", "null"]},
            },
            "required": ["city", "nights", "price", "tags", "class", "member"],
        },
    },
}


async def answer(**body: Any) -> dict[str, Any]:
    request = parse_chat_request({"model": "m", **body})
    response = await MOCK.complete(request, model="m", options=OPTIONS)
    result: dict[str, Any] = response.choices[0]
    return result


async def test_tools_are_called_with_schema_valid_arguments() -> None:
    choice = await answer(messages=[{"role": "user", "content": "book it"}], tools=[TOOL])
    assert choice["finish_reason"] == "tool_calls"
    call = choice["message"]["tool_calls"][0]["function"]
    assert call["name"] == "book"
    assert json.loads(call["arguments"]) == {
        "city": "cityxx",
        "nights": 2,
        "price": 10.5,
        "tags": ["tags", "tags"],
        "class": "economy",
        "member": True,
    }


async def test_after_a_tool_result_the_answer_is_text() -> None:
    messages = [
        {"role": "user", "content": "book it"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c", "type": "function", "function": {"name": "book", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "c", "content": "booked: ref 42"},
    ]
    choice = await answer(messages=messages, tools=[TOOL])
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["content"] == "said: booked: ref 42"
    assert "tool_calls" not in choice["message"]


async def test_json_schema_response_format_gets_a_valid_instance() -> None:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer"},
            "address": {"$ref": "#/$defs/Address"},
            "pets": {"type": "array", "items": {"$ref": "#/$defs/Pet"}},
            "nickname": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        },
        "required": ["name", "age", "address", "pets", "nickname"],
        "additionalProperties": False,
        "$defs": {
            "Address": {
                "type": "object",
                "properties": {"zip": {"type": "string", "format": "email"}},
                "required": ["zip"],
            },
            "Pet": {"type": "object", "properties": {"kind": {"const": "cat"}}, "required": ["kind"]},
        },
    }
    response_format = {"type": "json_schema", "json_schema": {"name": "person", "schema": schema, "strict": True}}
    choice = await answer(messages=[{"role": "user", "content": "who"}], response_format=response_format, max_tokens=1)
    assert choice["finish_reason"] == "stop"  # the JSON is whole, whatever the word limit
    assert json.loads(choice["message"]["content"]) == {
        "name": "name",
        "age": 0,
        "address": {"zip": "user@example.com"},
        "pets": [{"kind": "cat"}],
        "nickname": "nickname",
    }


async def test_json_object_response_format_is_an_object() -> None:
    choice = await answer(messages=[{"role": "user", "content": "hi"}], response_format={"type": "json_object"})
    assert json.loads(choice["message"]["content"]) == {"answer": "said: hi"}


@pytest.mark.parametrize(
    ("schema", "value"),
    [
        ({"type": "number", "minimum": 3, "maximum": 5}, 3),
        ({"type": "integer", "exclusiveMaximum": 0}, -1),
        ({"type": "string", "maxLength": 2}, "te"),
        ({"allOf": [{"type": "object", "properties": {"a": {"type": "boolean"}}, "required": ["a"]}]}, {"a": True}),
        ({"type": "object", "properties": {"b": {"type": "null"}}}, {"b": None}),
        ({"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}]}, [0, "text"]),
    ],
)
def test_schema_instances(schema: dict[str, Any], value: Any) -> None:
    assert instance_of(schema) == value


def test_a_recursive_schema_terminates() -> None:
    schema = {
        "$ref": "#/$defs/Node",
        "$defs": {"Node": {"type": "object", "properties": {"child": {"$ref": "#/$defs/Node"}}, "required": ["child"]}},
    }
    value = instance_of(schema)
    depth = 0
    while isinstance(value, dict):
        value, depth = value["child"], depth + 1
    assert 1 < depth < 20
