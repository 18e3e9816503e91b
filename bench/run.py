"""The load benchmark: the gateway against a minimal passthrough (the floor) and a direct call, in one run.

    python bench/run.py [--quick | --full] [--soak]

Starts (and stops, by PID) a fast raw-asyncio upstream (0 ms and 50 ms variants), the floor (Litestar + aiohttp
passthrough), the gateway on a direct `provider/model` config, and, when redis-server is installed, the gateway
with a Redis rate limit and Redis cache. Peers are pinned to core 0, load and upstreams to core 1 (`taskset`).
Rounds alternate the peers; each figure is the median over rounds with its min-max spread. Throughput is
requests per second of the peer's own CPU time (utime+stime from /proc), so it does not depend on how hard the
load generator could push. Added latency is gateway minus direct, paired within a round.
Needs `wrk` (Debian package). Not a test: CI does not run it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
TICK = os.sysconf("SC_CLK_TCK")
FANOUT = ("ultra-parallel", "ultra-simple")
PROMPT = b'{"model":"%s","messages":[{"role":"user","content":"Say hello in five words."}]%s}'


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Proc:
    """A child process in its own process group, pinned to a core, stopped by PID."""

    def __init__(self, args: list[str], core: int, env: dict[str, str] | None = None, ready: str = "") -> None:
        started = time.monotonic()
        self.popen = subprocess.Popen(
            ["taskset", "-c", str(core), *args],
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.startup_s = 0.0
        self._ready = threading.Event()
        threading.Thread(target=self._drain, args=(ready, started), daemon=True).start()  # pipe never fills
        if ready and not self._ready.wait(30):
            self.stop()
            raise RuntimeError(f"{args} was not ready within 30 s")

    def _drain(self, ready: str, started: float) -> None:
        for line in self.popen.stdout or ():
            if ready and ready in line and not self._ready.is_set():
                self.startup_s = time.monotonic() - started
                self._ready.set()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK

    def status_kib(self, key: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        return 0

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.popen.wait(10)


@contextmanager
def started(procs: list[Proc]) -> Iterator[None]:
    try:
        yield
    finally:
        for proc in reversed(procs):
            proc.stop()


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def wrk(
    url: str,
    connections: int,
    seconds: float,
    model: str,
    latency: bool = False,
    unique: bool = False,
    key: str = "",
) -> dict[str, float]:
    args = [
        "taskset",
        "-c",
        "1",
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "-s",
        str(ROOT / "bench/post.lua"),
    ]
    if latency:
        args.append("--latency")
    out = subprocess.run(
        [*args, url],
        capture_output=True,
        text=True,
        env={**os.environ, "BENCH_MODEL": model, "BENCH_UNIQUE": "1" if unique else "0", "BENCH_KEY": key},
        timeout=seconds + 30,
        check=True,
    ).stdout
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    for pct, value, unit in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)$", out, re.M):
        result[f"p{pct}"] = float(value) * _UNITS[unit]
    if re.search(r"Non-2xx", out):
        raise RuntimeError(f"non-2xx answers from {url} for {model}:\n{out}")
    return result


async def _open_loop(url: str, model: str, rate: float, seconds: float) -> list[float]:
    latencies: list[float] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=512)) as session:

        async def one(i: int) -> None:
            body = PROMPT % (model.encode(), b',"seed":%d' % (time.time_ns() + i))  # unique: never a cache hit
            start = time.perf_counter()
            async with session.post(url, data=body, headers={"content-type": "application/json"}) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"{url}: HTTP {response.status}")
            latencies.append((time.perf_counter() - start) * 1000)

        tasks = []
        begin = time.perf_counter()
        for i in range(int(rate * seconds)):
            delay = begin + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
    return sorted(latencies)


def open_loop(url: str, model: str, rate: float, seconds: float) -> dict[str, float]:
    lat = asyncio.run(_open_loop(url, model, rate, seconds))
    return {"p50": lat[len(lat) // 2], "p99": lat[int(len(lat) * 0.99) - 1]}


async def _streams(url: str, model: str, count: int) -> dict[str, float]:
    body = PROMPT % (model.encode(), b',"stream":true')
    first, total = [], []
    async with aiohttp.ClientSession() as session:
        for _ in range(count):
            start = time.perf_counter()
            async with session.post(url, data=body, headers={"content-type": "application/json"}) as response:
                seen_first = False
                async for line in response.content:
                    if line.startswith(b"data:") and not seen_first:
                        first.append((time.perf_counter() - start) * 1000)
                        seen_first = True
                    if line.startswith(b"data: [DONE]"):
                        break
            total.append((time.perf_counter() - start) * 1000)
    return {
        "ttfe": statistics.median(first),
        "total": statistics.median(total),
        "streams_per_s": count / (sum(total) / 1000),
    }


def streams(url: str, model: str, count: int) -> dict[str, float]:
    return asyncio.run(_streams(url, model, count))


def start_redis(procs: list[Proc]) -> str:
    """A throwaway redis-server (no persistence) on the load core; its URL."""
    port = free_port()
    command = ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"]
    procs.append(Proc(command, core=1, ready="Ready to accept"))
    return f"redis://127.0.0.1:{port}/0"


def start_gateway(procs: list[Proc], config: Path, env: dict[str, str] | None = None) -> tuple[Proc, str]:
    """The gateway on the peer core, as `ultra-gateway serve` runs it; the process and its chat URL."""
    port = free_port()
    command = [PY, "-m", "gateway", "serve", "--config", str(config), "--port", str(port), "--log-level", "info"]
    proc = Proc(command, core=0, env=env, ready="Uvicorn running")
    procs.append(proc)
    return proc, f"http://127.0.0.1:{port}/v1/chat/completions"


def gateway_config(fast: int, slow: int, redis_url: str | None, *, cache: bool = True, limits: bool = True) -> str:
    """Providers on the raw upstreams; with a Redis URL, the Redis response cache and rate limit (each on unless
    switched off)."""
    cache_yaml = f"{{backend: redis, redis_url: '{redis_url}'}}" if redis_url and cache else "{enabled: false}"
    limits_yaml = (
        f"{{backend: redis, redis_url: '{redis_url}', rpm: 100000000, tpm: 1000000000}}"
        if redis_url and limits
        else "{enabled: false}"
    )
    extra = f"cache: {cache_yaml}\nrate_limits: {limits_yaml}\n"
    return f"""
