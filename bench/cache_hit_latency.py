"""Cache-hit latency against a direct upstream call, in one run .

Starts a fake OpenAI-compatible upstream (aiohttp, in this process, optional fixed delay), starts the real
gateway as a subprocess pointed at it (`kind: openai`), then times sequential requests over keep-alive
connections with httpx:

  direct      client → upstream
  no-store    client → gateway → upstream   (Cache-Control: no-store: the full pipeline, cache bypassed)
  hit         client → gateway (answer from the cache, no upstream call)

Usage:  python bench/cache_hit_latency.py [--requests 500] [--upstream-delay-ms 0] [--redis-url redis://...]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import orjson
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
# temperature 0: a deterministic request, which the cache may serve (sampled requests bypass it)
BODY = {
    "model": "up/model",
    "messages": [{"role": "user", "content": "What is the capital of France?"}],
    "temperature": 0,
}
ANSWER = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": 1,
    "model": "model",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "The capital of France is Paris. " * 8},
            "finish_reason": "stop",
            "logprobs": None,
        }
    ],
    "usage": {"prompt_tokens": 14, "completion_tokens": 56, "total_tokens": 70},
}


async def start_upstream(delay_s: float) -> tuple[web.AppRunner, int]:
    payload = orjson.dumps(ANSWER)

    async def completions(request: web.Request) -> web.Response:
        await request.read()
        if delay_s:
            await asyncio.sleep(delay_s)
        return web.Response(body=payload, content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, port


def start_gateway(config: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--config", str(config), "--port", "0"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    for line in process.stderr:
        match = re.search(r"Uvicorn running on (http://\S+:\d+)", line)
        if match:
            # keep draining stderr so the pipe never fills while we measure
            threading.Thread(target=process.stderr.read, daemon=True).start()
            return process, match.group(1)
    process.kill()
    raise SystemExit("the gateway did not start")


async def timed(
    client: httpx.AsyncClient, url: str, n: int, headers: dict[str, str], expect: str | None
) -> list[float]:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        response = await client.post(url, json=BODY, headers=headers)
        samples.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
        if expect is not None:
            assert response.headers["x-ultra-cache"] == expect, response.headers
    return samples


def row(name: str, samples: list[float]) -> str:
    q = statistics.quantiles(samples, n=100)
    return f"{name:<10} {statistics.mean(samples):8.3f} {q[49]:8.3f} {q[89]:8.3f} {q[98]:8.3f}"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--upstream-delay-ms", type=float, default=0.0)
    parser.add_argument("--redis-url", help="cache on this Redis instead of in memory")
    args = parser.parse_args()

    runner, port = await start_upstream(args.upstream_delay_ms / 1000)
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "bench.yaml"
        backend = "redis" if args.redis_url else "memory"
        config.write_text(
            f"providers:\n  - {{name: up, kind: openai, base_url: 'http://127.0.0.1:{port}/v1', max_retries: 0, "
            f"models: [{{id: model}}]}}\n"
            f"cache: {{backend: {backend}}}\nrate_limits: {{backend: memory}}\nserver: {{expose_metadata: true}}\n"
        )
        env = {**os.environ, **({"REDIS_URL": args.redis_url} if args.redis_url else {})}
        env.pop("ULTRA_CONFIG", None)
        gateway, base = start_gateway(config, env)
        try:
            limits = httpx.Limits(max_keepalive_connections=1)
            async with httpx.AsyncClient(timeout=30, limits=limits) as client:
                direct_url = f"http://127.0.0.1:{port}/v1/chat/completions"
                gateway_url = f"{base}/v1/chat/completions"
                await timed(client, direct_url, args.warmup, {}, None)
                await timed(client, gateway_url, args.warmup, {"cache-control": "no-store"}, "bypass")
                while (await client.post(gateway_url, json=BODY)).headers["x-ultra-cache"] != "hit":
                    await asyncio.sleep(0.01)  # the first call fills the entry; the store runs in the background
                await timed(client, gateway_url, args.warmup, {}, "hit")
                results = {
                    "direct": await timed(client, direct_url, args.requests, {}, None),
                    "no-store": await timed(
                        client, gateway_url, args.requests, {"cache-control": "no-store"}, "bypass"
                    ),
                    "hit": await timed(client, gateway_url, args.requests, {}, "hit"),
                }
        finally:
            os.kill(gateway.pid, signal.SIGTERM)
            gateway.wait(timeout=15)
            await runner.cleanup()
    print(
        f"# {args.requests} sequential requests each, upstream delay {args.upstream_delay_ms} ms, cache {backend}, "
        f"python {sys.version.split()[0]}"
    )
    print(f"{'path':<10} {'mean ms':>8} {'p50':>8} {'p90':>8} {'p99':>8}")
    for name, samples in results.items():
        print(row(name, samples))


if __name__ == "__main__":
    asyncio.run(main())
