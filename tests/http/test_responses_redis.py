"""Stored responses on Redis: two gateway instances (as two replicas would be) sharing one real redis-server
see each other's responses, per key; `store: false` keeps nothing; with Redis gone the answer still comes."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

import httpx
import pytest

from tests._app import in_process
from tests._redis import RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.timeout(30)]

A, B = {"authorization": "Bearer sk-a"}, {"authorization": "Bearer sk-b"}


def config(url: str) -> str:
    return f"""
providers:
  - name: fast
    kind: mock
    models: [{{id: echo, reply: "echo: {{prompt}}"}}]
cache: {{backend: redis, redis_url: "{url}", key_prefix: "t"}}
rate_limits: {{enabled: false}}
auth:
  keys:
    - {{name: team-a, key: sk-a}}
    - {{name: team-b, key: sk-b}}
"""


def replica(url: str) -> AbstractAsyncContextManager[httpx.AsyncClient]:
    return in_process(config(url))


async def test_a_response_stored_by_one_replica_is_read_and_chained_by_another(redis_url: str) -> None:
    async with replica(redis_url) as one, replica(redis_url) as two:
        made = (await one.post("/v1/responses", json={"model": "fast/echo", "input": "remember me"}, headers=A)).json()
        fetched = await two.get(f"/v1/responses/{made['id']}", headers=A)
        assert fetched.json()["output"] == made["output"]
        assert (await two.get(f"/v1/responses/{made['id']}", headers=B)).status_code == 404
        chained = await two.post(
            "/v1/responses",
            json={"model": "fast/echo", "input": "and now?", "previous_response_id": made["id"], "stream": True},
            headers=A,
        )
        assert chained.status_code == 200
        assert "response.completed" in chained.text
        unkept = (
            await one.post("/v1/responses", json={"model": "fast/echo", "input": "x", "store": False}, headers=A)
        ).json()
        assert (await two.get(f"/v1/responses/{unkept['id']}", headers=A)).status_code == 404
        assert (await two.delete(f"/v1/responses/{made['id']}", headers=A)).json()["deleted"] is True
        assert (await one.get(f"/v1/responses/{made['id']}", headers=A)).status_code == 404


async def test_with_redis_gone_the_answer_still_comes_and_chaining_is_a_503(redis_server_owned: RedisServer) -> None:
    async with replica(redis_server_owned.url) as client:
        made = (await client.post("/v1/responses", json={"model": "fast/echo", "input": "x"}, headers=A)).json()
        redis_server_owned.stop()
        answered = await client.post("/v1/responses", json={"model": "fast/echo", "input": "still here?"}, headers=A)
        assert answered.status_code == 200
        assert answered.json()["output"][0]["content"][0]["text"] == "echo: still here?"
        chained = await client.post(
            "/v1/responses", json={"model": "fast/echo", "input": "x", "previous_response_id": made["id"]}, headers=A
        )
        assert chained.status_code == 503
