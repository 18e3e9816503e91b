"""The gateway's metrics, rendered as Prometheus text for `GET /metrics`.

A small registry of counters and histograms keyed by label tuples: recording is a dict lookup and an add, so it
stays on for every request. Names follow the GenAI conventions (`gen_ai.client.operation.duration` becomes
`gen_ai_client_operation_duration_seconds`, with the convention's bucket boundaries); labels are bounded
(aliases, provider/model, status, error type, configured key and tenant names), never a key or a request id.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Sequence

__all__ = ["Metrics"]

DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)

Labels = tuple[str, ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: Labels, extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(value: float) -> str:
    """Every digit a float has (`:g` kept six, so a large USD total lost its cents)."""
    return str(int(value)) if value.is_integer() else repr(value)


class _Counter:
    def __init__(self, name: str, help_text: str, labels: Sequence[str], kind: str = "counter") -> None:
        self.name, self.help, self.label_names, self.kind = name, help_text, tuple(labels), kind
        self.values: dict[Labels, float] = {}

    def inc(self, labels: Labels, amount: float = 1.0) -> None:
        self.values[labels] = self.values.get(labels, 0.0) + amount

    def set(self, labels: Labels, value: float) -> None:
        self.values[labels] = value

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]
        lines += [f"{self.name}{_labels(self.label_names, k)} {_number(v)}" for k, v in sorted(self.values.items())]
        return lines


class _Histogram:
    def __init__(self, name: str, help_text: str, labels: Sequence[str], buckets: Sequence[float]) -> None:
        self.name, self.help, self.label_names, self.buckets = name, help_text, tuple(labels), tuple(buckets)
        self.series: dict[Labels, list[float]] = {}  # bucket counts..., +Inf count, sum

    def observe(self, labels: Labels, value: float) -> None:
        series = self.series.get(labels)
        if series is None:
            series = self.series[labels] = [0.0] * (len(self.buckets) + 2)
        series[bisect.bisect_left(self.buckets, value)] += 1
        series[-1] += value

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        for labels, series in sorted(self.series.items()):
            running = 0.0
            for bound, count in zip([*self.buckets, math.inf], series[:-1], strict=True):
                running += count
                le = "+Inf" if bound == math.inf else f"{bound:g}"
                bucket = _labels(self.label_names, labels, 'le="' + le + '"')
                lines.append(f"{self.name}_bucket{bucket} {running:g}")
            lines.append(f"{self.name}_count{_labels(self.label_names, labels)} {running:g}")
            lines.append(f"{self.name}_sum{_labels(self.label_names, labels)} {_number(series[-1])}")
        return lines


class Metrics:
    def __init__(self) -> None:
        call = ("gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model", "ultra_provider")
        self.duration = _Histogram(
            "gen_ai_client_operation_duration_seconds",
            "Duration of upstream GenAI calls.",
            (*call, "error_type"),
            DURATION_BUCKETS,
        )
        self.tokens = _Histogram(
            "gen_ai_client_token_usage",
            "Tokens used by upstream GenAI calls.",
            (*call, "gen_ai_token_type"),
            TOKEN_BUCKETS,
        )
        self.requests = _Counter(
            "ultra_requests_total",
            "Chat completion requests by model/alias and status.",
            ("model", "strategy", "status"),
        )
        self.cache = _Counter("ultra_cache_lookups_total", "Response cache lookups by result.", ("result",))
        self.rate_limited = _Counter(
            "ultra_rate_limit_rejections_total", "Requests refused by a rate limit.", ("model",)
        )
        self.provider_errors = _Counter(
            "ultra_provider_errors_total",
            "Failed upstream tries by error type, retried ones included (retried: yes|no).",
            ("deployment", "error_type", "retried"),
        )
        self.skipped = _Counter(
            "ultra_skipped_calls_total",
            "Deployments skipped without a call: breaker_open, probe_in_flight or rate_limited.",
            ("deployment", "reason"),
        )
        self.breaker_transitions = _Counter(
            "ultra_circuit_breaker_transitions_total", "Circuit breakers opening and closing.", ("deployment", "to")
        )
        self.hedges = _Counter("ultra_hedges_total", "Hedged requests fired, by alias.", ("strategy",))
        self.breaker = _Counter(
            "ultra_circuit_breaker_open",
            "1 while a deployment's circuit breaker is open.",
            ("deployment",),
            kind="gauge",
        )
        self.cost = _Counter("ultra_cost_usd_total", "Upstream cost in USD by model/alias.", ("model",))
        self.spend = _Counter(
            "ultra_spend_usd_total",
            "Upstream cost in USD by API key, tenant and model/alias.",
            ("key", "tenant", "model"),
        )
        self.reload_failures = _Counter(
            "ultra_config_reload_failures_total", "Configuration reloads refused (the old configuration kept).", ()
        )
        self.reload_success = _Counter(
            "ultra_config_last_reload_success",
            "1 if the last configuration reload succeeded, else 0.",
            (),
            kind="gauge",
        )
        self.reload_success.set((), 1.0)
        self.reload_time = _Counter(
            "ultra_config_last_reload_timestamp_seconds",
            "When the configuration was last (re)loaded.",
            (),
            kind="gauge",
        )
        self.reload_time.set((), time.time())
        self.budget_rejections = _Counter(
            "ultra_budget_rejections_total", "Requests refused by a budget.", ("scope", "period")
        )

    def render(self) -> str:
        lines: list[str] = []
        for metric in (
            self.duration,
            self.tokens,
            self.requests,
            self.cache,
            self.rate_limited,
            self.provider_errors,
            self.skipped,
            self.breaker,
            self.breaker_transitions,
            self.hedges,
            self.cost,
            self.spend,
            self.budget_rejections,
            self.reload_failures,
            self.reload_success,
            self.reload_time,
        ):
            lines += metric.render()
        return "\n".join(lines) + "\n"
