"""The auth guard for `/v1/*`: `Authorization: Bearer KEY` → the caller's `Principal`, kept in the request's
state for the route; failures are the error tree's 401, rendered by http/errors.py."""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from gateway.auth import ANONYMOUS, Principal
from gateway.http.state import state_of
from gateway.service import Gateway

__all__ = ["principal_of", "require_key"]


async def require_key(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    gateway: Gateway = connection.app.state.gateway
    principal = gateway.auth.authenticate(connection.headers.get("authorization"))
    state_of(connection.scope).principal = principal  # type: ignore[arg-type]


def principal_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    return state_of(connection.scope).principal or ANONYMOUS  # type: ignore[arg-type]
