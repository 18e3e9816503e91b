"""The access-log writer: lines logged close together reach the stream together and in order, lines
logged off the loop are not held back, and logging being reconfigured (uvicorn does it at start) does not stop
the writer."""

from __future__ import annotations

import asyncio
import io
import logging
import logging.config

from gateway.telemetry.access import _BatchHandler


def test_lines_arrive_in_order_and_survive_reconfiguration() -> None:
    stream = io.StringIO()
    handler = _BatchHandler(stream)
    log = logging.getLogger("test.access.batch")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        log.info("before")  # no event loop: handed over at once
        logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})  # closes every handler

        async def serve() -> None:
            for i in range(3):
                log.info("turn %d", i)
            await asyncio.sleep(0)  # a later turn: the batch is still gathering
            log.info("next turn")

        asyncio.run(serve())
    finally:
        log.removeHandler(handler)
        handler.stop()  # hands over what is pending and waits for the writer
    assert stream.getvalue().splitlines() == ["before", "turn 0", "turn 1", "turn 2", "next turn"]
