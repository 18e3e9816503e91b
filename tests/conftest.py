"""Top-level fixtures. Redis: one shared `redis-server` per session (`redis_url` flushes it before each test),
and `redis_server_owned` for tests that kill and restart their own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._redis import RedisServer, redis_binary
from tests._redis_topologies import RedisCluster3, SentinelSetup


@pytest.fixture(scope="session")
def redis_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(redis_binary(), tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_session: RedisServer) -> str:
    """The shared server, emptied for this test."""
    if not redis_session.running:  # a previous test may have broken it
        redis_session.start()
    assert redis_session.command("FLUSHALL").startswith(b"+OK")
    return redis_session.url


@pytest.fixture
def redis_server_owned(tmp_path: Path) -> Iterator[RedisServer]:
    """A server of this test's own: it may kill and restart it."""
    server = RedisServer(redis_binary(), tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster3]:
    cluster = RedisCluster3(redis_binary(), tmp_path_factory.mktemp("redis-cluster"))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def redis_cluster_url(redis_cluster: RedisCluster3) -> str:
    """`redis+cluster://` to three masters, emptied for this test."""
    redis_cluster.flush()
    return redis_cluster.url


@pytest.fixture(scope="session")
def redis_sentinel_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSetup]:
    setup = SentinelSetup(redis_binary(), tmp_path_factory.mktemp("redis-sentinel"))
    setup.start()
    try:
        yield setup
    finally:
        setup.stop()


@pytest.fixture
def redis_sentinel_url(redis_sentinel_session: SentinelSetup) -> str:
    """`redis+sentinel://` to a master with a replica, emptied for this test."""
    redis_sentinel_session.flush()
    return redis_sentinel_session.url


@pytest.fixture
def redis_sentinel_owned(tmp_path: Path) -> Iterator[SentinelSetup]:
    """A Sentinel setup of this test's own: it may fail the master over."""
    setup = SentinelSetup(redis_binary(), tmp_path)
    setup.start()
    try:
        yield setup
    finally:
        setup.stop()
