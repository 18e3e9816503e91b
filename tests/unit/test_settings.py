"""Config loading: interpolation, strict validation with paths, cross-references, the shipped default."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import ConfigError, aliases_of, load_settings, parse_settings

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def errors_of(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_settings(text, env=env or {})
    return caught.value.errors


def test_builtin_default_is_a_mock_fleet_of_three_profiles() -> None:
    settings = load_settings(env={})
    assert {p.kind for p in settings.providers} == {"mock"}
    assert len(settings.providers) >= 3
    latencies = sorted(m.latency_ms or 0 for p in settings.providers for m in p.models)
    assert latencies[0] < latencies[-1]
    assert "ultra-simple" in aliases_of(settings)
    assert "ultra-speed" in aliases_of(settings)


def test_the_documented_example_is_accepted() -> None:
    example = REFERENCE.read_text().split("```yaml", 1)[1].split("```", 1)[0]
    settings = parse_settings(example, env={"TEAM_A_KEY": "team-a-secret"})
    assert settings.deployment_names == [
        "openai/gpt-4o-mini",
        "openai/gpt-4o",
        "azure-east/gpt-4o",
        "claude/claude-sonnet-4-5",
    ]
    assert settings.model_groups["gpt-4o"].deployments == ["azure-east/gpt-4o", "openai/gpt-4o"]
    assert settings.model_groups["default"].alias == "ultra-balanced"
    assert settings.cache.redis_url == "redis://127.0.0.1:6379/0"
    assert "ultra-moa-3" in aliases_of(settings)


def test_interpolation_with_and_without_defaults() -> None:
    text = """
providers:
  - {name: p, kind: openai, base_url: "${BASE:-http://127.0.0.1:9}", api_key_env: KEY, models: [{id: "${MODEL}"}]}
"""
    settings = parse_settings(text, env={"MODEL": "m1"})
    assert settings.providers[0].base_url == "http://127.0.0.1:9"
    assert settings.deployment_names == ["p/m1"]
    assert errors_of(text) == ["providers[0].models[0].id: environment variable MODEL is not set"]


def test_every_error_is_reported_with_its_path() -> None:
    text = """
providers:
  - {name: a, kind: openai, models: [{id: m}]}
  - {name: b, kind: mock, bogus: 1, models: [{id: m, quality: 3}]}
  - {name: c, kind: openai, base_url: "ftp://x", models: [{id: m}]}
auth: {keys: [{name: k, key: x, key_sha256: abc}]}
"""
    errors = errors_of(text)
    assert "providers[0]: base_url is required for kind openai" in errors
    assert "providers[1].bogus: unknown key" in errors
    assert any(e.startswith("providers[1].models[0].quality:") for e in errors)
    assert "providers[2].base_url: must be an http:// or https:// URL" in errors
    assert any(e.startswith("auth.keys[0].key_sha256:") for e in errors)


def test_cross_references_are_checked() -> None:
    text = """
providers:
  - {name: a, kind: mock, models: [{id: m}]}
  - {name: a, kind: mock, models: [{id: n}]}
fallbacks: {a/m: [a/zz], x/y: [a/m]}
strategies: {moa: {kind: simple}}
auth: {keys: [{name: k, key_env: NOT_SET}]}
"""
    errors = errors_of(text)
    assert "providers[1].name: duplicate provider name 'a'" in errors
    assert "fallbacks.a/m[0]: unknown deployment 'a/zz'" in errors
    assert "fallbacks.x/y: unknown deployment 'x/y' (use PROVIDER/MODEL)" in errors
    assert "strategies.moa: alias names start with 'ultra-'" in errors
    assert "auth.keys[0].key_env: environment variable NOT_SET is not set" in errors


def test_mock_only_fields_are_refused_on_real_providers() -> None:
    text = "providers: [{name: a, kind: openai, base_url: 'http://h', models: [{id: m, latency_ms: 5}]}]"
    assert errors_of(text) == ["providers[0]: model 'm': latency_ms only apply to kind mock"]


def test_not_yaml_and_not_a_mapping() -> None:
    assert errors_of("providers: [")[0].startswith("line ")
    assert errors_of("- a\n- b") == ["<root>: the file must hold a mapping (providers:, strategies:, ...)"]


def test_the_real_provider_example_loads_with_its_groups() -> None:
    settings = load_settings(REFERENCE.parents[1] / "config" / "example.yaml", env={})
    assert settings.model_groups["smart"].routing == "least_in_flight"
    assert settings.model_groups["default"].alias == "ultra-balanced"


def test_line_breaks_in_upstream_headers_are_refused_and_a_keys_surrounding_whitespace_dropped() -> None:
    provider = "providers:\n  - {name: up, kind: openai, base_url: 'http://u/v1', models: [{id: m}]%s}\n"
    errors = errors_of(provider % ', headers: {x-team: "a\\r\\ninjected: 1"}')
    assert errors == ["providers[0].headers: a header name or value may not contain a line break"]
    settings = parse_settings(provider % ", api_key_env: UP_KEY", env={})
    key = settings.providers[0].api_key({"UP_KEY": "sk-from-a-windows-file\r\n"})
    assert key is not None
    assert key.get_secret_value() == "sk-from-a-windows-file"
    assert settings.providers[0].api_key({"UP_KEY": " \n"}) is None


def test_a_key_with_a_line_break_inside_fails_at_start_naming_its_variable_not_its_value() -> None:
    from gateway.registry import build_provider

    provider = (
        "providers:\n  - {name: up, kind: openai, base_url: 'http://u/v1', api_key_env: UP_KEY, models: [{id: m}]}\n"
    )
    settings = parse_settings(provider, env={})
    with pytest.raises(ValueError, match=r"provider up: .*line break.*UP_KEY") as caught:
        build_provider(settings.providers[0], {"UP_KEY": "sk-secret\nhalf"})
    assert "sk-secret" not in str(caught.value)
