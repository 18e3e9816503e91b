"""The simulated fleet: providers whose models answer the generated tasks with a given skill, make correlated
mistakes, take heavy-tailed time, fail, rate-limit and bill honestly. The real pipeline calls them exactly as it
calls any provider; the simulator only reads what it was sent.

A model answers task t correctly when `skill[family] - difficulty_cost·(difficulty-1)` exceeds a noise made of a
hardness shared by every model (`correlation`), a part fixed per model and task, and a part drawn per call
(`call_noise`). A wrong answer is the task's shared trap (with probability `trap_rate`, fixed per model and
task) or a wrong value of the model's own.

What a call does depends on what it carries, never on who sent it:

- a message with `<candidate i>` blocks (a synthesis or layer prompt): the model solves the task itself, and
  when it fails it takes the plurality of the candidates' answers (ties broken at random); a model with
  `ignores_candidates` answers on its own skill only (the control);
- a judge prompt (a system message asking for a 0-10 rating): the model grades the last `Answer:` it was
  shown against the task's gold answer, wrong with probability `judge_error`, and replies with a score;
- the analysis step's prompt: a short analysis, no answer;
- anything else: the answer to the task it names (`Q<id>:`), or a short generic reply.

Time: time to first token is lognormal around `ttft_ms`, with rare stalls (`stall_rate`, times `stall_factor`);
generation is `ms_per_token` per completion token. Every call (retries included) is written to the `Ledger`
with its tokens and its cost at the model's current price; a cancelled call is billed the tokens generated
until it was cancelled.
"""

from __future__ import annotations

import asyncio
import math
import random
import re
import time
import uuid
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from gateway.core.errors import UpstreamRateLimited, UpstreamStatusError, UpstreamTimeout
from gateway.core.provider import CallOptions, Capabilities
from gateway.core.stream import response_to_chunks
from gateway.core.types import ChatRequest, ChatResponse, Chunk, Usage, text_of
from gateway.eval.tasks import Task, TaskBook, extract_answer

__all__ = ["Ledger", "LedgerCall", "SimModel", "SimProvider"]


class SimModel(BaseModel):
    """One simulated model. Prices and `quality` are what the gateway is told as well (its configured prior)."""

    model_config = ConfigDict(extra="forbid")

    id: str
    input_cost_per_mtok: float = Field(0.0, ge=0)
    output_cost_per_mtok: float = Field(0.0, ge=0)
    quality: float = Field(0.5, ge=0, le=1, description="The prior the gateway is configured with.")
    skill: dict[str, float] = Field(default_factory=dict, description="family -> skill (standard-normal units).")
    default_skill: float = 0.5
    difficulty_cost: float = Field(0.35, ge=0)
    correlation: float = Field(0.6, ge=0, le=1)
    call_noise: float = Field(0.3, ge=0, le=1)
    trap_rate: float = Field(0.6, ge=0, le=1)
    judge_error: float = Field(0.1, ge=0, le=1)
    ignores_candidates: bool = False
    skill_of: str | None = Field(None, description="Share another model's fixed draws (a copy of it).")
    answer_tokens: int = Field(120, ge=1, description="Median completion tokens of an answer.")
    ttft_ms: float = Field(300.0, ge=0)
    ttft_sigma: float = Field(0.35, ge=0)
    ms_per_token: float = Field(10.0, ge=0)
    stall_rate: float = Field(0.02, ge=0, le=1)
    stall_factor: tuple[float, float] = (8.0, 30.0)
    failure_rate: float = Field(0.002, ge=0, le=1)
    rate_limit_rate: float = Field(0.002, ge=0, le=1)


@dataclass(slots=True)
class LedgerCall:
    deployment: str
    role: str
    status: str  # ok, error, cancelled, timeout
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


@dataclass(slots=True)
class Ledger:
    """Every upstream call by request id: the provider's side of the bill."""

    calls: dict[str, list[LedgerCall]] = field(default_factory=dict)

    def add(self, request_id: str, call: LedgerCall) -> None:
        self.calls.setdefault(request_id, []).append(call)

    def pop(self, request_id: str) -> list[LedgerCall]:
        return self.calls.pop(request_id, [])


def _normal(key: str) -> float:
    return random.Random(zlib.crc32(key.encode()) * 2654435761 % 2**61).gauss(0.0, 1.0)


def _uniform(key: str) -> float:
    return random.Random(zlib.crc32(key.encode()) * 40503 % 2**61).random()


