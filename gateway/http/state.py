"""One typed, slotted state object per HTTP request, under one scope key: the edge creates it, the auth guard
and the routes fill it in, and the access line reads it after the response has gone out."""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

from gateway.auth import Principal
from strategies.base import StrategyMeta

__all__ = ["RequestState", "state_of"]

_KEY = "ultra"


@dataclass(slots=True)
class RequestState:
    request_id: str
    trace_id: str | None = None
    principal: Principal | None = None
    model: str | None = None
    meta: StrategyMeta | None = None  # complete by the time the access line is written
    hung_up: bool = False  # the client went away before an answer was sent
    status: int = 0  # the response's status once it has started (set by the edge): too late for another

    def attach(self, scope: MutableMapping[str, Any]) -> RequestState:
        scope[_KEY] = self
        return self


def state_of(scope: MutableMapping[str, Any]) -> RequestState:
    """The request's state (a blank one for a scope the edge did not see, e.g. a test calling a route)."""
    state = scope.get(_KEY)
    if isinstance(state, RequestState):
        return state
    return RequestState("").attach(scope)
