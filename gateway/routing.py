"""Model names → strategies: the aliases the configuration built, and a `Direct` strategy per `provider/model`
(or bare model id) with its fallback chain. The router also answers what the gateway serves (`/v1/models`,
metric labels) and whether a key may use a name.

A key's model globs bound everything done on its behalf, not only the name it sends: a key allowed `a/*` and
`ultra-*` runs an alias on the `a/*` deployments alone (403 when the alias has none of them), and a direct
request's fallbacks are limited to what the key may use too. A model group's name stands for its own
deployments, as a `provider/model` name does for itself."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gateway.auth import Authenticator, Principal
from gateway.core.errors import ModelNotFound
from gateway.core.pool import ProviderPool
from gateway.settings import Settings
from strategies import build_strategies
from strategies.base import Strategy
from strategies.direct import Direct

__all__ = ["Router"]


class Router:
    def __init__(
        self,
        pool: ProviderPool,
        strategies: Mapping[str, Strategy],
        *,
        members: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.pool = pool
        self.strategies = dict(strategies)
        self.members = {name: frozenset(names) for name, names in (members or {}).items()}
        self._direct: dict[str, Direct] = {}
        self._pools: dict[tuple[str, ...], ProviderPool] = {}  # per set of key globs

    @classmethod
    def from_settings(cls, settings: Settings, pool: ProviderPool) -> Router:
        """The aliases (built-in, configured), the model groups, and direct routing over `pool`."""
        aliases: dict[str, tuple[str, Mapping[str, Any]]] = {
            alias: (s.kind, s.model_extra or {}) for alias, s in settings.strategies.items()
        }
        for name, group in settings.model_groups.items():
            if group.deployments is not None:
                aliases[name] = ("group", group.options())
        strategies = build_strategies(aliases)
        for name, group in settings.model_groups.items():
            if group.alias is not None:
                strategies[name] = strategies[group.alias]  # the alias's own strategy, under another name
        groups = settings.model_groups.items()
        members = {name: g.deployments for name, g in groups if g.deployments is not None}
        return cls(pool, strategies, members=members)

    def model_ids(self) -> list[str]:
        """Every name a client may send: the aliases, then every `provider/model`."""
        return [*self.strategies, *self.pool]

    def known(self, model: str) -> bool:
        if model in self.strategies:
            return True
        try:
            self.pool.resolve(model)
        except ModelNotFound:
            return False
        return True

    def strategy_name(self, model: str) -> str:
        """The name spans and metrics use: the alias, or `direct`."""
        return model if model in self.strategies else "direct"

    def route(self, model: str) -> Strategy:
        strategy = self.strategies.get(model)
        if strategy is not None:
            return strategy
        direct = self._direct.get(model)
        if direct is None:
            direct = self._direct[model] = Direct.for_model(self.pool, model)
        return direct

    def authorized(self, principal: Principal, model: str) -> tuple[Strategy, ProviderPool]:
        """The strategy for `model` and the deployments it may call for this key: 403 when the key's globs do not
        allow `model`, 404 when it is unknown."""
        Authenticator.authorize(principal, model)
        if principal.models == ("*",):
            return self.route(model), self.pool
        strategy = self.strategies.get(model)
        members = self.members.get(model)
        if members is not None:  # a model group: the name the key was allowed stands for its deployments
            return strategy or self.route(model), self.pool.restricted(lambda n: n in members or principal.may_use(n))
        if strategy is not None:
            pool = self._pools.get(principal.models)
            if pool is None:
                pool = self._pools[principal.models] = self.pool.restricted(principal.may_use)
            return strategy, pool
        named = self.pool.resolve(model).name  # the name the key was allowed; its fallbacks only if allowed too
        pool = self.pool.restricted(lambda name: name == named or principal.may_use(name))
        return Direct.for_model(pool, model), pool
