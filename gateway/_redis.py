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

The hot path's calls (`eval`, `eval_many`, `get`: the limiter's, the budgets' and the cache's) go through one
pipelined connection (`gateway._redis_mux`) on a plain server or a Sentinel's master, a fifth of redis-py's CPU per
command; on TLS and on a Cluster they go through redis-py, as every other call (`call`) does. Both run under the
same breaker and budget.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Literal, TypeVar, cast

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, RedisError

from gateway._redis_mux import Address, Multiplexer, ReplyError, pack
from gateway._redis_urls import RedisTarget, parse_redis_url, redacted
from gateway.core.errors import ServiceUnavailable

__all__ = ["BreakerState", "RedisEndpoint", "RedisUnavailable", "Script", "ScriptCall", "redacted"]

T = TypeVar("T")
BreakerState = Literal["closed", "open", "half_open"]
Arg = str | bytes | int
# What a failed call may raise: redis-py's errors, the multiplexer's (connection errors are OSErrors), error replies.
_FAILURES = (RedisError, OSError, TimeoutError, ReplyError)


class Script:
    """A Lua script, run by its SHA (EVALSHA); when Redis does not have it (a restart, SCRIPT FLUSH, a failover),
    by its source (EVAL, which caches it again), so a lost script costs one round trip once."""

    __slots__ = ("registered", "sha", "source")

    def __init__(self, source: str, registered: AsyncScript) -> None:
        self.source = source
        self.registered = registered  # redis-py's, for the clients that run scripts through redis-py
        self.sha: str = registered.sha


ScriptCall = tuple[Script, list[str], list[Any]]
"""A script with its keys and arguments."""


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
        self._mux = self._multiplexer(target, timeout_s)

    def _multiplexer(self, target: RedisTarget, timeout_s: float) -> Multiplexer | None:
        """The pipelined connection for the hot path, where it applies (not TLS, not a Cluster)."""
        if target.mode == "sentinel":
            sentinel, service = self._sentinel, target.service
            assert sentinel is not None
            assert service is not None

            async def master() -> Address:
                host, port = await sentinel.discover_master(service)
                return Address(str(host), int(port), None, target.db, target.username, target.password)

            return Multiplexer(master, timeout_s=timeout_s)
        if target.mode != "single" or not target.url.lower().startswith(("redis://", "unix://")):
            return None
        parsed = parse_url(target.url)
        address = Address(
            parsed.get("host", "localhost"),
            int(parsed.get("port", 6379)),
            parsed.get("path"),
            int(parsed.get("db", 0)),
            parsed.get("username"),
            parsed.get("password"),
        )

        async def fixed() -> Address:
            return address

        return Multiplexer(fixed, timeout_s=timeout_s)

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

    def script(self, source: str) -> Script:
        return Script(source, self.client.register_script(source))

    async def eval(self, script: Script, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        """Run one script and return its reply (strings as bytes, or as `decode_responses` says through redis-py)."""
        mux = self._mux
        if mux is None:
            return await self.call(lambda client: script.registered(keys=keys, args=args, client=client))
        return await self._guarded(_evaluate(mux, script, keys, args))

    async def get(self, key: str) -> bytes | None:
        mux = self._mux
        if mux is None:
            value: bytes | str | None = await self.call(lambda client: client.get(key))
            return value.encode() if isinstance(value, str) else value
        reply: bytes | None = await self._guarded(mux.execute(pack(("GET", key))))
        return reply

    async def eval_many(self, calls: Sequence[ScriptCall]) -> None:
        """Run scripts for their effect in one round trip (each is atomic by itself; the batch only saves round
        trips)."""
        mux = self._mux
        if mux is None:
            await self._run_scripts(calls)
        elif calls:
            await self._guarded(_evaluate_many(mux, calls))

    async def _guarded(self, operation: Coroutine[Any, Any, T]) -> T:
        """Run an operation behind the breaker; RedisUnavailable instead of any error of redis-py, of the
        pipelined connection (whose budget is its own) or of an error reply."""
        if not self._admit():
            operation.close()  # never started
            raise self._unavailable("circuit open")
        probe = self._opened_at is not None
        try:
            result = await operation
        except _FAILURES as exc:
            self._failure()
            if isinstance(exc, ReplyError) and str(exc).startswith("READONLY") and self._mux is not None:
                self._mux.drop(ConnectionError("the master was demoted"))  # a Sentinel failover: ask again
            raise self._unavailable(type(exc).__name__) from None
        finally:
            if probe:
                self._probing = False
        self._success()
        return result

    async def call(self, operation: Callable[[Redis], Awaitable[T]]) -> T:
        """Run one Redis operation within the budget; raise RedisUnavailable instead of any redis-py error."""
        return await self._guarded(self._through_redis_py(operation))

    async def _through_redis_py(self, operation: Callable[[Redis], Awaitable[T]]) -> T:
        async with asyncio.timeout(self.timeout_s), self._slots:
            if not self._cluster_ready:
                await self._discover()
            return await operation(self.client)

    async def _run_scripts(self, calls: Sequence[ScriptCall]) -> None:
        """`eval_many` through redis-py: one alone, several in a non-transactional pipeline
        (each script is atomic by itself; the batch only saves round trips). A pipeline sends them by SHA, not
        as registered scripts, which would add a SCRIPT EXISTS round trip to every batch; if Redis lost them (a
        restart: NOSCRIPT), the batch is redone one script at a time on the same connection, which reloads them."""

        async def run(client: Redis) -> None:
            if self._cluster and len(calls) > 1:
                # A cluster pipeline refuses EVALSHA: the scripts go out side by side instead, each to the node
                # that owns its keys' slot (one round trip of wall time, one connection each).
                await asyncio.gather(
                    *(script.registered(keys=keys, args=args, client=client) for script, keys, args in calls)
                )
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
                await script.registered(keys=keys, args=args, client=client)

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
        if self._mux is not None:
            self._mux.close()
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


def _no_script(reply: object) -> bool:
    return isinstance(reply, ReplyError) and str(reply).startswith("NOSCRIPT")


async def _evaluate(mux: Multiplexer, script: Script, keys: Sequence[str], args: Sequence[Arg]) -> Any:
    try:
        return await mux.execute(pack(("EVALSHA", script.sha, len(keys), *keys, *args)))
    except ReplyError as exc:
        if not _no_script(exc):
            raise
    return await mux.execute(pack(("EVAL", script.source, len(keys), *keys, *args)))


async def _evaluate_many(mux: Multiplexer, calls: Sequence[ScriptCall]) -> None:
    replies = await mux.execute_many([pack(("EVALSHA", s.sha, len(keys), *keys, *args)) for s, keys, args in calls])
    errors = [r for r in replies if isinstance(r, BaseException) and not _no_script(r)]
    if lost := [call for call, reply in zip(calls, replies, strict=True) if _no_script(reply)]:
        replies = await mux.execute_many([pack(("EVAL", s.source, len(keys), *keys, *args)) for s, keys, args in lost])
        errors += [r for r in replies if isinstance(r, BaseException)]
    if errors:
        raise errors[0]
