"""Redis memory per cached answer and per rate-limit key, as the gateway writes them (README "Running in
production").

Starts a throwaway redis-server and the real gateway (mock provider that echoes the prompt, so the answer's size
is the prompt's), sends distinct requests of a few answer sizes, and reports Redis's own `MEMORY USAGE` per
cache entry next to the response body's size. Stops both by PID.

Usage:  python -m bench.redis_memory [--requests 200]
"""

from __future__ import annotations

import argparse
import random
import string
import sys
import tempfile
from pathlib import Path

import httpx

from tests._gateway_process import GatewayProcess
from tests._redis import RedisServer, redis_binary

CONFIG = """
providers:
  - name: mock
    kind: mock
    models:
      - {id: echo, reply: "{prompt}"}
auth:
  keys:
    - {name: bench, key: sk-bench}
"""


def integer(reply: bytes) -> int:
    return int(reply.split(b"\r\n", 1)[0][1:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="distinct requests per answer size")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="ugw-redis-memory-"))
    redis = RedisServer(redis_binary(), workdir)
    redis.start()
    config = workdir / "gateway.yaml"
    config.write_text(CONFIG)
    try:
        with (
            GatewayProcess(config, {"REDIS_URL": redis.url}) as gateway,
            httpx.Client(base_url=gateway.base_url, timeout=10, headers={"authorization": "Bearer sk-bench"}) as http,
        ):
            print("answer chars | response body B | MEMORY USAGE per entry B (mean)")
            for size in (200, 2000, 8000):
                redis.command("FLUSHALL")
                bodies = []
                for _ in range(args.requests):
                    text = "".join(random.choices(string.ascii_letters + " ", k=size))
                    body = {"model": "mock/echo", "messages": [{"role": "user", "content": text}]}
                    response = http.post("/v1/chat/completions", json=body)
                    response.raise_for_status()
                    bodies.append(len(response.content))
                http.get("/health/ready")  # a round trip, so the batched stores have landed
                keys = redis.command("KEYS", "ugw:v1:cache:*").split(b"\r\n")[2::2][: args.requests]
                usage = [integer(redis.command("MEMORY", "USAGE", k.decode())) for k in keys if k]
                print(f"{size:12d} | {sum(bodies) / len(bodies):15.0f} | {sum(usage) / max(len(usage), 1):8.0f}")
    finally:
        redis.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
