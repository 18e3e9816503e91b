"""The soak: 100k mixed requests against one gateway process, with its memory, descriptors and log watched.

    python -m bench.soak [--requests 100000]

The mix, in turn: a whole answer from a direct deployment, a stream, a cache hit (one fixed deterministic
request), an alias (`ultra-parallel`), a model that does not exist (404) and a Responses request, 32 at a time.
The gateway runs with the memory cache (bounded to 2,000 entries, so it is full after the warm-up) on the raw
upstream of `bench/upstream.py`. Reported: RSS after a 10k warm-up and at the end (growth must stay under 5 %),
open descriptors after the warm-up and at the end (the upstream pools are open by then: they must not keep
growing), and the tracebacks in the gateway's log (there must be none). Stops every process it started by PID.
Not a test: CI does not run it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.run import PY, Proc, free_port, gateway_config, start_gateway, started

BODIES = [
    (b'{"model":"up/m","messages":[{"role":"user","content":"whole %d"}],"temperature":0}', "chat"),
    (b'{"model":"up/m","stream":true,"messages":[{"role":"user","content":"stream %d"}],"temperature":0}', "chat"),
    (b'{"model":"up/m","messages":[{"role":"user","content":"the same every time"}],"temperature":0}', "chat"),
    (b'{"model":"ultra-parallel","messages":[{"role":"user","content":"alias %d"}],"temperature":0}', "chat"),
    (b'{"model":"nope/none","messages":[{"role":"user","content":"404 %d"}]}', "chat"),
    (b'{"model":"up/m","input":"responses %d","store":false}', "responses"),
]


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def drive(base: str, total: int, concurrency: int = 32) -> dict[int, int]:
    statuses: dict[int, int] = {}
    counter = iter(range(total))
    async with aiohttp.ClientSession() as session:

        async def worker() -> None:
            for i in counter:
                body, route = BODIES[i % len(BODIES)]
                path = "/v1/responses" if route == "responses" else "/v1/chat/completions"
                data = body % i if b"%d" in body else body
                headers = {"content-type": "application/json"}
                async with session.post(base + path, data=data, headers=headers) as response:
                    await response.read()
                    statuses[response.status] = statuses.get(response.status, 0) + 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=100_000)
    args = parser.parse_args()
    procs: list[Proc] = []
    with started(procs), tempfile.TemporaryDirectory() as tmp:
        fast, slow = free_port(), free_port()
        procs.append(Proc([PY, "bench/upstream.py", str(fast)], core=1, ready="listening"))
        procs.append(Proc([PY, "bench/upstream.py", str(slow), "50"], core=1, ready="listening"))
        config = Path(tmp) / "gateway.yaml"
        config.write_text(
            gateway_config(fast, slow, None).replace(
                "cache: {enabled: false}",
                "cache: {backend: memory, max_entries: 2000}",  # full after the warm-up
            )
        )
        gateway, url = start_gateway(procs, config)
        base = url.removesuffix("/v1/chat/completions")
        pid = gateway.popen.pid
        started_at = time.monotonic()
        asyncio.run(drive(base, 10_000))
        warm_rss = gateway.status_kib("VmRSS")
        idle_fds = fds(pid)  # the upstream pools are open by now
        statuses = asyncio.run(drive(base, args.requests))
        seconds = time.monotonic() - started_at
        end_rss = gateway.status_kib("VmRSS")
        after_fds = fds(pid)
        tracebacks = gateway.tracebacks
    growth = (end_rss - warm_rss) / warm_rss * 100
    print(f"{args.requests} mixed requests after a 10k warm-up, {seconds:.0f} s in all; statuses {statuses}")
    print(f"RSS after warm-up {warm_rss / 1024:.1f} MiB, at the end {end_rss / 1024:.1f} MiB ({growth:+.1f} %)")
    print(f"open descriptors when idle: {idle_fds} after the warm-up, {after_fds} at the end")
    print(f"tracebacks in the gateway's log: {tracebacks}")
    return 0 if growth < 5 and not tracebacks else 1


if __name__ == "__main__":
    raise SystemExit(main())
