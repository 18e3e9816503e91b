"""Summing worker snapshots: counters and histograms over every worker (exited ones too), gauges over live
workers only (highest wins; lowest for the reload-success gauge)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from gateway.telemetry.metrics import Metrics
from gateway.telemetry.shared import SharedMetrics


def exited_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_counters_sum_and_gauges_follow_live_workers(tmp_path: Path) -> None:
    me, live, dead = Metrics(), Metrics(), Metrics()
    for metrics, n in ((me, 3), (live, 4), (dead, 5)):
        for _ in range(n):
            metrics.requests.inc(("m", "direct", "200"))
        metrics.duration.observe(("chat", "mock", "m", "p", ""), 0.05)
    live.breaker.set(("p/m",), 1.0)
    dead.breaker.set(("p/x",), 1.0)
    live.reload_success.set((), 0.0)
    SharedMetrics(tmp_path, pid=os.getppid()).dump(live)  # the test runner's parent: alive
    SharedMetrics(tmp_path, pid=exited_pid()).dump(dead)
    merged = SharedMetrics(tmp_path).merged(me)
    assert merged.requests.values == {("m", "direct", "200"): 12.0}
    assert merged.duration.series[("chat", "mock", "m", "p", "")][-2] == 0  # bucket counts summed, +Inf empty
    assert sum(merged.duration.series[("chat", "mock", "m", "p", "")][:-1]) == 3
    assert merged.breaker.values == {("p/m",): 1.0}  # the exited worker's gauge is gone
    assert merged.reload_success.values == {(): 0.0}  # one worker failed its reload
    text = SharedMetrics(tmp_path).render(me)
    assert 'ultra_requests_total{model="m",strategy="direct",status="200"} 12\n' in text
