"""`build_gateway(settings, ...)`: the one place that reads the environment, resolves secrets and knows the
registries (strategy kinds, provider dialects). Everything it builds receives what it needs: the pipeline reads
no environment, no global clock and no global RNG.

The clock and the RNG are injected so tests can run a whole request on a fake clock and a seeded RNG; in
production they are `time.monotonic` and one process-wide `random.Random` (seeding a fresh one per request
reads 2.5 KB of urandom).
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Mapping

from gateway.auth import Authenticator
from gateway.backends import cache_secret
from gateway.core.pool import ProviderPool
from gateway.core.stats import LiveStats
from gateway.registry import breaker_policies, build_pool
from gateway.routing import Router
from gateway.service import Gateway
from gateway.settings import Settings
from gateway.telemetry.metrics import Metrics
from gateway.telemetry.observer import RequestObserver
from gateway.telemetry.tracing import Tracing

__all__ = ["build_gateway"]


def build_gateway(
    settings: Settings,
    *,
    env: Mapping[str, str] | None = None,
    clock: Callable[[], float] = time.monotonic,
    rng: random.Random | None = None,
    tracing: Tracing | None = None,
    pool: ProviderPool | None = None,
) -> Gateway:
    env = os.environ if env is None else env
    tracing = tracing if tracing is not None else Tracing.from_env(settings.telemetry.service_name, env=env)
    pool = pool if pool is not None else build_pool(settings, env, tracer=tracing.tracer)
    router = Router.from_settings(settings, pool)
    # per-deployment latency, success and breakers, shared by every strategy
    live = LiveStats(policies=breaker_policies(settings), clock=clock)
    observer = RequestObserver(Metrics(), tracing, live, known_model=router.known)
    live.on_transition = observer.transition
    gateway = Gateway(
        settings,
        router=router,
        observer=observer,
        live=live,
        auth=Authenticator.from_settings(settings.auth, env),
        cache_secret=cache_secret(settings.cache, env),
        clock=clock,
        rng=rng if rng is not None else random.Random(),
    )
    gateway.env = env
    return gateway
