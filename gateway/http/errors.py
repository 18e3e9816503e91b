"""The one place that turns exceptions into OpenAI error responses: our error tree, Litestar's own
HTTP exceptions (404 for unknown paths, 405, 413) and anything unexpected (500, no stack trace, the request id).
Litestar's routes get them through EXCEPTION_HANDLERS; the raw chat route sends `rendered(...)` itself."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import orjson
from litestar import Request, Response
from litestar.exceptions import HTTPException

from gateway.core.errors import GatewayError, InternalError, PayloadTooLarge
from gateway.http.render import error_headers
from gateway.http.state import state_of

__all__ = ["ENDPOINTS", "EXCEPTION_HANDLERS", "error_event", "render", "rendered", "rendered_as", "unexpected"]

log = logging.getLogger("ultra_gateway")

_FRAMEWORK_CODES = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}

ENDPOINTS = (
    "POST /v1/chat/completions",
    "POST /v1/responses",
    "GET /v1/responses/{id}",
    "DELETE /v1/responses/{id}",
    "POST /v1/messages",
    "POST /v1/messages/count_tokens",
    "POST /v1/embeddings",
    "GET /v1/models",
    "GET /v1/models/{id}",
    "GET /v1/usage",
    "GET /health/live",
    "GET /health/ready",
    "GET /metrics",
)
"""What an unknown path's 404 lists, so a client pointed at the wrong URL learns what is here."""


def rendered(error: GatewayError) -> tuple[int, bytes, dict[str, str]]:
    """Status, JSON body and headers of an error response: for Litestar's handlers and the raw chat route."""
    return error.status, orjson.dumps(error.to_body()), error_headers(error)


def rendered_as(
    error: GatewayError, body: Callable[[GatewayError], dict[str, Any]]
) -> tuple[int, bytes, dict[str, str]]:
    """Like `rendered`, in another API's error shape (`body` builds it), for routes that speak that API."""
    return error.status, orjson.dumps(body(error)), error_headers(error)


def render(error: GatewayError) -> Response[bytes]:
    status, body, headers = rendered(error)
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def error_event(error: GatewayError) -> bytes:
    """The in-band SSE error event for a failure after the stream has started; the OpenAI SDK raises on it."""
    return b"data: " + orjson.dumps(error.to_body()) + b"\n\n"


def internal(request_id: str) -> InternalError:
    return InternalError(f"The gateway hit an internal error; request id {request_id}.")


def _gateway_error(request: Request[Any, Any, Any], exc: GatewayError) -> Response[bytes]:
    return render(exc)


def _http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    status = exc.status_code
    if status == 413:
        return render(PayloadTooLarge("The request body is larger than this gateway accepts"))
    message = str(exc.detail)
    if status == 404:
        message = f"Unknown path {request.url.path[:200]}. This gateway serves: {', '.join(ENDPOINTS)}."
    error = GatewayError(message, code=_FRAMEWORK_CODES.get(status))
    error.status = status
    error.type = "invalid_request_error" if status < 500 else "server_error"
    return render(error)


def unexpected(request_id: str, exc: Exception) -> InternalError:
    """A bug: logged with its stack trace, answered as a 500 that names only the request id."""
    log.error("unhandled error in request %s", request_id, exc_info=exc)
    return internal(request_id)


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    return render(unexpected(state_of(request.scope).request_id, exc))  # type: ignore[arg-type]


EXCEPTION_HANDLERS: dict[type[Exception], Any] = {
    GatewayError: _gateway_error,
    HTTPException: _http_exception,
    Exception: _unexpected,
}
