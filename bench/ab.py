"""Side by side: the gateway (no features) at several git refs, and the Litestar floor, on one kind of load; answers
per second of each peer's own CPU and the ratio to the floor within each round.

    python -m bench.ab [--stream] [--rounds 6] [--seconds 2] REF [REF ...]

A REF of `.` is the working tree; any other is exported with `git archive` and run from there (nothing in the
repository changes). Rounds alternate the peers; each line is the median over rounds with min-max. Whole answers
are driven at c=64, streams (16 events each) at c=16, every body unique. Peers pinned as in `bench/run.py`.
Smaller and longer than `bench/run.py`: for telling two versions apart on a noisy machine. Not a test.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench.run import (
    PY,
    ROOT,
    Proc,
    export_ref,
    free_port,
    gateway_config,
    spread,
    start_gateway,
    started,
    wrk,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("refs", nargs="+", metavar="REF")
    parser.add_argument("--stream", action="store_true", help="streams instead of whole answers")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    connections = 16 if args.stream else 64
    procs: list[Proc] = []
    with started(procs), tempfile.TemporaryDirectory() as tmp:
        fast = free_port()
        procs.append(Proc([PY, "bench/upstream.py", str(fast)], core=1, ready="listening"))
        config = Path(tmp) / "gateway.yaml"
        config.write_text(gateway_config(fast, fast, None))
        port = free_port()
        floor = Proc(
            [PY, "-m", "uvicorn", "bench.floor:app", "--port", str(port), "--log-level", "info", "--no-access-log"],
            core=0,
            env={"BENCH_UPSTREAM": f"http://127.0.0.1:{fast}"},
            ready="Uvicorn running",
        )
        procs.append(floor)
        peers = {"litestar": (floor, f"http://127.0.0.1:{port}/v1/chat/completions")}
        for i, ref in enumerate(args.refs):
            code = ROOT if ref == "." else export_ref(ref, Path(tmp) / f"ref{i}")
            peers[f"gateway@{ref}"] = start_gateway(procs, config, code=code)
        per_cpu: dict[str, list[float]] = {name: [] for name in peers}
        ratio: dict[str, list[float]] = {name: [] for name in peers}
        for _, url in peers.values():
            wrk(url, connections, 1, "up/m", stream=args.stream)  # warm up
        for _ in range(args.rounds):
            for name, (proc, url) in peers.items():
                before = proc.cpu_s()
                result = wrk(url, connections, args.seconds, "up/m", unique=True, stream=args.stream)
                per_cpu[name].append(result["rps"] * args.seconds / (proc.cpu_s() - before))
            for name in peers:
                ratio[name].append(per_cpu[name][-1] / per_cpu["litestar"][-1])
        what = "streams" if args.stream else "whole answers"
        print(f"\n{args.rounds} rounds x {args.seconds:.0f} s, {what}, c={connections}; median (min-max)\n")
        print(f"| peer | {what}/CPU-s | xlitestar |\n|---|---|---|")
        for name in peers:
            print(f"| {name} | {spread(per_cpu[name], '{:.0f}')} | {spread(ratio[name])} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
