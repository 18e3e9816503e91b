"""The gateway's error tree: every failure a caller can act on, with what the HTTP edge needs to render it.

```
GatewayError                      status, OpenAI type/code/param, retryable, retry_after
├── InvalidRequest                400  invalid_request_error (param names the field)
├── AuthenticationFailed          401  invalid_api_key
├── ModelNotAllowed               403  model_not_allowed
├── ModelNotFound                 404  model_not_found
├── NotFound                      404  not_found (another resource, e.g. a stored response)
├── MethodNotAllowed              405  method_not_allowed
├── PayloadTooLarge               413  request_too_large
├── RateLimited                   429  rate_limit_exceeded (the gateway's own limits)
├── InternalError                 500  server_error
├── ServiceUnavailable            503  service_unavailable (e.g. shutting down, not ready)
└── UpstreamError                 a failure of one call to one upstream deployment
    ├── UpstreamStatusError       the upstream answered with an HTTP error status
    │   ├── UpstreamRateLimited   429 from upstream (retry_after from its headers)
    │   └── UpstreamBadRequest    400/413/422 from upstream: the request itself is wrong; relayed as 400
    ├── UpstreamConnectionError   connect failed, reset, closed mid-stream
    ├── UpstreamTimeout           connect/read/total timeout (504)
    ├── UpstreamProtocolError     malformed JSON or SSE, missing fields (502)
    │   └── UpstreamTooLarge      the answer exceeded the provider's max_response_bytes (502)
    ├── DeploymentUnavailable     not called: its breaker is open or it cools down after a 429 (503)
    └── AllProvidersFailed        every attempt for the request failed (502; 429 if all were rate limits;
                                  503 if nothing was available to call)
```

Messages never contain secrets: upstream bodies are summarised, and nothing here reads keys.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.core.redaction import redact

__all__ = [
    "AllProvidersFailed",
    "AuthenticationFailed",
    "BudgetExceeded",
    "BudgetState",
    "DeploymentUnavailable",
    "GatewayError",
    "InternalError",
    "InvalidRequest",
    "LimitState",
    "MethodNotAllowed",
    "ModelNotAllowed",
    "ModelNotFound",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "ServiceUnavailable",
    "UpstreamBadRequest",
    "UpstreamConnectionError",
    "UpstreamError",
    "UpstreamProtocolError",
    "UpstreamRateLimited",
    "UpstreamStatusError",
    "UpstreamTimeout",
    "UpstreamTooLarge",
    "format_duration",
]


class GatewayError(Exception):
    """Base of every error the gateway renders; class attributes are the defaults for the subclass."""

    status: int = 500
    type: str = "server_error"
    code: str | None = None
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.retry_after = retry_after

    def to_body(self) -> dict[str, Any]:
        """The OpenAI error object: `{"error": {message, type, param, code}}`, all four keys present."""
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request_error"


class AuthenticationFailed(GatewayError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class ModelNotAllowed(GatewayError):
    status = 403
    type = "invalid_request_error"
    code = "model_not_allowed"


class ModelNotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "model_not_found"


class NotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class MethodNotAllowed(GatewayError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"

    def __init__(self, message: str, *, allowed: Sequence[str]) -> None:
        super().__init__(message)
        self.allowed = tuple(allowed)


class PayloadTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


@dataclass(frozen=True, slots=True)
class LimitState:
    """Where one dimension (requests or tokens) of a caller's binding limit stands after a decision."""

    limit: int
    remaining: int
    reset_s: float


def format_duration(seconds: float) -> str:
    """Go's `time.Duration.String()` at millisecond precision, as OpenAI's reset headers: `0s`, `12ms`, `1.5s`,
    `6m0s`, `1h2m3s`."""
    ms = max(0, math.ceil(seconds * 1000 - 1e-9))
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    whole, frac = divmod(rest, 1000)
    secs = f"{whole}.{frac:03d}".rstrip("0").rstrip(".") if frac else str(whole)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


