"""`ultra-gateway eval --config --tasks`: a user's tasks through the real pipeline against the configured
providers (in-process mock ones here), graded by expected answer, regex or judge, under a spend cap."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.cli import main
from tests.fakes.openai_upstream import FakeOpenAI

CONFIG = """
providers:
  - name: m
    kind: mock
    models:
      - {id: right, reply: "work\\nAnswer: 391", input_cost_per_mtok: 1000, output_cost_per_mtok: 1000}
      - {id: wrong, reply: "Answer: 390", input_cost_per_mtok: 1, output_cost_per_mtok: 1}
      - {id: judge, reply: "9"}
cache: {enabled: false}
rate_limits: {enabled: false}
strategies:
  ultra-team: {kind: waterfall, chain: [m/wrong, m/right]}
"""
TASKS = [
    {"id": "a", "prompt": "17*23?", "expected": "391"},
    {"messages": [{"role": "user", "content": "17*23 again?"}], "regex": r"\b391\b"},
]


def write(tmp_path: Path, tasks: list[dict[str, object]]) -> tuple[str, str]:
    config, lines = tmp_path / "config.yaml", tmp_path / "tasks.jsonl"
    config.write_text(CONFIG)
    lines.write_text("\n".join(json.dumps(t) for t in tasks) + "\n")
    return str(config), str(lines)


def rows(path: Path) -> dict[str, dict[str, object]]:
    return {r["configuration"]: r for r in json.loads(path.read_text())["rows"]}


def test_tasks_are_graded_per_model_and_alias(tmp_path: Path) -> None:
    config, tasks = write(tmp_path, TASKS)
    out = tmp_path / "out.json"
    assert main(["eval", "--config", config, "--tasks", tasks, "--json", str(out), "--budget-usd", "100"]) == 0
    found = rows(out)
    assert found["m/right"]["accuracy"] == 1.0
    assert found["m/wrong"]["accuracy"] == 0.0
    assert found["ultra-team"]["requests"] == 2


def test_a_rubric_is_graded_by_the_judge(tmp_path: Path) -> None:
    config, tasks = write(tmp_path, [{"prompt": "Explain.", "rubric": "Says 391."}])
    out = tmp_path / "out.json"
    argv = ["eval", "--config", config, "--tasks", tasks, "--models", "m/wrong", "--json", str(out)]
    assert main(argv) == 2  # a rubric needs a judge
    assert main([*argv, "--judge", "m/judge"]) == 0
    assert rows(out)["m/wrong"]["accuracy"] == 1.0


def test_the_spend_cap_stops_new_requests(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config, tasks = write(tmp_path, [{"prompt": f"q{i}", "expected": "391"} for i in range(20)])
    out = tmp_path / "out.json"
    argv = ["eval", "--config", config, "--tasks", tasks, "--models", "m/right", "--concurrency", "1"]
    assert main([*argv, "--budget-usd", "0.01", "--json", str(out)]) == 0
    assert rows(out)["m/right"]["requests"] < 20
    assert "skipped (cap)" in capsys.readouterr().err


@pytest.mark.parametrize(
    "line", ['{"prompt": "x"}', '{"prompt": "x", "expected": "1", "regex": "1"}', "not json", '{"expected": "1"}']
)
def test_a_bad_task_file_is_refused_with_its_line(
    tmp_path: Path, line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config, _ = write(tmp_path, [])
    tasks = tmp_path / "bad.jsonl"
    tasks.write_text(line + "\n")
    assert main(["eval", "--config", config, "--tasks", str(tasks)]) == 2
    assert "bad.jsonl:1" in capsys.readouterr().err


def test_real_mode_talks_http_to_an_openai_compatible_upstream(tmp_path: Path) -> None:
    """Over loopback to a fake OpenAI upstream: answers graded, upstream failures counted as errors."""
    with FakeOpenAI() as fake:
        config = tmp_path / "config.yaml"
        config.write_text(
            f"""
providers:
  - name: up
    kind: openai
    base_url: {fake.url}
    max_retries: 0
    models:
      - {{id: echo, input_cost_per_mtok: 1, output_cost_per_mtok: 1}}
      - {{id: status-503}}
cache: {{enabled: false}}
rate_limits: {{enabled: false}}
"""
        )
        tasks = tmp_path / "tasks.jsonl"
        tasks.write_text(
            json.dumps({"prompt": "say 17", "regex": "echo: say 17"})
            + "\n"
            + json.dumps({"prompt": "say 18", "expected": "18"})
            + "\n"
        )
        out = tmp_path / "out.json"
        assert main(["eval", "--config", str(config), "--tasks", str(tasks), "--json", str(out)]) == 0
    found = rows(out)
    assert found["up/echo"]["accuracy"] == 0.5  # the regex matches, the expected answer does not
    assert found["up/echo"]["cost_usd"] > 0
    assert found["up/status-503"]["error_rate"] == 1.0
    assert len(fake.bodies_for("echo")) == 2
