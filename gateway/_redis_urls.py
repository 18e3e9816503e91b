"""Redis URLs for the three ways to reach Redis: one server, a Sentinel-managed master, a Cluster.

    redis://[[user]:password@]host[:port][/db]          rediss://… (TLS), unix:///path/to/socket
    redis+sentinel://[[user]:password@]host[:port][,host[:port]…]/service_name[/db]     (sentinel port 26379)
    redis+cluster://[[user]:password@]host[:port][,host[:port]…]                        (any nodes; port 6379)

The `redis+sentinel` and `redis+cluster` spellings are the ones the `limits` rate-limiting library (behind
Flask-Limiter and SlowAPI) uses. The user and password authenticate to the data nodes (the master, or every
cluster node); sentinels are asked without them. A cluster has one database, so no `/db` there.

Only the host list of a URL may appear in messages (`redacted`): never its user or password.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote, urlsplit

__all__ = ["RedisTarget", "parse_redis_url", "redacted"]

Mode = Literal["single", "sentinel", "cluster"]
_SCHEMES: dict[str, Mode] = {
    "redis": "single",
    "rediss": "single",
    "unix": "single",
    "redis+sentinel": "sentinel",
    "redis+cluster": "cluster",
}
_DEFAULT_PORT = {"sentinel": 26379, "cluster": 6379, "single": 6379}
_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(?::(\d{1,5}))?$")


@dataclass(frozen=True)
class RedisTarget:
    mode: Mode
    url: str  # single: the URL as given (redis-py parses it); otherwise the URL for error-free display only
    nodes: tuple[tuple[str, int], ...] = ()  # sentinel: the sentinels; cluster: the startup nodes
    service: str | None = None  # sentinel: the monitored master's name
    db: int = 0
    username: str | None = None
    password: str | None = None


def _split(url: str) -> tuple[str, str, str, str]:
    """scheme, userinfo (may be ''), host list, path: without urlsplit's single-host parsing."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError("must be a redis://, rediss://, unix://, redis+sentinel:// or redis+cluster:// URL")
    netloc, _, path = rest.partition("/")
    netloc = netloc.split("?", 1)[0]
    userinfo, at, hosts = netloc.rpartition("@")
    return scheme.lower(), userinfo if at else "", hosts, path.split("?", 1)[0]


def _nodes(hosts: str, default_port: int) -> tuple[tuple[str, int], ...]:
    nodes = []
    for item in hosts.split(","):
        match = _HOST.match(item.strip())
        if match is None:
            raise ValueError(f"{item.strip() or '(empty)'!r} is not a host or host:port")
        port = int(match.group(2) or default_port)
        if not 0 < port < 65536:
            raise ValueError(f"port {port} is out of range")
        nodes.append((match.group(1).strip("[]"), port))
    return tuple(nodes)


def parse_redis_url(url: str) -> RedisTarget:
    """The target a URL names, or ValueError with a message that never contains the credentials."""
    scheme, userinfo, hosts, path = _split(url)
    mode = _SCHEMES.get(scheme)
    if mode is None:
        raise ValueError("must be a redis://, rediss://, unix://, redis+sentinel:// or redis+cluster:// URL")
    if mode == "single":
        return RedisTarget("single", url)
    username, _, password = userinfo.partition(":") if userinfo else ("", "", "")
    if not hosts:
        raise ValueError(f"{scheme}:// needs at least one host")
    nodes = _nodes(hosts, _DEFAULT_PORT[mode])
    parts = [p for p in path.split("/") if p]
    db = 0
    service = None
    if mode == "sentinel":
        if not parts:
            raise ValueError("redis+sentinel:// needs the master's service name: redis+sentinel://host:26379/mymaster")
        service = unquote(parts[0])
        db_parts = parts[1:]
    else:
        db_parts = parts
    if len(db_parts) > 1 or (db_parts and not db_parts[0].isdigit()):
        raise ValueError(f"unexpected path /{'/'.join(parts)} (the database is a number)")
    if db_parts:
        db = int(db_parts[0])
    if mode == "cluster" and db != 0:
        raise ValueError("a Redis Cluster has only database 0")
    return RedisTarget(
        mode,
        url,
        nodes=nodes,
        service=service,
        db=db,
        username=unquote(username) or None,
        password=unquote(password) or None,
    )


def redacted(url: str) -> str:
    """What may appear in messages: `redis://user:secret@host:6379/0` → `host:6379`; several hosts are listed."""
    try:
        target = parse_redis_url(url)
    except ValueError:
        return "?"
    if target.mode == "single":
        try:
            parts = urlsplit(url)
            return f"{parts.hostname or '?'}:{parts.port or 6379}"
        except ValueError:
            return "?"
    hosts = ",".join(f"{h}:{p}" for h, p in target.nodes)
    return f"{hosts}/{target.service}" if target.mode == "sentinel" else f"{hosts} (cluster)"
