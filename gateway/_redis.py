"""One Redis endpoint as the cache and the rate limiter use it: a client with short timeouts and no retries, a
circuit breaker in front of it, and the one place where redis-py errors become ours.

Why these settings: redis-py 8 retries ten times with backoff by default
and waits 5 s per socket operation, so a dead Redis would hold every request for seconds; a rate-limit script
that timed out may already have run, so retrying it double-charges. Here every call has one budget
(`timeout_s`, covering the wait for a connection, connect and reply) and zero retries. After `failures`
consecutive errors the breaker opens and calls fail at once, without I/O, for `cooldown_s`; then one probe goes
through (half-open) and its success closes the breaker, so the gateway recovers by itself when Redis returns.

The URL may carry a password: it never appears in an error message or a log line (only host and port do).
It may name one server, a master behind Sentinel (`redis+sentinel://`) or a Cluster (`redis+cluster://`): see
`gateway._redis_urls`. Every script keeps its keys in one hash slot, so the same calls work on a Cluster.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal, TypeVar, cast

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, RedisError

from gateway._redis_urls import parse_redis_url, redacted
from gateway.core.errors import ServiceUnavailable

__all__ = ["BreakerState", "RedisEndpoint", "RedisUnavailable", "ScriptCall", "redacted"]

T = TypeVar("T")
BreakerState = Literal["closed", "open", "half_open"]
ScriptCall = tuple[AsyncScript, list[str], list[Any]]
"""A registered script with its keys and arguments."""


class RedisUnavailable(ServiceUnavailable):
    """Redis did not answer in time, refused, errored, or its circuit is open. Callers fail open or closed."""

    code = "redis_unavailable"


class RedisEndpoint:
    """A Redis client owned by one component (cache or limiter), with its own pool, budget and breaker."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float,
        decode_responses: bool = False,
        max_connections: int = 64,
        failures: int = 3,
        cooldown_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.where = redacted(url)
        self.timeout_s = timeout_s
        self._failures_to_open = failures
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._consecutive_failures = 0
        self._opened_at: float | None = None
        self._probing = False
        # One budget per call, enforced in call(): the pool's own wait and redis-py's per-read and per-write
        # timeouts would each add a timer per command (about a tenth of a Redis call's CPU), so the pool does not
        # block (the semaphore bounds connections instead) and sockets have only a connect timeout. A call cut
        # short mid-reply is safe: redis-py drops that connection rather than reuse it out of step.
        self._slots = asyncio.Semaphore(max_connections)
        options: dict[str, Any] = {
            "max_connections": max_connections,
            "socket_timeout": None,  # redis-py 8 defaults to 5 s per read and write: here call() bounds them
            "socket_connect_timeout": timeout_s,
            "retry": Retry(NoBackoff(), 0),  # never retry: scripts are not idempotent
            "health_check_interval": 30,
            "decode_responses": decode_responses,
        }
        target = parse_redis_url(url)
        self._cluster = target.mode == "cluster"
        self._cluster_ready = not self._cluster
        self._cluster_lock = asyncio.Lock()
        self._sentinel: Sentinel | None = None
        self._pool: ConnectionPool | None = None
        if target.mode == "cluster":
            # Redirections (MOVED/ASK: the command did not run) are followed; errors are not retried. The
            # cluster client has the command methods of Redis, which is all the callers use.
            cluster = RedisCluster(
                startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
                username=target.username,
                password=target.password,
                **options,
            )
            self.client: Redis = cast(Redis, cluster)
        elif target.mode == "sentinel":
            assert target.service is not None
            self._sentinel = Sentinel(  # type: ignore[no-untyped-call]
                list(target.nodes),
                sentinel_kwargs={"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s},
            )
            # Each new connection asks the sentinels where the master is, so after a failover the breaker's
            # probe reaches the new master by itself.
            self.client = self._sentinel.master_for(
                target.service, db=target.db, username=target.username, password=target.password, **options
            )
        else:
            self._pool = ConnectionPool.from_url(url, **options)
            self.client = Redis(connection_pool=self._pool)

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self._cooldown_s:
            return "half_open"
        return "open"

    def _unavailable(self, why: str) -> RedisUnavailable:
        return RedisUnavailable(f"redis at {self.where} is unavailable ({why})", retry_after=self._cooldown_s)

    def _admit(self) -> bool:
        """Whether a call may touch the network now; claims the half-open probe slot when it is free."""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._probing:
            self._probing = True
            return True
        return False

    def _success(self) -> None:
        self._consecutive_failures = 0
        self._opened_at = None

    def _failure(self) -> None:
        self._consecutive_failures += 1
        if self._opened_at is not None or self._consecutive_failures >= self._failures_to_open:
            self._opened_at = self._clock()  # (re)open: a failed probe starts a new cool-down

    async def _discover(self) -> None:
        """Learn a cluster's slot map once, before the first command. Left to redis-py, a burst of concurrent first
        commands on a fresh cluster client failed some of them ("Connection closed by server") in our tests."""
        async with self._cluster_lock:
            if not self._cluster_ready:
                await cast(RedisCluster, self.client).initialize()
                self._cluster_ready = True

    async def call(self, operation: Callable[[Redis], Awaitable[T]]) -> T:
        """Run one Redis operation within the budget; raise RedisUnavailable instead of any redis-py error."""
        if not self._admit():
            raise self._unavailable("circuit open")
        probe = self._opened_at is not None
        try:
            async with asyncio.timeout(self.timeout_s), self._slots:
                if not self._cluster_ready:
                    await self._discover()
                result = await operation(self.client)
        except (RedisError, OSError, TimeoutError) as exc:
            self._failure()
            raise self._unavailable(type(exc).__name__) from None
        finally:
            if probe:
                self._probing = False
        self._success()
        return result

    async def run_scripts(self, calls: Sequence[ScriptCall]) -> None:
        """Run scripts for their effect in one round trip: one alone, several in a non-transactional pipeline
        (each script is atomic by itself; the batch only saves round trips). A pipeline sends them by SHA, not
        as registered scripts, which would add a SCRIPT EXISTS round trip to every batch; if Redis lost them (a
        restart: NOSCRIPT), the batch is redone one script at a time on the same connection, which reloads them."""

        async def run(client: Redis) -> None:
            if self._cluster and len(calls) > 1:
                # A cluster pipeline refuses EVALSHA: the scripts go out side by side instead, each to the node
                # that owns its keys' slot (one round trip of wall time, one connection each).
                await asyncio.gather(*(script(keys=keys, args=args, client=client) for script, keys, args in calls))
                return
            if len(calls) > 1:
                pipe = client.pipeline(transaction=False)
                for script, keys, args in calls:
                    pipe.evalsha(script.sha, len(keys), *keys, *args)
                try:
                    await pipe.execute()
                    return
                except NoScriptError:
                    pass
            for script, keys, args in calls:
                await script(keys=keys, args=args, client=client)

        if calls:
            await self.call(run)

    async def ping(self) -> bool:
        """Readiness: always tries the network (the breaker does not hide a recovered Redis); success closes it."""
        try:
            async with asyncio.timeout(self.timeout_s), self._slots:
                if not self._cluster_ready:
                    await self._discover()
                await self.client.ping()
        except (RedisError, OSError, TimeoutError):
            self._failure()
            return False
        self._success()
        return True

    async def aclose(self) -> None:
        if self._sentinel is not None:
            # master_for() hands the client a pool it does not close by itself: its connections would leak
            await self.client.aclose(close_connection_pool=True)
        else:
            await self.client.aclose()
        if self._pool is not None:
            await self._pool.aclose()
        if self._sentinel is not None:
            for sentinel in self._sentinel.sentinels:
                await sentinel.aclose()
