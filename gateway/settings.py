"""The configuration file's strict pydantic models (unknown keys are errors), one per section. Loading,
interpolation and the checks across sections are `gateway.config`'s; reading the secrets they name is the
builder's."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from gateway._redis_urls import parse_redis_url

__all__ = [
    "AuthSettings",
    "BudgetSettings",
    "CacheSettings",
    "Capability",
    "KeySettings",
    "LimitSettings",
    "ModelGroupSettings",
    "ModelSettings",
    "ProviderSettings",
    "RateLimitSettings",
    "Settings",
    "StrategySettings",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(_Strict):
    host: str = Field("127.0.0.1", description="Address to bind; --host overrides it.")
    port: int = Field(8000, ge=0, le=65535, description="Port to bind (0 picks a free one); --port overrides it.")
    workers: int = Field(1, ge=1, le=64, description="uvicorn worker processes; --workers overrides it.")
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024, description="Largest request body accepted (413 above).")
    expose_metadata: bool = Field(True, description="Add the `ultra` metadata object to responses.")
    request_timeout_s: float = Field(600.0, gt=0, description="No request runs longer than this, fallbacks included.")
    shutdown_grace_s: float = Field(30.0, ge=0, description="On SIGTERM, how long in-flight requests may finish.")
    header_timeout_s: float = Field(
        10.0, gt=0, description="A connection that has not sent a request's complete headers by then is closed."
    )


class TimeoutSettings(_Strict):
    connect_s: float = Field(5.0, gt=0, description="TCP/TLS connect timeout.")
    read_s: float = Field(60.0, gt=0, description="Longest wait for the next bytes of a response.")
    total_s: float = Field(120.0, gt=0, description="Bound on one call to this provider, retries included.")


class BreakerSettings(_Strict):
    """When a deployment is taken out of rotation, and for how long. Every failed try counts, retries
    included; an upstream 429 takes it out for its `retry-after` regardless."""

    failure_threshold: int = Field(3, ge=1, le=1000, description="Consecutive failed tries that open the breaker.")
    cooldown_s: float = Field(
        30.0, gt=0, le=3600, description="How long an open breaker skips the deployment before one probe."
    )


Capability = Literal["streaming", "tools", "vision", "json_mode", "structured_outputs", "reasoning", "embeddings"]
"""Flags a model may advertise in `/v1/models`."""


class ModelSettings(_Strict):
    id: Annotated[str, Field(min_length=1, description="The upstream model id (the MODEL in PROVIDER/MODEL).")]
    input_cost_per_mtok: float = Field(0.0, ge=0, description="USD per million prompt tokens.")
    output_cost_per_mtok: float = Field(0.0, ge=0, description="USD per million completion tokens.")
    quality: float = Field(0.5, ge=0, le=1, description="The operator's prior on answer quality, 0 to 1.")
    max_concurrency: int | None = Field(None, ge=1, description="In-flight calls allowed to this model.")
    context_length: int | None = Field(None, ge=1, description="Context window in tokens, shown in /v1/models.")
    max_output_tokens: int | None = Field(None, ge=1, description="Longest answer in tokens, shown in /v1/models.")
    capabilities: list[Capability] | None = Field(
        None, description="What the model can do, shown in /v1/models (default: what the provider kind declares)."
    )
    # mock-only profile: a mock provider's models take latency_ms, ms_per_token, failure_rate and reply
    latency_ms: float | None = Field(None, ge=0, description="mock: time to first token.")
    ms_per_token: float | None = Field(None, ge=0, description="mock: streaming pace.")
    failure_rate: float | None = Field(None, ge=0, le=1, description="mock: share of calls that fail with 503.")
    reply: str | None = Field(None, description="mock: reply template ({model}, {provider}, {prompt}).")


_MOCK_ONLY = ("latency_ms", "ms_per_token", "failure_rate", "reply")


class ProviderSettings(_Strict):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="The PROVIDER in PROVIDER/MODEL.")]
    kind: str = Field(description="The dialect: openai, anthropic, gemini or mock (any kind the registry knows).")
    base_url: str | None = Field(None, description="API root, e.g. https://api.openai.com/v1.")
    api_key_env: str | None = Field(None, description="Environment variable holding the upstream key.")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra headers sent on every call.")
    timeout: TimeoutSettings = Field(default_factory=TimeoutSettings)
    max_retries: int = Field(2, ge=0, le=10, description="Retries after the first attempt (retryable errors only).")
    breaker: BreakerSettings = Field(default_factory=BreakerSettings)
    max_concurrency: int | None = Field(None, ge=1, description="In-flight calls allowed to this provider.")
    max_connections: int = Field(256, ge=1, description="Size of the pooled HTTP connection pool.")
    max_response_bytes: int = Field(
        32 * 1024 * 1024,
        ge=1024,
        description="Largest upstream answer accepted: a whole body, or a stream's bytes in total (502 above).",
    )
    api_version: str | None = Field(None, description="anthropic: the anthropic-version header (default 2023-06-01).")
    default_max_tokens: int | None = Field(
        None, ge=1, description="anthropic: max_tokens sent when the client sets none (the API requires one)."
    )
    models: Annotated[list[ModelSettings], Field(min_length=1)]

    @field_validator("headers")
    @classmethod
    def _header_lines(cls, value: dict[str, str]) -> dict[str, str]:
        if any("\r" in text or "\n" in text for item in value.items() for text in item):
            raise ValueError("a header name or value may not contain a line break")
        return value

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @model_validator(mode="after")
    def _kind_rules(self) -> ProviderSettings:
        if self.kind == "openai" and not self.base_url:
            raise ValueError("base_url is required for kind openai")
        if self.kind != "mock":
            for model in self.models:
                used = [f for f in _MOCK_ONLY if getattr(model, f) is not None]
                if used:
                    raise ValueError(f"model {model.id!r}: {', '.join(used)} only apply to kind mock")
        if self.kind != "anthropic":
            used = [f for f in ("api_version", "default_max_tokens") if getattr(self, f) is not None]
            if used:
                raise ValueError(f"{', '.join(used)} only apply to kind anthropic")
        ids = [m.id for m in self.models]
        if len(ids) != len(set(ids)):
            raise ValueError("model ids must be unique within a provider")
        return self

    def api_key(self, env: Mapping[str, str]) -> SecretStr | None:
        """The key from its environment variable, without surrounding whitespace (a key pasted from a file with
        Windows line endings ends in a carriage return, which no HTTP header may carry)."""
        value = env.get(self.api_key_env, "").strip() if self.api_key_env else None
        return SecretStr(value) if value else None


class ModelGroupSettings(_Strict):
    """One public model name over several deployments (`deployments`, with a routing policy), or another name
    for a strategy alias (`alias`). Routing and weights are checked by the `group` strategy's own options."""

    deployments: list[str] | None = Field(None, description="PROVIDER/MODEL names behind the group.")
    routing: str = Field("weighted", description="weighted, least_in_flight or lowest_latency.")
    weights: list[float] | None = Field(None, description="weighted: one weight per deployment (default: equal).")
    alias: str | None = Field(None, description="Serve this strategy alias under the group's name instead.")

    @model_validator(mode="after")
    def _one_target(self) -> ModelGroupSettings:
        if (self.deployments is None) == (self.alias is None):
            raise ValueError("give exactly one of deployments and alias")
        if self.alias is not None and (self.weights is not None or "routing" in self.model_fields_set):
            raise ValueError("routing and weights only apply to a group over deployments")
        return self

    def options(self) -> dict[str, object]:
        """The `group` strategy's options for a group over deployments."""
        out: dict[str, object] = {"deployments": list(self.deployments or ()), "routing": self.routing}
        if self.weights is not None:
            out["weights"] = list(self.weights)
        return out


