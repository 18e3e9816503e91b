"""Builds the provider pool from settings: one dialect and one pooled client per provider, wrapped with the
resilience layers (STYLE 8), and one Deployment per configured model."""

from __future__ import annotations

import logging

from opentelemetry.trace import Tracer

from gateway.core.pool import Deployment, ProviderPool
from gateway.core.provider import Provider
from gateway.providers._http import Dialect, HttpProvider, Timeouts
from gateway.providers.anthropic import DEFAULT_API_VERSION, AnthropicDialect
from gateway.providers.gemini import GeminiDialect
from gateway.providers.mock import MockModel, MockProvider
from gateway.providers.openai_compat import OpenAIDialect
from gateway.resilience.retry import RetryingProvider
from gateway.settings import ProviderSettings, Settings
from gateway.telemetry.instrumented import InstrumentedProvider

__all__ = ["build_pool", "build_provider"]

log = logging.getLogger("ultra_gateway")

ANTHROPIC_BASE_URL = "https://api.anthropic.com"
GEMINI_BASE_URL = "https://generativelanguage.googleapis.com"


def build_provider(config: ProviderSettings) -> Provider:
    """The bare adapter for one provider entry (no wrappers)."""
    if config.kind == "mock":
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
    secret = config.api_key()
    if config.api_key_env and secret is None:
        log.warning(
            "provider %s: environment variable %s is not set; calls will go unauthenticated",
            config.name,
            config.api_key_env,
        )
    api_key = secret.get_secret_value() if secret is not None else None
    timeouts = Timeouts(config.timeout.connect_s, config.timeout.read_s, config.timeout.total_s)
    dialect: Dialect
    if config.kind == "openai":
        assert config.base_url is not None  # validated by ProviderSettings
        base_url = config.base_url
        dialect = OpenAIDialect(api_key, provider=config.name)
    elif config.kind == "anthropic":
        # The dialect adds /v1/messages; accept the API root written with or without /v1.
        base_url = (config.base_url or ANTHROPIC_BASE_URL).rstrip("/").removesuffix("/v1")
        dialect = AnthropicDialect(
            api_key,
            provider=config.name,
            api_version=config.api_version or DEFAULT_API_VERSION,
            default_max_tokens=config.default_max_tokens or 4096,
        )
    else:
        # The dialect adds /v1beta/models/...; accept the API root written with or without /v1beta.
        base_url = (config.base_url or GEMINI_BASE_URL).rstrip("/").removesuffix("/v1beta")
        dialect = GeminiDialect(api_key, provider=config.name)
    return HttpProvider(
        config.name,
        base_url,
        dialect,
        timeouts=timeouts,
        headers=config.headers,
        max_connections=config.max_connections,
        max_response_bytes=config.max_response_bytes,
    )


def build_pool(settings: Settings, *, tracer: Tracer | None = None) -> ProviderPool:
    """With a tracer, each attempt (inside the retries, so every retry) gets its own CLIENT span."""
    deployments = []
    for config in settings.providers:
        adapter = build_provider(config)
        if tracer is not None:
            adapter = InstrumentedProvider(
                adapter, tracer, base_url=config.base_url, capture_content=settings.telemetry.capture_content
            )
        provider: Provider = RetryingProvider(adapter, max_retries=config.max_retries, total_s=config.timeout.total_s)
        for model in config.models:
            deployments.append(
                Deployment(
                    provider,
                    model.id,
                    input_cost_per_mtok=model.input_cost_per_mtok,
                    output_cost_per_mtok=model.output_cost_per_mtok,
                    quality=model.quality,
                    max_concurrency=model.max_concurrency or config.max_concurrency,
                )
            )
    return ProviderPool(deployments, settings.fallbacks)
