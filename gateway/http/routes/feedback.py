"""`POST /v1/feedback`: a graded outcome for a recent request, `{"request_id": "...", "score": 0.0-1.0}` (the
request id is the `x-request-id` the gateway answered with). Strategies that learn from outcomes
(`ultra-adaptive`) use it as the request's reward; `404` when no strategy remembers the request (unknown, too
old, or served by a strategy that does not learn)."""

from __future__ import annotations

from typing import Any

import orjson
from litestar import Request, post
from litestar.datastructures import State

from gateway.core.errors import InvalidRequest, NotFound
from gateway.http.auth import require_key
from gateway.service import Gateway

__all__ = ["feedback"]


def _parsed(raw: bytes) -> tuple[str, float]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest("the request body must be valid JSON", param=None) from None
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object", param=None)
    request_id = body.get("request_id")
    if not isinstance(request_id, str) or not request_id:
        raise InvalidRequest("'request_id' must be a non-empty string", param="request_id")
    score = body.get("score")
    if isinstance(score, bool) or not isinstance(score, int | float) or not 0 <= score <= 1:
        raise InvalidRequest("'score' must be a number from 0 to 1", param="score")
    return request_id, float(score)


@post("/v1/feedback", guards=[require_key], status_code=200)
async def feedback(state: State, request: Request[Any, Any, Any]) -> dict[str, Any]:
    gateway: Gateway = state.gateway
    request_id, score = _parsed(await request.body())
    if not gateway.pipeline.feedback(request_id, score):
        raise NotFound(f"no recent request '{request_id}' awaits feedback", param="request_id")
    return {"object": "feedback", "request_id": request_id, "score": score, "recorded": True}
