"""`serve --workers N`: uvicorn's multiprocess supervisor, except for SIGHUP.

uvicorn's supervisor (0.54) answers SIGHUP by replacing every worker with a new process: in-process state (the
memory cache and limits, the per-worker metrics, open streams' connections) is lost, and a bad configuration
file makes the new worker fail at start with a traceback. Here the supervisor forwards SIGHUP to each worker
instead, and each worker reloads its configuration in place (gateway/reload.py), exactly as a single-process
gateway does: one behaviour whatever the number of workers.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from typing import Any

from uvicorn import Config
from uvicorn.supervisors.multiprocess import Multiprocess

__all__ = ["ForwardingSupervisor", "run_workers"]

log = logging.getLogger("ultra_gateway")


class ForwardingSupervisor(Multiprocess):
    def handle_hup(self) -> None:
        log.info("SIGHUP: asking %d workers to reload the configuration", len(self.processes))
        for process in self.processes:
            pid = process.process.pid
            if pid is not None and process.process.is_alive():
                os.kill(pid, signal.SIGHUP)


def run_workers(workers: int, options: dict[str, Any]) -> None:
    config = Config("gateway.http.app:app_from_env", factory=True, workers=workers, **options)
    sock = config.bind_socket()
    with contextlib.suppress(KeyboardInterrupt):
        ForwardingSupervisor(config, sockets=[sock]).run()
