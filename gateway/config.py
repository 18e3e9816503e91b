"""Loading the configuration file: YAML with `${VAR}` / `${VAR:-default}` interpolation, validated by the strict
models of `gateway.settings` (unknown keys are errors), then cross-checked against each other and against the
registries of strategy kinds (each alias's options are validated by its kind's own model).

`load_settings(path)` returns `Settings` or raises `ConfigError`, whose `errors` are lines of the form
`providers[2].base_url: message`, every problem at once. Secrets are named by reference (`api_key_env`,
`key_env`); this module checks that they are set, the builder reads them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from gateway._redis_urls import parse_redis_url
from gateway.core.types import loc_path
from gateway.registry import DIALECTS
from gateway.settings import CacheSettings, RateLimitSettings, Settings
from strategies import BUILTIN_ALIASES, validate_options

__all__ = ["ConfigError", "aliases_of", "default_config_text", "load_settings", "parse_settings"]


class ConfigError(Exception):
    """The file is unusable; `errors` holds one `path: message` line per problem."""

    def __init__(self, errors: list[str], source: str = "config") -> None:
        self.errors = errors
        self.source = source
        super().__init__(f"{source}: " + "; ".join(errors))


def aliases_of(settings: Settings) -> list[str]:
    """Every alias a client may name: the built-in ones, then those the file adds."""
    return list(dict.fromkeys([*BUILTIN_ALIASES, *settings.strategies]))


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


def _message(error: Mapping[str, Any]) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def _resolve_redis(settings: Settings, env: Mapping[str, str]) -> Settings:
    """`REDIS_URL`, when set, switches cache and rate limits to Redis unless the file says otherwise."""
    url = env.get("REDIS_URL") or None
    updates: dict[str, Any] = {}
    for name in ("cache", "rate_limits"):
        section: CacheSettings | RateLimitSettings = getattr(settings, name)
        backend = section.backend or ("redis" if url else "memory")
        redis_url = section.redis_url or (url if backend == "redis" else None)
        if (backend, redis_url) != (section.backend, section.redis_url):
            updates[name] = section.model_copy(update={"backend": backend, "redis_url": redis_url})
    fleet = settings.fleet
    if fleet.redis_url is None:
        limits, cache = updates.get("rate_limits", settings.rate_limits), updates.get("cache", settings.cache)
        shared = next((s.redis_url for s in (limits, cache) if s.enabled and s.backend == "redis"), None)
        if shared is not None:
            updates["fleet"] = fleet.model_copy(update={"redis_url": shared})
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
    for i, provider in enumerate(settings.providers):
        if provider.kind not in DIALECTS:
            errors.append(
                f"providers[{i}].kind: unknown provider kind {provider.kind!r} (one of: {', '.join(DIALECTS)})"
            )
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
    errors += _check_groups(settings, known)
    for i, key in enumerate(settings.auth.keys):
        if key.key_env is not None and not env.get(key.key_env):
            errors.append(f"auth.keys[{i}].key_env: environment variable {key.key_env} is not set")
    admin_env = settings.auth.admin_key_env
    if admin_env is not None and not env.get(admin_env):
        errors.append(f"auth.admin_key_env: environment variable {admin_env} is not set")
    key_names = [k.name for k in settings.auth.keys]
    for i, name in enumerate(key_names):
        if key_names.index(name) != i:
            errors.append(f"auth.keys[{i}].name: duplicate key name {name!r}")
    return errors


def _check_groups(settings: Settings, deployments: set[str]) -> list[str]:
    """A group's name must be its own (no alias, no `provider/model`), and what it names must exist."""
    errors: list[str] = []
    aliases = set(aliases_of(settings))
    for name, group in settings.model_groups.items():
        where = f"model_groups.{name}"
        if not name.strip() or name != name.strip():
            errors.append(f"{where}: a group name must be non-empty, without surrounding spaces")
        if name in aliases:
            errors.append(f"{where}: the name {name!r} is already a strategy alias")
        elif name in deployments:
            errors.append(f"{where}: the name {name!r} is already a deployment (PROVIDER/MODEL)")
        if group.alias is not None:
            if group.alias not in aliases:
                errors.append(f"{where}.alias: unknown strategy alias {group.alias!r}")
            continue
        for path, message in validate_options("group", group.options(), deployments):
            errors.append(f"{where}.{path}: {message}" if path else f"{where}: {message}")
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
        errors += [f"{loc_path(tuple(e['loc'])) or '<root>'}: {_message(e)}" for e in exc.errors(include_url=False)]
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
