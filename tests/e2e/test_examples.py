"""Every script in `examples/` runs as a user would run it: the real gateway as a subprocess on the built-in
configuration (the mock fleet, no keys), each script as its own process with `ULTRA_BASE_URL` pointing at it.
A script must exit 0 and print its key line, so the examples cannot rot. The scripts run concurrently (each is
mostly waiting on the gateway), which keeps the whole module to a few seconds."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests._gateway_process import ROOT, GatewayProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

EXAMPLES = ROOT / "examples"

# script → (a line its output must contain, the importable package it needs beyond the dev extra's SDKs)
EXPECTED: dict[str, tuple[str, str | None]] = {
    "aliases.py": (" names answered", None),
    "streaming.py": ("usage: prompt=", None),
    "tools_agent.py": ("final answer: ", None),
    "responses_conversation.py": ("retrieved: resp_", None),
    "anthropic_messages.py": ("messages.stream: ", None),
    "embeddings.py": ("3 vectors of 256 dimensions", None),
    "structured_output.py": ("parsed: {'name': ", None),
    "langchain_structured.py": ("structured: {'title': ", "langchain_openai"),
    "openai_agents.py": ("tool calls: 1", "agents"),
}


@pytest.fixture(scope="module")
def outcomes() -> Iterator[dict[str, subprocess.CompletedProcess[str]]]:
    with GatewayProcess(ROOT / "config" / "default.yaml") as gateway:
        env = {**os.environ, "ULTRA_BASE_URL": f"{gateway.base_url}/v1"}
        env.pop("ULTRA_API_KEY", None)

        def run(script: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, str(EXAMPLES / script)],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=60,
            )

        runnable = [s for s, (_, needs) in EXPECTED.items() if needs is None or importlib.util.find_spec(needs)]
        with ThreadPoolExecutor(max_workers=4) as pool:
            yield dict(zip(runnable, pool.map(run, runnable), strict=True))


def test_every_example_is_tested() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("script", list(EXPECTED))
def test_example_runs_against_the_default_gateway(
    script: str, outcomes: dict[str, subprocess.CompletedProcess[str]]
) -> None:
    line, needs = EXPECTED[script]
    if script not in outcomes:
        if os.environ.get("CI"):
            pytest.fail(f"{needs} is not installed (the dev extra installs it)")
        pytest.skip(f"{needs} is not installed (pip install -e '.[examples]')")
    done = outcomes[script]
    assert done.returncode == 0, done.stderr[-3000:]
    assert line in done.stdout, done.stdout[-3000:]
