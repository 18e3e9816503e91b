"""What the gateway adds to uvicorn's HTTP protocol: a bound on reading a request's headers, and the signal that
a graceful shutdown has begun.

uvicorn (0.30 to 0.54 at least) times a connection only between requests (`timeout_keep_alive`): a client that
opens a connection and sends a partial request line or headers, slowly or never, holds it for ever. The
protocol here arms a timer when a connection opens and when a request begins, disarms it when the headers are
complete, and closes the connection when it fires (`server.header_timeout_s`).

On SIGTERM uvicorn stops listening, tells every connection to finish (`shutdown()`), waits
`timeout_graceful_shutdown` and then cancels what is left, which cuts streams without a word and logs a
traceback for each. The protocol passes the first `shutdown()` on to the request watchdog (http/watchdog.py),
which, a little before uvicorn's deadline, ends every request still running with a `service_unavailable` error
(an error event for streams), so the cancel never comes.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.core.errors import ServiceUnavailable
from gateway.http.watchdog import WATCHDOG

__all__ = ["GatewayHttpProtocol", "configure_server", "shutting_down"]


def shutting_down() -> ServiceUnavailable:
    return ServiceUnavailable("The gateway is shutting down; retry the request.")


_grace = {"shutdown_s": 30.0}


class GatewayHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header-read timeout, passing shutdown on to the request watchdog."""

    header_timeout_s = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()  # the next request on a kept-alive connection: its headers are timed too

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        # End what still runs a little before uvicorn's own deadline, so it never has to cancel a request.
        grace = _grace["shutdown_s"]
        WATCHDOG.drain(grace - min(1.0, grace * 0.2))
        super().shutdown()


def configure_server(header_timeout_s: float, shutdown_grace_s: float) -> None:
    """Set the process's header timeout and shutdown grace (each worker process calls this for itself)."""
    GatewayHttpProtocol.header_timeout_s = header_timeout_s
    _grace["shutdown_s"] = shutdown_grace_s
