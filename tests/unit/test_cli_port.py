"""Where `serve` binds and `healthcheck` probes: `--port`, else `$ULTRA_PORT`, else `server.port`."""

from __future__ import annotations

import pytest

from gateway.cli import main, resolve_port
from gateway.config import parse_settings
from tests._redis import free_port

CONFIG = "server: {port: 9123}\nproviders: [{name: m, kind: mock, models: [{id: x}]}]\n"


def test_the_flag_wins_then_the_environment_then_the_file() -> None:
    settings = parse_settings(CONFIG, env={})
    assert resolve_port(7000, settings, env={"ULTRA_PORT": "7001"}) == 7000
    assert resolve_port(None, settings, env={"ULTRA_PORT": "7001"}) == 7001
    assert resolve_port(None, settings, env={"ULTRA_PORT": " "}) == 9123
    assert resolve_port(None, settings, env={}) == 9123


@pytest.mark.parametrize("value", ["eighty", "-1", "70000"])
def test_a_bad_ultra_port_stops_serve_before_binding(
    value: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ULTRA_PORT", value)
    monkeypatch.delenv("ULTRA_CONFIG", raising=False)
    assert main(["serve"]) == 2
    assert "ULTRA_PORT must be a port number" in capsys.readouterr().err


def test_healthcheck_fails_when_nothing_listens(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ULTRA_PORT", str(free_port()))
    assert main(["healthcheck", "--timeout", "1"]) == 1
    assert "unhealthy: http://127.0.0.1:" in capsys.readouterr().err
