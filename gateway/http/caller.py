"""The gateway's own request headers → the pipeline's typed `Caller`, for every inbound route.

`x-ultra-NAME: value` headers are routing hints (`x-ultra-priority: cost` reaches strategies as
`{"priority": "cost"}`); `Cache-Control: no-cache | no-store` and `x-ultra-cache-ttl: SECONDS` are the cache
directives. A malformed TTL is a 400, before any quota is spent.
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway.auth import ANONYMOUS
from gateway.core.errors import InvalidRequest
from gateway.http.state import RequestState
from gateway.pipeline import CacheDirectives, Caller

__all__ = ["caller_of"]

_HINT_PREFIX = "x-ultra-"
_CACHE_HEADERS = "x-ultra-cache"
_CACHE_TTL = "x-ultra-cache-ttl"


def caller_of(state: RequestState, headers: Mapping[str, str], model: str) -> Caller:
    """The pipeline's view of an authenticated request; names the model on the request's state (access line)."""
    state.model = model
    return Caller(
        request_id=state.request_id,
        principal=state.principal or ANONYMOUS,
        trace_id=state.trace_id,
        hints=_hints(headers),
        cache=_cache_directives(headers),
    )


def _hints(headers: Mapping[str, str]) -> dict[str, str]:
    return {
        k.removeprefix(_HINT_PREFIX): v
        for k, v in headers.items()
        if k.startswith(_HINT_PREFIX) and not k.startswith(_CACHE_HEADERS)
    }


def _cache_directives(headers: Mapping[str, str]) -> CacheDirectives:
    directives = {d.strip().lower() for d in headers.get("cache-control", "").split(",")}
    no_store = "no-store" in directives
    ttl: float | None = None
    raw = headers.get(_CACHE_TTL)
    if raw is not None:
        try:
            ttl = float(raw)
        except ValueError:
            ttl = -1.0
        if not ttl >= 0 or ttl == float("inf"):
            raise InvalidRequest(f"{_CACHE_TTL} must be a number of seconds >= 0", param=_CACHE_TTL)
    return CacheDirectives(read=not (no_store or "no-cache" in directives), write=not no_store, ttl_s=ttl)
