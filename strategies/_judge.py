"""Asking a judge deployment to score an answer 0-10 (the cost cascade's escalation check, adaptive's sampled
grading). The judge sees the user's last request and the answer, and replies with a number."""

from __future__ import annotations

import re

from gateway.core.pool import Deployment
from gateway.core.types import ChatRequest, ChatResponse
from strategies.base import StrategyContext

__all__ = ["judge_request", "judge_score"]

_SCORE = re.compile(r"\b(10|[0-9])(?:\.\d+)?\b")


def judge_request(request: ChatRequest, answer: ChatResponse) -> ChatRequest:
    return request.with_messages(
        [
            {
                "role": "system",
                "content": "Rate how well the answer serves the user's last request, from 0 (useless) to 10 "
                "(excellent). Reply with the number only.",
            },
            {
                "role": "user",
                "content": f"Request:\n{request.messages[-1].get('content')}\n\nAnswer:\n{answer.content}",
            },
        ],
        stream=False,
        tools=None,
        tool_choice=None,
    )


async def judge_score(
    ctx: StrategyContext, judge: Deployment, request: ChatRequest, answer: ChatResponse
) -> float | None:
    """The judge's score 0-10, or None when its reply holds no number. Upstream errors propagate."""
    verdict = await ctx.call(judge, judge_request(request, answer), "judge")
    match = _SCORE.search(verdict.content)
    return float(match.group(0)) if match else None
