"""The one place that turns exceptions into OpenAI error responses: our error tree, Litestar's own
HTTP exceptions (404 for unknown paths, 405, 413) and anything unexpected (500, no stack trace, the request id).
Litestar's routes get them through EXCEPTION_HANDLERS; the raw chat route sends `rendered(...)` itself."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from litestar import Request, Response
from litestar.exceptions import HTTPException

from gateway.core.errors import GatewayError, InternalError, PayloadTooLarge
from gateway.http.render import error_headers
from gateway.http.state import state_of

__all__ = ["EXCEPTION_HANDLERS", "error_event", "render", "rendered", "unexpected"]

log = logging.getLogger("ultra_gateway")

_FRAMEWORK_CODES = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}


def rendered(error: GatewayError) -> tuple[int, bytes, dict[str, str]]:
    """Status, JSON body and headers of an error response: for Litestar's handlers and the raw chat route."""
    return error.status, orjson.dumps(error.to_body()), error_headers(error)


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
    error = GatewayError(str(exc.detail), code=_FRAMEWORK_CODES.get(status))
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
