"""The load benchmark: the gateway against two floors, a direct call and (optionally) LiteLLM, in one run.

    python bench/run.py [--quick | --full] [--soak] [--baseline GIT_REF]

Starts (and stops, by PID) a fast raw-asyncio upstream (0 ms and 50 ms variants; streams of 16 events, paced
ones for the time to first event), then the peers:

- `bare`: a raw ASGI app under uvicorn forwarding through one pooled aiohttp session (`bench/bare.py`), the
  least any Python proxy on this stack can cost;
- `litestar`: the same passthrough as a Litestar route (`bench/floor.py`);
- `gateway`: a direct `provider/model` config, no features (cache, limits, auth and tracing off; the access log
  is on, as it always is);
- `gateway+all`: every production feature on: API key auth, a Redis rate limit, the Redis response cache with
  every request a miss (and its store), every span exported over OTLP/HTTP, the access log;
- `litellm`: LiteLLM's proxy, when its venv exists (see LITELLM below; never installed from here);
- with `--baseline REF`: `gateway@REF` and `gateway+all@REF`, the same two configurations run from the code of
  that git ref (exported with `git archive`), so a change is measured against its parent side by side.

Peers are pinned to core 0, load, upstreams and Redis to core 1 (`taskset`). Rounds alternate the peers; each
figure is the median over rounds with its min-max spread; ratios are taken within each round, then the median.
Throughput is requests per second of the peer's own CPU time (utime+stime from /proc, every thread), so it does
not depend on how hard the load generator could push. Added latency is the peer's minus a direct call to the
same upstream in the same round. Needs `wrk` (Debian package) and, for the features peer, `redis-server`.
Not a test: CI does not run it.

LITELLM: `python3 -m venv /tmp/litellm-venv && /tmp/litellm-venv/bin/pip install 'litellm[proxy]'` creates the
venv this looks for (another path: `BENCH_LITELLM_VENV`); without it the peer is skipped with a note.
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
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
TICK = os.sysconf("SC_CLK_TCK")
FANOUT = ("ultra-parallel", "ultra-simple")
# temperature 0: deterministic, so the response cache may store it (sampled requests bypass the cache)
PROMPT = b'{"model":"%s","messages":[{"role":"user","content":"Say hello in five words."}],"temperature":0%s}'
KEY = "sk-bench-" + "5f0c3a9e2b7d41c8" * 4  # sent to every peer; gateway+all and LiteLLM (its master key) check it
AUTH = {"content-type": "application/json", "authorization": f"Bearer {KEY}"}
PACED = "paced/paced-m"  # a model the upstream streams one event every 2 ms (see bench/upstream.py)
LITELLM_VENV = Path(os.environ.get("BENCH_LITELLM_VENV", "/tmp/litellm-venv"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Proc:
    """A child process in its own process group, pinned to a core, stopped by PID."""

    def __init__(
        self,
        args: list[str],
        core: int,
        env: dict[str, str] | None = None,
        ready: str = "",
        cwd: Path = ROOT,
        wait_s: float = 30,
        port: int | None = None,
    ) -> None:
        """Ready when a line of its output contains `ready`, or (with `port`) when that port accepts."""
        started = time.monotonic()
        self.popen = subprocess.Popen(
            ["taskset", "-c", str(core), *args],
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.startup_s = 0.0
        self.tail: list[str] = []
        self.tracebacks = 0  # lines of its whole output that start a traceback
        self._ready = threading.Event()
        threading.Thread(target=self._drain, args=(ready, started), daemon=True).start()  # pipe never fills
        deadline = started + wait_s
        while (ready or port) and not self._ready.wait(0.2):
            if port and _accepts(port):
                self.startup_s = time.monotonic() - started
                break
            if self.popen.poll() is None and time.monotonic() < deadline:
                continue
            self.stop()
            raise RuntimeError(f"{args} was not ready within {wait_s:.0f} s:\n{''.join(self.tail[-20:])}")

    def _drain(self, ready: str, started: float) -> None:
        for line in self.popen.stdout or ():
            if "Traceback" in line:
                self.tracebacks += 1
            if not self._ready.is_set():
                self.tail.append(line)
                if ready and ready in line:
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


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


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
    stream: bool = False,
    key: str | None = None,
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
    env = {
        **os.environ,
        "BENCH_MODEL": model,
        "BENCH_UNIQUE": "1" if unique else "0",
        "BENCH_NONCE": os.urandom(6).hex(),
        "BENCH_STREAM": "1" if stream else "0",
        "BENCH_KEY": KEY if key is None else key,
    }
    out = subprocess.run([*args, url], capture_output=True, text=True, env=env, timeout=seconds + 30, check=True).stdout
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    for pct, value, unit in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)$", out, re.M):
        result[f"p{pct}"] = float(value) * _UNITS[unit]
    if re.search(r"Non-2xx|Socket errors", out):
        raise RuntimeError(f"errors from {url} for {model}:\n{out}")
    return result


async def _open_loop(url: str, model: str, rate: float, seconds: float) -> list[float]:
    latencies: list[float] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=512)) as session:

        async def one(i: int) -> None:
            body = PROMPT % (model.encode(), b',"seed":%d' % (time.time_ns() + i))  # unique: never a cache hit
            start = time.perf_counter()
            async with session.post(url, data=body, headers=AUTH) as response:
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
    """Sequential streams over one connection: time to the first `data:` event and to `[DONE]`."""
    first, total = [], []
    async with aiohttp.ClientSession() as session:
        for i in range(count):
            body = PROMPT % (model.encode(), b',"stream":true,"seed":%d' % (time.time_ns() + i))
            start = time.perf_counter()
            async with session.post(url, data=body, headers=AUTH) as response:
                if response.status != 200:
                    raise RuntimeError(f"{url}: HTTP {response.status}: {await response.text()}")
                seen_first = False
                async for line in response.content:
                    if line.startswith(b"data:") and not seen_first:
                        first.append((time.perf_counter() - start) * 1000)
                        seen_first = True
                    if line.startswith(b"data: [DONE]"):
                        break
            total.append((time.perf_counter() - start) * 1000)
    return {"ttfe": statistics.median(first), "total": statistics.median(total)}


def streams(url: str, model: str, count: int) -> dict[str, float]:
    return asyncio.run(_streams(url, model, count))


def start_redis(procs: list[Proc]) -> str:
    """A throwaway redis-server (no persistence) on the load core; its URL."""
    port = free_port()
    command = ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"]
    procs.append(Proc(command, core=1, ready="Ready to accept"))
    return f"redis://127.0.0.1:{port}/0"


def start_gateway(
    procs: list[Proc], config: Path, env: dict[str, str] | None = None, code: Path = ROOT
) -> tuple[Proc, str]:
    """The gateway on the peer core, as `ultra-gateway serve` runs it (from the sources in `code`); the process
    and its chat URL."""
    port = free_port()
    command = [PY, "-m", "gateway", "serve", "--config", str(config), "--port", str(port), "--log-level", "info"]
    env = {**(env or {}), "PYTHONPATH": str(code)} if code != ROOT else env
    proc = Proc(command, core=0, env=env, ready="Uvicorn running", cwd=code)
    procs.append(proc)
    return proc, f"http://127.0.0.1:{port}/v1/chat/completions"


def gateway_config(
    fast: int,
    slow: int,
    redis_url: str | None,
    *,
    cache: bool = True,
    limits: bool = True,
    auth: bool = False,
) -> str:
    """Providers on the raw upstreams; with a Redis URL, the Redis response cache and rate limit (each on unless
    switched off); with `auth`, one API key (KEY)."""
    cache_yaml = f"{{backend: redis, redis_url: '{redis_url}'}}" if redis_url and cache else "{enabled: false}"
    limits_yaml = (
        f"{{backend: redis, redis_url: '{redis_url}', rpm: 100000000, tpm: 1000000000}}"
        if redis_url and limits
        else "{enabled: false}"
    )
    extra = f"cache: {cache_yaml}\nrate_limits: {limits_yaml}\n"
    if auth:
        extra += f"auth: {{keys: [{{name: bench, key: '{KEY}', rpm: 100000000, tpm: 1000000000}}]}}\n"
    return f"""
