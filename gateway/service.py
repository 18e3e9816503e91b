"""`Gateway`: one per serving process — what `build_gateway` assembled, the resources opened in `start()` (the
cache and the limiter, whose Redis clients belong to the serving event loop), and the pipeline that serves
requests with them. Closing it closes everything it opened, in reverse, even when one close fails.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Callable, Coroutine, Mapping
from contextlib import AsyncExitStack
from typing import Any

from gateway._redis import RedisEndpoint
from gateway.auth import Authenticator
from gateway.backends import build_cache, build_limiter, build_response_store, build_spend
from gateway.cache.stored_responses import ResponseStore
from gateway.core.stats import LiveStats
from gateway.fleet import FleetSync, Posteriors
from gateway.keystore import KeyStore, build_keystore, start_watching
from gateway.pipeline import Pipeline
from gateway.pricing import price_table
from gateway.reload import ReloadOutcome, reload_gateway
from gateway.routing import Router
from gateway.settings import Settings
from gateway.telemetry.metrics import Metrics
from gateway.telemetry.observer import RequestObserver
from gateway.telemetry.shared import SharedMetrics
from gateway.telemetry.tracing import Tracing
from strategies.adaptive import Adaptive

__all__ = ["Gateway"]


class Gateway:
    def __init__(
        self,
        settings: Settings,
        *,
        router: Router,
        observer: RequestObserver,
        live: LiveStats,
        auth: Authenticator,
        cache_secret: bytes | None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random,
    ) -> None:
        self.settings = settings
        self.router = router
        self.observer = observer
        self.live = live
        self.auth = auth
        self._cache_secret = cache_secret
        self._clock = clock
        self._rng = rng
        self._resources = AsyncExitStack()
        self._pipeline: Pipeline | None = None
        self._responses: ResponseStore | None = None
        self.fleet: FleetSync | None = None
        self.keystore: KeyStore | None = None
        self.config_path: str | None = None  # what a reload reads (None: $ULTRA_CONFIG, else the built-in default)
        self.env: Mapping[str, str] = os.environ
        self._reload_lock = asyncio.Lock()
        self._background: set[asyncio.Task[Any]] = set()
        self.shared_metrics: SharedMetrics | None = None  # `--workers N`: /metrics sums every worker

    @property
    def tracing(self) -> Tracing:
        return self.observer.tracing

    @property
    def metrics(self) -> Metrics:
        return self.observer.metrics

    @property
    def ready(self) -> bool:
        return self._pipeline is not None

    @property
    def pipeline(self) -> Pipeline:
        if self._pipeline is None:
            raise RuntimeError("the gateway has not been started (or has been closed)")
        return self._pipeline

    @property
    def responses(self) -> ResponseStore:
        """What `/v1/responses` keeps per key for GET and `previous_response_id`."""
        if self._responses is None:
            raise RuntimeError("the gateway has not been started (or has been closed)")
        return self._responses

    async def start(self) -> None:
        stack = self._resources
        stack.callback(self.tracing.shutdown)  # last out: flushes the spans of everything closed before it
        for provider in self.router.pool.providers:
            stack.push_async_callback(provider.aclose)
        cache = build_cache(self.settings.cache)
        if cache is not None:
            stack.push_async_callback(cache.aclose)
        limiter = build_limiter(self.settings.rate_limits)
        if limiter is not None:
            stack.push_async_callback(limiter.aclose)
        spend = build_spend(self.settings.auth, self.settings.rate_limits, price_table(self.settings, self.router.pool))
        if spend is not None:
            stack.push_async_callback(spend.aclose)
        self.keystore = build_keystore(self.settings.auth, self.settings.rate_limits)
        if self.keystore is not None:
            stack.push_async_callback(self.keystore.aclose)
            await start_watching(self.keystore, lambda: self.auth, stack)
        self._responses = build_response_store(self.settings.cache)
        stack.push_async_callback(self._responses.aclose)
        await self._share_fleet_state(stack)
        server = self.settings.server
        self._pipeline = Pipeline(
            self.router,
            self.observer,
            self.live,
            cache=cache,
            cache_scope=self.settings.cache.scope,
            cache_secret=self._cache_secret,
            cache_sampled=self.settings.cache.sampled,
            limiter=limiter,
            spend=spend,
            request_timeout_s=server.request_timeout_s,
            expose_metadata=server.expose_metadata,
            clock=self._clock,
            rng=self._rng,
        )

    async def _share_fleet_state(self, stack: AsyncExitStack) -> None:
        """Breakers and adaptive posteriors shared through Redis, when one is configured: loaded once now (a
        restart starts from what the fleet learned), then synchronised in the background."""
        fleet = self.settings.fleet
        if not fleet.enabled or fleet.redis_url is None:
            return
        endpoint = RedisEndpoint(fleet.redis_url, timeout_s=fleet.timeout_s, max_connections=2)
        stack.push_async_callback(endpoint.aclose)
        sync = FleetSync(
            endpoint,
            self.live,
            _posteriors(self.router),
            prefix=fleet.key_prefix,
            sync_interval_s=fleet.sync_interval_s,
        )
        await sync.sync_once()
        task = asyncio.create_task(sync.run(), name="fleet-sync")
        stack.push_async_callback(_cancelled, task)
        self.fleet = sync

    async def reload(self, path: str | None = None) -> ReloadOutcome:
        """Re-read the configuration and swap it in (gateway/reload.py); one reload at a time."""
        async with self._reload_lock:
            return await reload_gateway(self, path)

    def swap(
        self,
        settings: Settings,
        *,
        router: Router,
        auth: Authenticator,
        pipeline: Pipeline,
        responses: ResponseStore,
        cache_secret: bytes | None,
        env: Mapping[str, str],
    ) -> None:
        """Replace what serves new requests, all at once (called without an await in between). What adaptive
        aliases learned carries over to the aliases of the same name."""
        learned = _posteriors(self.router)
        for alias, posteriors in _posteriors(router).items():
            posteriors.update(learned.get(alias, {}))
        if self.fleet is not None:
            self.fleet.track(_posteriors(router))
        self.settings, self.router, self.auth, self.env = settings, router, auth, env
        self._pipeline, self._responses, self._cache_secret = pipeline, responses, cache_secret
        self.observer.retarget(router.known)

    def adopt(self, resource: Any) -> None:
        """Close `resource` with the gateway (something a reload opened)."""
        self._resources.push_async_callback(resource.aclose)

    def background(self, task: asyncio.Task[Any]) -> None:
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def aclose(self) -> None:
        self._pipeline = self._responses = None
        for task in list(self._background):
            task.cancel()
        await self._resources.aclose()

    async def readiness(self) -> tuple[bool, dict[str, str]]:
        """`/health/ready`: config loaded, and each configured Redis answering a PING within its budget."""
        pipeline = self._pipeline
        checks = {"config": "ok" if pipeline is not None else "not started"}
        if pipeline is None:
            return False, checks
        probes: dict[str, Coroutine[Any, Any, bool]] = {}
        if pipeline.cache is not None and pipeline.cache.backend.name == "redis":
            probes["redis_cache"] = pipeline.cache.ping()
        if pipeline.limiter is not None and pipeline.limiter.backend.name == "redis":
            probes["redis_rate_limits"] = pipeline.limiter.ping()
        results = await asyncio.gather(*probes.values())
        ok = True
        for name, up in zip(probes, results, strict=True):
            checks[name] = "ok" if up else "unreachable"
            ok = ok and up
        return ok, checks


async def _cancelled(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def _posteriors(router: Router) -> dict[str, Posteriors]:
    """Each adaptive alias's posteriors (a model group over an adaptive alias shares its strategy: listed once,
    under the alias)."""
    return {a: s.posteriors for a, s in router.strategies.items() if isinstance(s, Adaptive) and s.name == a}
