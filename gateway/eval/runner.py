"""Runs configurations (a deployment's name or an alias) over a simulated fleet, through the real gateway: the
same `build_gateway` and `Pipeline.complete` a client request goes through, on a virtual-time event loop (mock
latencies cost no wall time, so a few thousand requests take seconds).

Each (scenario, seed, configuration) gets its own gateway and fleet, so what one strategy learns cannot help
another, and the same seed gives every configuration the same tasks and the same fleet. Requests arrive as a
Poisson process; a scenario's events (a provider turning flaky or slow, a price change) happen when the
request at their point in the run (`at`, a fraction of the requests) arrives.

The evaluation client grades each answer and, like a user with a feedback button, reports the grade to the
gateway (`Pipeline.feedback`), which the strategies that learn from outcomes use.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from gateway.builder import build_gateway
from gateway.core.errors import GatewayError
from gateway.core.pool import Deployment, ProviderPool
from gateway.core.types import ChatRequest
from gateway.eval._virtual_time import VirtualTimeLoop
from gateway.eval.sim import Ledger, SimModel, SimProvider
from gateway.eval.tasks import FAMILIES, TaskBook, extract_answer, generate
from gateway.pipeline import Caller
from gateway.resilience.retry import RetryingProvider
from gateway.settings import Settings
from gateway.telemetry.tracing import Tracing

__all__ = ["EvalSpec", "RequestRecord", "RunResult", "load_spec", "run_spec"]

DEFAULT_SPEC = Path(__file__).with_name("default.yaml")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SimProviderSpec(_Strict):
    name: str
    max_retries: int = Field(2, ge=0, le=10)
    total_s: float = Field(60.0, gt=0)
    models: list[SimModel]


class ExtraModel(_Strict):
    """A copy of a model with some changes, added to the fleet of one configuration only (the control)."""

    provider: str
    copy_of: str
    id: str
    set: dict[str, Any] = Field(default_factory=dict)


class Configuration(_Strict):
    name: str
    model: str = Field(description="What the client asks for: a deployment (provider/model) or an alias.")
    aliases: dict[str, dict[str, Any]] = Field(default_factory=dict, description="Aliases this one needs.")
    extra_models: list[ExtraModel] = Field(default_factory=list)
    control: bool = Field(False, description="A control: expected to lose accuracy.")
    stream: bool = Field(False, description="Stream the answers (time to first token is measured too).")
    warmup: float = Field(0.0, ge=0, lt=1, description="Share of requests reported separately as warm-up.")


class Event(_Strict):
    at: float = Field(0.0, ge=0, le=1, description="When, as a share of the requests.")
    model: str = Field(description="provider/model")
    set: dict[str, Any]


class Scenario(_Strict):
    description: str = ""
    events: list[Event] = Field(default_factory=list)


class EvalSpec(_Strict):
    requests: int = Field(600, ge=1, description="Per seed and configuration.")
    seeds: list[int] = Field(default_factory=lambda: [1, 2, 3])
    arrival_rps: float = Field(8.0, gt=0)
    concurrency: int = Field(64, ge=1)
    families: list[str] = Field(default_factory=lambda: list(FAMILIES))
    strategies: dict[str, dict[str, Any]] = Field(default_factory=dict, description="Alias options for every run.")
    providers: list[SimProviderSpec]
    scenarios: dict[str, Scenario]
    configurations: list[Configuration]


def load_spec(path: str | Path | None = None) -> EvalSpec:
    data = yaml.safe_load(Path(path or DEFAULT_SPEC).read_text())
    return EvalSpec.model_validate(data)


@dataclass(slots=True)
class RequestRecord:
    index: int
    correct: bool
    error: str | None
    cost_usd: float
    calls: int
    wasted_tokens: int
    latency_s: float
    chosen: str | None = None
    ttft_s: float | None = None  # streamed requests: until the first content chunk


@dataclass(slots=True)
class RunResult:
    scenario: str
    configuration: str
    seed: int
    records: list[RequestRecord] = field(default_factory=list)


def _fleet(spec: EvalSpec, config: Configuration) -> list[SimProviderSpec]:
    providers = [p.model_copy(deep=True) for p in spec.providers]
    by_name = {p.name: p for p in providers}
    for extra in config.extra_models:
        provider = by_name[extra.provider]
        original = next(m for m in provider.models if m.id == extra.copy_of)
        changes = {"skill_of": f"{provider.name}/{original.id}"} | extra.set | {"id": extra.id}
        provider.models.append(original.model_copy(update=changes))
    return providers


def _settings(spec: EvalSpec, fleet: list[SimProviderSpec], config: Configuration) -> Settings:
    """The gateway's configuration: the fleet as the operator describes it (prices, quality priors)."""
    providers = [
        {
            "name": p.name,
            "kind": "mock",  # validated as a known kind; the pool itself is the simulated one
            "models": [
                {
                    "id": m.id,
                    "input_cost_per_mtok": m.input_cost_per_mtok,
                    "output_cost_per_mtok": m.output_cost_per_mtok,
                    "quality": m.quality,
                }
                for m in p.models
            ],
        }
        for p in fleet
    ]
    strategies = {alias: dict(options) for alias, options in spec.strategies.items()} | {
        alias: dict(options) for alias, options in config.aliases.items()
    }
    return Settings.model_validate(
        {
            "providers": providers,
            "strategies": strategies,
            "cache": {"enabled": False},
            "rate_limits": {"enabled": False},
            "server": {"request_timeout_s": 60.0},
        }
    )


