"""`GET /v1/models` and `GET /v1/models/{id}` in OpenAI's list/object shapes."""

from __future__ import annotations

import time
from typing import Any

from litestar import Request, get
from litestar.datastructures import State
from litestar.params import FromPath

from gateway.core.errors import ModelNotFound
from gateway.core.redaction import bounded
from gateway.http.auth import principal_of, require_key
from gateway.service import Gateway

__all__ = ["list_models", "retrieve_model"]

_STARTED = int(time.time())


def _model(model_id: str) -> dict[str, Any]:
    owner = "ultra-gateway" if model_id.startswith("ultra-") else model_id.partition("/")[0]
    return {"id": model_id, "object": "model", "created": _STARTED, "owned_by": owner}


@get("/v1/models", sync_to_thread=False, guards=[require_key])
def list_models(state: State, request: Request[Any, Any, Any]) -> dict[str, Any]:
    gateway: Gateway = state.gateway
    principal = principal_of(request)  # a key sees the models it may use
    return {"object": "list", "data": [_model(m) for m in gateway.router.model_ids() if principal.may_use(m)]}


@get("/v1/models/{model_id:path}", sync_to_thread=False, guards=[require_key])
def retrieve_model(model_id: FromPath[str], state: State, request: Request[Any, Any, Any]) -> dict[str, Any]:
    gateway: Gateway = state.gateway
    # Ids contain '/': newer SDKs percent-encode it, older ones send it raw. The server has already decoded
    # the path once; decoding again would turn a literal '%2F' in an id into '/'.
    name = model_id.lstrip("/")
    if name not in gateway.router.model_ids() or not principal_of(request).may_use(name):
        raise ModelNotFound(f"The model '{bounded(name)}' does not exist", param="model")
    return _model(name)
