"""What the gateway adds to uvicorn's HTTP protocol: a bound on reading a request's headers, the signal that a
graceful shutdown has begun, and one socket write per response rather than one per ASGI message.

uvicorn (0.30 to 0.54 at least) times a connection only between requests (`timeout_keep_alive`): a client that
opens a connection and sends a partial request line or headers, slowly or never, holds it for ever. The
protocol here arms a timer when a connection opens and when a request begins, disarms it when the headers are
complete, and closes the connection when it fires (`server.header_timeout_s`).

On SIGTERM uvicorn stops listening, tells every connection to finish (`shutdown()`), waits
`timeout_graceful_shutdown` and then cancels what is left, which cuts streams without a word and logs a
traceback for each. The protocol passes the first `shutdown()` on to the request watchdog (http/watchdog.py),
which, a little before uvicorn's deadline, ends every request still running with a `service_unavailable` error
(an error event for streams), so the cancel never comes.

uvicorn writes the status line and headers as soon as `http.response.start` is sent, and the body when it comes:
a whole answer cost two `send()` system calls and two TCP segments. The protocol hands uvicorn a transport that
gathers the writes of one step of the event loop and writes them together at its end (`_Corked`): a whole answer
is one system call, and no write waits past the current loop iteration.
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


class _Corked:
    """A transport whose writes in one loop iteration go out as one write at its end; everything else is the
    wrapped transport's. Closing writes what is pending first; aborting drops it."""

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._pending is None:
            self._pending = [bytes(data)]
            self._loop.call_soon(self._flush)
        else:
            self._pending.append(bytes(data))

    def _flush(self) -> None:
        pending, self._pending = self._pending, None
        if pending and not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._pending = None
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._pending or ()))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


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
        super().connection_made(_Corked(transport, self.loop))  # type: ignore[arg-type]
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
