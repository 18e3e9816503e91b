"""`/metrics` that add up over the worker processes of one `serve --workers N`.

Each worker keeps recording into its own in-process registry (telemetry/metrics.py: a dict add per sample), and
writes a snapshot of it to a directory the workers share (`ULTRA_METRICS_DIR`, a temporary directory the CLI
creates) every `DUMP_S` and when it stops. Whichever worker a scrape reaches answers with the sum: its own live
values plus every other worker's latest snapshot. Counters and histograms are summed over every snapshot,
including those of workers that have exited (a counter must never go backwards); gauges are taken from the
workers still alive only, the highest value (a breaker open in any worker is open), except
`ultra_config_last_reload_success`, where the lowest wins (one worker that failed to reload is a failure).

Why not prometheus_client's multiprocess mode: measured on this machine, its counter `inc` costs 2.95 us and a
histogram `observe` 4.68 us (mmap writes under a lock), against 0.09 us and 0.17 us here; at the 5 counters and
3 histogram samples of a direct request that is about 29 us per request, some 10 % of the direct path's CPU,
where snapshots cost nothing per request. The price is staleness: another worker's numbers are at most
`DUMP_S` old.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from gateway.telemetry.metrics import Metrics, _Counter, _Histogram

__all__ = ["DUMP_S", "SharedMetrics"]

DUMP_S = 0.5
_LOWEST_WINS = {"ultra_config_last_reload_success"}


def _metrics_of(metrics: Metrics) -> Iterator[tuple[str, _Counter | _Histogram]]:
    for attribute, value in vars(metrics).items():
        if isinstance(value, _Counter | _Histogram):
            yield attribute, value


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class SharedMetrics:
    def __init__(self, directory: str | os.PathLike[str], *, pid: int | None = None) -> None:
        self.directory = Path(directory)
        self.pid = os.getpid() if pid is None else pid
        self._file = self.directory / f"worker-{self.pid}.json"

    def snapshot(self, metrics: Metrics) -> bytes:
        out: dict[str, Any] = {}
        for attribute, metric in _metrics_of(metrics):
            if isinstance(metric, _Histogram):
                out[attribute] = [[list(k), v] for k, v in metric.series.items()]
            else:
                out[attribute] = [[list(k), v] for k, v in metric.values.items()]
        return orjson.dumps(out)

    def dump(self, metrics: Metrics) -> None:
        """Write this worker's snapshot (atomically: a scrape never reads half a file)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        partial = self._file.with_suffix(".tmp")
        partial.write_bytes(self.snapshot(metrics))
        os.replace(partial, self._file)

    def _others(self) -> Iterator[tuple[bool, dict[str, Any]]]:
        for path in self.directory.glob("worker-*.json"):
            if path == self._file:
                continue
            try:
                pid = int(path.stem.removeprefix("worker-"))
                data = orjson.loads(path.read_bytes())
            except (ValueError, OSError, orjson.JSONDecodeError):
                continue
            yield _alive(pid), data

    def merged(self, metrics: Metrics) -> Metrics:
        """A registry holding the sum over every worker (this one live, the others from their snapshots)."""
        view = Metrics()
        mine = dict(_metrics_of(metrics))
        others = list(self._others())
        for attribute, target in _metrics_of(view):
            source = mine.get(attribute)
            if isinstance(target, _Histogram):
                series: dict[tuple[str, ...], list[float]] = {}
                if isinstance(source, _Histogram):
                    series = {k: list(v) for k, v in source.series.items()}
                for _, data in others:
                    for labels, counts in data.get(attribute, []):
                        key = tuple(labels)
                        have = series.get(key)
                        series[key] = counts if have is None else [a + b for a, b in zip(have, counts, strict=True)]
                target.series = series
                continue
            values: dict[tuple[str, ...], float] = dict(source.values) if isinstance(source, _Counter) else {}
            gauge = target.kind == "gauge"
            lowest = target.name in _LOWEST_WINS
            for alive, data in others:
                if gauge and not alive:
                    continue
                for labels, value in data.get(attribute, []):
                    key = tuple(labels)
                    if key not in values:
                        values[key] = value
                    elif not gauge:
                        values[key] += value
                    else:
                        values[key] = min(values[key], value) if lowest else max(values[key], value)
            target.values = values
        return view

    def render(self, metrics: Metrics) -> str:
        return self.merged(metrics).render()

    async def run(self, metrics: Metrics, every_s: float = DUMP_S) -> None:
        """Dump every `every_s` until cancelled, and once more on the way out."""
        try:
            while True:
                with contextlib.suppress(OSError):
                    self.dump(metrics)
                await asyncio.sleep(every_s)
        finally:
            with contextlib.suppress(OSError):
                self.dump(metrics)
