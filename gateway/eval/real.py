"""`ultra-gateway eval --config FILE --tasks FILE.jsonl`: a user's own tasks against their real providers and
aliases, through the same pipeline a client request takes, with a spend cap, bounded concurrency and a progress
bar. The results are rows of the same table as the simulated evaluation.

A task is one JSON object per line:

    {"id": "t1", "prompt": "What is 17*23?", "expected": "391"}
    {"messages": [{"role": "user", "content": "..."}], "regex": "\\b391\\b"}
    {"prompt": "Summarise ...", "rubric": "Mentions the three causes and nothing invented."}

`expected`: correct when the answer's last `Answer: <value>` line, or else the whole answer, equals it after
normalisation (case, whitespace, surrounding punctuation). `regex`: correct when it matches anywhere in the
answer. `rubric`: graded by the `--judge` deployment (score 0-10, at least 7 is correct); the judge's own calls
are counted apart, as grading spend.

Cost is what the gateway accounts (usage times configured prices). Tokens of cancelled calls are not reported
by real providers, so `wasted` is 0 here. The spend cap stops new requests once the spend so far (answers and
grading) reaches it; requests in flight finish.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.builder import build_gateway
from gateway.config import ConfigError, load_settings
from gateway.core.errors import GatewayError
from gateway.core.provider import CallOptions
from gateway.core.types import ChatRequest, ChatResponse
from gateway.eval.report import Row, rows_of
from gateway.eval.runner import RequestRecord, RunResult
from gateway.eval.tasks import extract_answer, normalize
from gateway.pipeline import Caller
from gateway.service import Gateway

__all__ = ["RealTask", "grade_text", "load_tasks", "run_real"]

JUDGE_PASS = 7.0


@dataclass(frozen=True, slots=True)
class RealTask:
    id: str
    messages: list[dict[str, Any]]
    expected: str | None = None
    regex: re.Pattern[str] | None = None
    rubric: str | None = None


class TaskFileError(ValueError):
    pass


def load_tasks(path: str | Path) -> list[RealTask]:
    tasks = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TaskFileError(f"{where}: not JSON ({exc.msg})") from None
        if not isinstance(data, dict):
            raise TaskFileError(f"{where}: each line must be a JSON object")
        messages = data.get("messages") or (
            [{"role": "user", "content": data["prompt"]}] if isinstance(data.get("prompt"), str) else None
        )
        if not isinstance(messages, list) or not messages:
            raise TaskFileError(f"{where}: needs 'prompt' (a string) or 'messages' (a list)")
        graders = [key for key in ("expected", "regex", "rubric") if data.get(key) is not None]
        if len(graders) != 1:
            raise TaskFileError(f"{where}: needs exactly one of 'expected', 'regex', 'rubric'")
        try:
            pattern = re.compile(str(data["regex"])) if "regex" in graders else None
        except re.error as exc:
            raise TaskFileError(f"{where}: bad regex ({exc})") from None
        tasks.append(
            RealTask(
                id=str(data.get("id", number)),
                messages=messages,
                expected=str(data["expected"]) if "expected" in graders else None,
                regex=pattern,
                rubric=str(data["rubric"]) if "rubric" in graders else None,
            )
        )
    if not tasks:
        raise TaskFileError(f"{path}: no tasks")
    return tasks


def grade_text(task: RealTask, content: str) -> bool | None:
    """True/False for `expected` and `regex` tasks; None when a judge must decide (`rubric`)."""
    if task.expected is not None:
        wanted = normalize(task.expected)
        return extract_answer(content) == wanted or normalize(content) == wanted
    if task.regex is not None:
        return task.regex.search(content) is not None
    return None


async def _judge(gateway: Gateway, judge: str, task: RealTask, content: str, deadline_s: float) -> tuple[bool, float]:
    """The judge deployment's verdict on a rubric task, and what asking it cost."""
    deployment = gateway.router.pool.resolve(judge)
    question = task.messages[-1].get("content")
    prompt = (
        f"Grade the answer against the rubric, from 0 (fails it) to 10 (meets it fully). Reply with the number "
        f"only.\n\nRubric:\n{task.rubric}\n\nQuestion:\n{question}\n\nAnswer:\n{content}"
    )
    request = ChatRequest({"model": judge, "messages": [{"role": "user", "content": prompt}], "temperature": 0}, judge)
    options = CallOptions(deadline=time.monotonic() + deadline_s, role="judge")
    verdict: ChatResponse = await deployment.provider.complete(request, model=deployment.model, options=options)
    match = re.search(r"\b(10|[0-9])(?:\.\d+)?\b", verdict.content)
    return (float(match.group(0)) >= JUDGE_PASS if match else False), deployment.cost(verdict.usage)


