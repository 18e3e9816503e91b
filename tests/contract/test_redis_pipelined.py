"""The endpoint's pipelined connection (gateway/_redis_mux.py) on a real redis-server: many callers share one
connection and each gets its own reply, whatever happens to the callers around it (cancelled, timed out, a
connection killed, a server paused), with a password and a database number, on asyncio's loop and on uvloop,
and after a Sentinel failover."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest
import uvloop
from redis.asyncio import Redis

from gateway._redis import RedisEndpoint, RedisUnavailable
from tests._redis import RedisServer
from tests._redis_topologies import SentinelSetup

pytestmark = [pytest.mark.redis, pytest.mark.timeout(60)]

ECHO = "return {ARGV[1], redis.call('INCR', KEYS[1])}"
SET = "return redis.call('SET', KEYS[1], ARGV[1])"


async def test_concurrent_callers_each_get_their_own_reply(redis_url: str) -> None:
    endpoint = RedisEndpoint(redis_url, timeout_s=2.0)
    echo = endpoint.script(ECHO)
    try:
        replies = await asyncio.gather(*(endpoint.eval(echo, ["{t}n"], [f"caller-{i}"]) for i in range(300)))
        assert [reply[0] for reply in replies] == [f"caller-{i}".encode() for i in range(300)]
        assert sorted(reply[1] for reply in replies) == list(range(1, 301))  # every script ran once
        assert await endpoint.get("{t}n") == b"300"
    finally:
        await endpoint.aclose()


async def test_a_cancelled_caller_leaves_the_connection_in_step(redis_url: str) -> None:
    endpoint = RedisEndpoint(redis_url, timeout_s=2.0)
    echo = endpoint.script(ECHO)
    try:
        await endpoint.eval(echo, ["{t}c"], ["warm"])
        gone = asyncio.ensure_future(endpoint.eval(echo, ["{t}c"], ["gone"]))
        await asyncio.sleep(0)  # written, not answered yet
        gone.cancel()
        after = await asyncio.gather(*(endpoint.eval(echo, ["{t}c"], [f"after-{i}"]) for i in range(5)))
        assert [reply[0] for reply in after] == [f"after-{i}".encode() for i in range(5)]
        assert gone.cancelled()
    finally:
        await endpoint.aclose()


async def test_a_killed_connection_is_replaced_on_the_next_call(redis_url: str) -> None:
    endpoint = RedisEndpoint(redis_url, timeout_s=2.0, failures=10)
    echo = endpoint.script(ECHO)
    try:
        await endpoint.eval(echo, ["{t}k"], ["first"])
        async with Redis.from_url(redis_url) as raw:
            assert await raw.client_kill_filter(_type="normal", skipme=True) >= 1
        with contextlib.suppress(RedisUnavailable):  # this one may find the connection closed
            await endpoint.eval(echo, ["{t}k"], ["during"])
        assert (await endpoint.eval(echo, ["{t}k"], ["after"]))[0] == b"after"
        assert endpoint.state == "closed"
    finally:
        await endpoint.aclose()


async def test_a_paused_server_fails_the_waiting_calls_within_the_budget_then_recovers(
    redis_server_owned: RedisServer,
) -> None:
    endpoint = RedisEndpoint(redis_server_owned.url, timeout_s=0.2, failures=100)
    echo = endpoint.script(ECHO)
    await endpoint.eval(echo, ["{t}p"], ["before"])
    redis_server_owned.pause()
    try:
        started = time.monotonic()
        outcomes = await asyncio.gather(
            *(endpoint.eval(echo, ["{t}p"], [str(i)]) for i in range(10)), return_exceptions=True
        )
        assert time.monotonic() - started < 1.0  # one budget for all of them, not one each
        assert all(isinstance(o, RedisUnavailable) for o in outcomes)
    finally:
        redis_server_owned.resume()
    deadline = time.monotonic() + 10
    while True:  # the commands written while paused may still run when the server resumes: only step is checked
        with contextlib.suppress(RedisUnavailable):
            assert (await endpoint.eval(echo, ["{t}p"], ["after"]))[0] == b"after"
            break
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    await endpoint.aclose()


def test_password_and_database_on_uvloop(redis_server_owned: RedisServer) -> None:
    server = redis_server_owned
    assert server.command("CONFIG", "SET", "requirepass", "s3cret").startswith(b"+OK")
    url = f"redis://:s3cret@127.0.0.1:{server.port}/5"

    async def scenario() -> None:
        endpoint = RedisEndpoint(url, timeout_s=2.0)
        try:
            assert await endpoint.eval(endpoint.script(SET), ["{t}db"], ["five"]) == b"OK"
            assert await endpoint.get("{t}db") == b"five"
            async with Redis.from_url(url.replace("/5", "/0")) as db0:
                assert await db0.get("{t}db") is None  # the key went to database 5
            wrong = RedisEndpoint(url.replace("s3cret", "wrong"), timeout_s=2.0)
            with pytest.raises(RedisUnavailable) as refused:
                await wrong.get("{t}db")
            assert "wrong" not in str(refused.value)
            await wrong.aclose()
        finally:
            await endpoint.aclose()

    uvloop.run(scenario())


async def test_after_a_sentinel_failover_scripts_reach_the_new_master(redis_sentinel_owned: SentinelSetup) -> None:
    setup = redis_sentinel_owned
    endpoint = RedisEndpoint(setup.url, timeout_s=1.0, cooldown_s=0.2)
    store = endpoint.script(SET)
    try:
        assert await endpoint.eval(store, ["before"], ["1"]) == b"OK"
        new = await asyncio.to_thread(setup.failover)
        deadline = time.monotonic() + 30
        while setup.servers[new].command("GET", "after") != b"$1\r\n2\r\n":
            assert time.monotonic() < deadline, "the pipelined connection never reached the new master"
            with contextlib.suppress(RedisUnavailable):  # READONLY from the demoted master, then a new connection
                await endpoint.eval(store, ["after"], ["2"])
            await asyncio.sleep(0.1)
    finally:
        await endpoint.aclose()
