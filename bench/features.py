"""What each feature costs: CPU per request of the gateway on a direct `provider/model` request, with tracing,
the Redis rate limit and the Redis cache switched on one at a time and all together.

    python -m bench.features [--rounds 4] [--seconds 3]

Starts (and stops, by PID) the raw upstream, a redis-server and one gateway per configuration, pinned as in
`bench/run.py`; rounds alternate the configurations; each line is the median over rounds (every request a cache
miss). CPU is every thread's (the span exporter's included). Needs `wrk`. Not a test: CI does not run it.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from bench.run import PY, Proc, free_port, gateway_config, start_gateway, start_redis, started, wrk

# name: (Redis cache, Redis rate limit, OTel export)
CONFIGS = {
    "direct": (False, False, False),
    "+ otel": (False, False, True),
    "+ redis limit": (False, True, False),
    "+ redis cache": (True, False, False),
    "all three": (True, True, True),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=3)
    args = parser.parse_args()
    procs: list[Proc] = []
    with started(procs), tempfile.TemporaryDirectory() as tmp:
        fast = free_port()
        procs.append(Proc([PY, "bench/upstream.py", str(fast)], core=1, ready="listening"))
        redis_url = start_redis(procs)
        otel = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"http://127.0.0.1:{fast}/v1/traces"}
        peers: dict[str, tuple[Proc, str]] = {}
        for i, (name, (cache, limits, traced)) in enumerate(CONFIGS.items()):
            config = Path(tmp) / f"{i}.yaml"
            url = redis_url if cache or limits else None
            config.write_text(gateway_config(fast, fast, url, cache=cache, limits=limits))
            peers[name] = start_gateway(procs, config, otel if traced else None)
        us: dict[str, list[float]] = {name: [] for name in peers}
        for _, url in peers.values():
            wrk(url, 16, 1, "up/m", unique=True)  # warm up
        for _ in range(args.rounds):
            for name, (proc, url) in peers.items():
                before = proc.cpu_s()
                result = wrk(url, 16, args.seconds, "up/m", unique=True)
                us[name].append((proc.cpu_s() - before) / (result["rps"] * args.seconds) * 1e6)
        base = statistics.median(us["direct"])
        print(f"\n{args.rounds} rounds x {args.seconds} s, c=16; CPU per request, median (min-max)\n")
        print("| configuration | CPU per request µs | over direct µs |\n|---|---|---|")
        for name, values in us.items():
            med = statistics.median(values)
            print(f"| {name} | {med:.0f} ({min(values):.0f}-{max(values):.0f}) | {med - base:+.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
