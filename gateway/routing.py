"""Model names → strategies: the aliases the configuration built, and a `Direct` strategy per `provider/model`
(or bare model id) with its fallback chain. The router also answers what the gateway serves (`/v1/models`,
metric labels) and whether a key may use a name."""

from __future__ import annotations

from collections.abc import Mapping

from gateway.auth import Authenticator, Principal
from gateway.core.errors import ModelNotFound
from gateway.core.pool import ProviderPool
from strategies.base import Strategy
from strategies.direct import Direct

__all__ = ["Router"]


class Router:
    def __init__(self, pool: ProviderPool, strategies: Mapping[str, Strategy]) -> None:
        self.pool = pool
        self.strategies = dict(strategies)
        self._direct: dict[str, Direct] = {}

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

    def authorized(self, principal: Principal, model: str) -> Strategy:
        """The strategy for `model`, if the key's model globs allow it (403 otherwise, 404 if unknown)."""
        Authenticator.authorize(principal, model)
        return self.route(model)