server: {{expose_metadata: true}}
providers:
  - {{name: up, kind: openai, base_url: "http://127.0.0.1:{fast}/v1", max_retries: 0, models: [{{id: m}}]}}
  - {{name: paced, kind: openai, base_url: "http://127.0.0.1:{fast}/v1", max_retries: 0, models: [{{id: paced-m}}]}}
  - {{name: slow, kind: openai, base_url: "http://127.0.0.1:{slow}/v1", max_retries: 0, models: [{{id: m}}]}}
  - {{name: slow2, kind: openai, base_url: "http://127.0.0.1:{slow}/v1", max_retries: 0, models: [{{id: m2}}]}}
strategies:
  ultra-parallel: {{kind: parallel, candidates: [slow/m, slow2/m2]}}
  ultra-simple: {{kind: simple, candidates: [slow/m, slow2/m2], lead: slow/m}}
{extra}"""


def litellm_config(fast: int, slow: int) -> str:
    def model(name: str, upstream_model: str, port: int) -> str:
        return (
            f"  - model_name: {name}\n    litellm_params: {{model: 'openai/{upstream_model}', "
            f"api_base: 'http://127.0.0.1:{port}/v1', api_key: sk-upstream}}\n"
        )

    return "model_list:\n" + model("up/m", "m", fast) + model(PACED, "paced-m", fast) + model("slow/m", "m", slow)


def spread(values: list[float], fmt: str = "{:.2f}") -> str:
    if not values:
        return "n/a"
    med = statistics.median(values)
    return (
        f"{fmt.format(med)} ({fmt.format(min(values))}-{fmt.format(max(values))})"
        if len(values) > 1
        else fmt.format(med)
    )


@dataclass
class Peer:
    proc: Proc
    url: str
    rows: dict[str, list[float]] = field(default_factory=dict)
    stopped_rss_mib: float | None = None  # peak RSS, kept when the peer is stopped before the table

    def record(self, key: str, value: float) -> None:
        self.rows.setdefault(key, []).append(value)

    def peak_rss_mib(self) -> float:
        return self.stopped_rss_mib or self.proc.status_kib("VmHWM") / 1024

    def median(self, key: str) -> float | None:
        values = self.rows.get(key)
        return statistics.median(values) if values else None


def warm_up(peer: Peer) -> None:
    wrk(peer.url, 16, 1, "up/m")
    wrk(peer.url, 16, 1, "up/m", stream=True)


class Direct:
    """The upstream called directly, measured once per round; `compare` measures a peer against it."""

    def __init__(self, url: str, slow_url: str, stream_count: int, seconds: float, slow: bool) -> None:
        self.url, self.slow_url = url, slow_url
        self.stream_count, self.seconds, self.slow = stream_count, seconds, slow

    def measure(self) -> None:
        self.unloaded = wrk(self.url, 1, self.seconds, "up/m", latency=True)
        self.paced = streams(self.url, PACED, self.stream_count)
        self.at_200 = open_loop(self.url, "up/m", 200, self.seconds)
        self.slow_200 = open_loop(self.slow_url, "slow/m", 200, self.seconds) if self.slow else None

    def compare(self, peer: Peer) -> None:
        seconds = self.seconds
        for key, stream in (("rps_cpu", False), ("streams_cpu", True)):
            cpu = peer.proc.cpu_s()
            result = wrk(peer.url, 16 if stream else 64, seconds, "up/m", unique=True, stream=stream)
            used = peer.proc.cpu_s() - cpu
            peer.record(key, result["rps"] * seconds / used if used else 0)
        one = wrk(peer.url, 1, seconds, "up/m", latency=True, unique=True)
        peer.record("added_p50_unloaded", one["p50"] - self.unloaded["p50"])
        loaded = open_loop(peer.url, "up/m", 200, seconds)
        peer.record("added_p50_200rps", loaded["p50"] - self.at_200["p50"])
        peer.record("added_p99_200rps", loaded["p99"] - self.at_200["p99"])
        if self.slow_200 is not None:
            loaded = open_loop(peer.url, "slow/m", 200, seconds)
            peer.record("added_p50_200rps_50ms", loaded["p50"] - self.slow_200["p50"])
            peer.record("added_p99_200rps_50ms", loaded["p99"] - self.slow_200["p99"])
        timed = streams(peer.url, PACED, self.stream_count)
        peer.record("stream_added_ttfe", timed["ttfe"] - self.paced["ttfe"])


def export_ref(ref: str, into: Path) -> Path:
    """The sources of a git ref, as files (no worktree, nothing changed in the repository)."""
    into.mkdir()
    archive = subprocess.run(["git", "archive", ref], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="5 rounds of 5 s (default: --quick, 3 rounds of 1 s)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, help="override the number of rounds")
    parser.add_argument("--soak", action="store_true", help="also 100k requests on the gateway, RSS before/after")
    parser.add_argument("--baseline", metavar="GIT_REF", help="also run both gateway peers from this ref's code")
    parser.add_argument("--no-litellm", action="store_true", help="skip LiteLLM even when its venv exists")
    args = parser.parse_args()
    rounds, seconds = (5, 5.0) if args.full else (3, 1.0)
    rounds = args.rounds or rounds
    began = time.monotonic()
    if not shutil.which("wrk"):
        print("wrk is missing: apt-get install wrk", file=sys.stderr)
        return 2
    fast_port, slow_port = free_port(), free_port()
    procs: list[Proc] = []
    notes: list[str] = []
    with started(procs), tempfile.TemporaryDirectory() as tmp:
        procs.append(Proc([PY, "bench/upstream.py", str(fast_port)], core=1, ready="listening"))
        procs.append(Proc([PY, "bench/upstream.py", str(slow_port), "50"], core=1, ready="listening"))
        redis_url = start_redis(procs) if shutil.which("redis-server") else None
        if not redis_url:
            notes.append("redis-server is missing: no gateway+all peer.")
        floor_env = {
            "BENCH_UPSTREAM": f"http://127.0.0.1:{fast_port}",
            "BENCH_SLOW_UPSTREAM": f"http://127.0.0.1:{slow_port}",
        }
        # raw upstream answers 200 to any POST, so it doubles as an OTLP/HTTP sink that is never the bottleneck
        otel = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"http://127.0.0.1:{fast_port}/v1/traces"}
        peers: dict[str, Peer] = {}

        def uvicorn(name: str, target: str) -> None:
            port = free_port()
            command = [PY, "-m", "uvicorn", target, "--port", str(port), "--log-level", "info", "--no-access-log"]
            proc = Proc(command, core=0, env=floor_env, ready="Uvicorn running")
            procs.append(proc)
            peers[name] = Peer(proc, f"http://127.0.0.1:{port}/v1/chat/completions")

        def gateways(suffix: str, code: Path) -> None:
            config = Path(tmp) / f"gateway{suffix}.yaml"
            config.write_text(gateway_config(fast_port, slow_port, None))
            peers["gateway" + suffix] = Peer(*start_gateway(procs, config, code=code))
            if redis_url:
                config = Path(tmp) / f"all{suffix}.yaml"
                config.write_text(gateway_config(fast_port, slow_port, redis_url, auth=True))
                peers["gateway+all" + suffix] = Peer(*start_gateway(procs, config, otel, code=code))

        uvicorn("bare", "bench.bare:app")
        uvicorn("litestar", "bench.floor:app")
        gateways("", ROOT)
        if args.baseline:
            gateways(f"@{args.baseline}", export_ref(args.baseline, Path(tmp) / "baseline"))
        litellm = LITELLM_VENV / "bin" / "litellm"
        if not args.no_litellm and not litellm.exists():
            notes.append(
                f"LiteLLM skipped: no venv at {LITELLM_VENV} (create it with `python3 -m venv {LITELLM_VENV} && "
                f"{LITELLM_VENV}/bin/pip install 'litellm[proxy]'`)."
            )
        direct = f"http://127.0.0.1:{fast_port}/v1/chat/completions"
        slow_direct = f"http://127.0.0.1:{slow_port}/v1/chat/completions"
        stream_count = 30 if args.full else 15

        base = Direct(direct, slow_direct, stream_count, seconds, bool(args.full))
        for peer in peers.values():  # warm up every peer once, both kinds of answer
            warm_up(peer)
        for _ in range(rounds):
            base.measure()
            for peer in peers.values():
                base.compare(peer)
            for peer in peers.values():  # ratios within the round: the noise of the round cancels
                for key in ("rps_cpu", "streams_cpu"):
                    for floor in ("bare", "litestar"):
                        peer.record(f"{key}_x{floor}", peer.rows[key][-1] / peers[floor].rows[key][-1])
            if "gateway+all" in peers:
                hit = wrk(peers["gateway+all"].url, 1, seconds, "up/m", latency=True)  # a hit after the first
                peers["gateway+all"].record("cache_hit_p50_ms", hit["p50"])
        if not args.no_litellm and litellm.exists():
            # Alone on the peer core, after the others: its background work would otherwise disturb their
            # latencies. Its ratios are to the floors' medians.
            config = Path(tmp) / "litellm.yaml"
            config.write_text(litellm_config(fast_port, slow_port))
            port = free_port()
            command = [str(litellm), "--config", str(config), "--port", str(port), "--num_workers", "1"]
            env = {"LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False", "NO_DOCS": "True", "LITELLM_MASTER_KEY": KEY}
            proc = Proc(command, core=0, env=env, port=port, wait_s=180)
            procs.append(proc)
            peer = peers["litellm"] = Peer(proc, f"http://127.0.0.1:{port}/v1/chat/completions")
            warm_up(peer)
            for _ in range(min(rounds, 2)):
                base.measure()
                base.compare(peer)
            for key in ("rps_cpu", "streams_cpu"):
                for floor in ("bare", "litestar"):
                    peer.rows[f"{key}_x{floor}"] = [value / (peers[floor].median(key) or 1) for value in peer.rows[key]]
            peer.stopped_rss_mib = peer.peak_rss_mib()
            proc.stop()
        # slow/m: one direct call to the same 50 ms deployment, for comparison (what any request pays on top of
        # its upstream call here, fan-out or not)
        count = 30 if args.full else 15
        fanout = {model: fanout_overhead(peers["gateway"].url, model, count) for model in ("slow/m", *FANOUT)}
        fanout["bare floor"] = floor_overhead(peers["bare"].url, peers["gateway"].url, count)
        soak = soak_rss(peers["gateway"].proc, peers["gateway"].url) if args.soak else None
        print_table(peers, fanout, soak, rounds, seconds, bool(args.full))
        print_targets(peers, fanout)
        for note in notes:
            print(f"\nNote: {note}")
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
                async with session.post(url, data=PROMPT % (alias.encode(), b""), headers=AUTH) as response:
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


def floor_overhead(bare: str, gateway: str, count: int) -> list[float]:
    """The same measure for the bare floor, which reports no call times: its client latency for one call to the
    50 ms upstream, minus the call time the gateway measures for the same call (requests alternate). What this
    client, loopback and waking from a 50 ms idle cost any proxy here, with no fan-out and no gateway code."""

    async def run() -> list[float]:
        out = []
        async with aiohttp.ClientSession() as session:
            for _ in range(count):
                start = time.perf_counter()
                async with session.post(bare, data=PROMPT % (b"slow/m", b""), headers=AUTH) as response:
                    await response.read()
                elapsed = (time.perf_counter() - start) * 1000
                async with session.post(gateway, data=PROMPT % (b"slow/m", b""), headers=AUTH) as response:
                    body = await response.json()
                out.append(elapsed - body["ultra"]["calls"][0]["latency_ms"])
        return out

    return asyncio.run(run())


def soak_rss(proc: Proc, url: str) -> tuple[int, int, float]:
    before = proc.status_kib("VmRSS")
    rate = wrk(url, 16, 2, "up/m")["rps"]
    wrk(url, 16, max(5.0, 100_000 / rate), "up/m")
    return before, proc.status_kib("VmRSS"), 100_000 / rate


def print_table(
    peers: dict[str, Peer],
    fanout: dict[str, list[float] | None],
    soak: tuple[int, int, float] | None,
    rounds: int,
    seconds: float,
    slow: bool,
) -> None:
    print(f"\n{rounds} rounds x {seconds:.0f} s per measurement; median (min-max). Peers on core 0, load on core 1.")
    print(
        "Whole answers: wrk c=64, every body unique. Streams: wrk c=16, 16 SSE events per answer. Time to first "
        "event: sequential streams paced at one event per 2 ms. Ratios are per round.\n"
    )
    head = (
        "| peer | whole req/CPU-s | xbare | xlitestar | streams/CPU-s | xbare | xlitestar | added p50 unloaded ms | "
        "added p50 / p99 @200 rps ms | added first event ms | start-up s | peak RSS MiB |"
    )
    if slow:
        head += " same @200 rps, 50 ms upstream p50 / p99 |"
    print(head)
    print("|---" * (head.count("|") - 1) + "|")
    for name, peer in peers.items():

        def cell(key: str, fmt: str = "{:.2f}", peer: Peer = peer) -> str:
            return spread(peer.rows.get(key, []), fmt)

        line = (
            f"| {name} | {cell('rps_cpu', '{:.0f}')} | {cell('rps_cpu_xbare')} | {cell('rps_cpu_xlitestar')} | "
            f"{cell('streams_cpu', '{:.0f}')} | {cell('streams_cpu_xbare')} | {cell('streams_cpu_xlitestar')} | "
            f"{cell('added_p50_unloaded')} | {cell('added_p50_200rps')} / {cell('added_p99_200rps')} | "
            f"{cell('stream_added_ttfe')} | {peer.proc.startup_s:.2f} | "
            f"{peer.peak_rss_mib():.0f} |"
        )
        if slow:
            line += f" {cell('added_p50_200rps_50ms')} / {cell('added_p99_200rps_50ms')} |"
        print(line)
    if "gateway+all" in peers:
        hit = spread(peers["gateway+all"].rows.get("cache_hit_p50_ms", []))
        print(f"\nCache hit on Redis (gateway+all), end to end, 1 connection: p50 {hit} ms.")
    for model, overhead in fanout.items():
        if model == "bare floor":
            print(f"bare floor, one call, beyond the gateway's time for the same call: {spread(overhead or [])} ms")
            continue
        what = "one direct call (for comparison)" if model not in FANOUT else "fan-out"
        print(f"{model} ({what}), beyond its critical path of upstream calls: {spread(overhead or [])} ms")
    if soak:
        before, after, secs = soak
        print(
            f"Soak: 100k requests in {secs:.0f} s, RSS {before / 1024:.1f} → {after / 1024:.1f} MiB "
            f"({(after - before) / before * 100:+.1f} %)."
        )


def print_targets(peers: dict[str, Peer], fanout: dict[str, list[float] | None]) -> None:
    """This round's targets, each against the value measured above."""
    gateway, full = peers["gateway"], peers.get("gateway+all")

    def fanout_worst(beyond: str | None = None) -> float | None:
        values = [statistics.median(fanout[m] or [0]) for m in FANOUT if fanout.get(m)]
        base = fanout.get(beyond) if beyond else None
        if not values or (beyond and not base):
            return None
        return max(values) - (statistics.median(base or [0]) if beyond else 0)

    rss = max(p.peak_rss_mib() for n, p in peers.items() if n.startswith("gateway"))
    checks: list[tuple[str, float | None, float, bool]] = [  # what, value, bound, higher is better
        ("streams/CPU-s, gateway x litestar floor", gateway.median("streams_cpu_xlitestar"), 0.8, True),
        ("added time to first event, gateway, ms", gateway.median("stream_added_ttfe"), 0.6, False),
        ("whole answers/CPU-s, gateway x bare floor", gateway.median("rps_cpu_xbare"), 0.7, True),
        ("whole answers/CPU-s, gateway+all x litestar floor", full and full.median("rps_cpu_xlitestar"), 0.5, True),
        ("added p99 @200 rps, gateway, ms", gateway.median("added_p99_200rps"), 1.5, False),
        ("added p99 @200 rps, gateway+all, ms", full and full.median("added_p99_200rps"), 3.0, False),
        ("fan-out overhead (worst alias), ms", fanout_worst(), 1.0, False),
        ("the same, beyond a direct call's own (slow/m above), ms", fanout_worst("slow/m"), 1.0, False),
        ("the same, beyond the bare floor's own (above), ms", fanout_worst("bare floor"), 1.0, False),
        ("peak RSS per worker (worst gateway peer), MiB", rss, 100, False),
    ]
    print("\n| target | measured (median) | bound | verdict |\n|---|---|---|---|")
    for what, value, bound, higher in checks:
        if value is None:
            print(f"| {what} | n/a | {bound} | not measured |")
            continue
        met = value >= bound if higher else value <= bound
        print(f"| {what} | {value:.2f} | {'≥' if higher else '≤'} {bound} | {'met' if met else 'MISSED'} |")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks that stop every child
    sys.exit(main())
