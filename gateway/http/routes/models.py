"""`GET /v1/models` and `GET /v1/models/{id}` in OpenAI's list/object shapes, each model with the metadata of
`gateway.catalog` (pricing, context length, capabilities) alongside OpenAI's fields."""

from __future__ import annotations

import time
from typing import Any

from litestar import Request, get
from litestar.datastructures import State
from litestar.params import FromPath

from gateway.catalog import Catalog
from gateway.core.errors import ModelNotFound
from gateway.core.redaction import bounded
from gateway.http.auth import principal_of, require_key
from gateway.service import Gateway

__all__ = ["list_models", "retrieve_model"]

_STARTED = int(time.time())


def _catalog(state: State) -> Catalog:
    catalog: Catalog | None = getattr(state, "catalog", None)
    if catalog is None:
        gateway: Gateway = state.gateway
        catalog = state.catalog = Catalog(gateway.settings, gateway.router.pool, created=_STARTED)
    return catalog


@get("/v1/models", sync_to_thread=False, guards=[require_key])
def list_models(state: State, request: Request[Any, Any, Any]) -> dict[str, Any]:
    gateway: Gateway = state.gateway
    principal = principal_of(request)  # a key sees the models it may use
    catalog = _catalog(state)
    return {"object": "list", "data": [catalog.entry(m) for m in gateway.router.model_ids() if principal.may_use(m)]}


@get("/v1/models/{model_id:path}", sync_to_thread=False, guards=[require_key])
def retrieve_model(model_id: FromPath[str], state: State, request: Request[Any, Any, Any]) -> dict[str, Any]:
    gateway: Gateway = state.gateway
    # Ids contain '/': newer SDKs percent-encode it, older ones send it raw. The server has already decoded
    # the path once; decoding again would turn a literal '%2F' in an id into '/'.
    name = model_id.lstrip("/")
    if name not in gateway.router.model_ids() or not principal_of(request).may_use(name):
        raise ModelNotFound(f"The model '{bounded(name)}' does not exist", param="model")
    return _catalog(state).entry(name)