class StrategySettings(BaseModel):
    """An alias's strategy and its options. The options are validated by the strategy's own model."""

    model_config = ConfigDict(extra="allow", frozen=True)
    kind: str = Field(description="The strategy kind (simple, parallel, waterfall, ...).")


class _RedisBacked(_Strict):
    """A section that may live on Redis: its `redis_url` is checked the same way everywhere."""

    @field_validator("redis_url", check_fields=False)
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is not None:
            parse_redis_url(value)  # one server, redis+sentinel:// or redis+cluster://; the error names no secret
        return value


class CacheSettings(_RedisBacked):
    """Exact-match response cache."""

    enabled: bool = Field(True, description="Cache completed answers.")
    sampled: bool = Field(
        False,
        description="Also cache sampled requests (temperature above 0 or unset, and no seed). Off: a user who asks "
        "for a sample gets a new one every time.",
    )
    backend: Literal["memory", "redis"] | None = Field(
        None, description="memory (one process) or redis (shared). Default: redis when REDIS_URL is set."
    )
    redis_url: str | None = Field(None, description="Default: $REDIS_URL.")
    ttl_s: float = Field(3600.0, gt=0, description="Lifetime of an entry; `x-ultra-cache-ttl` overrides it.")
    max_ttl_s: float = Field(7 * 86400.0, gt=0, description="Upper bound for `x-ultra-cache-ttl`.")
    scope: Literal["key", "tenant", "global"] = Field(
        "key", description="Who shares entries: each API key, each tenant, or everyone."
    )
    max_entries: int = Field(10_000, ge=1, description="memory: most entries kept (LRU).")
    max_bytes: int = Field(64 * 1024 * 1024, ge=1024, description="memory: most bytes kept (LRU).")
    max_entry_bytes: int = Field(1024 * 1024, ge=1024, description="Answers larger than this are not cached.")
    key_secret_env: str | None = Field(
        None, description="Env var with a secret for HMAC cache keys (recommended on a shared Redis)."
    )
    timeout_s: float = Field(0.2, gt=0, le=10, description="redis: budget of one cache operation.")
    lock_ttl_s: float = Field(30.0, gt=0, description="redis: stampede lock lifetime (a crashed leader's lock).")
    lock_wait_s: float = Field(5.0, ge=0, description="redis: how long a request waits for another replica's answer.")
    key_prefix: str = Field("ugw", min_length=1, description="redis: prefix of every key.")


