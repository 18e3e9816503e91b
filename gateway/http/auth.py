"""The auth guard for `/v1/*` (SPEC §8): `Authorization: Bearer KEY` → the caller's `Principal`, kept in the
request scope for the route; failures are the error tree's 401, rendered by http/errors.py."""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from gateway.auth import ANONYMOUS, Principal
from gateway.service import Gateway

__all__ = ["principal_of", "require_key"]

_SCOPE_KEY = "ultra.principal"


async def require_key(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    gateway: Gateway = connection.app.state.gateway
    principal = gateway.auth.authenticate(connection.headers.get("authorization"))
    connection.scope[_SCOPE_KEY] = principal  # type: ignore[literal-required]


def principal_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    principal = connection.scope.get(_SCOPE_KEY, ANONYMOUS)  # type: ignore[call-overload,unused-ignore]
    return principal if isinstance(principal, Principal) else ANONYMOUS
