"""The acceptance check used by waterfall, cost cascades and races: an answer is accepted when it is
non-empty, finished with `stop` or `tool_calls`, and is not a refusal."""

from __future__ import annotations

import re
from collections.abc import Callable

from gateway.core.types import ChatResponse

__all__ = ["Accept", "is_refusal", "rejection"]

Accept = Callable[[ChatResponse], str | None]
"""Returns None to accept an answer, or the reason it is rejected."""

_REFUSAL = re.compile(
    r"^\s*(i'm sorry|i am sorry|sorry, (but )?i can('t|not)|i can('t|not) (help|assist|comply)|"
    r"i (won't|will not) (help|assist))",
    re.IGNORECASE,
)


def is_refusal(text: str) -> bool:
    return bool(_REFUSAL.match(text))


def rejection(response: ChatResponse) -> str | None:
    """None when the answer is acceptable, else why not (recorded in the attempt's `note`)."""
    choices = response.choices
    if not choices:
        return "no choices"
    message = choices[0].get("message") or {}
    if message.get("refusal"):
        return "refusal"
    reason = response.finish_reason
    if reason not in ("stop", "tool_calls"):
        return f"finish_reason {reason}"
    if reason == "tool_calls":
        return None if message.get("tool_calls") else "tool_calls without calls"
    text = response.content.strip()
    if not text:
        return "empty answer"
    if is_refusal(text):
        return "refusal"
    return None
