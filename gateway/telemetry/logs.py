"""How the serving process logs: plain text or one JSON object per line, and where each kind of line goes.

Two kinds of lines: the access log (one JSON line per request, `ultra_gateway.access`, telemetry/access.py) and
everything else (the gateway's own messages, uvicorn's). Each goes to its own stream, by default the access log
to stdout and the rest to stderr, so a log shipper can take the access log as JSON without parsing around
start-up messages and tracebacks. With `--log-format json` the rest is JSON too: `{"ts", "level", "logger",
"message"}`, plus `exc_info` (the formatted traceback, one string) when there is one.

The choices reach uvicorn's worker processes through the environment (`ULTRA_LOG_FORMAT`, `ULTRA_LOG_LEVEL`,
`ULTRA_ACCESS_LOG`), which the CLI sets before it starts them.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Mapping
from typing import Literal, TextIO

import orjson

__all__ = ["JsonFormatter", "LogOptions", "configure_logging", "iso_now", "options_from_env"]

LogFormat = Literal["text", "json"]
AccessTarget = Literal["stdout", "stderr", "off"]
TEXT_FORMAT = "%(levelname)s %(name)s: %(message)s"


_second: tuple[int, str] = (-1, "")  # the last whole second and its text (one tuple: safe across threads)


def iso_now(now: float | None = None) -> str:
    """UTC, millisecond precision: 2026-11-30T06:01:02.345Z. One strftime a second, not one a line."""
    global _second
    now = time.time() if now is None else now
    whole = int(now)
    second = _second
    if second[0] != whole:
        second = _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return f"{second[1]}.{int((now - whole) * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": iso_now(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        return orjson.dumps(line).decode()


class LogOptions:
    def __init__(self, level: str = "info", fmt: LogFormat = "text", access: AccessTarget = "stdout") -> None:
        self.level = level
        self.format: LogFormat = fmt
        self.access: AccessTarget = access

    def to_env(self) -> dict[str, str]:
        return {"ULTRA_LOG_LEVEL": self.level, "ULTRA_LOG_FORMAT": self.format, "ULTRA_ACCESS_LOG": self.access}


def options_from_env(env: Mapping[str, str] | None = None) -> LogOptions:
    env = os.environ if env is None else env
    fmt = env.get("ULTRA_LOG_FORMAT", "text")
    access = env.get("ULTRA_ACCESS_LOG", "stdout")
    return LogOptions(
        env.get("ULTRA_LOG_LEVEL", "info"),
        fmt if fmt in ("text", "json") else "text",  # type: ignore[arg-type]
        access if access in ("stdout", "stderr", "off") else "stdout",  # type: ignore[arg-type]
    )


def access_stream(options: LogOptions) -> TextIO | None:
    if options.access == "off":
        return None
    return sys.stdout if options.access == "stdout" else sys.stderr


def configure_logging(options: LogOptions) -> None:
    """The root logger: one handler on stderr, in the chosen format. uvicorn's loggers propagate to it in JSON
    mode (the CLI then gives uvicorn no logging config of its own)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_ultra", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if options.format == "json" else logging.Formatter(TEXT_FORMAT))
    handler._ultra = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(options.level.upper())
    if options.format == "json":
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
            logger = logging.getLogger(name)
            logger.handlers.clear()
            logger.propagate = True
