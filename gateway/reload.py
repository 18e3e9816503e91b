"""Configuration reload (`SIGHUP`, `POST /admin/reload`): read the file again, validate it, then swap what
serves requests in one step.

- A file that does not validate (or names an environment variable that is not set) changes nothing: the old
  configuration keeps serving, one log line lists every error, `ultra_config_reload_failures_total` goes up and
  `ultra_config_last_reload_success` goes to 0.
- Requests in flight finish on the configuration they started with: each one holds the pipeline (router,
  strategies, providers, cache, limits) it began with; the swap replaces the gateway's references, not those
  objects. Providers whose settings are unchanged are kept, with their connection pools; providers removed or
  changed are closed once the longest request could have finished (`server.request_timeout_s`).
- The cache, rate limits and budgets keep their backends when their sections did not change (their rules are
  updated in place); a changed `cache` section gets a new cache; the first keys of a gateway that had none start
  spend accounting. Changes to `server.host/port/workers`,
  `telemetry`, `rate_limits.backend/redis_url` and `auth.admin_key_env` need a restart: they are reported as
  such and the rest is applied.
- Runtime keys (the admin API) survive a reload: they are not in the file.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gateway.auth import Authenticator
from gateway.backends import build_cache, build_response_store, build_spend, cache_secret
from gateway.config import ConfigError, load_settings
from gateway.core.pool import Deployment, ProviderPool
from gateway.core.provider import Provider
from gateway.pricing import price_table
from gateway.ratelimit.limiter import RateLimiter
from gateway.registry import breaker_policies, build_provider, deployments_of, wrapped
from gateway.routing import Router
from gateway.settings import ProviderSettings, Settings

if TYPE_CHECKING:
    from gateway.service import Gateway

__all__ = ["ReloadOutcome", "reload_gateway"]

log = logging.getLogger("ultra_gateway")

_RESTART_ONLY = (
    ("server.host", lambda s: s.server.host),
    ("server.port", lambda s: s.server.port),
    ("server.workers", lambda s: s.server.workers),
    ("telemetry", lambda s: s.telemetry),
    ("rate_limits.backend", lambda s: (s.rate_limits.backend, s.rate_limits.redis_url, s.rate_limits.key_prefix)),
    ("auth.admin_key_env", lambda s: s.auth.admin_key_env),
)


@dataclass(slots=True)
class ReloadOutcome:
    ok: bool
    source: str
    errors: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    needs_restart: list[str] = field(default_factory=list)
    kept_providers: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "source": self.source,
            "errors": self.errors,
            "changed": self.changed,
            "needs_restart": self.needs_restart,
            "kept_providers": self.kept_providers,
        }


def _sections(old: Settings, new: Settings) -> list[str]:
    names = type(new).model_fields
    return [name for name in names if getattr(old, name) != getattr(new, name)]


def _providers_of(pool: ProviderPool) -> dict[str, Provider]:
    return {d.provider.name: d.provider for d in pool.values()}


def _pool(
    gateway: Gateway, new: Settings, env: Mapping[str, str]
) -> tuple[ProviderPool, list[str], list[Provider], list[Provider]]:
    """The new pool: each provider whose settings (and upstream key) are unchanged is the same object, pool
    included. Returns the pool, the kept names, the new providers and the retired ones."""
    old_settings = {p.name: p for p in gateway.settings.providers}
    old_providers = _providers_of(gateway.router.pool)
    tracer = gateway.tracing.tracer
    same_telemetry = gateway.settings.telemetry == new.telemetry
    kept: list[str] = []
    created: list[Provider] = []
    deployments: list[Deployment] = []
    for config in new.providers:
        previous: ProviderSettings | None = old_settings.get(config.name)
        provider = old_providers.get(config.name)
        reuse = (
            previous is not None
            and provider is not None
            and same_telemetry
            and _without_models(previous) == _without_models(config)
            and _mock_profile(previous) == _mock_profile(config)
            and previous.api_key(gateway.env) == config.api_key(env)
        )
        if reuse:
            assert provider is not None
            kept.append(config.name)
        else:
            provider = wrapped(build_provider(config, env), config, new, tracer)
            created.append(provider)
        deployments += deployments_of(provider, config)
    kept_objects = {id(old_providers[name]) for name in kept}
    retired = [p for p in old_providers.values() if id(p) not in kept_objects]
    return ProviderPool(deployments, new.fallbacks), kept, created, retired


def _without_models(config: ProviderSettings) -> ProviderSettings:
    """A provider's connection-relevant settings (prices and models may change without a new pool)."""
    return config.model_copy(update={"models": []})


def _mock_profile(config: ProviderSettings) -> Any:
    """A mock provider's models are part of the adapter (their latency and replies), not just deployments."""
    if config.kind != "mock":
        return None
    return [(m.id, m.latency_ms, m.ms_per_token, m.failure_rate, m.reply) for m in config.models]


