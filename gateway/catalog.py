"""What `/v1/models` says about each model name: OpenAI's fields (`id`, `object`, `created`, `owned_by`) plus
OpenRouter-style metadata where it is known — `pricing` (USD per token, as decimal strings), `context_length`,
`max_output_tokens`, `capabilities` and `supported_parameters` — and an `ultra` object saying whether the name is
a deployment, a model group or a strategy alias.

A deployment's prices come from its configuration; its capabilities are the configured flags, or else what its
provider kind declares. A model group over deployments shows the prices of its deployments as a range
(`pricing` too when they all cost the same), the smallest context length when every deployment states one, and
the capabilities every deployment shares. A strategy alias calls a varying number of models, so it has no price.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

from gateway.core.pool import Deployment, ProviderPool
from gateway.settings import ModelSettings, Settings

__all__ = ["Catalog"]

_BASE_PARAMETERS = ("max_tokens", "temperature", "top_p", "stop", "seed", "frequency_penalty", "presence_penalty")
_PARAMETERS_OF = {
    "tools": ("tools", "tool_choice", "parallel_tool_calls"),
    "json_mode": ("response_format",),
    "structured_outputs": ("structured_outputs",),
    "reasoning": ("reasoning", "reasoning_effort"),
}


def per_token(per_million: float) -> str:
    """USD per million tokens → USD per token as a plain decimal string ('0.0000025', never '2.5e-06')."""
    value = (Decimal(repr(per_million)) / 1_000_000).normalize()
    return format(value, "f")


def _declared(deployment: Deployment) -> list[str]:
    caps = deployment.provider.capabilities
    flags = [name for name in ("streaming", "tools", "vision", "json_mode") if getattr(caps, name)]
    if caps.json_mode:
        flags.append("structured_outputs")
    if caps.embeddings:
        flags.append("embeddings")
    return flags


def _parameters(capabilities: Iterable[str], *, n: bool) -> list[str]:
    out = list(_BASE_PARAMETERS) + (["n"] if n else [])
    for flag in capabilities:
        out.extend(_PARAMETERS_OF.get(flag, ()))
    return list(dict.fromkeys(out))


class Catalog:
    """Built once from the configuration and the pool; `entry(name)` is the `/v1/models` object for a name."""

    def __init__(self, settings: Settings, pool: ProviderPool, *, created: int) -> None:
        self.created = created
        self._pool = pool
        self._models: dict[str, ModelSettings] = {f"{p.name}/{m.id}": m for p in settings.providers for m in p.models}
        self._groups = settings.model_groups
        self._kinds = {alias: s.kind for alias, s in settings.strategies.items()}
        self._entries: dict[str, dict[str, Any]] = {}

    def entry(self, name: str) -> dict[str, Any]:
        cached = self._entries.get(name)
        if cached is None:
            cached = self._entries[name] = self._build(name)
        return cached

    def _base(self, name: str, owner: str) -> dict[str, Any]:
        return {"id": name, "object": "model", "created": self.created, "owned_by": owner}

    def _build(self, name: str) -> dict[str, Any]:
        if name in self._pool:
            return self._deployment(name)
        group = self._groups.get(name)
        if group is not None and group.deployments is not None:
            return self._group(name, group.deployments, group.routing)
        out = self._base(name, "ultra-gateway")
        target = group.alias if group is not None and group.alias is not None else name
        kind = self._kinds.get(target) or target.removeprefix("ultra-")
        out["ultra"] = {"type": "alias", "strategy": kind} | ({"alias": target} if target != name else {})
        return out

    def _capabilities(self, name: str) -> list[str]:
        configured = self._models[name].capabilities
        return list(dict.fromkeys(configured)) if configured is not None else _declared(self._pool[name])

    def _deployment(self, name: str) -> dict[str, Any]:
        deployment, model = self._pool[name], self._models[name]
        out = self._base(name, deployment.provider.name)
        out["pricing"] = {
            "prompt": per_token(deployment.input_cost_per_mtok),
            "completion": per_token(deployment.output_cost_per_mtok),
        }
        if model.context_length is not None:
            out["context_length"] = model.context_length
        if model.max_output_tokens is not None:
            out["max_output_tokens"] = model.max_output_tokens
        capabilities = self._capabilities(name)
        out["capabilities"] = capabilities
        out["supported_parameters"] = _parameters(capabilities, n=deployment.provider.capabilities.n)
        out["ultra"] = {"type": "deployment"}
        return out

    def _group(self, name: str, members: Sequence[str], routing: str) -> dict[str, Any]:
        deployments = [self._pool[m] for m in members]
        out = self._base(name, "ultra-gateway")
        prompt = sorted({d.input_cost_per_mtok for d in deployments})
        completion = sorted({d.output_cost_per_mtok for d in deployments})
        if len(prompt) == 1 and len(completion) == 1:
            out["pricing"] = {"prompt": per_token(prompt[0]), "completion": per_token(completion[0])}
        out["pricing_range"] = {
            "prompt": {"min": per_token(prompt[0]), "max": per_token(prompt[-1])},
            "completion": {"min": per_token(completion[0]), "max": per_token(completion[-1])},
        }
        contexts = [self._models[m].context_length for m in members]
        if all(c is not None for c in contexts):
            out["context_length"] = min(c for c in contexts if c is not None)
        outputs = [self._models[m].max_output_tokens for m in members]
        if all(c is not None for c in outputs):
            out["max_output_tokens"] = min(c for c in outputs if c is not None)
        shared = _shared([self._capabilities(m) for m in members])
        out["capabilities"] = shared
        out["supported_parameters"] = _parameters(shared, n=all(d.provider.capabilities.n for d in deployments))
        out["ultra"] = {"type": "group", "routing": routing, "deployments": list(members)}
        return out


def _shared(lists: Sequence[Sequence[str]]) -> list[str]:
    common = set(lists[0]).intersection(*lists[1:]) if lists else set()
    return [flag for flag in lists[0] if flag in common] if lists else []
