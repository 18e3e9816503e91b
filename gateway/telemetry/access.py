"""Where the JSON access lines go: through a queue to a writer thread on stderr, so a request never waits on
the write. Started once per serving process (the CLI for one worker, the app factory in each uvicorn worker)."""

from __future__ import annotations

import atexit
import logging
import logging.handlers
import queue
import sys

__all__ = ["start_access_log"]

_started: list[logging.handlers.QueueListener] = []


def start_access_log() -> None:
    if _started:
        return
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    access = logging.getLogger("ultra_gateway.access")
    access.addHandler(logging.handlers.QueueHandler(records))
    access.setLevel(logging.INFO)
    access.propagate = False
    listener = logging.handlers.QueueListener(records, handler)
    listener.start()
    atexit.register(listener.stop)  # flushes what is queued when the process ends
    _started.append(listener)
