"""`ultra-gateway eval`: the simulated evaluation (default), or a user's tasks against their real providers
(`--config FILE --tasks FILE.jsonl`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["add_parser", "run"]

QUICK_REQUESTS = 150
QUICK_SEEDS = [1, 2]


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "eval",
        help="measure accuracy, cost and latency of models and strategy aliases",
        description="Without --tasks: a simulated fleet (no keys, reproducible). With --config and --tasks: your "
        "own prompts against your real providers.",
    )
    parser.add_argument("--spec", help="simulated evaluation spec (YAML; default: the built-in one)")
    parser.add_argument("--quick", action="store_true", help=f"small run: {QUICK_REQUESTS} requests, 2 seeds")
    parser.add_argument("--seeds", type=int, help="number of seeds (1..N)")
    parser.add_argument("--requests", type=int, help="requests per seed and configuration")
    parser.add_argument("--scenario", action="append", help="only this scenario (repeatable)")
    parser.add_argument("--only", action="append", help="only this configuration (repeatable)")
    parser.add_argument("--json", dest="json_path", help="write the rows as JSON to this file ('-': stdout)")
    parser.add_argument("--plot", dest="plot_path", help="write the accuracy-vs-cost plot (PNG) to this file")
    parser.add_argument("--config", help="real mode: the gateway config whose providers and aliases are measured")
    parser.add_argument("--tasks", help="real mode: JSONL, one task a line (see docs/evaluation.md)")
    parser.add_argument("--models", help="real mode: comma-separated model names and aliases to measure")
    parser.add_argument("--budget-usd", type=float, default=1.0, help="real mode: stop spending at this (USD)")
    parser.add_argument("--concurrency", type=int, default=4, help="real mode: requests in flight")
    parser.add_argument("--judge", help="real mode: deployment that grades tasks with a `rubric`")


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from gateway.eval import report

    if args.tasks or args.config:
        if not (args.tasks and args.config):
            print("ultra-gateway eval: --config and --tasks go together", file=sys.stderr)
            return 2
        from gateway.eval.real import run_real

        rows = run_real(args, progress=_progress)
        if rows is None:
            return 2
        context: dict[str, Any] = {"mode": "real", "config": args.config, "tasks": args.tasks}
    else:
        from gateway.eval.runner import load_spec, run_spec

        spec = load_spec(args.spec)
        if args.quick:
            spec.requests, spec.seeds = QUICK_REQUESTS, list(QUICK_SEEDS)
        if args.seeds:
            spec.seeds = list(range(1, args.seeds + 1))
        if args.requests:
            spec.requests = args.requests
        unknown = [s for s in args.scenario or () if s not in spec.scenarios]
        if unknown:
            print(f"ultra-gateway eval: unknown scenario {unknown[0]!r} (one of: {', '.join(spec.scenarios)})")
            return 2
        results = run_spec(spec, scenarios=args.scenario, configurations=args.only, progress=_progress)
        rows = report.rows_of(
            results,
            warmups={c.name: c.warmup for c in spec.configurations},
            controls=[c.name for c in spec.configurations if c.control],
        )
        context = {"mode": "simulated", "requests": spec.requests, "seeds": spec.seeds}
    print(report.table(rows))
    if args.json_path == "-":
        print(report.to_json(rows, **context))
    elif args.json_path:
        with open(args.json_path, "w") as out:
            out.write(report.to_json(rows, **context))
    if args.plot_path:
        try:
            report.plot(rows, args.plot_path)
        except RuntimeError as exc:
            print(f"ultra-gateway eval: {exc}", file=sys.stderr)
            return 1
    return 0
