"""Upstream error mapping: statuses, retry-after, redaction, and the aggregate failure."""

from __future__ import annotations

import pytest

from gateway.core.errors import (
    AllProvidersFailed,
    UpstreamBadRequest,
    UpstreamConnectionError,
    UpstreamRateLimited,
    UpstreamStatusError,
    UpstreamTimeout,
)
from gateway.providers._http import parse_retry_after, redact
from gateway.providers.openai_compat import OpenAIDialect

SECRET = "sk-live-0123456789abcdefSECRET"


def test_retry_after_ms_is_preferred_and_everything_is_capped() -> None:
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after": "100000"}) == 60.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None


@pytest.mark.parametrize(
    ("status", "kind", "retryable", "client_status"),
    [
        (400, UpstreamBadRequest, False, 400),
        (422, UpstreamBadRequest, False, 400),
        (404, UpstreamStatusError, False, 502),
        (408, UpstreamStatusError, True, 502),
        (409, UpstreamStatusError, True, 502),
        (429, UpstreamRateLimited, True, 429),
        (500, UpstreamStatusError, True, 502),
        (503, UpstreamStatusError, True, 502),
    ],
)
def test_status_mapping(status: int, kind: type, retryable: bool, client_status: int) -> None:
    error = OpenAIDialect(SECRET).parse_error(status, {"retry-after": "1"}, b'{"error": {"message": "nope"}}')
    assert type(error) is kind
    assert error.retryable is retryable
    assert AllProvidersFailed([error]).status == client_status


def test_credentials_failures_never_relay_the_upstream_text() -> None:
    body = f'{{"error": {{"message": "Incorrect API key provided: {SECRET}"}}}}'.encode()
    error = OpenAIDialect(SECRET).parse_error(401, {}, body)
    assert SECRET not in error.message
    assert "credentials" in error.message


def test_upstream_text_is_redacted() -> None:
    body = f'{{"error": {{"message": "bad thing near {SECRET} and sk-other0123456789"}}}}'.encode()
    error = OpenAIDialect(SECRET).parse_error(500, {}, body)
    assert SECRET not in error.message
    assert "sk-other" not in error.message
    assert redact(f"x {SECRET} y", (SECRET,)) == "x [redacted] y"


def test_all_failed_is_429_only_when_every_failure_was_a_rate_limit() -> None:
    limited = UpstreamRateLimited("slow down", retry_after=3, deployment="a/m")
    assert AllProvidersFailed([limited, UpstreamRateLimited("again", retry_after=1)]).status == 429
    assert AllProvidersFailed([limited, UpstreamRateLimited("again", retry_after=1)]).retry_after == 1
    mixed = AllProvidersFailed([limited, UpstreamConnectionError("reset", deployment="b/m")])
    assert mixed.status == 502
    assert "a/m: slow down" in mixed.message
    assert "b/m: reset" in mixed.message
    assert AllProvidersFailed([UpstreamTimeout("t"), UpstreamTimeout("t")]).status == 504
