"""Building a provider's turn list from OpenAI messages, shared by the translating dialects."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.core.types import text_of

__all__ = ["Turns"]


class Turns:
    """Leading system/developer text is collected apart (`system`); a later one is folded into the next user
    turn, marked `[system]`, rather than hoisted to the top (which would change its meaning); consecutive
    same-role turns merge, so tool results share one user turn right after the calls (bug table #11)."""

    def __init__(self, items_key: str, text_item: Callable[[str], dict[str, Any]]) -> None:
        self.system: list[str] = []
        self.turns: list[dict[str, Any]] = []
        self._items_key = items_key
        self._text_item = text_item
        self._leading = True

    def take_system(self, message: dict[str, Any]) -> bool:
        """Take `message` if it is a system/developer message; True when it was taken."""
        if message.get("role") not in ("system", "developer"):
            self._leading = False
            return False
        text = text_of(message.get("content"))
        if self._leading:
            self.system.append(text)
        elif text:
            self.add("user", [self._text_item(f"[system] {text}")])
        return True

    def add(self, role: str, items: list[dict[str, Any]]) -> None:
        if not items:
            return
        if self.turns and self.turns[-1]["role"] == role:
            self.turns[-1][self._items_key].extend(items)
        else:
            self.turns.append({"role": role, self._items_key: items})
