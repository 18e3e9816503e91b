"""Liveness, readiness and the Prometheus exposition."""

from __future__ import annotations

from typing import Any

from litestar import Response, get
from litestar.datastructures import State

from gateway.service import Gateway

__all__ = ["live", "metrics", "ready"]


@get("/health/live", sync_to_thread=False)
def live() -> dict[str, str]:
    return {"status": "ok"}


@get("/health/ready")
async def ready(state: State) -> Response[dict[str, Any]]:
    """200 when the config is loaded and every configured Redis answers; 503 otherwise (with each check)."""
    gateway: Gateway = state.gateway
    ok, checks = await gateway.readiness()
    return Response({"status": "ready" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503)


@get("/metrics", sync_to_thread=False)
def metrics(state: State) -> Response[str]:
    """Prometheus text exposition of the gateway's metrics."""
    gateway: Gateway = state.gateway
    shared = gateway.shared_metrics
    text = shared.render(gateway.metrics) if shared is not None else gateway.metrics.render()
    return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")
