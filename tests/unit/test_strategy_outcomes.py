"""What the evaluation changed in the strategies: the cost cascade never judges its last answer and picks an
affordable judge by itself; MoA skips analysis and synthesis when the candidates agree; the parallel race
explores; adaptive learns from graded outcomes, not the quality prior."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from gateway.builder import build_gateway
from gateway.config import parse_settings
from gateway.core.pool import Deployment
from gateway.core.provider import Capabilities
from gateway.core.types import ChatRequest
from gateway.pipeline import Caller
from gateway.service import Gateway
from strategies.adaptive import Adaptive
from strategies.cascade import auto_judge

pytestmark = [pytest.mark.timeout(30), pytest.mark.virtual_time]

FLEET = """
providers:
  - name: m
    kind: mock
    models:
      - {id: cheap, latency_ms: 5, reply: "cheap\\nAnswer: 4", input_cost_per_mtok: 0.1, output_cost_per_mtok: 0.1,
         quality: 0.5}
      - {id: mid, latency_ms: 5, reply: "mid\\nAnswer: 4", input_cost_per_mtok: 1, output_cost_per_mtok: 1,
         quality: 0.7}
      - {id: top, latency_ms: 5, reply: "top\\nAnswer: 4", input_cost_per_mtok: 10, output_cost_per_mtok: 10,
         quality: 0.9}
      - {id: other, latency_ms: 5, reply: "Answer: 5", input_cost_per_mtok: 1, output_cost_per_mtok: 1,
         quality: 0.6}
      - {id: low, latency_ms: 5, reply: "2", quality: 0.1}
cache: {enabled: false}
rate_limits: {enabled: false}
strategies:
  ultra-judged: {kind: cost, chain: [m/cheap, m/top], judge: m/low}
  ultra-agree: {kind: simple, candidates: [m/cheap, m/mid, m/top], lead: m/top}
  ultra-disagree: {kind: simple, candidates: [m/cheap, m/other], lead: m/top}
  ultra-race: {kind: parallel, candidates: [m/cheap, m/mid, m/top], initial_width: 1, max_width: 1,
               explore_share: 0.25}
  ultra-learn: {kind: adaptive, arms: [cost, quality]}
  ultra-graded: {kind: adaptive, arms: [cost], judge: m/low, judge_sample: 1.0}
"""


def gateway() -> Gateway:
    return build_gateway(parse_settings(FLEET, env={}), clock=asyncio.get_running_loop().time, rng=random.Random(7))


async def ask(service: Gateway, model: str, request_id: str = "r") -> Any:
    if not service.ready:
        await service.start()
    body = {"model": model, "messages": [{"role": "user", "content": "2+2?"}]}
    return await service.pipeline.complete(ChatRequest(body, model), Caller(request_id))


def roles(answer: Any) -> list[tuple[str, str, str]]:
    return [(a.deployment.model, a.role, a.status) for a in answer.meta.attempts]


async def test_the_cost_cascade_does_not_judge_its_last_answer() -> None:
    answer = await ask(gateway(), "ultra-judged")  # the judge scores 2: cheap is escalated, top is served as is
    assert roles(answer) == [("cheap", "attempt", "rejected"), ("low", "judge", "ok"), ("top", "attempt", "ok")]


class _P:
    name, kind, system, capabilities = "p", "mock", "mock", Capabilities()


def test_the_auto_judge_is_the_best_prior_within_a_quarter_of_the_top_price() -> None:
    p: Any = _P()
    cheap, mid, top = (
        Deployment(p, n, q, q, quality=x) for n, q, x in (("c", 0.1, 0.5), ("m", 2, 0.8), ("t", 10, 0.9))
    )
    assert auto_judge([cheap, mid, top], 0.25) is mid
    assert auto_judge([cheap, mid, top], 0.1) is cheap
    assert auto_judge([top], 0.25) is None


async def test_agreeing_candidates_skip_analysis_and_synthesis() -> None:
    service = gateway()
    agreed = await ask(service, "ultra-agree")
    assert [r for _, r, _ in roles(agreed)] == ["candidate"] * 3
    assert agreed.meta.extra["agreement"] is True
    assert agreed.body["choices"][0]["message"]["content"] == "top\nAnswer: 4"
    disagreed = await ask(service, "ultra-disagree")
    assert sorted(r for _, r, _ in roles(disagreed)) == ["analysis", "candidate", "candidate", "synthesis"]


async def test_the_parallel_race_explores_deployments_the_ranking_would_never_try() -> None:
    service = gateway()
    tried = set()
    for i in range(40):
        answer = await ask(service, "ultra-race", f"r{i}")
        tried |= {a.deployment.model for a in answer.meta.attempts}
    assert tried == {"cheap", "mid", "top"}


async def test_adaptive_learns_from_scores_not_from_the_prior() -> None:
    service = gateway()
    chosen = []
    for i in range(200):
        answer = await ask(service, "ultra-learn", f"q{i}")
        chosen.append(answer.meta.chosen_strategy)
        # the graded outcome contradicts the priors: the cost arm's answers are good, quality's are bad
        assert service.pipeline.feedback(f"q{i}", 1.0 if answer.meta.chosen_strategy == "cost" else 0.0)
    learner = service.router.strategies["ultra-learn"]
    assert isinstance(learner, Adaptive)
    means = {arm: a / (a + b) for (_, arm), (a, b) in learner.posteriors.items()}
    assert means["cost"] > 0.6 > 0.5 > means["quality"]
    assert chosen[100:].count("cost") >= 90  # and it acts on it
    assert not service.pipeline.feedback("q0", 1.0)  # once per request
    assert not service.pipeline.feedback("unknown", 1.0)


async def test_adaptive_grades_a_sampled_answer_with_its_judge() -> None:
    service = gateway()
    answer = await ask(service, "ultra-graded", "g1")
    assert roles(answer)[-1] == ("low", "judge", "ok")  # the judge scored the answer: 2 out of 10
    learner = service.router.strategies["ultra-graded"]
    assert isinstance(learner, Adaptive)
    assert learner.graded
    assert not service.pipeline.feedback("g1", 1.0)  # already graded
    ((alpha, beta),) = learner.posteriors.values()
    assert alpha - 1 < 0.2 < beta - 1  # rewarded as a poor answer, whatever the cost arm's prior says