class _Progress:
    def __init__(self, total: int, out: Callable[[str], None]) -> None:
        self.total, self.done, self.spent, self._out = total, 0, 0.0, out

    def step(self, cost: float) -> None:
        self.done += 1
        self.spent += cost
        filled = int(30 * self.done / max(1, self.total))
        bar = "#" * filled + "." * (30 - filled)
        sys.stderr.write(f"\r[{bar}] {self.done}/{self.total} ${self.spent:.4f}")
        if self.done == self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


async def evaluate(
    gateway: Gateway,
    tasks: list[RealTask],
    models: list[str],
    *,
    budget_usd: float,
    concurrency: int,
    judge: str | None,
    progress: _Progress | None = None,
) -> tuple[list[RunResult], float, int]:
    """Every model on every task; returns the results, the spend (answers and grading) and the requests skipped
    because the cap was reached."""
    await gateway.start()
    gate = asyncio.Semaphore(max(1, concurrency))
    spent = 0.0
    skipped = 0
    results = {model: RunResult("tasks", model, 0) for model in models}
    timeout = gateway.settings.server.request_timeout_s

    async def one(model: str, index: int, task: RealTask) -> None:
        nonlocal spent, skipped
        async with gate:
            if spent >= budget_usd:
                skipped += 1
                if progress is not None:
                    progress.step(0.0)
                return
            body = {"model": model, "messages": task.messages}
            started = time.monotonic()
            error, correct, cost, calls = None, False, 0.0, 0
            try:
                answer = await gateway.pipeline.complete(ChatRequest(body, model), Caller(f"eval-{index}-{model}"))
            except GatewayError as exc:
                error = type(exc).__name__
            else:
                cost, calls = answer.meta.cost_usd, len(answer.meta.attempts)
                content = ((answer.body.get("choices") or [{}])[0].get("message") or {}).get("content") or ""
                graded = grade_text(task, content)
                if graded is None and judge is not None:
                    try:
                        graded, grading = await _judge(gateway, judge, task, content, timeout)
                        spent += grading
                    except GatewayError:
                        graded = False
                correct = bool(graded)
            latency = time.monotonic() - started
            spent += cost
            results[model].records.append(RequestRecord(index, correct, error, cost, calls, 0, latency))
            if progress is not None:
                progress.step(cost)

    try:
        await asyncio.gather(*(one(m, i, t) for m in models for i, t in enumerate(tasks)))
    finally:
        await gateway.aclose()
    for result in results.values():
        result.records.sort(key=lambda r: r.index)
    return [r for r in results.values() if r.records], spent, skipped


def run_real(args: argparse.Namespace, progress: Callable[[str], None]) -> list[Row] | None:
    try:
        settings = load_settings(args.config)
        tasks = load_tasks(args.tasks)
    except ConfigError as exc:
        progress(f"{exc.source}: invalid configuration")
        for line in exc.errors:
            progress(f"  {line}")
        return None
    except (OSError, TaskFileError) as exc:
        progress(f"ultra-gateway eval: {exc}")
        return None
    gateway = build_gateway(settings)
    models = (
        [m.strip() for m in args.models.split(",") if m.strip()]
        if args.models
        else [*gateway.router.pool, *settings.strategies]
    )
    unknown = [m for m in models if not gateway.router.known(m)]
    if unknown:
        progress(f"ultra-gateway eval: unknown model or alias {unknown[0]!r}")
        return None
    if any(t.rubric for t in tasks) and not args.judge:
        progress("ultra-gateway eval: tasks with a 'rubric' need --judge PROVIDER/MODEL")
        return None
    if args.judge and args.judge not in gateway.router.pool:
        progress(f"ultra-gateway eval: unknown judge deployment {args.judge!r}")
        return None
    bar = _Progress(len(models) * len(tasks), progress)
    results, spent, skipped = asyncio.run(
        evaluate(
            gateway,
            tasks,
            models,
            budget_usd=args.budget_usd,
            concurrency=args.concurrency,
            judge=args.judge,
            progress=bar,
        )
    )
    progress(f"spent ${spent:.4f} of ${args.budget_usd:g}" + (f"; {skipped} requests skipped (cap)" if skipped else ""))
    return rows_of(results)