async def run_one(
    spec: EvalSpec, scenario_name: str, config: Configuration, seed: int, *, requests: int | None = None
) -> RunResult:
    """One configuration on one scenario and seed; must run on a VirtualTimeLoop."""
    loop = asyncio.get_running_loop()
    random.seed(f"eval:{seed}")  # the retry layer's jitter draws from the module's generator
    count = requests or spec.requests
    tasks = generate(seed, count, tuple(spec.families))
    book, ledger = TaskBook(), Ledger()
    book.add(tasks)
    fleet = _fleet(spec, config)
    sims = {
        p.name: SimProvider(p.name, {m.id: m for m in p.models}, book=book, ledger=ledger, seed=seed) for p in fleet
    }
    deployments = []
    for p in fleet:
        provider = RetryingProvider(sims[p.name], max_retries=p.max_retries, total_s=p.total_s)
        for m in p.models:
            deployments.append(
                Deployment(
                    provider,
                    m.id,
                    input_cost_per_mtok=m.input_cost_per_mtok,
                    output_cost_per_mtok=m.output_cost_per_mtok,
                    quality=m.quality,
                )
            )
    settings = _settings(spec, fleet, config)
    gateway = build_gateway(
        settings,
        env={},
        clock=loop.time,
        rng=random.Random(seed),
        tracing=Tracing(None),
        pool=ProviderPool(deployments),
    )
    await gateway.start()
    pipeline = gateway.pipeline
    result = RunResult(scenario_name, config.name, seed)
    events = sorted(spec.scenarios[scenario_name].events, key=lambda e: e.at)
    arrivals = random.Random(f"arrivals:{seed}")
    gate = asyncio.Semaphore(spec.concurrency)
    feedback: Callable[[str, float], bool] | None = getattr(pipeline, "feedback", None)

    async def one(index: int) -> None:
        task = tasks[index]
        request_id = f"eval-{seed}-{index}"
        body = {"model": config.model, "messages": [{"role": "user", "content": task.prompt}], "temperature": 0}
        request = (
            ChatRequest(body | {"stream": True}, config.model, True)
            if config.stream
            else ChatRequest(body, config.model)
        )
        started = loop.time()
        error = None
        correct = False
        chosen = None
        ttft = None
        async with gate:
            try:
                if config.stream:
                    pieces = []
                    async with pipeline.stream(request, Caller(request_id)) as streamed:
                        async for chunk in streamed.chunks:
                            for choice in chunk.get("choices") or ():
                                piece = (choice.get("delta") or {}).get("content")
                                if piece:
                                    ttft = loop.time() - started if ttft is None else ttft
                                    pieces.append(piece)
                        meta = streamed.meta
                    content = "".join(pieces)
                else:
                    answer = await pipeline.complete(request, Caller(request_id))
                    meta = answer.meta
                    content = ((answer.body.get("choices") or [{}])[0].get("message") or {}).get("content") or ""
            except GatewayError as exc:
                error = type(exc).__name__
            else:
                correct = extract_answer(content) == task.gold
                chosen = meta.chosen_strategy
                if feedback is not None:
                    feedback(request_id, 1.0 if correct else 0.0)
        latency = loop.time() - started
        calls = ledger.pop(request_id)
        result.records.append(
            RequestRecord(
                index,
                correct,
                error,
                sum(c.cost_usd for c in calls),
                len(calls),
                sum(c.completion_tokens for c in calls if c.status in ("cancelled", "timeout")),
                latency,
                chosen,
                ttft,
            )
        )

    running = []
    try:
        for index in range(count):
            while events and index >= events[0].at * count:
                event = events.pop(0)
                owner, _, model = event.model.partition("/")
                sims[owner].update(model, event.set)
            running.append(asyncio.create_task(one(index)))
            await asyncio.sleep(arrivals.expovariate(spec.arrival_rps))
        await asyncio.gather(*running)
    finally:
        await gateway.aclose()
    result.records.sort(key=lambda r: r.index)
    return result


def run_spec(
    spec: EvalSpec,
    *,
    scenarios: Sequence[str] | None = None,
    configurations: Sequence[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[RunResult]:
    """Every (scenario, seed, configuration), each on a fresh virtual-time loop."""
    results = []
    for scenario in scenarios or list(spec.scenarios):
        for config in spec.configurations:
            if configurations and config.name not in configurations:
                continue
            for seed in spec.seeds:
                started = time.perf_counter()
                loop = VirtualTimeLoop()
                try:
                    results.append(loop.run_until_complete(run_one(spec, scenario, config, seed)))
                finally:
                    loop.close()
                if progress is not None:
                    progress(f"{scenario:<10} {config.name:<28} seed {seed}: {time.perf_counter() - started:.1f}s")
    return results


def spec_from(data: Mapping[str, Any]) -> EvalSpec:
    return EvalSpec.model_validate(dict(data))
