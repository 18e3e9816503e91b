"""An aiohttp.web application served on 127.0.0.1 (free port) from its own thread and event loop, so tests
with synchronous clients (the openai SDK) and subprocess gateways can talk to it; stopped and closed on exit."""

from __future__ import annotations

import asyncio
import threading

from aiohttp import web

__all__ = ["ThreadedApp"]


class ThreadedApp:
    def __init__(self, app: web.Application) -> None:
        self._app = app
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.url = ""

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        # Handlers are cancelled when their client goes away, and shutdown does not wait long for the rest
        # (a fake that hangs on purpose must not hang the test run).
        self._runner = web.AppRunner(self._app, handler_cancellation=True, shutdown_timeout=1.0)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        self._started.set()
        self._loop.run_forever()
        self._loop.close()

    def __enter__(self) -> ThreadedApp:
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("the fake server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
