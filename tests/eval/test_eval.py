"""`ultra-gateway eval`: the task families, the simulated fleet's behaviour on what it is sent, and a quick run
of the whole evaluation through the real pipeline, checked for sanity only (never for timing)."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.core.provider import CallOptions
from gateway.core.types import ChatRequest
from gateway.eval._virtual_time import VirtualTimeLoop
from gateway.eval.sim import Ledger, SimModel, SimProvider
from gateway.eval.tasks import TaskBook, extract_answer, generate


def test_tasks_are_reproducible_and_gold_is_computed() -> None:
    first, again = generate(7, 40), generate(7, 40)
    assert [t.prompt for t in first] == [t.prompt for t in again]
    assert {t.family for t in first} == {"arith", "dates", "units", "strings"}
    for task in first:
        assert task.gold != task.trap
        assert task.prompt.startswith(f"Q{task.id}:")
    assert generate(8, 5)[0].prompt != first[0].prompt


def test_the_answer_is_the_last_answer_line_not_the_prompts_instruction() -> None:
    task = generate(1, 1)[0]
    assert extract_answer(task.prompt) is None
    assert extract_answer(f"Request:\n{task.prompt}\n\nAnswer:\nwork\nAnswer: 42.") == "42"


def _ask(provider: SimProvider, model: str, messages: list[dict[str, str]], role: str = "attempt") -> str:
    loop = VirtualTimeLoop()
    try:
        request = ChatRequest({"model": model, "messages": messages}, model)
        options = CallOptions(deadline=1e9, request_id="r", role=role, clock=loop.time)
        return loop.run_until_complete(provider.complete(request, model=model, options=options)).content
    finally:
        loop.close()


def test_an_aggregator_that_cannot_solve_takes_the_candidates_plurality_and_a_deaf_one_does_not() -> None:
    task = generate(3, 1)[0]
    book = TaskBook()
    book.add([task])
    hopeless = {"skill": {}, "default_skill": -9.0, "stall_rate": 0, "failure_rate": 0, "rate_limit_rate": 0}
    provider = SimProvider(
        "p",
        {"lead": SimModel(id="lead", **hopeless), "deaf": SimModel(id="deaf", ignores_candidates=True, **hopeless)},
        book=book,
        ledger=Ledger(),
        seed=1,
    )
    block = "\n\n".join(
        f"<candidate {i}>\nwork\nAnswer: {a}\n</candidate {i}>"
        for i, a in enumerate([task.gold, task.gold, task.trap], start=1)
    )
    messages = [{"role": "system", "content": f"Combine these.\n\n{block}"}, {"role": "user", "content": task.prompt}]
    assert extract_answer(_ask(provider, "lead", messages, "synthesis")) == task.gold
    assert extract_answer(_ask(provider, "deaf", messages, "synthesis")) != task.gold
    alone = [{"role": "user", "content": task.prompt}]
    assert extract_answer(_ask(provider, "lead", alone)) != task.gold


def test_a_judge_scores_the_answer_it_was_shown() -> None:
    task = generate(4, 1)[0]
    book = TaskBook()
    book.add([task])
    judge = SimModel(id="j", judge_error=0.0, stall_rate=0, failure_rate=0, rate_limit_rate=0)
    provider = SimProvider("p", {"j": judge}, book=book, ledger=Ledger(), seed=1)
    system = {"role": "system", "content": "Rate the answer from 0 (useless) to 10 (excellent)."}
    for answer, score in ((task.gold, "9"), (task.trap, "2")):
        user = {"role": "user", "content": f"Request:\n{task.prompt}\n\nAnswer:\nwork\nAnswer: {answer}"}
        assert _ask(provider, "j", [system, user], "judge") == score


@pytest.mark.timeout(120)
def test_quick_eval_runs_and_its_table_is_sane(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "eval.json"
    assert main(["eval", "--quick", "--json", str(out)]) == 0
    assert "## healthy" in capsys.readouterr().out
    rows = json.loads(out.read_text())["rows"]
    scenarios = {r["scenario"] for r in rows}
    assert scenarios == {"healthy", "flaky", "slow-halfway", "price-change"}
    for scenario in scenarios:
        mine = {r["configuration"]: r for r in rows if r["scenario"] == scenario}
        for name in ("sage/sage-pro", "ultra-cost", "ultra-speed", "ultra-simple", "ultra-quality", "ultra-parallel"):
            assert name in mine
        control = mine["control-deaf-aggregator"]
        assert control["control"]
        assert control["accuracy"] < mine["ultra-quality"]["accuracy"]  # the evaluation tells good from bad
        for row in mine.values():
            for key in ("accuracy", "ci95", "cost_usd", "p50_ms", "p95_ms", "p99_ms", "calls", "error_rate"):
                assert math.isfinite(row[key]), (row["configuration"], key)
            assert 0 <= row["accuracy"] <= 1
            # below 1 only when every deployment a request could use was out of rotation (a fast 503, no call)
            assert row["calls"] > 0.9


def test_an_unknown_scenario_is_refused() -> None:
    assert main(["eval", "--quick", "--scenario", "nope"]) == 2


def test_virtual_time_loop_jumps_to_its_next_timer() -> None:
    loop = VirtualTimeLoop()
    try:
        loop.run_until_complete(asyncio.sleep(30))
        assert loop.time() >= 30
    finally:
        loop.close()
