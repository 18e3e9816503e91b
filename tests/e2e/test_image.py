"""The container image without a Docker engine: the Dockerfile's rules read from the file itself, and its
entry point and health check run exactly as written, from a venv holding only the pinned runtime packages
(`pip install --no-deps -r requirements/runtime.txt` plus the gateway's wheel, as the image installs them)."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests._gateway_process import ROOT, GatewayProcess
from tests._redis import free_port
from tests.fakes.threaded import ThreadedApp

pytestmark = [pytest.mark.e2e]

SOURCE_PATHS = ("gateway", "strategies", "config", "pyproject.toml", "README.md", ".")


@dataclass(frozen=True)
class Instruction:
    stage: int
    keyword: str
    args: str

    def exec_form(self) -> list[str]:
        """`["a", "b"]` after the flags (HEALTHCHECK's `--interval=…`, ending in CMD)."""
        text = self.args
        if self.keyword == "HEALTHCHECK":
            text = text.split(" CMD ", 1)[1]
        value: list[str] = json.loads(text)
        return value


def dockerfile(path: Path = ROOT / "Dockerfile") -> list[Instruction]:
    """Instructions with their stage number (0-based FROM count); comments dropped, continuations joined."""
    out: list[Instruction] = []
    stage = -1
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        out.append(Instruction(stage, keyword, args.strip()))
    return out


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    last = max(i.stage for i in instructions)
    return [i for i in instructions if i.stage == last]


def env_of(stage: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in stage:
        if item.keyword == "ENV":
            for pair in shlex.split(item.args):
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def brings_source(item: Instruction) -> bool:
    if item.keyword == "COPY":
        sources = [a for a in shlex.split(item.args) if not a.startswith("--")][:-1]
        return any(s.rstrip("/") in SOURCE_PATHS for s in sources)
    return item.keyword == "RUN" and "from=wheel" in item.args


def index_of(stage: list[Instruction], predicate: Any) -> int:
    return next(n for n, item in enumerate(stage) if predicate(item))


def runtime_pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "requirements/runtime.txt").read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        match = re.fullmatch(r"([a-z0-9-]+)==([A-Za-z0-9.+!-]+)", line)
        assert match, f"not an exact, canonical pin: {line!r}"
        pins[match.group(1)] = match.group(2)
    return pins


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# --- the Dockerfile's rules ------------------------------------------------------------------------------------


def test_dependencies_are_installed_before_any_source_is_copied() -> None:
    instructions = dockerfile()
    stages = {i.stage for i in instructions if i.stage >= 0}  # -1: ARGs before the first FROM
    assert len(stages) == 2, "a wheel-building stage and the image"
    for stage_number in stages:
        stage = [i for i in instructions if i.stage == stage_number]
        deps = index_of(stage, lambda i: i.keyword == "RUN" and "pip install --no-deps -r" in i.args)
        first_source = index_of(stage, brings_source)
        assert deps < first_source, f"stage {stage_number}: source is copied before the dependency layer"
        copied_before = [i for i in stage[:deps] if i.keyword == "COPY"]
        assert all("requirements/" in i.args for i in copied_before), "only the pin file feeds the dependency layer"
    image = final_stage(instructions)
    assert not any(i.keyword == "COPY" and brings_source(i) for i in image), "the image takes the wheel, not source"


def test_the_image_runs_as_a_numeric_non_root_user() -> None:
    image = final_stage(dockerfile())
    user = [i for i in image if i.keyword == "USER"]
    assert user, "no USER: the server would run as root"
    uid = user[-1].args.split(":")[0]
    assert uid.isdigit(), "a numeric uid lets Kubernetes check runAsNonRoot"
    assert int(uid) != 0
    assert index_of(image, lambda i: i.keyword == "USER") < index_of(image, lambda i: i.keyword == "CMD")


def test_the_health_check_hard_codes_no_port() -> None:
    image = final_stage(dockerfile())
    check = next(i for i in image if i.keyword == "HEALTHCHECK")
    command = check.exec_form()
    assert command[:2] == ["ultra-gateway", "healthcheck"]
    assert not any(re.search(r"\d{2,5}", part) for part in command), command
    cmd = next(i for i in image if i.keyword == "CMD").exec_form()
    assert cmd == ["ultra-gateway", "serve", "--host", "0.0.0.0"], "the port comes from ULTRA_PORT, not a flag"
    assert env_of(image)["ULTRA_PORT"].isdigit()


def test_every_runtime_dependency_is_pinned_and_unused_ones_are_left_out() -> None:
    pins = runtime_pins()
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for requirement in declared:
        name = canonical(re.split(r"[\[<>=!~;\s]", requirement, maxsplit=1)[0])
        assert name in pins, f"{name} is a dependency of the gateway but not pinned in requirements/runtime.txt"
    sys.path.insert(0, str(ROOT / "requirements"))
    try:
        import lock  # requirements/lock.py: the list of packages the server never imports
    finally:
        sys.path.remove(str(ROOT / "requirements"))
    assert {"faker", "polyfactory", "rich", "watchfiles"} <= set(lock.UNUSED)
    assert not set(pins) & set(lock.UNUSED)
    for line in (ROOT / "requirements/build.txt").read_text().splitlines():
        assert line.startswith("#") or re.fullmatch(r"[a-z0-9-]+==\S+", line), line


# --- the entry point and the health check, run as the image runs them -------------------------------------------


@pytest.fixture(scope="module")
def image_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv built the way the Dockerfile builds the image: pinned packages with --no-deps, then the wheel."""
    where = tmp_path_factory.mktemp("image")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q", "-w", str(where)],
        check=True,
        timeout=120,
        capture_output=True,
    )
    venv = where / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=60)
    pip = [str(venv / "bin/python"), "-m", "pip", "install", "-q", "--no-deps"]
    subprocess.run([*pip, "-r", str(ROOT / "requirements/runtime.txt")], check=True, timeout=240, capture_output=True)
    subprocess.run([*pip, str(next(where.glob("ultra_gateway-*.whl")))], check=True, timeout=60, capture_output=True)
    return venv


class TraceReceiver:
    """An OTLP/HTTP endpoint: proves the exporter's packages (protobuf, requests) made it into the image."""

    def __init__(self) -> None:
        self.spans = 0
        self.got = threading.Event()
        app = web.Application()
        app.router.add_post("/v1/traces", self._traces)
        self.server = ThreadedApp(app)

    async def _traces(self, request: web.Request) -> web.Response:
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.read())
        self.spans += sum(len(s.spans) for r in message.resource_spans for s in r.scope_spans)
        self.got.set()
        return web.Response(status=200)


