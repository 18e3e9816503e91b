"""Deployments (a provider plus one upstream model, with price and quality) and the pool that routes names.

Routing: `PROVIDER/MODEL` names one deployment; a bare model id that exactly one provider serves
is routed there; strategy aliases are resolved by the service, not here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from gateway.core.errors import ModelNotFound
from gateway.core.provider import Provider
from gateway.core.redaction import bounded
from gateway.core.types import Usage

__all__ = ["Deployment", "ProviderPool"]


@dataclass(frozen=True, slots=True)
class Deployment:
    """One upstream model of one provider, as strategies see it."""

    provider: Provider
    model: str
    input_cost_per_mtok: float = 0.0
    output_cost_per_mtok: float = 0.0
    quality: float = 0.5
    max_concurrency: int | None = None
    name: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, "name", f"{self.provider.name}/{self.model}")

    def cost(self, usage: Usage | None) -> float:
        """USD for one call's usage at this deployment's prices."""
        if usage is None:
            return 0.0
        return (
            usage.prompt_tokens * self.input_cost_per_mtok + usage.completion_tokens * self.output_cost_per_mtok
        ) / 1_000_000

    @property
    def blended_price(self) -> float:
        """A single price for ranking: input and output per Mtok at a typical 3:1 prompt:completion mix."""
        return (3 * self.input_cost_per_mtok + self.output_cost_per_mtok) / 4


class ProviderPool(Mapping[str, Deployment]):
    """Every deployment by `provider/model`, the direct-request fallbacks, and bare-id routing."""

    def __init__(self, deployments: Iterable[Deployment], fallbacks: Mapping[str, list[str]] | None = None) -> None:
        self._by_name: dict[str, Deployment] = {d.name: d for d in deployments}
        self.fallbacks: dict[str, list[str]] = {k: list(v) for k, v in (fallbacks or {}).items()}
        by_bare: dict[str, list[Deployment]] = {}
        for deployment in self._by_name.values():
            by_bare.setdefault(deployment.model, []).append(deployment)
        self._unique_bare = {model: ds[0] for model, ds in by_bare.items() if len(ds) == 1}

    def __getitem__(self, name: str) -> Deployment:
        return self._by_name[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)

    def resolve(self, model: str) -> Deployment:
        """The deployment a direct request names; ModelNotFound otherwise."""
        deployment = self._by_name.get(model) or self._unique_bare.get(model)
        if deployment is None:
            raise ModelNotFound(
                f"The model '{bounded(model)}' does not exist or is not served by this gateway", param="model"
            )
        return deployment

    def restricted(self, keep: Callable[[str], bool]) -> ProviderPool:
        """The deployments whose `provider/model` name `keep` accepts, with the fallbacks among them."""
        kept = [d for d in self._by_name.values() if keep(d.name)]
        names = {d.name for d in kept}
        fallbacks = {k: [t for t in v if t in names] for k, v in self.fallbacks.items() if k in names}
        return ProviderPool(kept, fallbacks)

    def chain(self, deployment: Deployment) -> list[Deployment]:
        """The deployment followed by its configured fallbacks, in order."""
        return [deployment] + [self._by_name[name] for name in self.fallbacks.get(deployment.name, ())]

    @property
    def providers(self) -> list[Provider]:
        seen: dict[str, Provider] = {}
        for deployment in self._by_name.values():
            seen.setdefault(deployment.provider.name, deployment.provider)
        return list(seen.values())
