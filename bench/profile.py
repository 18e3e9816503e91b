"""Where the gateway's CPU goes under load: py-spy samples the gateway while wrk drives it, then the stacks are
summed per function (self time and inclusive time) and printed as two tables.

    python -m bench.profile [--stream] [--limits] [--cache] [--otel] [--auth] [--seconds 10] [--out stacks.txt]

Starts (and stops, by PID) the raw upstream and the gateway pinned to core 0, as `bench/run.py` does; with
--limits and --cache a redis-server backs a rate limit and the response cache (every request a miss), with
--otel spans are exported over OTLP/HTTP, with --auth requests carry an API key the gateway checks; with --stream
every request is a stream of 16 events. Needs `wrk` (Debian) and `py-spy` (`pip install -e ".[bench]"`); py-spy
needs permission to read the gateway's memory (root, or ptrace allowed). Not a test: CI does not run it.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.run import PY, ROOT, Proc, free_port, gateway_config, start_gateway, start_redis, started, wrk


def summarise(stacks: Path, top: int) -> str:
    """py-spy's raw (collapsed) output → the functions with the most self and inclusive samples, in the event
    loop's thread (the one that serves requests)."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in stacks.read_text().splitlines():
        frames, _, count = line.rpartition(" ")
        if not frames or frames.startswith("Thread._bootstrap"):
            continue  # helper threads (the access-log writer, span export) block most of the time
        n = int(count)
        total += n
        names = [_short(frame) for frame in frames.split(";")]
        own[names[-1]] += n
        for name in set(names):
            inclusive[name] += n
    out = [f"{total} samples\n", "| self % | function |", "|---|---|"]
    out += [f"| {100 * n / total:.1f} | {name} |" for name, n in own.most_common(top)]
    out += ["", "| inclusive % | function |", "|---|---|"]
    out += [f"| {100 * n / total:.1f} | {name} |" for name, n in inclusive.most_common(top)]
    return "\n".join(out)


def _short(frame: str) -> str:
    """`handle (litestar/routes/http.py:80)` → `handle (litestar/routes/http.py)`: lines merged per function."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", str(ROOT) + "/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{name} ({path})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limits", action="store_true", help="a Redis rate limit on every request")
    parser.add_argument("--cache", action="store_true", help="the Redis response cache (every request a miss)")
    parser.add_argument("--otel", action="store_true", help="spans exported over OTLP/HTTP")
    parser.add_argument("--auth", action="store_true", help="API key auth on")
    parser.add_argument("--stream", action="store_true", help="streams (16 SSE events each) instead of answers")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--native", action="store_true", help="include C frames (py-spy --native)")
    parser.add_argument("--out", type=Path, help="also keep the collapsed stacks here (for flamegraph tools)")
    args = parser.parse_args()
    for tool in ("wrk", "py-spy"):
        if not shutil.which(tool) and not Path(PY).with_name(tool).exists():
            print(f"{tool} is missing", file=sys.stderr)
            return 2
    spy = shutil.which("py-spy") or str(Path(PY).with_name("py-spy"))
    procs: list[Proc] = []
    with started(procs), tempfile.TemporaryDirectory() as tmp:
        fast = free_port()
        procs.append(Proc([PY, "bench/upstream.py", str(fast)], core=1, ready="listening"))
        redis_url = start_redis(procs) if args.limits or args.cache else None
        env = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"http://127.0.0.1:{fast}/v1/traces"} if args.otel else {}
        config = Path(tmp) / "gateway.yaml"
        config.write_text(gateway_config(fast, fast, redis_url, cache=args.cache, limits=args.limits, auth=args.auth))
        gateway, url = start_gateway(procs, config, env)
        wrk(url, args.connections, 1, "up/m", unique=True, stream=args.stream)  # warm up
        stacks = Path(args.out or Path(tmp) / "stacks.txt")
        record = ["record", "-p", str(gateway.pid), "-d", str(args.seconds + 1), "-r", "400", "-f", "raw"]
        record += ["--native"] if args.native else []
        spy_proc = subprocess.Popen(
            [spy, *record, "-o", str(stacks)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            result = wrk(url, args.connections, args.seconds, "up/m", unique=True, stream=args.stream)
        finally:
            spy_proc.wait(timeout=args.seconds + 30)
        print(f"wrk c={args.connections}: {result['rps']:.0f} req/s while sampled\n")
        print(summarise(stacks, args.top))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
