"""What budgets and runtime keys cost on the direct path: CPU per request of the gateway (and of redis-server)
on a direct `provider/model` request with an API key, side by side.

    python -m bench.ops [--rounds 3] [--seconds 3]

Configurations, all with rate limits off and the cache off, Redis as the limits backend:

- `static key`: a key from the file, an unpriced model (no spend to account): the path as it was before budgets.
- `+ spend accounting`: the model is priced, the key has no budget: the real cost is added to the key's day and
  month totals after each request (batched, in the background).
- `+ key budget`: the same key with a daily budget it never reaches: the worst case is held at admission (one
  Lua round trip before the call) and settled after.
- `runtime key`: a key created through the admin API (a dict lookup by digest after the file's keys), unpriced.
- `runtime key + budget`: the runtime key with a budget, priced model.

Starts (and stops, by PID) the raw upstream, a redis-server and one gateway per configuration, pinned as in
`bench/run.py`; rounds alternate the configurations; each line is the median over rounds. Needs `wrk`. Not a
test: CI does not run it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import urllib.request
from pathlib import Path

from bench.run import PY, Proc, free_port, start_gateway, start_redis, started, wrk

ADMIN = "bench-admin-key"
STATIC = "sk-bench-static"


def config(upstream: int, redis_url: str, *, priced: bool, budget: bool) -> str:
    prices = "input_cost_per_mtok: 1, output_cost_per_mtok: 2" if priced else ""
    key_budget = ", budget: {usd: 1000000, period: day}" if budget else ""
    return f"""
providers:
  - {{name: up, kind: openai, base_url: "http://127.0.0.1:{upstream}/v1", max_retries: 0,
      models: [{{id: m, {prices}}}]}}
cache: {{enabled: false}}
rate_limits: {{enabled: false, backend: redis, redis_url: '{redis_url}'}}
auth:
  admin_key_env: BENCH_ADMIN_KEY
  keys:
    - {{name: static, key: {STATIC}{key_budget}}}
"""


def runtime_key(chat_url: str, budget: bool) -> str:
    base = chat_url.removesuffix("/v1/chat/completions")
    spec: dict[str, object] = {"name": f"runtime-{free_port()}"}
    if budget:
        spec["budget"] = {"usd": 1000000, "period": "day"}
    request = urllib.request.Request(
        f"{base}/admin/keys",
        data=json.dumps(spec).encode(),
        method="POST",
        headers={"authorization": f"Bearer {ADMIN}", "content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(json.loads(response.read())["key"])


# name: (priced model, budget on the key, runtime key)
CONFIGS = {
    "static key": (False, False, False),
    "+ spend accounting": (True, False, False),
    "+ key budget": (True, True, False),
    "runtime key": (False, False, True),
    "runtime key + budget": (True, True, True),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=3)
    args = parser.parse_args()
    procs: list[Proc] = []
    with started(procs), tempfile.TemporaryDirectory() as tmp:
        upstream = free_port()
        procs.append(Proc([PY, "bench/upstream.py", str(upstream)], core=1, ready="listening"))
        redis_url = start_redis(procs)
        redis = procs[-1]
        peers: dict[str, tuple[Proc, str, str]] = {}
        for i, (name, (priced, budget, runtime)) in enumerate(CONFIGS.items()):
            path = Path(tmp) / f"{i}.yaml"
            path.write_text(config(upstream, redis_url, priced=priced, budget=budget and not runtime))
            proc, url = start_gateway(procs, path, {"BENCH_ADMIN_KEY": ADMIN})
            key = runtime_key(url, budget) if runtime else STATIC
            peers[name] = (proc, url, key)
        gateway_us: dict[str, list[float]] = {name: [] for name in peers}
        redis_us: dict[str, list[float]] = {name: [] for name in peers}
        for _, url, key in peers.values():
            wrk(url, 16, 1, "up/m", unique=True, key=key)  # warm up
        for _ in range(args.rounds):
            for name, (proc, url, key) in peers.items():
                before, redis_before = proc.cpu_s(), redis.cpu_s()
                result = wrk(url, 16, args.seconds, "up/m", unique=True, key=key)
                count = result["rps"] * args.seconds
                gateway_us[name].append((proc.cpu_s() - before) / count * 1e6)
                redis_us[name].append((redis.cpu_s() - redis_before) / count * 1e6)
        base = statistics.median(gateway_us["static key"])
        print(f"\n{args.rounds} rounds x {args.seconds} s, c=16; CPU per request, median (min-max)\n")
        print("| configuration | gateway µs | over static key µs | redis-server µs |\n|---|---|---|---|")
        for name, values in gateway_us.items():
            med = statistics.median(values)
            print(
                f"| {name} | {med:.0f} ({min(values):.0f}-{max(values):.0f}) | {med - base:+.0f} | "
                f"{statistics.median(redis_us[name]):.0f} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
