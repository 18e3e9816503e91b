"""`REDIS_URL` alone selects Redis for cache and rate limits; the file can say otherwise."""

from __future__ import annotations

import pytest

from gateway.config import ConfigError, load_settings, parse_settings

PROVIDERS = "providers: [{name: p, kind: mock, models: [{id: m}]}]\n"


def test_memory_without_redis_url() -> None:
    settings = parse_settings(PROVIDERS, env={})
    assert (settings.cache.backend, settings.cache.redis_url) == ("memory", None)
    assert (settings.rate_limits.backend, settings.rate_limits.redis_url) == ("memory", None)


def test_redis_url_alone_selects_redis_also_for_the_builtin_default() -> None:
    env = {"REDIS_URL": "redis://10.0.0.1:6380/2"}
    for settings in (parse_settings(PROVIDERS, env=env), load_settings(env=env)):
        assert (settings.cache.backend, settings.cache.redis_url) == ("redis", "redis://10.0.0.1:6380/2")
        assert (settings.rate_limits.backend, settings.rate_limits.redis_url) == ("redis", "redis://10.0.0.1:6380/2")


def test_the_file_wins_over_the_environment() -> None:
    text = PROVIDERS + "cache: {backend: memory}\nrate_limits: {redis_url: 'redis://other:6379/0'}\n"
    settings = parse_settings(text, env={"REDIS_URL": "redis://env:6379/0"})
    assert settings.cache.backend == "memory"
    assert settings.cache.redis_url is None
    assert (settings.rate_limits.backend, settings.rate_limits.redis_url) == ("redis", "redis://other:6379/0")


def test_redis_backend_needs_a_url_and_a_redis_scheme() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings(PROVIDERS + "cache: {backend: redis}\nrate_limits: {redis_url: 'http://x'}\n", env={})
    assert caught.value.errors == [
        "rate_limits.redis_url: must be a redis://, rediss://, unix://, redis+sentinel:// or redis+cluster:// URL",
    ]
    with pytest.raises(ConfigError) as caught:
        parse_settings(PROVIDERS + "cache: {backend: redis}\n", env={})
    assert caught.value.errors == ["cache.redis_url: required with backend redis (or set REDIS_URL)"]


def test_limits_and_cache_options_are_strict() -> None:
    text = PROVIDERS + (
        "rate_limits: {models: {'ultra-*': {rpm: 10, tpm: 1000}}, rpm: 100}\n"
        "cache: {scope: tenant, ttl_s: 60, key_secret_env: CACHE_SECRET}\n"
    )
    settings = parse_settings(text, env={"CACHE_SECRET": "s"})
    assert settings.rate_limits.models["ultra-*"].tpm == 1000
    assert settings.cache.scope == "tenant"
    with pytest.raises(ConfigError) as caught:
        parse_settings(text, env={})
    assert caught.value.errors == ["cache.key_secret_env: environment variable CACHE_SECRET is not set"]
    with pytest.raises(ConfigError) as caught:
        parse_settings(PROVIDERS + "rate_limits: {models: {'x': {rpn: 1}}}\n", env={})
    assert caught.value.errors == ["rate_limits.models.x.rpn: unknown key"]
