"""The responses `/v1/responses` keeps, so `GET /v1/responses/{id}` can return one and `previous_response_id`
can continue its conversation: in process memory, per API key (a key sees only what it stored), each for a TTL,
bounded by count (the oldest goes first). A response created with `store: false` is never put here.

Kept in memory even when the cache backend is Redis: with several workers or replicas, a chained request must
reach the process that stored its predecessor (the README says so).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["StoredResponse", "StoredResponses"]

DEFAULT_TTL_S = 3600.0
DEFAULT_MAX_ENTRIES = 10_000


@dataclass(frozen=True, slots=True)
class StoredResponse:
    response: dict[str, Any]
    conversation: list[dict[str, Any]]  # chat messages, this response's output last, instructions left out


class StoredResponses:
    def __init__(
        self,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[tuple[str, str], tuple[float, StoredResponse]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, owner: str, response_id: str, stored: StoredResponse) -> None:
        now = self._clock()
        self._entries[(owner, response_id)] = (now + self.ttl_s, stored)
        self._entries.move_to_end((owner, response_id))
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        while self._entries:  # insertion order is expiry order (one TTL): drop the expired from the front
            first = next(iter(self._entries.values()))
            if first[0] > now:
                break
            self._entries.popitem(last=False)

    def get(self, owner: str, response_id: str) -> StoredResponse | None:
        entry = self._entries.get((owner, response_id))
        if entry is None:
            return None
        if entry[0] <= self._clock():
            del self._entries[(owner, response_id)]
            return None
        return entry[1]

    def delete(self, owner: str, response_id: str) -> bool:
        return self.get(owner, response_id) is not None and self._entries.pop((owner, response_id)) is not None
