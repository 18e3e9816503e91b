"""Orchestration strategies. Imports `gateway.core` only (enforced by import-linter).

`build_strategies(aliases)` turns the config's aliases into Strategy objects; `validate_options(kind, options,
deployments)` is what the config loader calls, so a bad option fails at start with its path.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from pydantic import Field, ValidationError

from strategies._common import Options
from strategies.adaptive import Adaptive, AdaptiveOptions
from strategies.base import Strategy
from strategies.cascade import Cost, CostOptions, Waterfall, WaterfallOptions
from strategies.racing import Balanced, BalancedOptions, Parallel, ParallelOptions, Speed, SpeedOptions
from strategies.simple import Simple, SimpleOptions

__all__ = ["BUILTIN_ALIASES", "KINDS", "QualityOptions", "build_strategies", "validate_options"]


class QualityOptions(Options):
    k: int = Field(3, ge=1, le=8, description="Proposers: the k best deployments by quality.")
    aggregator: str | None = Field(None, description="Synthesises (default: the best by quality).")
    self_moa: bool = Field(False, description="Self-MoA: k samples of the single best model instead.")
    analysis: bool = False


KINDS: dict[str, type[Options]] = {
    "simple": SimpleOptions,
    "parallel": ParallelOptions,
    "waterfall": WaterfallOptions,
    "balanced": BalancedOptions,
    "adaptive": AdaptiveOptions,
    "cost": CostOptions,
    "quality": QualityOptions,
    "speed": SpeedOptions,
}
BUILTIN_ALIASES: tuple[str, ...] = tuple(f"ultra-{kind}" for kind in KINDS)
_REFERENCES = ("candidates", "chain", "lead", "judge", "aggregator")


def validate_options(kind: str, options: Mapping[str, Any], deployments: Collection[str]) -> list[tuple[str, str]]:
    """Errors as (path inside the alias, message); empty when valid."""
    if kind not in KINDS:
        return [("kind", f"unknown strategy kind {kind!r} (one of: {', '.join(KINDS)})")]
    try:
        parsed = KINDS[kind].model_validate(dict(options))
    except ValidationError as exc:
        return [
            (".".join(str(p) for p in e["loc"]), "unknown key" if e["type"] == "extra_forbidden" else e["msg"])
            for e in exc.errors(include_url=False)
        ]
    errors = []
    for field in _REFERENCES:
        value = getattr(parsed, field, None)
        for i, name in enumerate([value] if isinstance(value, str) else value or ()):
            if name not in deployments:
                path = field if isinstance(value, str) else f"{field}[{i}]"
                errors.append((path, f"unknown deployment {name!r} (use PROVIDER/MODEL)"))
    return errors


def _build(alias: str, kind: str, options: Mapping[str, Any], arms: Mapping[str, Strategy]) -> Strategy:
    parsed = KINDS[kind].model_validate(dict(options))
    if isinstance(parsed, SimpleOptions):
        return Simple(alias, parsed)
    if isinstance(parsed, QualityOptions):
        simple = SimpleOptions(
            lead=parsed.aggregator, analysis=parsed.analysis, self_samples=parsed.k if parsed.self_moa else 0
        )
        return Simple(alias, simple, default_k=parsed.k)
    if isinstance(parsed, ParallelOptions):
        return Parallel(alias, parsed)
    if isinstance(parsed, WaterfallOptions):
        return Waterfall(alias, parsed)
    if isinstance(parsed, BalancedOptions):
        return Balanced(alias, parsed)
    if isinstance(parsed, CostOptions):
        return Cost(alias, parsed)
    if isinstance(parsed, SpeedOptions):
        return Speed(alias, parsed)
    assert isinstance(parsed, AdaptiveOptions)
    return Adaptive(alias, parsed, arms)


def build_strategies(aliases: Mapping[str, tuple[str, Mapping[str, Any]]]) -> dict[str, Strategy]:
    """alias → (kind, options). Adaptive aliases choose among the built-in aliases' strategies."""
    built: dict[str, Strategy] = {}
    for alias, (kind, options) in aliases.items():
        if kind != "adaptive":
            built[alias] = _build(alias, kind, options, {})
    arms = {name.removeprefix("ultra-"): s for name, s in built.items() if name.removeprefix("ultra-") in KINDS}
    for kind in KINDS:  # an arm not configured as an alias gets its defaults
        if kind != "adaptive" and kind not in arms:
            arms[kind] = _build(f"ultra-{kind}", kind, {}, {})
    for alias, (kind, options) in aliases.items():
        if kind == "adaptive":
            built[alias] = _build(alias, kind, options, arms)
    return built
