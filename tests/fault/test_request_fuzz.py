"""Property: whatever JSON a client sends as a chat request, the in-process app never answers 500. Bodies are
built around the schema (right fields with wrong types, wrong values, odd nesting, unknown fields, huge and
odd strings), so most reach the validator's corners rather than stopping at "not an object"."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests._app import in_process

CONFIG = """
providers:
  - name: fast
    kind: mock
    models:
      - {id: echo, reply: "echo: {prompt}"}
cache: {enabled: true, backend: memory}
"""

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=20,
)
roles = st.one_of(st.sampled_from(["system", "developer", "user", "assistant", "tool", "function"]), json_values)
content = st.one_of(
    st.text(max_size=60),
    st.lists(
        st.fixed_dictionaries(
            {"type": st.one_of(st.sampled_from(["text", "image_url"]), json_values)},
            optional={"text": json_values, "image_url": json_values},
        ),
        max_size=3,
    ),
    json_values,
)
message = st.fixed_dictionaries(
    {"role": roles},
    optional={"content": content, "name": json_values, "tool_call_id": json_values, "tool_calls": json_values},
)
models = st.one_of(
    st.sampled_from(["fast/echo", "echo", "ultra-simple", "ultra-waterfall", "ultra-parallel", "nope/none", ""]),
    st.text(max_size=30),
    json_values,
)
known = {
    "stream": json_values,
    "stream_options": st.one_of(st.fixed_dictionaries({"include_usage": json_values}), json_values),
    "temperature": json_values,
    "top_p": json_values,
    "n": st.one_of(st.integers(min_value=-3, max_value=200), json_values),
    "max_tokens": json_values,
    "max_completion_tokens": json_values,
    "stop": json_values,
    "presence_penalty": json_values,
    "frequency_penalty": json_values,
    "logprobs": json_values,
    "top_logprobs": json_values,
    "seed": json_values,
    "tools": st.one_of(
        st.lists(
            st.fixed_dictionaries(
                {"type": st.one_of(st.just("function"), json_values)},
                optional={
                    "function": st.fixed_dictionaries({"name": json_values}, optional={"parameters": json_values})
                },
            ),
            max_size=2,
        ),
        json_values,
    ),
    "tool_choice": json_values,
    "response_format": st.one_of(st.fixed_dictionaries({"type": json_values}), json_values),
    "user": json_values,
    "metadata": json_values,
}
requests = st.one_of(
    st.fixed_dictionaries(
        {"model": models, "messages": st.one_of(st.lists(message, max_size=3), json_values)}, optional=known
    ),
    json_values,
)


@dataclass
class App:
    loop: asyncio.AbstractEventLoop
    client: httpx.AsyncClient

    def post(self, body: Any) -> httpx.Response:
        request = self.client.post("/v1/chat/completions", content=json.dumps(body))
        return self.loop.run_until_complete(asyncio.wait_for(request, 10))


@pytest.fixture(scope="module")
def app() -> Iterator[App]:
    """One gateway for every example (building one per example would cost most of the run)."""
    loop = asyncio.new_event_loop()
    serving = in_process(CONFIG)
    client = loop.run_until_complete(serving.__aenter__())
    try:
        yield App(loop, client)
    finally:
        loop.run_until_complete(serving.__aexit__(None, None, None))
        loop.close()


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(body=requests)
def test_no_request_body_is_a_500(app: App, body: Any) -> None:
    response = app.post(body)
    assert response.status_code != 500, (body, response.text[:500])
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
