"""The configuration file: YAML with `${VAR}` / `${VAR:-default}` interpolation, validated by strict pydantic
models (unknown keys are errors), cross-references checked at load (SPEC §12).

`load_settings(path)` returns `Settings` or raises `ConfigError`, whose `errors` are lines of the form
`providers[2].base_url: message`, every problem at once. Secrets are read from the environment by reference
(`api_key_env`, `key_env`) and held as `SecretStr`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from gateway._redis_urls import parse_redis_url
from strategies import validate_options

__all__ = [
    "BUILTIN_ALIASES",
    "AuthSettings",
    "CacheSettings",
    "ConfigError",
    "KeySettings",
    "LimitSettings",
    "ModelSettings",
    "ProviderSettings",
    "RateLimitSettings",
    "Settings",
    "default_config_text",
    "load_settings",
    "parse_settings",
]

BUILTIN_ALIASES: tuple[str, ...] = (
    "ultra-simple",
    "ultra-parallel",
    "ultra-waterfall",
    "ultra-balanced",
    "ultra-adaptive",
    "ultra-cost",
    "ultra-quality",
    "ultra-speed",
)
StrategyKind = Literal["simple", "parallel", "waterfall", "balanced", "adaptive", "cost", "quality", "speed"]


class ConfigError(Exception):
    """The file is unusable; `errors` holds one `path: message` line per problem."""

    def __init__(self, errors: list[str], source: str = "config") -> None:
        self.errors = errors
        self.source = source
        super().__init__(f"{source}: " + "; ".join(errors))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(_Strict):
    host: str = Field("127.0.0.1", description="Address to bind; --host overrides it.")
    port: int = Field(8000, ge=0, le=65535, description="Port to bind (0 picks a free one); --port overrides it.")
    workers: int = Field(1, ge=1, le=64, description="uvicorn worker processes; --workers overrides it.")
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024, description="Largest request body accepted (413 above).")
    expose_metadata: bool = Field(True, description="Add the `ultra` metadata object to responses (SPEC §5).")
    request_timeout_s: float = Field(600.0, gt=0, description="No request runs longer than this, fallbacks included.")
    shutdown_grace_s: float = Field(30.0, ge=0, description="On SIGTERM, how long in-flight requests may finish.")


class TimeoutSettings(_Strict):
    connect_s: float = Field(5.0, gt=0, description="TCP/TLS connect timeout.")
    read_s: float = Field(60.0, gt=0, description="Longest wait for the next bytes of a response.")
    total_s: float = Field(120.0, gt=0, description="Bound on one call to this provider, retries included.")


class ModelSettings(_Strict):
    id: Annotated[str, Field(min_length=1, description="The upstream model id (the MODEL in PROVIDER/MODEL).")]
    input_cost_per_mtok: float = Field(0.0, ge=0, description="USD per million prompt tokens.")
    output_cost_per_mtok: float = Field(0.0, ge=0, description="USD per million completion tokens.")
    quality: float = Field(0.5, ge=0, le=1, description="The operator's prior on answer quality, 0 to 1.")
    max_concurrency: int | None = Field(None, ge=1, description="In-flight calls allowed to this model.")
    # mock-only profile (SPEC §12: a mock provider's models take latency_ms, failure_rate and reply)
    latency_ms: float | None = Field(None, ge=0, description="mock: time to first token.")
    ms_per_token: float | None = Field(None, ge=0, description="mock: streaming pace.")
    failure_rate: float | None = Field(None, ge=0, le=1, description="mock: share of calls that fail with 503.")
    reply: str | None = Field(None, description="mock: reply template ({model}, {provider}, {prompt}).")


_MOCK_ONLY = ("latency_ms", "ms_per_token", "failure_rate", "reply")


class ProviderSettings(_Strict):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="The PROVIDER in PROVIDER/MODEL.")]
    kind: Literal["openai", "anthropic", "gemini", "mock"]
    base_url: str | None = Field(None, description="API root, e.g. https://api.openai.com/v1.")
    api_key_env: str | None = Field(None, description="Environment variable holding the upstream key.")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra headers sent on every call.")
    timeout: TimeoutSettings = Field(default_factory=TimeoutSettings)
    max_retries: int = Field(2, ge=0, le=10, description="Retries after the first attempt (retryable errors only).")
    max_concurrency: int | None = Field(None, ge=1, description="In-flight calls allowed to this provider.")
    max_connections: int = Field(256, ge=1, description="Size of the pooled HTTP connection pool.")
    api_version: str | None = Field(None, description="anthropic: the anthropic-version header (default 2023-06-01).")
    default_max_tokens: int | None = Field(
        None, ge=1, description="anthropic: max_tokens sent when the client sets none (the API requires one)."
    )
    models: Annotated[list[ModelSettings], Field(min_length=1)]

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

    def api_key(self) -> SecretStr | None:
        value = os.environ.get(self.api_key_env) if self.api_key_env else None
        return SecretStr(value) if value else None


class StrategySettings(BaseModel):
    """An alias's strategy and its options. The options are validated by the strategy's own model."""

    model_config = ConfigDict(extra="allow", frozen=True)
    kind: StrategyKind


class _RedisBacked(_Strict):
    """A section that may live on Redis: its `redis_url` is checked the same way everywhere."""

    @field_validator("redis_url", check_fields=False)
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is not None:
            parse_redis_url(value)  # one server, redis+sentinel:// or redis+cluster://; the error names no secret
        return value


class CacheSettings(_RedisBacked):
    """Exact-match response cache (SPEC §6)."""

    enabled: bool = Field(True, description="Cache completed answers.")
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
    """Rate limits (SPEC §7). Per-key limits live on each key (`auth.keys[].rpm/tpm`)."""

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

    @model_validator(mode="after")
    def _one_source(self) -> KeySettings:
        given = [f for f in ("key", "key_env", "key_sha256") if getattr(self, f) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of key, key_env and key_sha256")
        return self


class AuthSettings(_Strict):
    keys: list[KeySettings] = Field(default_factory=list, description="No keys: open to anyone (warned at start).")


class TelemetrySettings(_Strict):
    service_name: str = "ultra-gateway"
    capture_content: bool = False


class Settings(_Strict):
    server: ServerSettings = Field(default_factory=ServerSettings)
    providers: Annotated[list[ProviderSettings], Field(min_length=1)]
    fallbacks: dict[str, list[str]] = Field(default_factory=dict)
    strategies: dict[str, StrategySettings] = Field(default_factory=dict)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    rate_limits: RateLimitSettings = Field(default_factory=RateLimitSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)

    @property
    def deployment_names(self) -> list[str]:
        return [f"{p.name}/{m.id}" for p in self.providers for m in p.models]

    @property
    def aliases(self) -> list[str]:
        return list(dict.fromkeys([*BUILTIN_ALIASES, *self.strategies]))


# --- loading -----------------------------------------------------------------------------------------------

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _interpolate(node: Any, path: str, env: Mapping[str, str], errors: list[str]) -> Any:
    if isinstance(node, str):

        def sub(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            errors.append(f"{path or '<root>'}: environment variable {name} is not set")
            return match.group(0)  # left as written, so the value is not also reported as invalid

        return _VAR.sub(sub, node)
    if isinstance(node, dict):
        return {k: _interpolate(v, f"{path}.{k}" if path else str(k), env, errors) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate(v, f"{path}[{i}]", env, errors) for i, v in enumerate(node)]
    return node


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith(("function-", "literal[")) or part in ("str", "int", "float", "list", "dict"):
            continue
        else:
            out += f".{part}" if out else part
    return out or "<root>"


def _message(error: Mapping[str, Any]) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def _resolve_redis(settings: Settings, env: Mapping[str, str]) -> Settings:
    """SPEC §1: `REDIS_URL`, when set, switches cache and rate limits to Redis unless the file says otherwise."""
    url = env.get("REDIS_URL") or None
    updates: dict[str, Any] = {}
    for name in ("cache", "rate_limits"):
        section: CacheSettings | RateLimitSettings = getattr(settings, name)
        backend = section.backend or ("redis" if url else "memory")
        redis_url = section.redis_url or (url if backend == "redis" else None)
        if (backend, redis_url) != (section.backend, section.redis_url):
            updates[name] = section.model_copy(update={"backend": backend, "redis_url": redis_url})
    return settings.model_copy(update=updates) if updates else settings


def _cross_check(settings: Settings, env: Mapping[str, str]) -> list[str]:
    errors: list[str] = []
    for name in ("cache", "rate_limits"):
        section: CacheSettings | RateLimitSettings = getattr(settings, name)
        if section.enabled and section.backend == "redis" and not section.redis_url:
            errors.append(f"{name}.redis_url: required with backend redis (or set REDIS_URL)")
        elif section.enabled and section.redis_url:
            try:
                parse_redis_url(section.redis_url)  # REDIS_URL is not checked by the field's validator
            except ValueError as exc:
                errors.append(f"{name}.redis_url: {exc}")
    secret_env = settings.cache.key_secret_env
    if secret_env is not None and not env.get(secret_env):
        errors.append(f"cache.key_secret_env: environment variable {secret_env} is not set")
    names = [p.name for p in settings.providers]
    for i, name in enumerate(names):
        if names.index(name) != i:
            errors.append(f"providers[{i}].name: duplicate provider name {name!r}")
    known = set(settings.deployment_names)
    for source, targets in settings.fallbacks.items():
        if source not in known:
            errors.append(f"fallbacks.{source}: unknown deployment {source!r} (use PROVIDER/MODEL)")
        for j, target in enumerate(targets):
            if target not in known:
                errors.append(f"fallbacks.{source}[{j}]: unknown deployment {target!r}")
    for alias, strategy in settings.strategies.items():
        if not alias.startswith("ultra-"):
            errors.append(f"strategies.{alias}: alias names start with 'ultra-'")
        for path, message in validate_options(strategy.kind, strategy.model_extra or {}, known):
            errors.append(f"strategies.{alias}.{path}: {message}")
    for i, key in enumerate(settings.auth.keys):
        if key.key_env is not None and not env.get(key.key_env):
            errors.append(f"auth.keys[{i}].key_env: environment variable {key.key_env} is not set")
    key_names = [k.name for k in settings.auth.keys]
    for i, name in enumerate(key_names):
        if key_names.index(name) != i:
            errors.append(f"auth.keys[{i}].name: duplicate key name {name!r}")
    return errors


def parse_settings(text: str, *, source: str = "config", env: Mapping[str, str] | None = None) -> Settings:
    """Validate YAML text; raise ConfigError listing every problem with its path."""
    env = os.environ if env is None else env
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "<root>"
        raise ConfigError([f"{where}: not valid YAML ({getattr(exc, 'problem', None) or exc})"], source) from None
    if not isinstance(raw, dict):
        raise ConfigError(["<root>: the file must hold a mapping (providers:, strategies:, ...)"], source)
    errors: list[str] = []
    raw = _interpolate(raw, "", env, errors)
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        errors += [f"{_loc(tuple(e['loc']))}: {_message(e)}" for e in exc.errors(include_url=False)]
        raise ConfigError(errors, source) from None
    settings = _resolve_redis(settings, env)
    errors += _cross_check(settings, env)
    if errors:
        raise ConfigError(errors, source)
    return settings


def default_config_text() -> str:
    """The built-in configuration (mock fleet): package data in a wheel, `config/default.yaml` in a checkout."""
    packaged = resources.files("gateway").joinpath("_data/default.yaml")
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    return (Path(__file__).resolve().parent.parent / "config" / "default.yaml").read_text(encoding="utf-8")


def load_settings(path: str | os.PathLike[str] | None = None, *, env: Mapping[str, str] | None = None) -> Settings:
    """Load `path`, or `ULTRA_CONFIG`, or the built-in default."""
    env = os.environ if env is None else env
    chosen = path or env.get("ULTRA_CONFIG")
    if not chosen:
        return parse_settings(default_config_text(), source="<built-in default>", env=env)
    try:
        text = Path(chosen).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"<file>: cannot read {chosen}: {exc.strerror}"], str(chosen)) from None
    return parse_settings(text, source=str(chosen), env=env)
