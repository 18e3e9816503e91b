"""`ultra-gateway import-litellm FILE` on a small LiteLLM proxy config written here: the printed YAML loads as a
gateway config, repeated `model_name`s become one model group with their weights, keys are referenced by
environment variable and never copied, and what has no equivalent is named in a note."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import parse_settings

LITELLM = """
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: azure/gpt-4o-east
      api_base: https://my-east.openai.azure.com/
      api_key: os.environ/AZURE_EAST_KEY
      api_version: "2024-06-01"
      weight: 3
    model_info: {input_cost_per_token: 0.0000025, output_cost_per_token: 0.00001, max_input_tokens: 128000}
  - model_name: gpt-4o
    litellm_params: {model: openai/gpt-4o, api_key: os.environ/OPENAI_API_KEY, rpm: 500}
  - model_name: claude
    litellm_params: {model: anthropic/claude-sonnet-4-5, api_key: sk-ant-literal-SECRET-123}
  - model_name: fast
    litellm_params: {model: groq/llama-3.1-8b-instant, api_key: os.environ/GROQ_API_KEY}
  - model_name: fast
    litellm_params: {model: together_ai/meta-llama/Llama-3.1-8B-Instruct-Turbo, api_key: os.environ/TOGETHER_KEY}
  - model_name: legacy
    litellm_params: {model: bedrock/anthropic.claude-v2}
router_settings:
  routing_strategy: least-busy
"""


def test_a_litellm_model_list_becomes_providers_and_model_groups(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "litellm.yaml"
    source.write_text(LITELLM)
    assert main(["import-litellm", str(source)]) == 0
    out, err = capsys.readouterr()
    assert "SECRET" not in out + err

    settings = parse_settings(out, env={})
    providers = {p.name: p for p in settings.providers}
    assert providers["azure"].kind == "openai"
    assert providers["azure"].base_url == "https://my-east.openai.azure.com/openai/v1"
    assert providers["azure"].api_key_env == "AZURE_EAST_KEY"
    east = providers["azure"].models[0]
    assert (east.id, east.input_cost_per_mtok, east.output_cost_per_mtok) == ("gpt-4o-east", 2.5, 10.0)
    assert east.context_length == 128000
    assert providers["groq"].base_url == "https://api.groq.com/openai/v1"
    assert providers["anthropic"].kind == "anthropic"
    assert providers["anthropic"].api_key_env == "ANTHROPIC_API_KEY"

    groups = settings.model_groups
    assert groups["gpt-4o"].deployments == ["azure/gpt-4o-east", "openai/gpt-4o"]
    assert groups["gpt-4o"].routing == "least_in_flight"
    assert groups["gpt-4o"].weights is None  # weights only mean something to weighted routing
    assert groups["fast"].deployments == [
        "groq/llama-3.1-8b-instant",
        "together_ai/meta-llama/Llama-3.1-8B-Instruct-Turbo",
    ]
    assert "legacy" not in groups

    assert "set it in $ANTHROPIC_API_KEY" in err
    assert "provider prefix 'bedrock' is not supported" in err
    assert "rpm not converted" in err


def test_weights_follow_simple_shuffle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "litellm.yaml"
    source.write_text(LITELLM.replace("least-busy", "simple-shuffle"))
    assert main(["import-litellm", str(source)]) == 0
    settings = parse_settings(capsys.readouterr().out, env={})
    assert settings.model_groups["gpt-4o"].weights == [3.0, 1.0]
    assert settings.model_groups["fast"].weights is None


def test_a_file_without_a_model_list_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "other.yaml"
    source.write_text("general_settings: {}\n")
    assert main(["import-litellm", str(source)]) == 2
    assert "no model_list" in capsys.readouterr().err
