"""Builds the provider pool from settings: one dialect and one pooled client per provider, wrapped with the
resilience layers, and one Deployment per configured model. A new provider kind is one dialect module and
one line in `DIALECTS`."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from opentelemetry.trace import Tracer

from gateway.core.pool import Deployment, ProviderPool
from gateway.core.provider import Provider
from gateway.core.stats import BreakerPolicy
from gateway.providers._http import Dialect, HttpProvider, Timeouts
from gateway.providers.anthropic import DEFAULT_API_VERSION, AnthropicDialect
from gateway.providers.gemini import GeminiDialect
from gateway.providers.mock import MockModel, MockProvider
from gateway.providers.openai_compat import OpenAIDialect
from gateway.resilience.retry import RetryingProvider
from gateway.settings import ProviderSettings, Settings
from gateway.telemetry.instrumented import InstrumentedProvider

__all__ = [
    "DIALECTS",
    "ProviderFactory",
    "breaker_policies",
    "build_pool",
    "build_provider",
    "deployments_of",
    "wrapped",
]

log = logging.getLogger("ultra_gateway")

ANTHROPIC_BASE_URL = "https://api.anthropic.com"
GEMINI_BASE_URL = "https://generativelanguage.googleapis.com"


def _mock(config: ProviderSettings, api_key: str | None) -> Provider:
    models = {
        m.id: MockModel(
            latency_ms=m.latency_ms or 0.0,
            ms_per_token=m.ms_per_token or 0.0,
            failure_rate=m.failure_rate or 0.0,
            **({"reply": m.reply} if m.reply is not None else {}),
        )
        for m in config.models
    }
    return MockProvider(config.name, models)


def _http(config: ProviderSettings, base_url: str, dialect: Dialect) -> Provider:
    try:
        return HttpProvider(
            config.name,
            base_url,
            dialect,
            timeouts=Timeouts(config.timeout.connect_s, config.timeout.read_s),
            headers=config.headers,
            max_connections=config.max_connections,
            max_response_bytes=config.max_response_bytes,
        )
    except ValueError as exc:  # a line break in its key: the message names the provider, never the value
        raise ValueError(f"provider {config.name}: {exc} (check {config.api_key_env or 'its headers'})") from None


def _openai(config: ProviderSettings, api_key: str | None) -> Provider:
    assert config.base_url is not None  # required for this kind: validated by ProviderSettings
    return _http(config, config.base_url, OpenAIDialect(api_key, provider=config.name))


def _anthropic(config: ProviderSettings, api_key: str | None) -> Provider:
    # The dialect adds /v1/messages; accept the API root written with or without /v1.
    base_url = (config.base_url or ANTHROPIC_BASE_URL).rstrip("/").removesuffix("/v1")
    dialect = AnthropicDialect(
        api_key,
        provider=config.name,
        api_version=config.api_version or DEFAULT_API_VERSION,
        default_max_tokens=config.default_max_tokens or 4096,
    )
    return _http(config, base_url, dialect)


def _gemini(config: ProviderSettings, api_key: str | None) -> Provider:
    # The dialect adds /v1beta/models/...; accept the API root written with or without /v1beta.
    base_url = (config.base_url or GEMINI_BASE_URL).rstrip("/").removesuffix("/v1beta")
    return _http(config, base_url, GeminiDialect(api_key, provider=config.name))


ProviderFactory = Callable[[ProviderSettings, str | None], Provider]

DIALECTS: dict[str, ProviderFactory] = {
    "openai": _openai,
    "anthropic": _anthropic,
    "gemini": _gemini,
    "mock": _mock,
}
"""Every provider kind the configuration may name: kind → factory(provider settings, upstream key)."""


def build_provider(
    config: ProviderSettings, env: Mapping[str, str], dialects: Mapping[str, ProviderFactory] = DIALECTS
) -> Provider:
    """The bare adapter for one provider entry (no wrappers)."""
    secret = config.api_key(env)
    if config.api_key_env and secret is None:
        log.warning(
            "provider %s: environment variable %s is not set; calls will go unauthenticated",
            config.name,
            config.api_key_env,
        )
    return dialects[config.kind](config, secret.get_secret_value() if secret is not None else None)


def build_pool(
    settings: Settings,
    env: Mapping[str, str],
    *,
    tracer: Tracer | None = None,
    dialects: Mapping[str, ProviderFactory] = DIALECTS,
) -> ProviderPool:
    """With a tracer, each attempt (inside the retries, so every retry) gets its own CLIENT span."""
    deployments = []
    for config in settings.providers:
        provider = wrapped(build_provider(config, env, dialects), config, settings, tracer)
        deployments += deployments_of(provider, config)
    return ProviderPool(deployments, settings.fallbacks)


def wrapped(adapter: Provider, config: ProviderSettings, settings: Settings, tracer: Tracer | None) -> Provider:
    """An adapter with the resilience layers: a CLIENT span per try (with a tracer), inside the retries."""
    if tracer is not None:
        capture = settings.telemetry.capture_content
        adapter = InstrumentedProvider(adapter, tracer, base_url=config.base_url, capture_content=capture)
    return RetryingProvider(adapter, max_retries=config.max_retries, total_s=config.timeout.total_s)


def deployments_of(provider: Provider, config: ProviderSettings) -> list[Deployment]:
    """One deployment per configured model of the provider, with its prices, quality and concurrency."""
    return [
        Deployment(
            provider,
            model.id,
            input_cost_per_mtok=model.input_cost_per_mtok,
            output_cost_per_mtok=model.output_cost_per_mtok,
            quality=model.quality,
            max_concurrency=model.max_concurrency or config.max_concurrency,
        )
        for model in config.models
    ]


def breaker_policies(settings: Settings) -> dict[str, BreakerPolicy]:
    """Each deployment's breaker thresholds, from its provider's `breaker:` settings."""
    return {
        f"{p.name}/{m.id}": BreakerPolicy(p.breaker.failure_threshold, p.breaker.cooldown_s)
        for p in settings.providers
        for m in p.models
    }
