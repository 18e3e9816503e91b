"""The admin API, behind the admin key (`auth.admin_key_env`): API keys at runtime (create, list, revoke,
rotate) and configuration reload. Answers 404 when no admin key is configured, as if it did not exist."""

from __future__ import annotations

from typing import Any

import orjson
from litestar import Request, Response, delete, get, post
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.handlers.base import BaseRouteHandler
from litestar.params import FromPath
from pydantic import ValidationError

from gateway.core.errors import AuthenticationFailed, InvalidRequest, NotFound
from gateway.core.types import loc_path
from gateway.keystore import KeySpec, KeyStore, digest_hex, new_secret, refresh
from gateway.service import Gateway

__all__ = ["ADMIN_ROUTES"]


async def require_admin(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    gateway: Gateway = connection.app.state.gateway
    if not gateway.auth.admin_enabled:
        raise NotFound(f"Unknown path {connection.url.path[:200]}.")
    if not gateway.auth.is_admin(connection.headers.get("authorization")):
        raise AuthenticationFailed("Incorrect admin key provided.")


def _store(gateway: Gateway) -> KeyStore:
    if gateway.keystore is None:
        raise NotFound("Runtime keys are not enabled on this gateway.")
    return gateway.keystore


async def _body(request: Request[Any, Any, Any]) -> dict[str, Any]:
    try:
        body = orjson.loads(await request.body() or b"{}")
    except orjson.JSONDecodeError:
        raise InvalidRequest("We could not parse the JSON body of your request.") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The body must be a JSON object.")
    return body


def _public(name: str, record: dict[str, Any], source: str) -> dict[str, Any]:
    out = {k: v for k, v in record.items() if k != "name"}
    return {"object": "api_key", "name": name, "source": source, **out}


@post("/admin/keys", guards=[require_admin], status_code=201)
async def create_key(state: State, request: Request[Any, Any, Any]) -> dict[str, Any]:
    gateway: Gateway = state.gateway
    store = _store(gateway)
    try:
        spec = KeySpec.model_validate(await _body(request))
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        param = loc_path(tuple(first["loc"])) or None
        raise InvalidRequest(f"{param or 'body'}: {first['msg']}", param=param) from None
    if spec.name in gateway.auth.static_names:
        raise InvalidRequest(f"A key named '{spec.name}' exists already.", param="name", code="key_exists")
    secret = new_secret()
    await store.create(spec, digest_hex(secret))
    await refresh(store, gateway)
    return {**_public(spec.name, spec.model_dump(mode="json"), "runtime"), "key": secret}


@get("/admin/keys", guards=[require_admin])
async def list_keys(state: State) -> dict[str, Any]:
    gateway: Gateway = state.gateway
    data = [
        _public(
            k.name,
            {
                "tenant": k.tenant,
                "models": k.models,
                "rpm": k.rpm,
                "tpm": k.tpm,
                "budget": k.budget.model_dump() if k.budget is not None else None,
            },
            "config",
        )
        for k in gateway.settings.auth.keys
    ]
    if gateway.keystore is not None:
        _, records = await gateway.keystore.load()
        data += sorted((_public(r["name"], r, "runtime") for r in records.values()), key=lambda r: r["name"])
    return {"object": "list", "data": data}


def _not_static(gateway: Gateway, name: str) -> None:
    if name in gateway.auth.static_names:
        raise InvalidRequest(
            f"The key '{name}' is defined in the configuration file: change it there and reload.", param="name"
        )


@delete("/admin/keys/{name:str}", guards=[require_admin], status_code=200)
async def revoke_key(name: FromPath[str], state: State) -> dict[str, Any]:
    gateway: Gateway = state.gateway
    _not_static(gateway, name)
    store = _store(gateway)
    await store.revoke(name)
    await refresh(store, gateway)
    return {"object": "api_key", "name": name, "revoked": True}


@post("/admin/keys/{name:str}/rotate", guards=[require_admin], status_code=200)
async def rotate_key(name: FromPath[str], state: State) -> dict[str, Any]:
    gateway: Gateway = state.gateway
    _not_static(gateway, name)
    store = _store(gateway)
    secret = new_secret()
    record = await store.rotate(name, digest_hex(secret))
    await refresh(store, gateway)
    return {**_public(name, record, "runtime"), "key": secret}


@post("/admin/reload", guards=[require_admin], status_code=200)
async def reload_config(state: State) -> Response[dict[str, Any]]:
    gateway: Gateway = state.gateway
    outcome = await gateway.reload()
    return Response(outcome.to_dict(), status_code=200 if outcome.ok else 422)


ADMIN_ROUTES = [create_key, list_keys, revoke_key, rotate_key, reload_config]
