"""What the strategy classes share: option-model base, the `Kind` a strategy module registers, deployment
resolution, replaying a whole answer as a stream."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from gateway.core.errors import ModelNotAllowed
from gateway.core.pool import Deployment, ProviderPool
from gateway.core.stream import response_to_chunks
from gateway.core.types import ChatRequest, ChatResponse, Chunk
from strategies._ranking import eligible
from strategies.base import Strategy, StrategyMeta

__all__ = ["Kind", "Options", "ReplayStream", "allowed", "candidates_of", "resolve"]


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


def allowed(pool: ProviderPool, names: Sequence[str]) -> list[Deployment]:
    """The named deployments that are in `pool`. Names are validated when the config loads, so a missing one
    is outside what the caller's key may use (the pool a strategy gets is narrowed to the key's model globs)."""
    return [pool[name] for name in names if name in pool]


def resolve(pool: ProviderPool, names: Sequence[str]) -> list[Deployment]:
    """Like `allowed`, but none left is a 403: the alias has nothing this key may call."""
    found = allowed(pool, names)
    if names and not found:
        raise ModelNotAllowed("None of the deployments this alias uses is allowed for this key.", param="model")
    return found


def candidates_of(pool: ProviderPool, names: Sequence[str] | None, request: ChatRequest) -> list[Deployment]:
    """The configured candidates (or the whole pool) that can serve this request."""
    chosen = resolve(pool, names) if names else list(pool.values())
    if not chosen:
        raise ModelNotAllowed("None of the deployments this alias uses is allowed for this key.", param="model")
    return eligible(chosen, request) or chosen


class ReplayStream:
    """A whole answer replayed as the chunks a stream of it would have had."""

    def __init__(self, response: ChatResponse, meta: StrategyMeta) -> None:
        self._chunks = response_to_chunks(response)
        self.meta = meta

    async def __aiter__(self) -> AsyncIterator[Chunk]:
        for chunk in self._chunks:
            yield chunk
