"""Redis URLs: one server, a master behind Sentinel, a Cluster; bad ones are config errors naming no secret."""

from __future__ import annotations

import pytest

from gateway._redis_urls import RedisTarget, parse_redis_url, redacted
from gateway.config import ConfigError, parse_settings

PROVIDERS = "providers: [{name: m, kind: mock, models: [{id: x}]}]\n"
SECRET = "s3cr%40t-pass"


def test_one_server_urls_are_left_to_redis_py() -> None:
    for url in ("redis://h:6379/0", "rediss://u:p@h:6380/2", "unix:///run/redis.sock"):
        assert parse_redis_url(url) == RedisTarget("single", url)


def test_sentinel_url_lists_sentinels_the_service_and_the_db() -> None:
    url = f"redis+sentinel://app:{SECRET}@s1:26380,s2,[::1]:26381/my-master/3"
    target = parse_redis_url(url)
    assert target.mode == "sentinel"
    assert target.nodes == (("s1", 26380), ("s2", 26379), ("::1", 26381))
    assert (target.service, target.db, target.username, target.password) == ("my-master", 3, "app", "s3cr@t-pass")
    assert redacted(url) == "s1:26380,s2:26379,::1:26381/my-master"


def test_cluster_url_lists_startup_nodes() -> None:
    url = f"redis+cluster://:{SECRET}@n1:7000,n2:7001"
    target = parse_redis_url(url)
    assert (target.mode, target.nodes, target.db, target.password) == (
        "cluster",
        (("n1", 7000), ("n2", 7001)),
        0,
        "s3cr@t-pass",
    )
    assert redacted(url) == "n1:7000,n2:7001 (cluster)"
    assert parse_redis_url("redis+cluster://n1").nodes == (("n1", 6379),)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://x", "must be a redis://"),
        (f"redis+sentinel://:{SECRET}@s1:26379", "needs the master's service name"),
        (f"redis+sentinel://:{SECRET}@s1/mymaster/x", "the database is a number"),
        (f"redis+cluster://:{SECRET}@n1:7000/1", "only database 0"),
        (f"redis+cluster://:{SECRET}@n1:99999", "out of range"),
        (f"redis+cluster://:{SECRET}@n1,,n2", "is not a host"),
        (f"redis+cluster://:{SECRET}@", "at least one host"),
    ],
)
def test_bad_urls_are_config_errors_without_the_password(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        parse_redis_url(url)
    assert "s3cr" not in str(caught.value)
    for source in ("file", "env"):
        text = PROVIDERS + (f"cache: {{redis_url: '{url}'}}\n" if source == "file" else "")
        with pytest.raises(ConfigError) as config_error:
            parse_settings(text, env={"REDIS_URL": url} if source == "env" else {})
        assert any(line.startswith("cache.redis_url: ") and message in line for line in config_error.value.errors)
        assert "s3cr" not in str(config_error.value.errors)


def test_settings_accept_sentinel_and_cluster_urls() -> None:
    text = PROVIDERS + "cache: {redis_url: 'redis+cluster://n1:7000'}\nrate_limits: {backend: redis}\n"
    settings = parse_settings(text, env={"REDIS_URL": "redis+sentinel://s1/mymaster"})
    assert settings.cache.redis_url == "redis+cluster://n1:7000"
    assert settings.rate_limits.redis_url == "redis+sentinel://s1/mymaster"
