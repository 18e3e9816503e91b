"""Where the JSON access lines go: to a writer thread on their own stream (stdout by default, telemetry/logs.py),
so a request never waits on the write. Started once per serving process (the CLI for one worker, the app factory
in each uvicorn worker).

The lines logged within `HAND_OVER_S` of each other are handed over together: the writer wakes once per batch,
not once per request, and no record is copied or formatted on the way (the stdlib QueueHandler did both, about
5 % of a request's CPU in `python -m bench.profile`). Handing over at the end of each event-loop turn instead
woke the writer for nearly every request at low load, and each wake cost GIL hand-offs between the two threads
(about 11 futex calls per request, `strace -c`); a line now reaches the stream at most 20 ms late.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import queue
import sys
import threading
from typing import TextIO

__all__ = ["access_line", "start_access_log"]

HAND_OVER_S = 0.02
_started: list[_BatchHandler] = []
_access = logging.getLogger("ultra_gateway.access")


class _BatchHandler(logging.Handler):
    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self._stream = stream
        self._batches: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._pending: list[str] = []
        self._writer = threading.Thread(target=self._write, name="access-log", daemon=True)
        self._writer.start()

    def emit(self, record: logging.LogRecord) -> None:
        self.add(record.getMessage())

    def add(self, line: str) -> None:
        pending = self._pending
        pending.append(line)
        if len(pending) == 1:  # the first line of a batch: hand the batch over a little later
            try:
                asyncio.get_running_loop().call_later(HAND_OVER_S, self._hand_over)
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


def access_line(line: str) -> None:
    """Log one access line. While the writer started here is the logger's only handler (the served process), the
    line goes to it directly: a LogRecord nobody else would read cost 2 % of a request's CPU."""
    if _started and _access.handlers == _started and not _access.propagate and _access.level == logging.INFO:
        _started[0].add(line)
    elif _access.isEnabledFor(logging.INFO):
        _access.info(line)


def start_access_log(stream: TextIO | None = None) -> None:
    """Start the writer on `stream` (default: stderr); a process starts one."""
    if _started:
        return
    handler = _BatchHandler(stream if stream is not None else sys.stderr)
    _access.addHandler(handler)
    _access.setLevel(logging.INFO)
    _access.propagate = False
    atexit.register(handler.stop)  # flushes what is queued when the process ends
    _started.append(handler)
