"""Clients that misbehave, against the real server: one that stops reading its stream, one that hangs up on a
whole-answer request. Either way the upstream connection must be closed soon, not held for its own timeouts."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import orjson
import pytest

from tests._gateway_process import GatewayProcess
from tests.fakes.faulty_upstream import FaultyUpstream

DEADLINE_S = 3.0


@pytest.fixture(scope="module")
def upstream() -> Iterator[FaultyUpstream]:
    with FaultyUpstream() as server:
        yield server


@pytest.fixture(scope="module")
def gateway(upstream: FaultyUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    config = tmp_path_factory.mktemp("abuse") / "gateway.yaml"
    config.write_text(f"""
server: {{request_timeout_s: {DEADLINE_S}}}
providers:
  - name: up
    kind: openai
    base_url: {upstream.url}
    max_retries: 0
    models: [{{id: flood}}, {{id: hang-headers}}]
cache: {{enabled: false}}
""")
    with GatewayProcess(config) as process:
        yield process


def _connect(gateway: GatewayProcess, *, rcvbuf: int | None = None) -> socket.socket:
    host, port = gateway.base_url.removeprefix("http://").rsplit(":", 1)
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before connect: the window stays small
    sock.settimeout(10)
    sock.connect((host, int(port)))
    return sock


def _post(model: str, stream: bool) -> bytes:
    body = orjson.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream})
    head = "POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n"
    return (head + f"content-length: {len(body)}\r\n\r\n").encode() + body


def test_a_client_that_stops_reading_loses_its_stream_at_the_deadline(
    gateway: GatewayProcess, upstream: FaultyUpstream
) -> None:
    sock = _connect(gateway, rcvbuf=4096)
    try:
        sock.sendall(_post("up/flood", stream=True))  # and never read a byte
        assert upstream.started["flood"].wait(5)
        started = time.monotonic()
        # Without a bound on writes, the upstream stays open for as long as the client does (read_s is 60 s).
        assert upstream.closed["flood"].wait(DEADLINE_S + 3), "the upstream stream outlived the deadline"
        assert time.monotonic() - started < DEADLINE_S + 3
    finally:
        sock.close()


def test_a_client_hanging_up_on_a_whole_answer_cancels_the_upstream_call(
    gateway: GatewayProcess, upstream: FaultyUpstream
) -> None:
    sock = _connect(gateway)
    try:
        sock.sendall(_post("up/hang-headers", stream=False))
        assert upstream.started["hang-headers"].wait(5)
    finally:
        sock.close()
    # Well inside the 3 s deadline: the hang-up, not the deadline, ends the upstream call.
    assert upstream.closed["hang-headers"].wait(1.5), "the upstream call ran on after the client hung up"
    # logged as the client's doing (499, as nginx logs it), not as a server error
    line = gateway.wait_for_line(lambda text: '"route":"/v1/chat/completions"' in text and "up/hang-headers" in text)
    assert json.loads(line[line.index("{") :])["status"] == 499


def test_the_gateway_logged_no_traceback(gateway: GatewayProcess) -> None:
    assert not [line for line in gateway.lines if "Traceback" in line], "".join(gateway.lines[-40:])