def _limits(limiter: RateLimiter, new: Settings) -> None:
    """Rules and options of an unchanged backend, updated in place (the backend and its state are kept)."""
    from gateway.backends import build_limiter

    fresh = build_limiter(new.rate_limits.model_copy(update={"backend": "memory", "redis_url": None}))
    if fresh is None:
        return
    limiter.global_rule = fresh.global_rule
    limiter.model_rules = fresh.model_rules
    limiter.fail_open = new.rate_limits.fail_open
    limiter.default_output_tokens = new.rate_limits.default_output_tokens


async def _close_later(resources: list[Any], delay_s: float) -> None:
    await asyncio.sleep(delay_s)
    for resource in resources:
        with contextlib.suppress(Exception):
            await resource.aclose()


def _fail(gateway: Gateway, outcome: ReloadOutcome) -> ReloadOutcome:
    gateway.metrics.reload_failures.inc(())
    gateway.metrics.reload_success.set((), 0.0)
    log.error(
        "config reload failed, keeping the running configuration: %s: %s", outcome.source, "; ".join(outcome.errors)
    )
    return outcome


async def reload_gateway(
    gateway: Gateway, path: str | None = None, env: Mapping[str, str] | None = None
) -> ReloadOutcome:
    env = os.environ if env is None else env
    source = path or gateway.config_path or env.get("ULTRA_CONFIG") or "<built-in default>"
    try:
        new = load_settings(path or gateway.config_path, env=env)
    except ConfigError as exc:
        return _fail(gateway, ReloadOutcome(False, source, errors=list(exc.errors)))
    old = gateway.settings
    outcome = ReloadOutcome(True, source, changed=_sections(old, new))
    for name, part in _RESTART_ONLY:
        if part(old) != part(new):
            outcome.needs_restart.append(name)
    # Everything that can fail is built before anything is swapped.
    try:
        auth = Authenticator.from_settings(new.auth, env)
        pool, kept, created, retired = _pool(gateway, new, env)
        router = Router.from_settings(new, pool)
        secret = cache_secret(new.cache, env)
    except (ValueError, KeyError) as exc:
        outcome.ok = False
        outcome.errors = [str(exc)]
        return _fail(gateway, outcome)
    outcome.kept_providers = kept
    old_pipeline = gateway.pipeline
    pipeline = copy.copy(old_pipeline)
    retiring: list[Any] = list(retired)
    pipeline.router = router
    pipeline.request_timeout_s = new.server.request_timeout_s
    pipeline.expose_metadata = new.server.expose_metadata
    pipeline.cache_scope = new.cache.scope
    pipeline.cache_sampled = new.cache.sampled
    pipeline.cache_secret = secret
    responses = gateway.responses
    if new.cache != old.cache:
        pipeline.cache = build_cache(new.cache)
        if old_pipeline.cache is not None:
            retiring.append(old_pipeline.cache)
        responses = build_response_store(new.cache)
        retiring.append(gateway.responses)
    if pipeline.limiter is not None and "rate_limits.backend" not in outcome.needs_restart:
        _limits(pipeline.limiter, new)
    opened: list[Any] = []
    if pipeline.spend is not None:
        tenants = {name: t.budget for name, t in new.auth.tenants.items() if t.budget is not None}
        pipeline.spend.reconfigure(tenants=tenants, prices=price_table(new, pool))
    else:  # the first keys: spend is accounted from now on
        pipeline.spend = build_spend(new.auth, new.rate_limits, price_table(new, pool))
        if pipeline.spend is not None:
            opened.append(pipeline.spend)
    auth.replace_runtime(gateway.auth.runtime)
    # The swap: no await from here to the end, so no request sees half of it.
    for provider in created:
        gateway.adopt(provider)
    if pipeline.cache is not None and pipeline.cache is not old_pipeline.cache:
        gateway.adopt(pipeline.cache)
    if responses is not gateway.responses:
        gateway.adopt(responses)
    for resource in opened:
        gateway.adopt(resource)
    gateway.live.policies = breaker_policies(new)
    gateway.swap(new, router=router, auth=auth, pipeline=pipeline, responses=responses, cache_secret=secret, env=env)
    gateway.metrics.reload_success.set((), 1.0)
    gateway.metrics.reload_time.set((), time.time())
    if retiring:
        task = asyncio.get_running_loop().create_task(_close_later(retiring, new.server.request_timeout_s + 1.0))
        gateway.background(task)
    log.info(
        "config reloaded from %s: changed %s; kept providers %s%s",
        source,
        ", ".join(outcome.changed) or "nothing",
        ", ".join(kept) or "none",
        f"; needs a restart to apply: {', '.join(outcome.needs_restart)}" if outcome.needs_restart else "",
    )
    return outcome
