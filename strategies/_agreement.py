"""When candidates agree, Mixture-of-Agents has nothing to combine: the analysis and synthesis calls (the
dearest part of it, both on the lead with every candidate in the prompt) can be skipped.

Two answers agree when their final answers are equal after normalisation (case, whitespace, surrounding
punctuation). The final answer is what follows the last `answer:` marker (`Answer: 42`, `Final answer: ...`)
when every candidate has one; otherwise the whole text. Free-form prose rarely matches exactly, so it is still
synthesised; short and exact answers (numbers, dates, labels, code identifiers) are where the saving is.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from gateway.core.types import ChatResponse

__all__ = ["agreed", "final_answer"]

_MARKER = re.compile(r"answer[ \t]*[:=][ \t]*(\S.*?)[ \t]*$", re.IGNORECASE | re.MULTILINE)


def _normal(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().strip(".!'\"`*").strip().lower()


def final_answer(text: str) -> str | None:
    """The value after the last `answer:` marker, normalised; None without one."""
    found = _MARKER.findall(text or "")
    return _normal(found[-1]) if found else None


def agreed(answers: Sequence[ChatResponse]) -> bool:
    """True when there are at least two answers and they all give the same final answer."""
    if len(answers) < 2 or any(a.choices and (a.choices[0].get("message") or {}).get("tool_calls") for a in answers):
        return False
    finals = [final_answer(a.content) for a in answers]
    keys = finals if all(f is not None for f in finals) else [_normal(a.content) for a in answers]
    return bool(keys[0]) and all(k == keys[0] for k in keys)