def _tokens(text: str) -> int:
    return max(1, len(text) // 4) if text else 0


_CANDIDATE = re.compile(r"<candidate (\d+)>\s*(.*?)\s*</candidate \1>", re.S)
_JUDGE = re.compile(r"\b(rate|score)\b.*\b0\b.*\b10\b", re.I | re.S)
_FILLER = "calc"


class SimProvider:
    kind = "sim"
    system = "ultra_gateway.sim"
    capabilities = Capabilities()

    def __init__(self, name: str, models: Mapping[str, SimModel], *, book: TaskBook, ledger: Ledger, seed: int) -> None:
        self.name = name
        self.models: dict[str, SimModel] = dict(models)
        self.book = book
        self.ledger = ledger
        self.seed = seed
        self._calls: dict[tuple[str, str, str], int] = {}

    def update(self, model: str, changes: Mapping[str, Any]) -> None:
        """A scenario event: the model's profile changes from now on (latency, failures, price...)."""
        self.models[model] = self.models[model].model_copy(update=dict(changes))

    # --- what the model says --------------------------------------------------------------------------------

    def _rng_for(self, options: CallOptions, model: str) -> random.Random:
        """Draws for one call, from (seed, deployment, request, role, how many such calls before): the same call
        draws the same numbers whatever else runs concurrently, so a run is reproducible."""
        key = (options.request_id, model, options.role)
        n = self._calls[key] = self._calls.get(key, 0) + 1
        return random.Random(f"{self.seed}:{self.name}/{model}:{options.request_id}:{options.role}:{n}")

    def solves(self, profile: SimModel, task: Task, rng: random.Random) -> bool:
        identity = profile.skill_of or f"{self.name}/{profile.id}"
        mean = profile.skill.get(task.family, profile.default_skill) - profile.difficulty_cost * (task.difficulty - 1)
        rho, tau = profile.correlation, profile.call_noise
        shared = _normal(f"{self.seed}:hard:{task.id}")
        own = math.sqrt(1 - tau * tau) * _normal(f"{self.seed}:{identity}:{task.id}") + tau * rng.gauss(0, 1)
        return mean > rho * shared + math.sqrt(1 - rho * rho) * own

    def wrong(self, profile: SimModel, task: Task) -> str:
        identity = profile.skill_of or f"{self.name}/{profile.id}"
        if _uniform(f"{self.seed}:trap:{identity}:{task.id}") < profile.trap_rate:
            return task.trap
        offset = 1 + int(_uniform(f"{self.seed}:off:{identity}:{task.id}") * 9)
        gold = task.gold
        return str(int(gold) + offset) if gold.lstrip("-").isdigit() else f"{gold}{offset}"

    def _reply(self, answer: str, tokens: int) -> str:
        return "Working: " + " ".join([_FILLER] * max(1, int(tokens * 0.8))) + f"\nAnswer: {answer}"

    def _length(self, profile: SimModel, rng: random.Random) -> int:
        return max(4, int(profile.answer_tokens * math.exp(0.25 * rng.gauss(0, 1))))

    def _text(self, request: ChatRequest, profile: SimModel, role: str, rng: random.Random) -> str:
        system = "\n".join(
            text_of(m.get("content")) for m in request.messages if m.get("role") in ("system", "developer")
        )
        everything = "\n".join(text_of(m.get("content")) for m in request.messages)
        task = self.book.find(everything)
        if _JUDGE.search(system) and task is not None:
            user = "\n".join(text_of(m.get("content")) for m in request.messages if m.get("role") == "user")
            right = extract_answer(user) == task.gold
            if rng.random() < profile.judge_error:
                right = not right
            return "9" if right else "2"
        if role == "analysis" or "do not write a final answer" in system.lower():
            return "The candidates " + " ".join([_FILLER] * 40) + "."
        if task is None:
            return "OK."
        if self.solves(profile, task, rng):
            return self._reply(task.gold, self._length(profile, rng))
        candidates = [extract_answer(text) for _, text in _CANDIDATE.findall(system)]
        votes = Counter(a for a in candidates if a)
        if votes and not profile.ignores_candidates:
            top = max(votes.values())
            tied = sorted(a for a, n in votes.items() if n == top)
            return self._reply(rng.choice(tied), self._length(profile, rng))
        return self._reply(self.wrong(profile, task), self._length(profile, rng))

    def _response(self, model: str, text: str, usage: Usage) -> ChatResponse:
        return ChatResponse(
            {
                "id": f"chatcmpl-sim{uuid.uuid4().hex[:16]}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": usage.to_dict(),
            }
        )

    # --- how long it takes, and the bill -----------------------------------------------------------------------

    def _ttft_s(self, profile: SimModel, rng: random.Random) -> float:
        ttft = profile.ttft_ms * math.exp(profile.ttft_sigma * rng.gauss(0, 1))
        if rng.random() < profile.stall_rate:
            ttft *= rng.uniform(*profile.stall_factor)
        return ttft / 1000

    def _gen_s(self, profile: SimModel, tokens: int, rng: random.Random) -> float:
        return tokens * profile.ms_per_token * math.exp(0.15 * rng.gauss(0, 1)) / 1000

    async def _sleep(self, seconds: float, options: CallOptions) -> None:
        if seconds >= options.remaining():
            await asyncio.sleep(max(options.remaining(), 0))
            raise UpstreamTimeout(f"{self.name}: simulated upstream timed out")
        await asyncio.sleep(seconds)

    def _bill(self, options: CallOptions, model: str, status: str, prompt: int, completion: int) -> None:
        profile = self.models[model]
        cost = (prompt * profile.input_cost_per_mtok + completion * profile.output_cost_per_mtok) / 1e6
        self.ledger.add(
            options.request_id, LedgerCall(f"{self.name}/{model}", options.role, status, prompt, completion, cost)
        )

    async def _call(
        self, request: ChatRequest, model: str, options: CallOptions, *, whole: bool
    ) -> tuple[ChatResponse, float]:
        """Waits until the first token (whole=False) or the last (whole=True); raises the simulated failures."""
        profile = self.models[model]
        rng = self._rng_for(options, model)
        prompt_tokens = sum(_tokens(text_of(m.get("content"))) + 4 for m in request.messages)
        if rng.random() < profile.rate_limit_rate:
            await self._sleep(0.02, options)
            self._bill(options, model, "error", 0, 0)
            raise UpstreamRateLimited(f"{self.name}: simulated 429", retry_after=1.0)
        ttft = self._ttft_s(profile, rng)
        if rng.random() < profile.failure_rate:
            await self._sleep(ttft / 2, options)
            self._bill(options, model, "error", 0, 0)
            raise UpstreamStatusError(f"{self.name}: simulated 503", upstream_status=503)
        text = self._text(request, profile, options.role, rng)
        usage = Usage(prompt_tokens, _tokens(text))
        gen = self._gen_s(profile, usage.completion_tokens, rng)
        started = options.clock()
        try:
            await self._sleep(ttft + gen if whole else ttft, options)
        except (asyncio.CancelledError, UpstreamTimeout) as exc:
            generated = (options.clock() - started - ttft) / max(gen, 1e-9) * usage.completion_tokens
            status = "cancelled" if isinstance(exc, asyncio.CancelledError) else "timeout"
            self._bill(options, model, status, prompt_tokens, max(0, min(usage.completion_tokens, int(generated))))
            raise
        if whole:
            self._bill(options, model, "ok", usage.prompt_tokens, usage.completion_tokens)
        return self._response(model, text, usage), gen

    async def complete(self, request: ChatRequest, *, model: str, options: CallOptions) -> ChatResponse:
        response, _ = await self._call(request, model, options, whole=True)
        return response

    @asynccontextmanager
    async def stream(self, request: ChatRequest, *, model: str, options: CallOptions) -> AsyncIterator[_SimStream]:
        started = options.clock()
        response, gen = await self._call(request, model, options, whole=False)
        stream = _SimStream(self, model, response, options, options.clock() - started, gen)
        try:
            yield stream
        finally:
            if not stream.billed:  # left early: billed what was generated so far
                usage = response.usage or Usage()
                share = stream.sent / max(1, stream.pieces)
                self._bill(options, model, "cancelled", usage.prompt_tokens, int(usage.completion_tokens * share))

    async def aclose(self) -> None:
        return None


class _SimStream:
    """The answer in a few chunks, paced at the model's generation speed."""

    _PIECES = 4

    def __init__(
        self,
        provider: SimProvider,
        model: str,
        response: ChatResponse,
        options: CallOptions,
        ttft: float,
        gen: float,
    ) -> None:
        self._gen = gen
        self._provider = provider
        self._model = model
        self._response = response
        self._options = options
        self.ttft_s: float | None = ttft
        self.usage: Usage | None = None
        self.billed = False
        self.sent = 0
        self.pieces = self._PIECES

    async def __aiter__(self) -> AsyncIterator[Chunk]:
        provider = self._provider
        usage = self._response.usage or Usage()
        text = self._response.content
        size = max(1, math.ceil(len(text) / self._PIECES))
        step = self._gen / self._PIECES
        first = response_to_chunks(self._response)[0]
        base = {k: v for k, v in first.items() if k != "choices"}
        for i in range(self._PIECES):
            piece = text[i * size : (i + 1) * size]
            delta: dict[str, Any] = {"content": piece} | ({"role": "assistant"} if i == 0 else {})
            yield base | {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
            self.sent = i + 1
            if i < self._PIECES - 1:
                await provider._sleep(step, self._options)
        yield base | {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        self.usage = usage
        self.billed = True
        provider._bill(self._options, self._model, "ok", usage.prompt_tokens, usage.completion_tokens)
