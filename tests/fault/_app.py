"""The in-process gateway the fault tests drive: the real app on the test's loop via httpx's ASGITransport."""

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
    gateway = build_gateway(settings)
    app = create_app(settings, gateway=gateway)
    await gateway.start()  # what the lifespan does (ASGITransport does not run it)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
            yield client
    finally:
        await gateway.aclose()
