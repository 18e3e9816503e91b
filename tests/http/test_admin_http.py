"""The admin API in-process, on the memory key store: who may call it, what a created key can do at once, and
that it does not exist without an admin key."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from gateway.builder import build_gateway
from gateway.config import parse_settings
from gateway.http.app import create_app

CONFIG = """
providers:
  - name: mock
    kind: mock
    models: [{id: a}, {id: b}]
auth:
  admin_key_env: ADMIN
  keys:
    - {name: file-key, key: sk-file, budget: {usd: 3, period: month}}
"""
ENV = {"ADMIN": "the-admin"}
ADMIN = {"authorization": "Bearer the-admin"}


async def client_for(config: str, env: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    settings = parse_settings(config, env=env)
    gateway = build_gateway(settings, env=env)
    app = create_app(settings, gateway=gateway)
    await gateway.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as c:
            yield c
    finally:
        await gateway.aclose()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async for c in client_for(CONFIG, ENV):
        yield c


def chat(model: str) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}]}


async def test_admin_key_required_and_new_keys_work_at_once(client: httpx.AsyncClient) -> None:
    assert (await client.get("/admin/keys")).status_code == 401
    assert (await client.get("/admin/keys", headers={"authorization": "Bearer sk-file"})).status_code == 401
    bad = await client.post("/admin/keys", headers=ADMIN, json={"name": "x", "rpm": 0})
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "rpm"
    made = await client.post("/admin/keys", headers=ADMIN, json={"name": "x", "models": ["mock/a"]})
    assert made.status_code == 201
    key = {"authorization": f"Bearer {made.json()['key']}"}
    assert (await client.post("/v1/chat/completions", json=chat("mock/a"), headers=key)).status_code == 200
    assert (await client.post("/v1/chat/completions", json=chat("mock/b"), headers=key)).status_code == 403
    listed = (await client.get("/admin/keys", headers=ADMIN)).json()["data"]
    assert listed[0]["budget"] == {"usd": 3.0, "period": "month"}
    assert [k["name"] for k in listed] == ["file-key", "x"]
    assert (await client.delete("/admin/keys/x", headers=ADMIN)).status_code == 200
    assert (await client.post("/v1/chat/completions", json=chat("mock/a"), headers=key)).status_code == 401
    assert (await client.delete("/admin/keys/x", headers=ADMIN)).status_code == 404


async def test_no_admin_key_no_admin_api() -> None:
    config = CONFIG.replace("  admin_key_env: ADMIN\n", "")
    async for client in client_for(config, {}):
        assert (await client.get("/admin/keys", headers=ADMIN)).status_code == 404
        assert (await client.post("/admin/reload", headers=ADMIN)).status_code == 404
