"""The strategy registry, driven the way CONTRIBUTING.md says a kind is added: a module's worth of code (an
options model, a strategy, a `Kind`) and one entry in the table. The kind is registered into a copy of the
table, so the real registry is untouched, and then validated, built, chosen by adaptive and run on the real mock
provider."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import pytest
from pydantic import Field

from gateway.core.pool import Deployment, ProviderPool
from gateway.core.types import ChatRequest, parse_chat_request
from gateway.providers.mock import MockModel, MockProvider
from strategies import BUILTIN_ALIASES, KINDS, Kind, Options, build_strategies, validate_options
from strategies._common import ReplayStream
from strategies.adaptive import Adaptive
from strategies.base import Strategy, StrategyContext, StrategyMeta, StrategyResult, StrategyStream

pytestmark = [pytest.mark.timeout(30), pytest.mark.virtual_time]


# --- the new kind: what `strategies/first.py` would hold ----------------------------------------------------


class FirstOptions(Options):
    # every option has a default: the built-in alias `ultra-first` is built with none
    deployments: list[str] = Field(default_factory=lambda: ["m/a"], min_length=1, description="The first answers.")


class First:
    """Asks the first configured deployment, nothing else."""

    def __init__(self, name: str, options: FirstOptions) -> None:
        self.name = name
        self.options = options

    async def complete(self, request: ChatRequest, pool: ProviderPool, ctx: StrategyContext) -> StrategyResult:
        deployment = pool.resolve(self.options.deployments[0])
        response = await ctx.call(deployment, request)
        ctx.meta.served_by.append(deployment)
        return StrategyResult(response, ctx.meta)

    @asynccontextmanager
    async def stream(
        self, request: ChatRequest, pool: ProviderPool, ctx: StrategyContext
    ) -> AsyncIterator[StrategyStream]:
        result = await self.complete(request, pool, ctx)
        yield ReplayStream(result.response, ctx.meta)


def build_first(alias: str, options: FirstOptions, arms: Mapping[str, Strategy]) -> Strategy:
    return First(alias, options)


FIRST = Kind(FirstOptions, build_first)

# --- and the one line in the table ----------------------------------------------------------------------------

WITH_FIRST = {**KINDS, "first": FIRST}

DEPLOYMENTS = {"m/a", "m/b"}


def pool() -> ProviderPool:
    provider = MockProvider("m", {"a": MockModel(reply="a says {prompt}"), "b": MockModel(reply="b says {prompt}")})
    return ProviderPool([Deployment(provider, "a"), Deployment(provider, "b")])


def request(text: str = "hi") -> ChatRequest:
    return parse_chat_request({"model": "ultra-mine", "messages": [{"role": "user", "content": text}]})


def test_builtin_aliases_are_the_table_in_order() -> None:
    assert BUILTIN_ALIASES == (
        "ultra-simple",
        "ultra-parallel",
        "ultra-waterfall",
        "ultra-balanced",
        "ultra-adaptive",
        "ultra-cost",
        "ultra-quality",
        "ultra-speed",
    )
    assert tuple(f"ultra-{name}" for name, kind in KINDS.items() if kind.builtin) == BUILTIN_ALIASES
    assert "ultra-group" not in BUILTIN_ALIASES  # a group needs its deployments: there is no default one


def test_an_unknown_kind_is_an_error_naming_the_known_ones() -> None:
    errors = validate_options("first", {"deployments": ["m/a"]}, DEPLOYMENTS)
    assert errors == [
        (
            "kind",
            "unknown strategy kind 'first' (one of: simple, parallel, waterfall, balanced, adaptive, cost, "
            "quality, speed, group)",
        )
    ]


def test_a_registered_kind_validates_its_options() -> None:
    assert validate_options("first", {"deployments": ["m/b"]}, DEPLOYMENTS, kinds=WITH_FIRST) == []
    assert validate_options("first", {"deployments": ["m/b"], "x": 1}, DEPLOYMENTS, kinds=WITH_FIRST) == [
        ("x", "unknown key")
    ]
    assert validate_options("first", {"deployments": []}, DEPLOYMENTS, kinds=WITH_FIRST) == [
        ("deployments", "List should have at least 1 item after validation, not 0")
    ]


def test_a_registered_kind_is_an_adaptive_arm() -> None:
    options: dict[str, Any] = {"arms": ["first", "cost"]}
    assert validate_options("adaptive", options, DEPLOYMENTS, kinds=WITH_FIRST) == []
    [(path, message)] = validate_options("adaptive", options, DEPLOYMENTS)
    assert path == "arms[0]"
    assert message.startswith("unknown arm 'first' (one of: simple, parallel, waterfall, balanced, cost, ")
    # the registry's own arms never include a kind that chooses among arms
    assert "adaptive" not in message


async def test_a_registered_kind_is_built_and_answers() -> None:
    built = build_strategies(
        {"ultra-mine": ("first", {"deployments": ["m/b", "m/a"]}), "ultra-pick": ("adaptive", {"arms": ["first"]})},
        kinds=WITH_FIRST,
    )
    # the configured aliases, then every built-in of the extended table (the new kind's included)
    assert set(built) == {"ultra-mine", "ultra-pick", "ultra-first", *BUILTIN_ALIASES}
    mine = built["ultra-mine"]
    assert isinstance(mine, First)

    clock = asyncio.get_running_loop().time  # virtual time
    ctx = StrategyContext(meta=StrategyMeta(mine.name), deadline=clock() + 60, clock=clock)
    result = await mine.complete(request(), pool(), ctx)
    assert result.response.content == "b says hi"
    assert [(a.deployment.name, a.status) for a in ctx.meta.attempts] == [("m/b", "ok")]
    assert ctx.meta.providers == ["m/b"]

    pick = built["ultra-pick"]
    assert isinstance(pick, Adaptive)
    assert pick.arms == {"first": built["ultra-first"]}  # the arm is the built-in alias, with default options
    ctx = StrategyContext(meta=StrategyMeta(pick.name), deadline=clock() + 60, clock=clock)
    result = await pick.complete(request(), pool(), ctx)
    assert result.response.content == "a says hi"
    assert ctx.meta.chosen_strategy == "first"


def test_the_real_table_is_not_changed_by_a_copy() -> None:
    assert "first" not in KINDS
    assert "ultra-first" not in build_strategies({})
