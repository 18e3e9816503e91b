"""The one rule every chain, cascade and race applies when a call fails: move on to the next deployment, or give
up and let the error reach the client.

An upstream failure (timeout, connection error, 5xx, 429, a broken stream, everyone failing) is fallen over. A
request the upstream rejected as invalid (400/413/422, `UpstreamBadRequest`) is not: another upstream would most
likely reject it too, and the client needs that message. Anything that is not an upstream failure (a
cancellation, a bug) is never fallen over.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeGuard

from gateway.core.errors import UpstreamBadRequest, UpstreamError

__all__ = ["DEFAULT_FALLBACK", "FallbackPolicy"]


@dataclass(frozen=True, slots=True)
class FallbackPolicy:
    final: tuple[type[UpstreamError], ...] = (UpstreamBadRequest,)
    """Upstream failures that end the request instead of moving on."""

    def falls_over(self, exc: BaseException) -> TypeGuard[UpstreamError]:
        """True when the caller should record `exc` and try the next deployment."""
        return isinstance(exc, UpstreamError) and not isinstance(exc, self.final)


DEFAULT_FALLBACK = FallbackPolicy()
