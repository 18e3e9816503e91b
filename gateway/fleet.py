"""Fleet state shared by every gateway process through Redis: circuit breakers and cool-downs, and what
`ultra-adaptive` has learned. Local first: the answer's path reads and writes only this process's memory;
a background task synchronises with Redis every `sync_interval_s` in one pipelined round trip.

- **Breakers.** Each process publishes the breakers that changed since its last sync (open until a wall-clock
  time, or closed, with when that happened) to one Redis hash and adopts the newer states of the others. So a
  second process does not rediscover a dead upstream by failing on it: at most one sync interval after the
  first process opened the breaker, every process skips the deployment, and one probe after the cool-down
  decides for everyone.
- **Adaptive posteriors.** Each process adds the evidence it gathered since the last sync (increments of the
  Beta posteriors' alpha and beta) to totals kept in Redis and takes the totals back, so every process learns
  from every request and a restart starts from what the fleet learned, not from the prior.

Redis being down costs nothing but the sharing: each process keeps its own state and catches up later.
Keys share one hash slot (`{fleet}`), so this works on a Redis Cluster too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Any

import orjson
from redis.asyncio import Redis

from gateway._redis import RedisEndpoint, RedisUnavailable
from gateway.core.stats import LiveStats

__all__ = ["FleetSync", "Posteriors"]

log = logging.getLogger("ultra_gateway")

Posteriors = MutableMapping[tuple[str, str], list[float]]
"""One adaptive alias's Beta posteriors: (bucket, arm) → [alpha, beta], the prior being [1, 1]."""


class FleetSync:
    def __init__(
        self,
        endpoint: RedisEndpoint,
        live: LiveStats,
        posteriors: Mapping[str, Posteriors],
        *,
        prefix: str = "ugw",
        sync_interval_s: float = 0.5,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.endpoint = endpoint
        self.live = live
        self.posteriors = dict(posteriors)  # alias → its posteriors, updated in place
        self.sync_interval_s = sync_interval_s
        self._wall = wall
        self._breakers_key = f"{prefix}{{fleet}}:breakers"
        self._posteriors_key = f"{prefix}{{fleet}}:posteriors"
        self._published: dict[str, float] = {}  # name → changed_at last published
        self._synced: dict[str, dict[tuple[str, str], tuple[float, float]]] = {a: {} for a in self.posteriors}
        self.syncs = 0

    def track(self, posteriors: Mapping[str, Posteriors]) -> None:
        """The adaptive aliases of a reloaded configuration (their posteriors carried over by the caller)."""
        self.posteriors = dict(posteriors)
        self._synced = {alias: self._synced.get(alias, {}) for alias in self.posteriors}

    async def run(self) -> None:
        """Synchronise until cancelled; a failed sync is retried at the next interval."""
        while True:
            await self.sync_once()
            await asyncio.sleep(self.sync_interval_s)

    async def sync_once(self) -> bool:
        try:
            await self._sync()
        except RedisUnavailable as exc:
            log.debug("fleet state not synchronised: %s", exc.message)
            return False
        self.syncs += 1
        return True

    async def _sync(self) -> None:
        to_wall = self._wall() - self.live.clock()  # clock time + to_wall = wall-clock time
        changed = {
            name: orjson.dumps([until + to_wall if until else 0.0, rate_limited, at + to_wall])
            for name, (until, rate_limited, at) in self.live.breakers().items()
            if self._published.get(name) != at
        }
        published = {name: self.live.breakers()[name][2] for name in changed}
        snapshot = {alias: {k: (v[0], v[1]) for k, v in p.items()} for alias, p in self.posteriors.items()}
        increments = [
            (field, delta)
            for alias, current in snapshot.items()
            for key, (alpha, beta) in current.items()
            for field, delta in _deltas(alias, key, (alpha, beta), self._synced[alias].get(key, (1.0, 1.0)))
        ]

        async def exchange(client: Redis) -> tuple[dict[bytes, bytes], dict[bytes, bytes]]:
            pipe = client.pipeline(transaction=False)
            if changed:
                pipe.hset(self._breakers_key, mapping=changed)  # type: ignore[arg-type]
            for field, delta in increments:
                pipe.hincrbyfloat(self._posteriors_key, field, delta)
            pipe.hgetall(self._breakers_key)
            pipe.hgetall(self._posteriors_key)
            replies: Sequence[Any] = await pipe.execute()
            return replies[-2], replies[-1]

        breakers, totals = await self.endpoint.call(exchange)
        self._published.update(published)
        self._adopt_breakers(breakers, to_wall)
        self._adopt_posteriors(totals, snapshot)

    def _adopt_breakers(self, breakers: Mapping[bytes, bytes], to_wall: float) -> None:
        for raw_name, raw in breakers.items():
            name = raw_name.decode()
            until_wall, rate_limited, at_wall = orjson.loads(raw)
            until = until_wall - to_wall if until_wall else 0.0
            self.live.adopt(name, until, bool(rate_limited), at_wall - to_wall)
            self._published.setdefault(name, self.live.breakers().get(name, (0.0, False, 0.0))[2])

    def _adopt_posteriors(
        self, totals: Mapping[bytes, bytes], snapshot: Mapping[str, Mapping[tuple[str, str], tuple[float, float]]]
    ) -> None:
        """Every process's evidence, plus what this process learned while the round trip was under way."""
        evidence: dict[str, dict[tuple[str, str], list[float]]] = {}
        for raw_field, raw_value in totals.items():
            parsed = _parse_field(raw_field.decode())
            if parsed is None or parsed[0] not in self.posteriors:
                continue
            alias, key, side = parsed
            evidence.setdefault(alias, {}).setdefault(key, [0.0, 0.0])[side] = float(raw_value)
        for alias, posteriors in self.posteriors.items():
            before = snapshot[alias]
            synced = self._synced[alias]
            for key, (alpha_evidence, beta_evidence) in evidence.get(alias, {}).items():
                fleet = (1.0 + alpha_evidence, 1.0 + beta_evidence)  # Redis now holds this much
                now = posteriors.get(key)
                then = before.get(key, (1.0, 1.0))
                meanwhile = (0.0, 0.0) if now is None else (now[0] - then[0], now[1] - then[1])
                posteriors[key] = [fleet[0] + meanwhile[0], fleet[1] + meanwhile[1]]
                synced[key] = fleet  # what was learned meanwhile goes out with the next sync


def _field(alias: str, key: tuple[str, str], side: int) -> str:
    bucket, arm = key
    return f"{alias}|{bucket}|{arm}|{'ab'[side]}"


def _parse_field(field: str) -> tuple[str, tuple[str, str], int] | None:
    parts = field.rsplit("|", 3)
    if len(parts) != 4 or parts[3] not in ("a", "b"):
        return None
    alias, bucket, arm, side = parts
    return alias, (bucket, arm), "ab".index(side)


def _deltas(
    alias: str, key: tuple[str, str], current: tuple[float, float], synced: tuple[float, float]
) -> list[tuple[str, float]]:
    out = []
    for side in (0, 1):
        delta = current[side] - synced[side]
        if delta:
            out.append((_field(alias, key, side), delta))
    return out