server: {{expose_metadata: true}}
providers:
  - {{name: up, kind: openai, base_url: "http://127.0.0.1:{fast}/v1", max_retries: 0, models: [{{id: m}}]}}
  - {{name: slow, kind: openai, base_url: "http://127.0.0.1:{slow}/v1", max_retries: 0, models: [{{id: m}}]}}
  - {{name: slow2, kind: openai, base_url: "http://127.0.0.1:{slow}/v1", max_retries: 0, models: [{{id: m2}}]}}
strategies:
  ultra-parallel: {{kind: parallel, candidates: [slow/m, slow2/m2]}}
  ultra-simple: {{kind: simple, candidates: [slow/m, slow2/m2], lead: slow/m}}
{extra}"""


def spread(values: list[float], fmt: str = "{:.2f}") -> str:
    if not values:
        return "n/a"
    med = statistics.median(values)
    return (
        f"{fmt.format(med)} ({fmt.format(min(values))}-{fmt.format(max(values))})"
        if len(values) > 1
        else fmt.format(med)
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="5 rounds of 5 s (default: --quick, 3 rounds of 1 s)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--soak", action="store_true", help="also 100k requests on the gateway, RSS before/after")
    args = parser.parse_args()
    rounds, seconds = (5, 5.0) if args.full else (3, 1.0)
    began = time.monotonic()
    if not shutil.which("wrk"):
        print("wrk is missing: apt-get install wrk", file=sys.stderr)
        return 2
    fast_port, slow_port = free_port(), free_port()
    procs: list[Proc] = []
    with started(procs), tempfile.TemporaryDirectory() as tmp:
        procs.append(Proc([PY, "bench/upstream.py", str(fast_port)], core=1, ready="listening"))
        procs.append(Proc([PY, "bench/upstream.py", str(slow_port), "50"], core=1, ready="listening"))
        redis_url = start_redis(procs) if shutil.which("redis-server") else None
        peers: dict[str, tuple[Proc, str, str]] = {}

        def gateway(name: str, redis: str | None, env: dict[str, str] | None = None) -> None:
            config = Path(tmp) / f"{name}.yaml"
            config.write_text(gateway_config(fast_port, slow_port, redis))
            proc, url = start_gateway(procs, config, env)
            peers[name] = (proc, url, "up/m")

        port = free_port()
        floor = Proc(
            [PY, "-m", "uvicorn", "bench.floor:app", "--port", str(port), "--log-level", "info", "--no-access-log"],
            core=0,
            env={
                "BENCH_UPSTREAM": f"http://127.0.0.1:{fast_port}",
                "BENCH_SLOW_UPSTREAM": f"http://127.0.0.1:{slow_port}",
            },
            ready="Uvicorn running",
        )
        procs.append(floor)
        peers["floor"] = (floor, f"http://127.0.0.1:{port}/v1/chat/completions", "up/m")
        gateway("gateway", None)
        if redis_url:
            # Redis rate limit, Redis cache (every request a miss), and OTel spans exported over OTLP/HTTP (the
            # raw upstream answers 200 to any POST, so it doubles as a collector that is never the bottleneck).
            otel = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"http://127.0.0.1:{fast_port}/v1/traces"}
            gateway("gateway+redis+otel", redis_url, otel)
        direct = f"http://127.0.0.1:{fast_port}/v1/chat/completions"
        slow_direct = f"http://127.0.0.1:{slow_port}/v1/chat/completions"
        rows: dict[str, dict[str, list[float]]] = {name: {} for name in peers}

        def record(peer: str, key: str, value: float) -> None:
            rows[peer].setdefault(key, []).append(value)

        for _name, (_proc, url, model) in peers.items():  # warm up every peer once
            wrk(url, 16, 1, model)
        for _ in range(rounds):
            base = wrk(direct, 1, seconds, "up/m", latency=True)
            for name, (proc, url, model) in peers.items():
                for connections in (16, 64):
                    cpu = proc.cpu_s()
                    result = wrk(url, connections, seconds, model, unique=True)
                    used = proc.cpu_s() - cpu
                    record(name, f"rps_cpu_c{connections}", result["rps"] * seconds / used if used else 0)
                unloaded = wrk(url, 1, seconds, model, latency=True, unique=True)
                record(name, "added_p50_unloaded", unloaded["p50"] - base["p50"])
            direct_200 = open_loop(direct, "up/m", 200, seconds)
            slow_200 = open_loop(slow_direct, "slow/m", 200, seconds)
            for name in peers:  # the floor too: what this machine adds to any proxy
                _, url, _ = peers[name]
                loaded = open_loop(url, "up/m", 200, seconds)
                record(name, "added_p50_200rps", loaded["p50"] - direct_200["p50"])
                record(name, "added_p99_200rps", loaded["p99"] - direct_200["p99"])
                loaded = open_loop(url, "slow/m", 200, seconds)
                record(name, "added_p50_200rps_50ms", loaded["p50"] - slow_200["p50"])
                record(name, "added_p99_200rps_50ms", loaded["p99"] - slow_200["p99"])
            stream_direct = streams(direct, "up/m", 50)
            stream_gateway = streams(peers["gateway"][1], "up/m", 50)
            record("gateway", "stream_added_ttfe", stream_gateway["ttfe"] - stream_direct["ttfe"])
            record("gateway", "stream_added_total", stream_gateway["total"] - stream_direct["total"])
            record("gateway", "streams_per_s", stream_gateway["streams_per_s"])
            if "gateway+redis+otel" in peers:
                _, url, _ = peers["gateway+redis+otel"]
                hit = wrk(url, 1, seconds, "up/m", latency=True)  # the same request: a hit after the first
                record("gateway+redis+otel", "cache_hit_p50_ms", hit["p50"])
        # slow/m: one direct call to the same 50 ms deployment, for comparison (what any request pays on top of
        # its upstream call here, fan-out or not)
        count = 30 if args.full else 15
        fanout = {model: fanout_overhead(peers["gateway"][1], model, count) for model in ("slow/m", *FANOUT)}
        soak = soak_rss(peers["gateway"][0], peers["gateway"][1]) if args.soak else None
        floor_c16 = statistics.median(rows["floor"]["rps_cpu_c16"])
        print_table(rows, peers, floor_c16, fanout, soak, rounds, seconds)
        print(f"\nThe whole run took {time.monotonic() - began:.0f} s.")
    return 0


def fanout_overhead(url: str, alias: str, count: int) -> list[float] | None:
    """A fan-out alias over the 50 ms deployments: client latency minus its critical path, which is the slowest
    successful call of each step (`role`: candidates, then analysis, then synthesis), summed."""

    async def run() -> list[float] | None:
        out = []
        async with aiohttp.ClientSession() as session:
            for _ in range(count):
                start = time.perf_counter()
                async with session.post(
                    url, data=PROMPT % (alias.encode(), b""), headers={"content-type": "application/json"}
                ) as response:
                    if response.status != 200:
                        return None
                    body = await response.json()
                elapsed = (time.perf_counter() - start) * 1000
                slowest: dict[str, float] = {}  # per role, in the order the steps ran
                for call in body["ultra"]["calls"]:
                    if call["status"] == "ok":
                        slowest[call["role"]] = max(slowest.get(call["role"], 0.0), call["latency_ms"])
                out.append(elapsed - sum(slowest.values()))
        return out

    return asyncio.run(run())


def soak_rss(proc: Proc, url: str) -> tuple[int, int, float]:
    before = proc.status_kib("VmRSS")
    rate = wrk(url, 16, 2, "up/m")["rps"]
    wrk(url, 16, max(5.0, 100_000 / rate), "up/m")
    return before, proc.status_kib("VmRSS"), 100_000 / rate


def print_table(
    rows: dict[str, dict[str, list[float]]],
    peers: dict[str, tuple[Proc, str, str]],
    floor_c16: float,
    fanout: dict[str, list[float] | None],
    soak: tuple[int, int, float] | None,
    rounds: int,
    seconds: float,
) -> None:
    def cell(peer: str, key: str, fmt: str = "{:.2f}") -> str:
        return spread(rows.get(peer, {}).get(key, []), fmt)

    print(f"\n{rounds} rounds x {seconds:.0f} s per measurement; median (min-max). Peers on core 0, load on core 1.\n")
    print(
        "| peer | req/CPU-s c=16 | xfloor | req/CPU-s c=64 | added p50 unloaded ms | added p50 @200 rps ms | "
        "added p99 @200 rps ms | same, 50 ms upstream p50 / p99 | start-up s | peak RSS MiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, (proc, _, _) in peers.items():
        c16 = rows[name].get("rps_cpu_c16", [])
        ratio = f"{statistics.median(c16) / floor_c16:.2f}" if c16 else "n/a"
        slow = f"{cell(name, 'added_p50_200rps_50ms')} / {cell(name, 'added_p99_200rps_50ms')}"
        rss = proc.status_kib("VmHWM") / 1024
        print(
            f"| {name} | {cell(name, 'rps_cpu_c16', '{:.0f}')} | {ratio} | {cell(name, 'rps_cpu_c64', '{:.0f}')} | "
            f"{cell(name, 'added_p50_unloaded')} | {cell(name, 'added_p50_200rps')} | "
            f"{cell(name, 'added_p99_200rps')} | {slow} | {proc.startup_s:.2f} | {rss:.0f} |"
        )
    print(
        f"\nStreaming (gateway vs direct, 50 sequential streams per round): added time to first event "
        f"{cell('gateway', 'stream_added_ttfe')} ms, added total {cell('gateway', 'stream_added_total')} ms, "
        f"{cell('gateway', 'streams_per_s', '{:.0f}')} streams/s sequential."
    )
    print(f"Cache hit on Redis, end to end, 1 connection: p50 {cell('gateway+redis+otel', 'cache_hit_p50_ms')} ms.")
    for model, overhead in fanout.items():
        what = "one direct call (for comparison)" if model not in FANOUT else "fan-out"
        print(f"{model} ({what}), beyond its critical path of upstream calls: {spread(overhead or [])} ms")
    if soak:
        before, after, secs = soak
        print(
            f"Soak: 100k requests in {secs:.0f} s, RSS {before / 1024:.1f} → {after / 1024:.1f} MiB "
            f"({(after - before) / before * 100:+.1f} %)."
        )


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks that stop every child
    sys.exit(main())
