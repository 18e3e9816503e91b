"""What every inbound API besides chat shares: the glue that runs a ChatRequest through the pipeline (as the
chat route does), the one deployment call of embeddings with its admission and settlement, and relaying an
already-framed event stream. The routes are raw ASGI apps (`http/asgi.py`); each translates its own wire format
with a pure dialect (`gateway/dialects/`) and calls `complete` or `streamed` here. This is the one module besides
the chat route that knows the pipeline's call shape.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from gateway.auth import Authenticator
from gateway.core.errors import GatewayError, InvalidRequest
from gateway.core.provider import CallOptions, Embedder
from gateway.core.types import ChatRequest, Chunk, Usage
from gateway.dialects.embeddings import token_estimate_body
from gateway.http.asgi import SSE_HEADERS, Inbound, until_disconnect
from gateway.http.errors import internal
from gateway.http.render import answer_headers, encode
from gateway.pipeline import Caller
from gateway.ratelimit.limiter import key_rule
from strategies.base import StrategyMeta

__all__ = ["Answer", "Streamed", "complete", "embed", "send_stream", "streamed"]

log = logging.getLogger("ultra_gateway")


@dataclass(slots=True)
class Answer:
    body: dict[str, Any]
    headers: dict[str, str]


@dataclass(slots=True)
class Streamed:
    chunks: AsyncIterator[Chunk]
    headers: dict[str, str]


async def complete(inbound: Inbound, chat: ChatRequest, caller: Caller) -> Answer:
    """A whole answer from the pipeline: the chat completion body (with `ultra` metadata when exposed) and the
    response headers (x-ultra-*, rate limits)."""
    answer = await inbound.gateway.pipeline.complete(chat, caller)
    inbound.state.meta = answer.meta
    return Answer(answer.body, answer_headers(answer.meta, answer.cache, answer.limits, answer.budget))


@asynccontextmanager
async def streamed(inbound: Inbound, chat: ChatRequest, caller: Caller) -> AsyncIterator[Streamed]:
    """The pipeline's stream, opened before anything is sent (a failure to open is an ordinary HTTP error);
    leaving it closes every upstream response."""
    async with AsyncExitStack() as stack:
        opened = await stack.enter_async_context(inbound.gateway.pipeline.stream(chat, caller))
        inbound.state.meta = opened.meta  # complete by the time the line is written, after the stream
        yield Streamed(opened.chunks, answer_headers(opened.meta, opened.cache, opened.limits, opened.budget))


async def embed(inbound: Inbound, body: dict[str, Any]) -> Answer:
    """An embeddings call to the one deployment the body names: authorized, admitted by the rate limits (its
    input as the token estimate), settled with the real usage, counted in `ultra_requests_total` (strategy
    `direct`). No strategy, no fallbacks: vectors from another model would not be comparable with the ones the
    client already has."""
    observer = inbound.gateway.observer
    model = str(body["model"])
    try:
        answer = await _embed(inbound, body, model)
    except GatewayError as exc:
        observer.metrics.requests.inc((observer.model_label(model), "direct", str(exc.status)))
        raise
    observer.metrics.requests.inc((model, "direct", "200"))
    return answer


async def _embed(inbound: Inbound, body: dict[str, Any], model: str) -> Answer:
    gateway = inbound.gateway
    pipeline = gateway.pipeline
    caller = inbound.caller(model)
    Authenticator.authorize(caller.principal, model)
    if model in gateway.router.strategies:
        what = "a model group" if model in gateway.settings.model_groups else "a strategy alias"
        raise InvalidRequest(
            f"'{model}' is {what}; embeddings need one deployment, named as provider/model", param="model"
        )
    deployment = gateway.router.pool.resolve(model)
    provider = deployment.provider
    if not provider.capabilities.embeddings or not isinstance(provider, Embedder):
        raise InvalidRequest(f"'{deployment.name}' does not serve embeddings", param="model")
    limiter = pipeline.limiter
    ticket = None
    principal = caller.principal
    estimate = token_estimate_body(body)
    spend = pipeline.spend
    spent = None
    if spend is not None:  # budgets count embeddings too: the input at the deployment's input price
        key = None if principal.anonymous else principal.name
        spent = await spend.admit(
            key=key, key_budget=principal.budget, tenant=principal.tenant, model=model, body=estimate
        )
    if limiter is not None:
        rule = key_rule(principal.name, rpm=principal.rpm, tpm=principal.tpm)
        try:
            ticket = await limiter.admit(key=rule, model=model, body=estimate)
        except BaseException:
            if spent is not None and spend is not None:
                spend.settle_soon(spent, 0.0)
            raise
    options = CallOptions(
        deadline=pipeline.clock() + pipeline.request_timeout_s,
        request_id=caller.request_id,
        role="embeddings",
        clock=pipeline.clock,
    )
    used: int | None = 0
    cost: float | None = 0.0
    try:
        result = await provider.embed(body, model=deployment.model, options=options)
        usage = result.get("usage") or {}
        used = usage.get("total_tokens") if isinstance(usage.get("total_tokens"), int) else None
        prompt = usage.get("prompt_tokens", used)
        cost = deployment.cost(Usage(prompt, 0)) if isinstance(prompt, int) else None
    except asyncio.CancelledError:
        used = cost = None  # the client left: the call may still be billed, keep the estimate charged
        raise
    finally:
        if ticket is not None and limiter is not None:
            limiter.settle_soon(ticket, used)
        if spent is not None and spend is not None:
            spend.settle_soon(spent, cost)
        if cost:
            inbound.gateway.observer.spent(
                None if principal.anonymous else principal.name, principal.tenant, model, cost
            )
    result["model"] = model
    meta = StrategyMeta("direct", served_by=[deployment])
    budget = spent.budget if spent is not None else None
    return Answer(result, answer_headers(meta, "bypass", ticket.limits if ticket is not None else {}, budget))


async def send_stream(
    inbound: Inbound,
    headers: dict[str, str],
    events: AsyncIterator[bytes],
    on_error: Callable[[GatewayError], bytes],
) -> None:
    """Send already-framed SSE events as they come, until they end or the client hangs up. After the first
    byte a failure is one in-band error event (`on_error` frames it in the route's dialect) and the end."""
    send = inbound.send

    async def relay(watch: Callable[[], None]) -> None:
        watch()  # events come translated from the pipeline's chunks: watch for a hang-up from the start
        tail = b""
        try:
            async for event in events:
                await send({"type": "http.response.body", "body": event, "more_body": True})
        except GatewayError as exc:
            tail = on_error(exc)
        except Exception:
            log.exception("stream failed in request %s", inbound.request_id)
            tail = on_error(internal(inbound.request_id))
        await send({"type": "http.response.body", "body": tail, "more_body": False})

    await send({"type": "http.response.start", "status": 200, "headers": [*SSE_HEADERS, *encode(headers)]})
    await until_disconnect(relay, inbound.receive)
