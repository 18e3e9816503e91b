"""The gateway in-process for HTTP tests: the real app on the test's loop through httpx's ASGITransport (which
does not run the lifespan, so the gateway is started and closed here)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import httpx

from gateway.builder import build_gateway
from gateway.config import parse_settings
from gateway.http.app import create_app

__all__ = ["in_process"]


@asynccontextmanager
async def in_process(config: str, env: Mapping[str, str] | None = None) -> AsyncIterator[httpx.AsyncClient]:
    settings = parse_settings(config, env=dict(env or {}))
    gateway = build_gateway(settings)  # the process environment: upstream keys a test sets with monkeypatch
    app = create_app(settings, gateway=gateway)
    await gateway.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
            yield client
    finally:
        await gateway.aclose()
