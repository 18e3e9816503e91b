"""The real gateway as a subprocess (`python -m gateway serve --port 0`): ready when uvicorn logs its
"Uvicorn running on http://H:P" line (bounded deadline), stopped by PID. Both of its streams are read: the
access log (stdout by default) and everything else (stderr)."""

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
from typing import TextIO

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
        self.lines: list[str] = []  # both streams, in the order they were read
        self.stdout_lines: list[str] = []  # the access log, by default
        self.stderr_lines: list[str] = []  # everything else
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

    def _drain(self, stream: TextIO, into: list[str]) -> None:
        for line in stream:  # keep reading so the pipe never fills
            with self._new_line:
                self.lines.append(line)
                into.append(line)
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
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        assert self.process.stderr is not None
        self._readers = [
            threading.Thread(target=self._drain, args=(self.process.stderr, self.stderr_lines), daemon=True),
            threading.Thread(target=self._drain, args=(self.process.stdout, self.stdout_lines), daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        deadline = time.monotonic() + timeout_s
        while not self._listening.wait(0.05):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("gateway did not start:\n" + "".join(self.lines[-40:]))
        workers = int(self.args[self.args.index("--workers") + 1]) if "--workers" in self.args else 1
        if workers > 1:  # the supervisor binds before its workers serve: wait until every one has started
            self.wait_for_lines("Application startup complete", workers, deadline - time.monotonic())
        return self

    def wait_for_lines(self, text: str, n: int, timeout_s: float = 10.0) -> None:
        """Until `n` lines containing `text` were written; AssertionError on timeout."""
        with self._new_line:
            deadline = time.monotonic() + timeout_s
            while sum(text in line for line in self.lines) < n:
                left = deadline - time.monotonic()
                if left <= 0 or not self._new_line.wait(left):
                    raise AssertionError(f"fewer than {n} lines with {text!r}:\n" + "".join(self.lines[-20:]))

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
        for reader in self._readers:
            reader.join(timeout=timeout_s)  # EOF once the process is gone
        for stream in (process.stderr, process.stdout):
            if stream is not None:
                stream.close()

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
