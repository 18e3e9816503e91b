"""What the gateway adds to uvicorn's HTTP protocol: a bound on reading a request's headers, and the signal that
a graceful shutdown has begun.

uvicorn (0.30 to 0.54 at least) times a connection only between requests (`timeout_keep_alive`): a client that
opens a connection and sends a partial request line or headers, slowly or never, holds it for ever. The
protocol here arms a timer when a connection opens and when a request begins, disarms it when the headers are
complete, and closes the connection when it fires (`server.header_timeout_s`).

On SIGTERM uvicorn stops listening, tells every connection to finish (`shutdown()`), waits
`timeout_graceful_shutdown` and then cancels what is left, which cuts streams without a word and logs a
traceback for each. `DRAIN` hears the first `shutdown()` and, a little before uvicorn's deadline, ends every
request still running with a `service_unavailable` error (an error event for streams), so the cancel never comes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.core.errors import ServiceUnavailable

__all__ = ["DRAIN", "Drain", "GatewayHttpProtocol", "configure_server", "shutting_down"]


def shutting_down() -> ServiceUnavailable:
    return ServiceUnavailable("The gateway is shutting down; retry the request.")


class Drain:
    """Process-wide: the running requests' stop timers, pulled in to `grace` seconds once shutdown begins."""

    def __init__(self) -> None:
        self.grace_s = 30.0
        self._stop_at: float | None = None
        self._timers: set[asyncio.Timeout] = set()

    @property
    def draining(self) -> bool:
        return self._stop_at is not None

    def begin(self) -> None:
        if self._stop_at is not None:
            return
        # Leave uvicorn a margin to see the requests end before its own deadline cancels them.
        margin = min(1.0, self.grace_s * 0.2)
        self._stop_at = asyncio.get_running_loop().time() + max(0.0, self.grace_s - margin)
        for timer in self._timers:
            timer.reschedule(self._stop_at)

    @contextmanager
    def watching(self, timer: asyncio.Timeout) -> Iterator[None]:
        """While inside, `timer` (an `asyncio.timeout(None)`) fires when the shutdown grace runs out."""
        if self._stop_at is not None:
            timer.reschedule(self._stop_at)
        self._timers.add(timer)
        try:
            yield
        finally:
            self._timers.discard(timer)

    def reset(self) -> None:
        self._stop_at = None
        self._timers.clear()


DRAIN = Drain()


class GatewayHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header-read timeout and the shutdown signal for `DRAIN`."""

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
        DRAIN.begin()
        super().shutdown()


def configure_server(header_timeout_s: float, shutdown_grace_s: float) -> None:
    """Set the process's header timeout and shutdown grace (each worker process calls this for itself)."""
    GatewayHttpProtocol.header_timeout_s = header_timeout_s
    DRAIN.grace_s = shutdown_grace_s
