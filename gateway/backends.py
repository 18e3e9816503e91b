"""Builds the response cache and the rate limiter from settings (memory or Redis), the way registry.py builds the
provider pool. Called from `Gateway.start()`, inside the running event loop that will use the Redis clients."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from gateway._redis import RedisEndpoint
from gateway.cache.memory import MemoryCache
from gateway.cache.redis import RedisCache
from gateway.cache.responses import ResponseCache
from gateway.cache.stored_responses import MemoryResponseStore, RedisResponseStore, ResponseStore
from gateway.ratelimit.budget import MemoryBudgets, RedisBudgets
from gateway.ratelimit.limiter import RateLimiter
from gateway.ratelimit.memory import MemoryLimiter
from gateway.ratelimit.policy import LimitRule, per_minute
from gateway.ratelimit.redis import RedisLimiter
from gateway.ratelimit.spend import Spend
from gateway.settings import AuthSettings, CacheSettings, LimitSettings, RateLimitSettings

__all__ = ["build_cache", "build_limiter", "build_response_store", "build_spend", "cache_secret"]


def cache_secret(settings: CacheSettings, env: Mapping[str, str] | None = None) -> bytes | None:
    env = os.environ if env is None else env
    if settings.key_secret_env is None:
        return None
    value = env.get(settings.key_secret_env)
    return value.encode() if value else None


def build_cache(settings: CacheSettings) -> ResponseCache | None:
    if not settings.enabled:
        return None
    backend: RedisCache | MemoryCache
    if settings.backend == "redis":
        assert settings.redis_url is not None  # resolved and checked by load_settings
        backend = RedisCache(RedisEndpoint(settings.redis_url, timeout_s=settings.timeout_s))
    else:
        backend = MemoryCache(max_entries=settings.max_entries, max_bytes=settings.max_bytes)
    return ResponseCache(
        backend,
        ttl_s=settings.ttl_s,
        max_ttl_s=settings.max_ttl_s,
        prefix=settings.key_prefix,
        max_entry_bytes=settings.max_entry_bytes,
        compress_over=1024 if backend.shared else None,  # bytes on the wire matter only on Redis
        lock_ttl_s=settings.lock_ttl_s,
        lock_wait_s=settings.lock_wait_s,
    )


def _rule(scope: str, label: str, limits: LimitSettings | RateLimitSettings) -> LimitRule | None:
    if limits.rpm is None and limits.tpm is None:
        return None
    return LimitRule(
        scope,
        label,
        per_minute(limits.rpm) if limits.rpm is not None else None,
        per_minute(limits.tpm) if limits.tpm is not None else None,
    )


def build_response_store(settings: CacheSettings) -> ResponseStore:
    """Where `/v1/responses` keeps answers for GET and `previous_response_id`: in memory, or on Redis when the
    cache is (so every worker and replica can chain and fetch)."""
    if settings.enabled and settings.backend == "redis" and settings.redis_url:
        url = settings.redis_url
        # A stored conversation can be large: a longer budget than the cache's lookups get.
        return RedisResponseStore(
            lambda: RedisEndpoint(url, timeout_s=max(settings.timeout_s, 1.0)), prefix=settings.key_prefix
        )
    return MemoryResponseStore()


def build_limiter(settings: RateLimitSettings) -> RateLimiter | None:
    if not settings.enabled:
        return None
    models = {}
    for pattern, limits in settings.models.items():
        rule = _rule(f"model:{pattern}", f"model '{pattern}'", limits)
        if rule is not None:
            models[pattern] = rule
    if settings.backend == "redis":
        assert settings.redis_url is not None
        endpoint = RedisEndpoint(settings.redis_url, timeout_s=settings.timeout_s, decode_responses=True)
        backend: RedisLimiter | MemoryLimiter = RedisLimiter(endpoint, prefix=settings.key_prefix)
    else:
        backend = MemoryLimiter()
    return RateLimiter(
        backend,
        global_rule=_rule("global", "this gateway", settings),
        model_rules=models,
        fail_open=settings.fail_open,
        default_output_tokens=settings.default_output_tokens,
    )


def build_spend(
    auth: AuthSettings, limits: RateLimitSettings, prices: Callable[[str], tuple[float, float]]
) -> Spend | None:
    """Spend per key and tenant, on the rate limits' backend (memory, or the same Redis), with their budgets. None
    for a gateway without keys: there is nobody to account to."""
    if not auth.keys and auth.admin_key_env is None:
        return None
    if limits.backend == "redis":
        assert limits.redis_url is not None
        endpoint = RedisEndpoint(limits.redis_url, timeout_s=limits.timeout_s, decode_responses=True)
        backend: RedisBudgets | MemoryBudgets = RedisBudgets(endpoint, prefix=limits.key_prefix)
    else:
        backend = MemoryBudgets()
    tenants = {name: t.budget for name, t in auth.tenants.items() if t.budget is not None}
    return Spend(
        backend,
        tenants=tenants,
        prices=prices,
        fail_open=limits.fail_open,
        default_output_tokens=limits.default_output_tokens,
    )