@pytest.fixture
def receiver() -> Iterator[TraceReceiver]:
    receiver = TraceReceiver()
    with receiver.server:
        yield receiver


@pytest.mark.timeout(300)
def test_the_image_command_serves_and_its_health_check_follows_the_port(
    image_venv: Path, receiver: TraceReceiver, tmp_path: Path
) -> None:
    image = final_stage(dockerfile())
    port = free_port()
    env = {
        **env_of(image),
        "ULTRA_PORT": str(port),  # what `docker run -e ULTRA_PORT=…` does
        "PATH": f"{image_venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.server.url,
        "OTEL_BSP_SCHEDULE_DELAY": "50",
    }
    serve, health = next(i for i in image if i.keyword == "CMD"), next(i for i in image if i.keyword == "HEALTHCHECK")

    def healthcheck(environment: dict[str, str]) -> int:
        command = health.exec_form()
        return subprocess.run(command, env=environment, cwd=tmp_path, timeout=30, capture_output=True).returncode

    drain: threading.Thread | None = None
    process = subprocess.Popen(
        serve.exec_form(), env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stderr is not None
        listening = ""
        for line in process.stderr:
            match = re.search(r"Uvicorn running on (http://\S+:\d+)", line)
            if match:
                listening = match.group(1)
                break
        assert listening == f"http://0.0.0.0:{port}", "the server binds ULTRA_PORT on every interface"
        drain = threading.Thread(target=process.stderr.read, daemon=True)  # keep the pipe from filling
        drain.start()
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(timeout=10) as http:
            assert http.get(f"{url}/health/ready").status_code == 200
            answer = http.post(
                f"{url}/v1/chat/completions",
                json={"model": "ultra-simple", "messages": [{"role": "user", "content": "hi"}]},
            )
            assert answer.status_code == 200, answer.text
            with http.stream(
                "POST",
                f"{url}/v1/chat/completions",
                json={"model": "swift/swift-mini", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
            ) as stream:
                assert stream.status_code == 200
                assert "data: [DONE]" in stream.read().decode()
            assert "ultra_requests_total" in http.get(f"{url}/metrics").text
        assert receiver.got.wait(20), "no span reached the OTLP receiver"

        assert healthcheck(env) == 0
        assert healthcheck({**env, "ULTRA_PORT": str(free_port())}) == 1, "it probes the configured port"
    finally:
        os.kill(process.pid, signal.SIGTERM)  # by PID
        process.wait(timeout=30)
        if drain is not None:
            drain.join(timeout=10)
        assert process.stderr is not None
        process.stderr.close()
    assert healthcheck(env) == 1, "a stopped server is unhealthy"


@pytest.mark.timeout(60)
def test_the_health_check_stays_on_liveness_while_redis_is_down(tmp_path: Path) -> None:
    """The container's check probes /health/live, so a Redis outage (readiness 503) does not get the container
    marked unhealthy and restarted; `--path /health/ready` is there for whoever wants the stricter check."""
    config = tmp_path / "gateway.yaml"
    config.write_text("providers: [{name: m, kind: mock, models: [{id: x}]}]\n")
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    with GatewayProcess(config, {"REDIS_URL": dead_redis}) as gateway:
        port = gateway.base_url.rsplit(":", 1)[1]
        env = {**os.environ, "ULTRA_PORT": port}
        assert httpx.get(f"{gateway.base_url}/health/ready", timeout=10).status_code == 503

        def check(*extra: str) -> int:
            command = [sys.executable, "-m", "gateway", "healthcheck", *extra]
            return subprocess.run(command, env=env, timeout=30, capture_output=True, cwd=ROOT).returncode

        assert check() == 0
        assert check("--path", "/health/ready") == 1
