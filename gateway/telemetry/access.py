"""Where the JSON access lines go: to a writer thread on stderr, so a request never waits on the write. Started
once per serving process (the CLI for one worker, the app factory in each uvicorn worker).

The lines logged during one turn of the event loop are handed over together, at the end of the turn: the writer
wakes once per batch, not once per request, and no record is copied or formatted on the way (the stdlib
QueueHandler did both, about 5 % of a request's CPU in `python -m bench.profile`).
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import queue
import sys
import threading
from typing import TextIO

__all__ = ["start_access_log"]

_started: list[_BatchHandler] = []


class _BatchHandler(logging.Handler):
    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self._stream = stream
        self._batches: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._pending: list[str] = []
        self._writer = threading.Thread(target=self._write, name="access-log", daemon=True)
        self._writer.start()

    def emit(self, record: logging.LogRecord) -> None:
        pending = self._pending
        pending.append(record.getMessage())
        if len(pending) == 1:  # the first line of this turn: hand the batch over when the turn ends
            try:
                asyncio.get_running_loop().call_soon(self._hand_over)
            except RuntimeError:  # not on an event loop: hand it over now
                self._hand_over()

    def _hand_over(self) -> None:
        lines, self._pending = self._pending, []
        if lines:
            self._batches.put("\n".join(lines) + "\n")

    def _write(self) -> None:
        while (batch := self._batches.get()) is not None:
            try:
                self._stream.write(batch)
                self._stream.flush()
            except (OSError, ValueError):  # stderr closed or gone: drop the line, never the request
                pass

    def flush(self) -> None:
        self._hand_over()

    def stop(self) -> None:
        """Writes what is pending and stops the writer, at exit. Not `close()`: logging calls that whenever it is
        reconfigured (uvicorn does so at start), and the writer must outlive that."""
        self._hand_over()
        self._batches.put(None)
        self._writer.join(timeout=2)


def start_access_log() -> None:
    if _started:
        return
    handler = _BatchHandler(sys.stderr)
    access = logging.getLogger("ultra_gateway.access")
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    access.propagate = False
    atexit.register(handler.stop)  # flushes what is queued when the process ends
    _started.append(handler)
