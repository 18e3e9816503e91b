"""OTLP/HTTP protobuf span export on one kept-alive connection (http.client, in the export thread), configured by
the standard OTEL_EXPORTER_OTLP_* variables as the SDK's OTLPSpanExporter reads them: the endpoint (the traces
one as given, the general one with /v1/traces appended), headers, timeout, compression (gzip, deflate) and a CA
certificate. Retries follow the SDK's: 429, 502, 503 and 504 with exponential backoff (or the server's
Retry-After) within the timeout, and a broken kept-alive connection is reopened at once.

`from_env` returns None for what this exporter does not do — client certificates, a credential provider, a
proxy from the environment for the endpoint, a scheme other than http(s) — and the caller then uses the SDK's
exporter, which does.
"""

from __future__ import annotations

import http.client
import logging
import math
import random
import ssl
import threading
import time
import zlib
from collections.abc import Mapping, Sequence
from datetime import UTC
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit
from urllib.request import getproxies, proxy_bypass

from opentelemetry.exporter.otlp.proto.http import _OTLP_HTTP_HEADERS
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.util.re import parse_env_headers

from gateway.telemetry._otlp import SpanEncoder

__all__ = ["OtlpHttpExporter"]

log = logging.getLogger("ultra_gateway")

_RETRYABLE = frozenset({429, 502, 503, 504})
_ATTEMPTS = 6
_UNSUPPORTED = (
    "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY",
    "OTEL_EXPORTER_OTLP_CLIENT_KEY",
    "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
    "OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER",
    "OTEL_PYTHON_EXPORTER_OTLP_HTTP_TRACES_CREDENTIAL_PROVIDER",
)


def _either(env: Mapping[str, str], name: str) -> str | None:
    """The traces-specific variable, else the general one (OTEL_EXPORTER_OTLP_TRACES_X, OTEL_EXPORTER_OTLP_X)."""
    return env.get(f"OTEL_EXPORTER_OTLP_TRACES_{name}") or env.get(f"OTEL_EXPORTER_OTLP_{name}")


class OtlpHttpExporter(SpanExporter):
    def __init__(
        self,
        endpoint: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout_s: float = 10.0,
        compression: str = "none",
        ca_file: str | None = None,
    ) -> None:
        url = urlsplit(endpoint)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"not an http(s) URL: {endpoint!r}")
        self.endpoint = endpoint
        self._host = url.hostname
        self._port = url.port
        self._path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        self._tls = ssl.create_default_context(cafile=ca_file) if url.scheme == "https" else None
        self._headers = {k.lower(): v for k, v in _OTLP_HTTP_HEADERS.items()}
        self._headers.update({k.lower(): v for k, v in (headers or {}).items()})
        if compression != "none":
            self._headers.setdefault("content-encoding", compression)
        self._compression = compression
        self._timeout_s = timeout_s
        self._encoder = SpanEncoder()
        self._connection: http.client.HTTPConnection | None = None
        self._closed = threading.Event()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> OtlpHttpExporter | None:
        if any(env.get(name) for name in _UNSUPPORTED):
            return None
        endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        if not endpoint:
            base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "http://localhost:4318"
            endpoint = f"{base.removesuffix('/')}/v1/traces"
        url = urlsplit(endpoint)
        if url.scheme not in ("http", "https") or not url.hostname:
            return None
        if getproxies().get(url.scheme) and not proxy_bypass(url.hostname):
            return None  # the SDK's exporter (requests) goes through the proxy
        compression = (_either(env, "COMPRESSION") or "none").strip().lower()
        if compression not in ("none", "gzip", "deflate"):
            log.warning("Unsupported compression type: %s", compression)
            compression = "none"
        raw_timeout = _either(env, "TIMEOUT") or "10"
        try:
            timeout_s = float(raw_timeout)
        except ValueError:
            log.warning("Invalid timeout value %r, using default of 10 seconds", raw_timeout)
            timeout_s = 10.0
        headers = parse_env_headers(_either(env, "HEADERS") or "", liberal=True)
        return cls(
            endpoint,
            headers=headers,
            timeout_s=timeout_s,
            compression=compression,
            ca_file=_either(env, "CERTIFICATE"),
        )

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._closed.is_set():
            log.warning("Exporter already shutdown, ignoring batch")
            return SpanExportResult.FAILURE
        try:
            body = self._encoder.encode(spans)
        except Exception as error:
            log.error("Failed to encode span batch: %s", error)
            return SpanExportResult.FAILURE
        if self._compression == "gzip":
            packer = zlib.compressobj(6, zlib.DEFLATED, 31)  # 31: the gzip container
            body = packer.compress(body) + packer.flush()
        elif self._compression == "deflate":
            body = zlib.compress(body)
        return SpanExportResult.SUCCESS if self._send(body) else SpanExportResult.FAILURE

    def _send(self, body: bytes) -> bool:
        deadline = time.monotonic() + self._timeout_s
        for attempt in range(_ATTEMPTS):
            status, reason, retry_after = self._post(body, deadline)
            if status is not None and 200 <= status < 400:
                return True
            if status is not None and status not in _RETRYABLE:
                log.error("Failed to export spans batch code: %s, reason: %s", status, reason)
                return False
            backoff = retry_after if retry_after is not None else 2**attempt * random.uniform(0.8, 1.2)
            if attempt + 1 == _ATTEMPTS or backoff > deadline - time.monotonic() or self._closed.is_set():
                log.error("Failed to export spans batch due to timeout, max retries or shutdown.")
                return False
            log.warning(
                "Transient error %s encountered while exporting spans batch, retrying in %.2fs.", reason, backoff
            )
            if self._closed.wait(backoff):
                return False
        return False

    def _post(self, body: bytes, deadline: float) -> tuple[int | None, str, float | None]:
        """One POST: (status, reason, Retry-After seconds); status None when no answer came. A kept-alive
        connection the collector closed is retried at once on a new one. Each socket operation waits at most
        the export timeout (set once per connection: changing a socket's timeout releases the GIL, and taking
        it back waits for the event loop)."""
        for fresh in (self._connection is None, True):
            if deadline <= time.monotonic():
                return None, "timed out", None
            connection = self._connect()
            try:
                connection.request("POST", self._path, body, self._headers)
                response = connection.getresponse()
                response.read()  # the connection is reused only once the body is consumed
            except (OSError, http.client.HTTPException) as error:
                self._drop()
                if fresh:
                    return None, str(error) or type(error).__name__, None
                continue
            if response.will_close:
                self._drop()
            return response.status, response.reason, _retry_after(response.getheader("retry-after"))
        raise AssertionError("unreachable")  # the second pass always returns

    def _connect(self) -> http.client.HTTPConnection:
        if self._connection is None:
            if self._tls is not None:
                self._connection = http.client.HTTPSConnection(
                    self._host, self._port, timeout=self._timeout_s, context=self._tls
                )
            else:
                self._connection = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout_s)
        return self._connection

    def _drop(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def shutdown(self) -> None:
        if self._closed.is_set():
            log.warning("Exporter already shutdown, ignoring call")
            return
        self._closed.set()
        self._drop()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True  # nothing is buffered here


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds: a number of seconds or an HTTP date."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(when.timestamp() - time.time(), 0.0)
    return max(seconds, 0.0) if math.isfinite(seconds) else None
