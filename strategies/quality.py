"""`ultra-quality`: Mixture-of-Agents tuned for quality, on `ultra-simple`'s engine: the k best deployments by
quality propose, the best (or the configured aggregator) synthesises; with `self_moa`, k samples of the single
best model propose instead."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import Field

from strategies._common import Kind, Options
from strategies.base import Strategy
from strategies.simple import Simple, SimpleOptions

__all__ = ["KIND", "QualityOptions"]


class QualityOptions(Options):
    k: int = Field(3, ge=1, le=8, description="Proposers: the k best deployments by quality.")
    aggregator: str | None = Field(None, description="Synthesises (default: the best by quality).")
    self_moa: bool = Field(False, description="Self-MoA: k samples of the single best model instead.")
    analysis: bool = False


def _build(alias: str, options: QualityOptions, arms: Mapping[str, Strategy]) -> Strategy:
    simple = SimpleOptions(
        lead=options.aggregator, analysis=options.analysis, self_samples=options.k if options.self_moa else 0
    )
    return Simple(alias, simple, default_k=options.k)


KIND = Kind(QualityOptions, _build)
