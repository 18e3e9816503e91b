"""The Dockerfile's entry point, run the way the image runs it: from an installed wheel, outside the checkout,
with the built-in config that ships inside the package (no Docker engine here to build the image itself)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import httpx
import pytest

from tests._gateway_process import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def dockerfile_cmd() -> list[str]:
    line = next(ln for ln in (ROOT / "Dockerfile").read_text().splitlines() if ln.startswith("CMD "))
    command: list[str] = json.loads(line[4:])
    return command


def test_the_image_command_serves_the_builtin_fleet_from_a_wheel(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(ROOT),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
        ],
        check=True,
        timeout=90,
        capture_output=True,
    )
    wheel = next(tmp_path.glob("ultra_gateway-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=60)
    # Dependencies come from the test environment (no network needed); the package itself only from the wheel.
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(venv / "bin/pip"), "install", "-q", "--no-deps", str(wheel)], check=True, timeout=60)

    command = dockerfile_cmd()
    assert command[:2] == ["ultra-gateway", "serve"]
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ULTRA_CONFIG", "REDIS_URL")}
    process = subprocess.Popen(
        [str(venv / "bin" / command[0]), *command[1:], "--host", "127.0.0.1", "--port", "0"],
        cwd=outside,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        url = ""
        deadline = time.monotonic() + 60
        for line in process.stderr:
            match = re.search(r"Uvicorn running on (http://\S+:\d+)", line)
            if match:
                url = match.group(1)
                break
            assert time.monotonic() < deadline, "the gateway did not start"
        assert url, "the gateway exited before listening"
        with httpx.Client(timeout=10) as http:
            assert http.get(f"{url}/health/live").json() == {"status": "ok"}
            models = {m["id"] for m in http.get(f"{url}/v1/models").json()["data"]}
            assert {"swift/swift-mini", "steady/steady-base", "sage/sage-pro", "ultra-simple"} <= models
            reply = http.post(
                f"{url}/v1/chat/completions",
                json={"model": "swift/swift-mini", "messages": [{"role": "user", "content": "hi"}]},
            )
            assert reply.status_code == 200
        installed = subprocess.run(
            [str(venv / "bin/python"), "-c", "import gateway; print(gateway.__file__)"],
            capture_output=True,
            text=True,
            check=True,
            cwd=outside,
        ).stdout
        assert str(venv) in installed  # the wheel's copy, not the checkout
    finally:
        os.kill(process.pid, signal.SIGTERM)
        process.communicate(timeout=20)  # waits and closes the pipe