class RateLimited(GatewayError):
    """The gateway's own limits refused the request; `limits` is the state per dimension for the client."""

    status = 429
    type = "rate_limit_exceeded"
    code = "rate_limit_exceeded"

    def __init__(
        self, message: str, *, retry_after: float | None = None, limits: Mapping[str, LimitState] | None = None
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.limits: Mapping[str, LimitState] = limits or {}


@dataclass(frozen=True, slots=True)
class BudgetState:
    """Where the caller's binding budget stands: USD allowed and left in its period, and when the period ends
    (None for a rolling window, which frees spend gradually)."""

    scope: str  # "key" or "tenant"
    period: str
    limit_usd: float
    remaining_usd: float
    reset_s: float | None


class BudgetExceeded(RateLimited):
    """A key's or tenant's budget cannot cover the worst-case cost of this request."""

    type = "insufficient_quota"
    code = "budget_exceeded"

    def __init__(self, message: str, *, retry_after: float | None, budget: BudgetState) -> None:
        super().__init__(message, retry_after=retry_after)
        self.budget = budget


class InternalError(GatewayError):
    status = 500
    type = "server_error"
    code = "internal_error"


class ServiceUnavailable(GatewayError):
    status = 503
    type = "server_error"
    code = "service_unavailable"


class UpstreamError(GatewayError):
    """One call to one upstream deployment failed. `deployment` is `provider/model` when known."""

    status = 502
    type = "upstream_error"
    code: str | None = "upstream_error"

    def __init__(self, message: str, *, deployment: str | None = None, **kwargs: Any) -> None:
        # Upstream text can carry keys (echoed headers, debug dumps): scrubbed here, whatever built the message,
        # so neither the client, the logs nor a span's status ever see one.
        super().__init__(redact(message), **kwargs)
        self.deployment = deployment

    @property
    def kind(self) -> str:
        """A short, stable label for metadata, logs and `error.type` span attributes."""
        return type(self).__name__


class UpstreamStatusError(UpstreamError):
    """The upstream answered with an error status; `upstream_status` is what it sent."""

    def __init__(self, message: str, *, upstream_status: int, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.upstream_status = upstream_status
        # retried on 408, 409, 429 and 5xx; everything else is final for this deployment
        self.retryable = upstream_status in (408, 409, 429) or upstream_status >= 500

    @property
    def kind(self) -> str:
        return f"http_{self.upstream_status}"


class UpstreamRateLimited(UpstreamStatusError):
    def __init__(self, message: str, **kwargs: Any) -> None:
        super().__init__(message, upstream_status=429, **kwargs)


class UpstreamBadRequest(UpstreamStatusError):
    """The upstream rejected the request's content: the client must change it, so it is relayed as a 400."""

    status = 400
    type = "invalid_request_error"
    code = None


class UpstreamConnectionError(UpstreamError):
    retryable = True
    code = "upstream_connection_error"

    @property
    def kind(self) -> str:
        return "connection_error"


class UpstreamTimeout(UpstreamError):
    status = 504
    type = "timeout"
    code = "upstream_timeout"
    retryable = True

    @property
    def kind(self) -> str:
        return "timeout"


class UpstreamProtocolError(UpstreamError):
    code = "upstream_protocol_error"

    @property
    def kind(self) -> str:
        return "protocol_error"


class UpstreamTooLarge(UpstreamProtocolError):
    """The upstream's answer (a whole body, or a stream's bytes so far) passed the provider's size cap."""

    code = "upstream_response_too_large"

    @property
    def kind(self) -> str:
        return "too_large"


class DeploymentUnavailable(UpstreamError):
    """The deployment was skipped without a call: its circuit breaker is open (or its one half-open probe is
    under way), or it cools down after an upstream 429. `retry_after` is when it may be tried again."""

    status = 503
    type = "server_error"
    code = "service_unavailable"

    def __init__(self, message: str, *, reason: str, retry_after: float, deployment: str | None = None) -> None:
        super().__init__(message, deployment=deployment, retry_after=retry_after)
        self.reason = reason

    @property
    def rate_limited(self) -> bool:
        return self.reason == "rate_limited"

    @property
    def kind(self) -> str:
        return "skipped"


def _rate_limited(error: UpstreamError) -> bool:
    return isinstance(error, UpstreamRateLimited) or (isinstance(error, DeploymentUnavailable) and error.rate_limited)


class AllProvidersFailed(UpstreamError):
    """Every attempt failed. A plain exception holding the attempts' errors (not an ExceptionGroup)."""

    def __init__(self, errors: Sequence[UpstreamError], *, message: str | None = None) -> None:
        self.errors = list(errors)
        summary = "; ".join(f"{e.deployment or 'upstream'}: {e.message}" for e in self.errors) or "no attempt made"
        super().__init__(message or f"every upstream attempt failed: {summary}")
        waits = [e.retry_after for e in self.errors if e.retry_after is not None]
        if self.errors and all(_rate_limited(e) for e in self.errors):
            self.status, self.type, self.code = 429, "rate_limit_exceeded", "rate_limit_exceeded"
            self.retry_after = min(waits) if waits else None
        elif self.errors and all(isinstance(e, DeploymentUnavailable) for e in self.errors):
            # nothing could be called: a fast 503, and when to come back (the soonest recovery)
            self.status, self.type, self.code = 503, "server_error", "service_unavailable"
            self.retry_after = min(waits) if waits else None
        elif self.errors and all(isinstance(e, UpstreamTimeout) for e in self.errors):
            self.status, self.type, self.code = 504, "timeout", "upstream_timeout"
        elif len(self.errors) == 1 and isinstance(self.errors[0], UpstreamBadRequest):
            only = self.errors[0]
            self.status, self.type, self.code, self.param = only.status, only.type, only.code, only.param
            self.message = only.message
