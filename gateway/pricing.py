"""The highest prices a model name can cost: what a budget holds for a request before it runs.

For a deployment (`provider/model` or a bare id), its own prices and those of its fallbacks; for an alias, the
deployments its options name (candidates, chain, judge, ...), or every deployment when it names none (the
built-in aliases choose among all of them). Input and output are maxed separately, so the hold is never below
what any single deployment the request may reach would charge.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from gateway.core.errors import ModelNotFound
from gateway.core.pool import Deployment, ProviderPool
from gateway.settings import Settings

__all__ = ["price_table"]

Prices = tuple[float, float]  # USD per million input tokens, per million output tokens


def _highest(deployments: Iterable[Deployment]) -> Prices:
    chosen = list(deployments)
    if not chosen:
        return 0.0, 0.0
    return max(d.input_cost_per_mtok for d in chosen), max(d.output_cost_per_mtok for d in chosen)


def _named(node: Any, known: set[str]) -> set[str]:
    if isinstance(node, str):
        return {node} if node in known else set()
    if isinstance(node, dict):
        return set().union(*(_named(v, known) for v in node.values())) if node else set()
    if isinstance(node, list | tuple):
        return set().union(*(_named(v, known) for v in node)) if node else set()
    return set()


def price_table(settings: Settings, pool: ProviderPool) -> Callable[[str], Prices]:
    everything = _highest(pool.values())
    known = set(pool)
    aliases = {
        alias: _highest(pool[n] for n in _named(s.model_extra or {}, known))
        if _named(s.model_extra or {}, known)
        else everything
        for alias, s in settings.strategies.items()
    }
    cache: dict[str, Prices] = {}

    def prices(model: str) -> Prices:
        found = cache.get(model)
        if found is not None:
            return found
        found = aliases.get(model)
        if found is None:
            try:
                deployment = pool.resolve(model)
            except ModelNotFound:
                found = everything  # a built-in alias (or a name the router will refuse anyway)
            else:
                chain = [deployment, *(pool[n] for n in pool.fallbacks.get(deployment.name, []) if n in pool)]
                found = _highest(chain)
        if len(cache) < 4096:
            cache[model] = found
        return found

    return prices
