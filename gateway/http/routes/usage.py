"""`GET /v1/usage`: what the calling key (and its tenant) has spent so far in each period, its budgets and what
is left of them."""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar.datastructures import State

from gateway.core.errors import NotFound
from gateway.http.auth import principal_of, require_key
from gateway.service import Gateway

__all__ = ["usage"]


@get("/v1/usage", guards=[require_key])
async def usage(state: State, request: Request[Any, Any, Any]) -> dict[str, Any]:
    gateway: Gateway = state.gateway
    spend = gateway.pipeline.spend
    principal = principal_of(request)
    if spend is None or principal.anonymous:
        raise NotFound("This gateway keeps no spend per key (it has no API keys configured).")
    scopes = await spend.usage(principal.name, principal.budget, principal.tenant)
    return {"object": "usage", **scopes}
