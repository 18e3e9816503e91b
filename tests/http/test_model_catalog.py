"""Model groups and `/v1/models` metadata through HTTP, in-process, with the openai SDK as the client: groups are
model names like any other (listed, allowed by key globs, counted in metrics under their own name), and every
model carries pricing, context length and capabilities where configured, in a shape the SDK still parses."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import openai
import pytest

from gateway.catalog import per_token
from tests._app import in_process

pytestmark = pytest.mark.timeout(30)

CONFIG = """
providers:
  - name: azure-east
    kind: mock
    models:
      - {id: gpt-4o, input_cost_per_mtok: 2.5, output_cost_per_mtok: 10, context_length: 128000,
         max_output_tokens: 16384, capabilities: [streaming, tools, vision, structured_outputs], reply: "east"}
  - name: openai
    kind: mock
    models:
      - {id: gpt-4o, input_cost_per_mtok: 2.5, output_cost_per_mtok: 10, context_length: 128000,
         capabilities: [streaming, tools, structured_outputs], reply: "openai"}
      - {id: gpt-4o-mini, input_cost_per_mtok: 0.15, output_cost_per_mtok: 0.6, reply: "mini"}
cache: {enabled: false}
model_groups:
  gpt-4o: {deployments: [azure-east/gpt-4o, openai/gpt-4o], routing: weighted, weights: [3, 1]}
  mixed: {deployments: [openai/gpt-4o, openai/gpt-4o-mini], routing: least_in_flight}
  default: {alias: ultra-balanced}
auth:
  keys:
    - {name: all, key: sk-all}
    - {name: gpt, key: sk-gpt, models: ["gpt-*"]}
"""


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with in_process(CONFIG) as client:
        yield client


def sdk(http: httpx.AsyncClient, key: str = "sk-all") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url="http://gateway/v1", api_key=key, max_retries=0, http_client=http)


def test_prices_are_usd_per_token_as_plain_decimal_strings() -> None:
    assert per_token(2.5) == "0.0000025"
    assert per_token(0.15) == "0.00000015"
    assert per_token(10) == "0.00001"
    assert per_token(0) == "0"


async def test_the_sdk_lists_groups_aliases_and_deployments_with_their_metadata(http: httpx.AsyncClient) -> None:
    models = {m.id: m for m in (await sdk(http).models.list()).data}
    assert {"gpt-4o", "mixed", "default", "ultra-balanced", "azure-east/gpt-4o", "openai/gpt-4o-mini"} <= set(models)
    assert "ultra-group" not in models

    east = models["azure-east/gpt-4o"].model_dump()
    assert (east["object"], east["owned_by"], type(east["created"])) == ("model", "azure-east", int)
    assert east["pricing"] == {"prompt": "0.0000025", "completion": "0.00001"}
    assert (east["context_length"], east["max_output_tokens"]) == (128000, 16384)
    assert east["capabilities"] == ["streaming", "tools", "vision", "structured_outputs"]
    assert {"tools", "tool_choice", "structured_outputs"} <= set(east["supported_parameters"])

    mini = models["openai/gpt-4o-mini"].model_dump()
    assert "context_length" not in mini  # not configured: not invented
    assert "tools" in mini["capabilities"]  # not configured: what the provider kind declares

    group = models["gpt-4o"].model_dump()
    assert group["owned_by"] == "ultra-gateway"
    assert group["pricing"] == {"prompt": "0.0000025", "completion": "0.00001"}  # every member costs the same
    assert group["context_length"] == 128000
    assert group["capabilities"] == ["streaming", "tools", "structured_outputs"]  # what every member can do
    assert group["ultra"] == {
        "type": "group",
        "routing": "weighted",
        "deployments": ["azure-east/gpt-4o", "openai/gpt-4o"],
    }

    mixed = models["mixed"].model_dump()
    assert "pricing" not in mixed
    assert "context_length" not in mixed
    assert mixed["pricing_range"] == {
        "prompt": {"min": "0.00000015", "max": "0.0000025"},
        "completion": {"min": "0.0000006", "max": "0.00001"},
    }

    alias = models["default"].model_dump()
    assert "pricing" not in alias
    assert alias["ultra"] == {"type": "alias", "strategy": "balanced", "alias": "ultra-balanced"}

    retrieved = (await sdk(http).models.retrieve("gpt-4o")).model_dump()
    assert retrieved == group


async def test_a_group_is_served_and_counted_under_its_own_name(http: httpx.AsyncClient) -> None:
    client = sdk(http)
    answer = await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert answer.model == "gpt-4o"
    assert answer.choices[0].message.content in ("east", "openai")
    aliased = await client.chat.completions.create(model="default", messages=[{"role": "user", "content": "hi"}])
    assert aliased.model == "default"
    metrics = (await http.get("/metrics")).text
    assert 'ultra_requests_total{model="gpt-4o",strategy="gpt-4o",status="200"} 1' in metrics
    # a group over an alias is counted under the group's name, with the alias's strategy
    assert 'ultra_requests_total{model="default",strategy="ultra-balanced",status="200"} 1' in metrics


async def test_key_globs_allow_a_group_by_its_name(http: httpx.AsyncClient) -> None:
    client = sdk(http, "sk-gpt")
    listed = {m.id for m in (await client.models.list()).data}
    assert listed == {"gpt-4o"}
    answer = await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert answer.model == "gpt-4o"
    with pytest.raises(openai.PermissionDeniedError):
        await client.chat.completions.create(model="default", messages=[{"role": "user", "content": "hi"}])


async def test_embeddings_on_a_group_name_say_it_is_a_group(http: httpx.AsyncClient) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk(http).embeddings.create(model="gpt-4o", input="hi")
    assert "'gpt-4o' is a model group" in str(caught.value)
