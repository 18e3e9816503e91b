"""The real server's edges: connections that never finish their headers are closed after
`server.header_timeout_s`, SIGTERM ends in-flight streams with an error event (no traceback), and responses are
whole and in order however the server gathers its writes (pipelined requests, `Connection: close`)."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests._gateway_process import GatewayProcess
from tests.fakes.faulty_upstream import FaultyUpstream

HEADER_TIMEOUT_S = 1.0


def _config(path: Path, upstream: FaultyUpstream, grace_s: float) -> Path:
    path.write_text(f"""
server: {{header_timeout_s: {HEADER_TIMEOUT_S}, shutdown_grace_s: {grace_s}, request_timeout_s: 30}}
providers:
  - name: up
    kind: openai
    base_url: {upstream.url}
    max_retries: 0
    models: [{{id: ok}}, {{id: hang-stream}}, {{id: hang-headers}}]
cache: {{enabled: false}}
""")
    return path


@pytest.fixture(scope="module")
def upstream() -> Iterator[FaultyUpstream]:
    with FaultyUpstream() as server:
        yield server


def _address(gateway: GatewayProcess) -> tuple[str, int]:
    host, port = gateway.base_url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def _closed_within(sock: socket.socket, limit_s: float) -> float:
    """Seconds until the server closed `sock` (EOF or reset); fails if it is still open after `limit_s`."""
    started = time.monotonic()
    sock.settimeout(limit_s)
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        pytest.fail(f"the connection was still open after {limit_s} s")
    return time.monotonic() - started


def _recv(sock: socket.socket) -> bytes:
    data = sock.recv(65536)
    if not data:
        pytest.fail("the server closed the connection in the middle of a response")
    return data


def _response(sock: socket.socket) -> bytes:
    """One whole response with a content-length, read off a kept-alive connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += _recv(sock)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")).split(b":")[1]
    )
    while len(body) < length:
        body += _recv(sock)
    return head + b"\r\n\r\n" + body


def _request(model: str, *headers: bytes) -> bytes:
    body = orjson.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]})
    head = b"".join(header + b"\r\n" for header in headers)
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n"
        + head
        + b"content-length: %d\r\n\r\n" % len(body)
        + body
    )


@pytest.mark.timeout(60)
def test_pipelined_requests_and_connection_close_get_whole_answers_in_order(
    upstream: FaultyUpstream, tmp_path: Path
) -> None:
    config = _config(tmp_path / "gateway.yaml", upstream, 5)
    with GatewayProcess(config) as gateway, socket.create_connection(_address(gateway), timeout=5) as sock:
        sock.sendall(_request("up/ok", b"x-request-id: first") + _request("nope/missing", b"x-request-id: second"))
        first, second = _response(sock), _response(sock)
        assert first.startswith(b"HTTP/1.1 200")
        assert b"x-request-id: first" in first
        assert second.startswith(b"HTTP/1.1 404")
        assert b"x-request-id: second" in second
        sock.sendall(_request("up/ok", b"connection: close"))
        last = _response(sock)
        assert last.startswith(b"HTTP/1.1 200")
        assert b"connection: close" in last.lower()
        assert _closed_within(sock, 5) < 5  # all of it was written before the close


@pytest.mark.parametrize(
    "partial",
    [b"", b"POST /v1/chat/comp", b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-ty"],
    ids=["nothing", "partial-request-line", "partial-headers"],
)
def test_a_connection_that_never_finishes_its_headers_is_closed(
    upstream: FaultyUpstream, tmp_path: Path, partial: bytes
) -> None:
    with GatewayProcess(_config(tmp_path / "gateway.yaml", upstream, 5)) as gateway:
        with socket.create_connection(_address(gateway), timeout=5) as sock:
            sock.sendall(partial)
            elapsed = _closed_within(sock, HEADER_TIMEOUT_S + 3)
        assert elapsed >= HEADER_TIMEOUT_S * 0.5
        # A client that sends its request in time is served as ever, also on a kept-alive connection.
        body = orjson.dumps({"model": "up/ok", "messages": [{"role": "user", "content": "hi"}]})
        request = (
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n"
            + b"content-length: %d\r\n\r\n" % len(body)
            + body
        )
        with socket.create_connection(_address(gateway), timeout=5) as sock:
            for _ in range(2):
                sock.sendall(request)
                assert _response(sock).startswith(b"HTTP/1.1 200")


def test_sigterm_ends_in_flight_streams_with_an_error_event_and_no_traceback(
    upstream: FaultyUpstream, tmp_path: Path
) -> None:
    gateway = GatewayProcess(_config(tmp_path / "gateway.yaml", upstream, 2)).start()
    try:
        streams = []
        for _ in range(3):
            sock = socket.create_connection(_address(gateway), timeout=10)
            body = orjson.dumps(
                {"model": "up/hang-stream", "messages": [{"role": "user", "content": "hi"}], "stream": True}
            )
            sock.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n"
                + b"content-length: %d\r\n\r\n" % len(body)
                + body
            )
            first = sock.recv(65536)
            assert first.startswith(b"HTTP/1.1 200"), first
            streams.append((sock, bytearray(first)))
        whole = socket.create_connection(_address(gateway), timeout=10)  # a whole answer in flight too
        body = orjson.dumps({"model": "up/hang-headers", "messages": [{"role": "user", "content": "hi"}]})
        whole.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n"
            + b"content-length: %d\r\n\r\n" % len(body)
            + body
        )
        assert upstream.started["hang-headers"].wait(5)
        assert gateway.process is not None
        os.kill(gateway.process.pid, signal.SIGTERM)
        for sock, received in streams:
            with sock:
                while data := sock.recv(65536):
                    received += data
            text = bytes(received)
            assert b"[DONE]" not in text
            at = text.rfind(b'data: {"error"')
            assert at > 0, text
            error = orjson.loads(text[at + 6 : text.index(b"\n\n", at)])["error"]
            assert error["code"] == "service_unavailable"
            assert "shutting down" in error["message"]
        with whole:
            answer = b""
            while data := whole.recv(65536):
                answer += data
        assert answer.startswith(b"HTTP/1.1 503"), answer
        assert gateway.process.wait(10) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it handled
    finally:
        gateway.stop()
    log = "".join(gateway.lines)
    assert "Traceback" not in log, log
    assert "Cancel" not in log, log  # uvicorn never had to cancel a request