class LimitSettings(_Strict):
    rpm: int | None = Field(None, ge=1, description="Requests per minute.")
    tpm: int | None = Field(None, ge=1, description="Tokens per minute (prompt + completion).")


class RateLimitSettings(_RedisBacked):
    """Rate limits. Per-key limits live on each key (`auth.keys[].rpm/tpm`)."""

    enabled: bool = True
    backend: Literal["memory", "redis"] | None = Field(
        None, description="memory (one process) or redis (exact across replicas). Default: redis when REDIS_URL is set."
    )
    redis_url: str | None = Field(None, description="Default: $REDIS_URL.")
    fail_open: bool = Field(
        True, description="Redis down: admit with a local per-process limiter (true) or answer 503 (false)."
    )
    rpm: int | None = Field(None, ge=1, description="Global requests per minute.")
    tpm: int | None = Field(None, ge=1, description="Global tokens per minute.")
    models: dict[str, LimitSettings] = Field(
        default_factory=dict,
        description="Per model or alias: glob -> limits, first match wins; all models a glob matches share them.",
    )
    default_output_tokens: int = Field(
        1024, ge=1, description="Tokens reserved for the answer when a request sets no max_tokens."
    )
    timeout_s: float = Field(0.1, gt=0, le=10, description="redis: budget of one limiter round trip.")
    key_prefix: str = Field("ugw", min_length=1, description="redis: prefix of every key.")


BudgetPeriod = Literal["day", "month", "rolling_24h"]


class BudgetSettings(_Strict):
    """A spending cap in USD: per calendar day or month (UTC), or over the last 24 hours."""

    usd: float = Field(gt=0, description="Most USD of upstream cost allowed per period.")
    period: BudgetPeriod = Field("month", description="day or month (UTC calendar), or rolling_24h.")


class TenantSettings(_Strict):
    budget: BudgetSettings | None = Field(None, description="Shared by every key of the tenant.")


class KeySettings(_Strict):
    """One API key. Give exactly one of `key`, `key_env`, `key_sha256` (the hex SHA-256 of the key)."""

    name: Annotated[str, Field(min_length=1, description="Shown in logs and metadata; never the key itself.")]
    key: SecretStr | None = None
    key_env: str | None = None
    key_sha256: Annotated[str, Field(pattern=r"^[0-9a-fA-F]{64}$")] | None = None
    tenant: str | None = Field(None, description="Keys of one tenant share cache entries under scope: tenant.")
    rpm: int | None = Field(None, ge=1, description="Requests per minute for this key.")
    tpm: int | None = Field(None, ge=1, description="Tokens per minute for this key.")
    models: list[str] = Field(default_factory=lambda: ["*"], description="Allowed model globs.")
    budget: BudgetSettings | None = Field(None, description="This key's own spending cap.")

    @model_validator(mode="after")
    def _one_source(self) -> KeySettings:
        given = [f for f in ("key", "key_env", "key_sha256") if getattr(self, f) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of key, key_env and key_sha256")
        return self


class AuthSettings(_Strict):
    keys: list[KeySettings] = Field(default_factory=list, description="No keys: open to anyone (warned at start).")
    tenants: dict[str, TenantSettings] = Field(
        default_factory=dict, description="Per tenant (the `tenant` of keys): a budget shared by its keys."
    )
    admin_key_env: str | None = Field(
        None, description="Environment variable holding the admin key for /admin/* (unset: no admin API)."
    )


class FleetSettings(_RedisBacked):
    """Breakers, cool-downs and adaptive posteriors shared by every process through Redis, synchronised in the
    background (never on the answer's path)."""

    enabled: bool = Field(True, description="Share fleet state whenever a Redis URL is known.")
    redis_url: str | None = Field(
        None, description="Default: the rate limits' Redis, else the cache's (when either is on Redis)."
    )
    sync_interval_s: float = Field(0.5, gt=0, le=60, description="How often each process synchronises.")
    timeout_s: float = Field(0.5, gt=0, le=10, description="Budget of one synchronisation round trip.")
    key_prefix: str = Field("ugw", min_length=1, description="Prefix of the two Redis keys.")


class TelemetrySettings(_Strict):
    service_name: str = "ultra-gateway"
    capture_content: bool = False


class Settings(_Strict):
    server: ServerSettings = Field(default_factory=ServerSettings)
    providers: Annotated[list[ProviderSettings], Field(min_length=1)]
    fallbacks: dict[str, list[str]] = Field(default_factory=dict)
    strategies: dict[str, StrategySettings] = Field(default_factory=dict)
    model_groups: dict[str, ModelGroupSettings] = Field(
        default_factory=dict, description="Public model names over several deployments, or over an alias."
    )
    cache: CacheSettings = Field(default_factory=CacheSettings)
    rate_limits: RateLimitSettings = Field(default_factory=RateLimitSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)
    fleet: FleetSettings = Field(default_factory=FleetSettings)

    @property
    def deployment_names(self) -> list[str]:
        return [f"{p.name}/{m.id}" for p in self.providers for m in p.models]
