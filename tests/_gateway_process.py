"""The real gateway as a subprocess (`python -m gateway serve --port 0`): ready when uvicorn logs its
"Uvicorn running on http://H:P" line (bounded deadline), stopped by PID."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

__all__ = ["GatewayProcess"]

ROOT = Path(__file__).resolve().parents[1]
_LISTENING = re.compile(r"Uvicorn running on (http://\S+:\d+)")


class GatewayProcess:
    def __init__(self, config: Path, env: Mapping[str, str] | None = None, args: Sequence[str] = ()) -> None:
        self.config = config
        self.args = list(args)
        self.env = {**os.environ, **(env or {})}
        self.env.pop("ULTRA_CONFIG", None)
        self.process: subprocess.Popen[str] | None = None
        self.base_url = ""
        self.lines: list[str] = []
        self._listening = threading.Event()
        self._new_line = threading.Condition()

    def wait_for_line(self, wanted: Callable[[str], bool], timeout_s: float = 10.0) -> str:
        """The first line (already written or still to come) that `wanted` accepts; AssertionError on timeout."""
        with self._new_line:
            seen = 0
            deadline = time.monotonic() + timeout_s
            while True:
                for line in self.lines[seen:]:
                    if wanted(line):
                        return line
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0 or not self._new_line.wait(left):
                    raise AssertionError("no such line:\n" + "".join(self.lines[-20:]))

    def _drain(self) -> None:
        assert self.process is not None
        assert self.process.stderr is not None
        for line in self.process.stderr:  # keep reading so the pipe never fills
            with self._new_line:
                self.lines.append(line)
                self._new_line.notify_all()
            match = _LISTENING.search(line)
            if match and not self._listening.is_set():
                self.base_url = match.group(1)
                self._listening.set()

    def start(self, timeout_s: float = 30.0) -> GatewayProcess:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--config", str(self.config), "--port", "0", *self.args],
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout_s
        while not self._listening.wait(0.05):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("gateway did not start:\n" + "".join(self.lines[-40:]))
        return self

    def stop(self, timeout_s: float = 15.0) -> None:
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)  # by PID
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=timeout_s)
        self._reader.join(timeout=timeout_s)  # EOF once the process is gone
        if process.stderr is not None:
            process.stderr.close()

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
