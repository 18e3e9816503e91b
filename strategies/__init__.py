"""Orchestration strategies. Imports `gateway.core` only (enforced by import-linter).

`KINDS` is the one registry of strategy kinds: kind name → `Kind` (its options model and how to build it), one
line per kind, each contributed by the kind's own module. Everything else is derived from it: the built-in
aliases (`ultra-<kind>`), the config check `validate_options(kind, options, deployments)` (a bad option fails
at start with its path), `build_strategies(aliases)` (the config's aliases plus the built-ins as Strategy
objects) and the arms an adaptive alias chooses among.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from types import MappingProxyType
from typing import Any

from pydantic import ValidationError

from gateway.core.types import loc_path
from strategies import adaptive, cascade, group, quality, racing, simple
from strategies._common import Kind, Options
from strategies.base import Strategy
from strategies.quality import QualityOptions

__all__ = ["BUILTIN_ALIASES", "KINDS", "Kind", "Options", "QualityOptions", "build_strategies", "validate_options"]

KINDS: Mapping[str, Kind[Any]] = MappingProxyType(
    {
        "simple": simple.KIND,
        "parallel": racing.PARALLEL,
        "waterfall": cascade.WATERFALL,
        "balanced": racing.BALANCED,
        "adaptive": adaptive.KIND,
        "cost": cascade.COST,
        "quality": quality.KIND,
        "speed": racing.SPEED,
        "group": group.KIND,
    }
)
"""Kind name → Kind. Adding a kind: a module defining its options model and `Kind`, and one line here."""

BUILTIN_ALIASES: tuple[str, ...] = tuple(f"ultra-{name}" for name, kind in KINDS.items() if kind.builtin)
"""The aliases every gateway serves, with default options unless the config overrides them."""

_REFERENCES = ("candidates", "chain", "lead", "judge", "aggregator", "deployments")


def _arms(kinds: Mapping[str, Kind[Any]]) -> tuple[str, ...]:
    """The kinds an adaptive alias may choose among: every kind that does not itself choose."""
    return tuple(name for name, kind in kinds.items() if kind.builtin and not kind.takes_arms)


def _parse(kind: str, options: Mapping[str, Any], kinds: Mapping[str, Kind[Any]]) -> Options:
    parsed: Options = kinds[kind].options.model_validate(dict(options), context={"arms": _arms(kinds)})
    return parsed


def validate_options(
    kind: str,
    options: Mapping[str, Any],
    deployments: Collection[str],
    *,
    kinds: Mapping[str, Kind[Any]] = KINDS,
) -> list[tuple[str, str]]:
    """Errors as (path inside the alias, message); empty when valid."""
    if kind not in kinds:
        return [("kind", f"unknown strategy kind {kind!r} (one of: {', '.join(kinds)})")]
    try:
        parsed = _parse(kind, options, kinds)
    except ValidationError as exc:
        return [
            (
                loc_path(tuple(e["loc"])),
                "unknown key" if e["type"] == "extra_forbidden" else e["msg"].removeprefix("Value error, "),
            )
            for e in exc.errors(include_url=False)
        ]
    errors = []
    for field in _REFERENCES:
        value = getattr(parsed, field, None)
        for i, name in enumerate([value] if isinstance(value, str) else value or ()):
            if name not in deployments and not (field == "judge" and name == "auto"):
                path = field if isinstance(value, str) else f"{field}[{i}]"
                errors.append((path, f"unknown deployment {name!r} (use PROVIDER/MODEL)"))
    return errors


def build_strategies(
    aliases: Mapping[str, tuple[str, Mapping[str, Any]]], *, kinds: Mapping[str, Kind[Any]] = KINDS
) -> dict[str, Strategy]:
    """alias → (kind, options), plus every built-in alias the config does not set (with default options).
    Kinds that take arms (adaptive) are built last and choose among the built-in aliases' strategies."""
    configured = dict(aliases)
    for name, registered in kinds.items():
        if registered.builtin:
            configured.setdefault(f"ultra-{name}", (name, {}))

    def build(alias: str, kind: str, options: Mapping[str, Any], arms: Mapping[str, Strategy]) -> Strategy:
        return kinds[kind].build(alias, _parse(kind, options, kinds), arms)

    built: dict[str, Strategy] = {}
    for alias, (kind, options) in configured.items():
        if not kinds[kind].takes_arms:
            built[alias] = build(alias, kind, options, {})
    arms: dict[str, Strategy] = {}
    for arm in _arms(kinds):  # `ultra-<arm>` as configured; if it was made a choosing kind, the defaults
        alias = f"ultra-{arm}"
        arms[arm] = built[alias] if alias in built else build(alias, arm, {}, {})
    for alias, (kind, options) in configured.items():
        if kinds[kind].takes_arms:
            built[alias] = build(alias, kind, options, arms)
    return built
