"""A key's model globs bound what is done on its behalf: an alias runs on the deployments the key may use (or
refuses with 403 when none is left), and a direct request's fallbacks stay within them too."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests._app import in_process

CONFIG = """
cache: {enabled: false}
providers:
  - name: a
    kind: mock
    models:
      - {id: one, quality: 0.6, reply: "a1"}
      - {id: two, quality: 0.7, reply: "a2"}
      - {id: down, failure_rate: 1.0, quality: 0.1}
  - {name: b, kind: mock, models: [{id: best, quality: 0.99, reply: "b"}, {id: down, failure_rate: 1.0}]}
fallbacks:
  a/down: [b/best]
strategies:
  ultra-bonly: {kind: waterfall, chain: [b/best]}
model_groups:
  smart: {deployments: [b/best, a/two], routing: least_in_flight}
auth:
  keys:
    - {name: narrow, key: sk-narrow, models: ["a/*", "ultra-*"]}
    - {name: wide, key: sk-wide}
    - {name: grouped, key: sk-grouped, models: ["smart"]}
"""
NARROW, WIDE = {"authorization": "Bearer sk-narrow"}, {"authorization": "Bearer sk-wide"}
GROUPED = {"authorization": "Bearer sk-grouped"}


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with in_process(CONFIG) as c:
        yield c


def body(model: str) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}]}


def called(response: httpx.Response) -> set[str]:
    assert response.status_code == 200, response.text
    return {f"{c['provider']}/{c['model']}" for c in response.json()["ultra"]["calls"]}


@pytest.mark.parametrize("alias", ["ultra-balanced", "ultra-simple", "ultra-quality", "ultra-cost", "ultra-speed"])
async def test_an_alias_runs_on_the_deployments_the_key_may_use(client: httpx.AsyncClient, alias: str) -> None:
    narrow = await client.post("/v1/chat/completions", json=body(alias), headers=NARROW)
    assert called(narrow) <= {"a/one", "a/two", "a/down"}
    # the same alias for a key without limits may reach b (the quality prior makes b/best the favourite)
    if alias in ("ultra-quality", "ultra-simple"):
        wide = await client.post("/v1/chat/completions", json=body(alias), headers=WIDE)
        assert "b/best" in called(wide)


async def test_an_alias_with_nothing_the_key_may_use_is_a_403(client: httpx.AsyncClient) -> None:
    refused = await client.post("/v1/chat/completions", json=body("ultra-bonly"), headers=NARROW)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "model_not_allowed"
    assert (await client.post("/v1/chat/completions", json=body("ultra-bonly"), headers=WIDE)).status_code == 200


async def test_fallbacks_stay_within_the_keys_models(client: httpx.AsyncClient) -> None:
    failed = await client.post("/v1/chat/completions", json=body("a/down"), headers=NARROW)
    assert failed.status_code == 502  # its fallback b/best is not this key's to use
    assert "b/best" not in failed.json()["error"]["message"]
    assert called(await client.post("/v1/chat/completions", json=body("a/down"), headers=WIDE)) == {"a/down", "b/best"}
    assert (await client.post("/v1/chat/completions", json=body("b/best"), headers=NARROW)).status_code == 403


async def test_a_model_group_name_stands_for_its_own_deployments(client: httpx.AsyncClient) -> None:
    for _ in range(4):  # allowed the group's name, the key may use what the group routes to
        assert called(await client.post("/v1/chat/completions", json=body("smart"), headers=GROUPED)) <= {
            "b/best",
            "a/two",
        }
    assert (await client.post("/v1/chat/completions", json=body("b/best"), headers=GROUPED)).status_code == 403
    assert (await client.post("/v1/chat/completions", json=body("smart"), headers=NARROW)).status_code == 403
