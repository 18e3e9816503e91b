"""What the strategy classes share: option-model base, the `Kind` a strategy module registers, deployment
resolution, replaying a whole answer as a stream."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from gateway.core.errors import ModelNotFound
from gateway.core.pool import Deployment, ProviderPool
from gateway.core.stream import response_to_chunks
from gateway.core.types import ChatRequest, ChatResponse, Chunk
from strategies._ranking import eligible
from strategies.base import Strategy, StrategyMeta

__all__ = ["Kind", "Options", "ReplayStream", "candidates_of", "resolve"]


class Options(BaseModel):
    """Strategy options: strict (a typo fails at start) and immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


OptionsT = TypeVar("OptionsT", bound=Options)


@dataclass(frozen=True, slots=True)
class Kind(Generic[OptionsT]):
    """One strategy kind, as its module registers it in `strategies.KINDS`: the options model the config is
    validated with, and how to build an alias of this kind. `build(alias, options, arms)` gets the validated
    options and, when `takes_arms`, the other kinds' built-in strategies by kind name (an empty mapping
    otherwise). A kind that is not `builtin` has no `ultra-<kind>` alias and is no adaptive arm: it exists only
    where the configuration names it (its options have no sensible defaults)."""

    options: type[OptionsT]
    build: Callable[[str, OptionsT, Mapping[str, Strategy]], Strategy]
    takes_arms: bool = False
    builtin: bool = True


def resolve(pool: ProviderPool, names: Sequence[str]) -> list[Deployment]:
    try:
        return [pool.resolve(name) for name in names]
    except ModelNotFound as exc:  # validated at load; reaching this means the pool changed underneath
        raise ModelNotFound(f"strategy refers to an unknown deployment: {exc.message}") from None


def candidates_of(pool: ProviderPool, names: Sequence[str] | None, request: ChatRequest) -> list[Deployment]:
    """The configured candidates (or the whole pool) that can serve this request."""
    chosen = resolve(pool, names) if names else list(pool.values())
    return eligible(chosen, request) or chosen


class ReplayStream:
    """A whole answer replayed as the chunks a stream of it would have had."""

    def __init__(self, response: ChatResponse, meta: StrategyMeta) -> None:
        self._chunks = response_to_chunks(response)
        self.meta = meta

    async def __aiter__(self) -> AsyncIterator[Chunk]:
        for chunk in self._chunks:
            yield chunk
