"""The chat route's SSE sender: what is ready together goes out together, and nothing waits for a later chunk."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson

from gateway.core.errors import UpstreamConnectionError
from gateway.http.routes.chat import _send_events


def event(chunk: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


async def test_ready_chunks_share_a_message_and_a_wait_flushes_them_first() -> None:
    upstream_may_continue = asyncio.Event()
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        upstream_may_continue.set()  # the next chunk exists only after the first ones reached the client

    async def chunks() -> AsyncIterator[dict[str, Any]]:
        yield {"n": 1}
        yield {"n": 2}
        await upstream_may_continue.wait()  # would never end if the sender held 1 and 2 back
        yield {"n": 3}
        yield {"n": 4}

    waits: list[int] = []
    await _send_events(chunks(), send, "req_1", before_wait=lambda: waits.append(len(sent)))
    assert waits == [1]  # called once, before the one wait, after the ready chunks went out
    bodies = [m["body"] for m in sent]
    assert bodies == [event({"n": 1}) + event({"n": 2}), event({"n": 3}) + event({"n": 4}) + b"data: [DONE]\n\n"]
    assert [m["more_body"] for m in sent] == [True, False]


async def test_a_failure_after_some_chunks_sends_them_then_one_error_event() -> None:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def chunks() -> AsyncIterator[dict[str, Any]]:
        yield {"n": 1}
        raise UpstreamConnectionError("up: the stream ended before it was complete")

    await _send_events(chunks(), send, "req_1")
    body = b"".join(m["body"] for m in sent)
    assert body.startswith(event({"n": 1}) + b"data: ")
    error = orjson.loads(body[len(event({"n": 1})) + 6 :].split(b"\n\n")[0])
    assert "stream ended" in error["error"]["message"]
    assert sent[-1]["more_body"] is False
