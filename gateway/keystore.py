"""API keys created at runtime (the admin API), next to the static keys of the configuration file.

Only the SHA-256 of a key is stored, with what the key may do (models, limits, budget, tenant, expiry). On Redis
(the rate limits' Redis: every replica sees the same keys) the store is three keys in one hash slot: records by
digest, digests by name, and a version counter that every change increments in the same Lua script. Each replica
polls the version (one GET every `POLL_S`) and reloads the records when it moved, so a created, revoked or
rotated key takes effect everywhere within a second; a replica that cannot reach Redis keeps the keys it last
saw. The memory store serves one process (a single-worker gateway without Redis).

The secret of a new key is shown once, in the admin API's answer, and never stored, logged or listed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from typing import Any, Protocol

import orjson
from pydantic import BaseModel, ConfigDict, Field

from gateway._redis import RedisEndpoint
from gateway.auth import Authenticator, Principal
from gateway.core.errors import InvalidRequest, NotFound, ServiceUnavailable
from gateway.settings import AuthSettings, BudgetSettings, RateLimitSettings

__all__ = [
    "POLL_S",
    "KeySpec",
    "KeyStore",
    "MemoryKeyStore",
    "RedisKeyStore",
    "build_keystore",
    "new_secret",
    "principal_of_record",
    "refresh",
    "start_watching",
    "watch",
]

log = logging.getLogger("ultra_gateway")

POLL_S = 0.25
KEY_PREFIX = "sk-ugw-"

Records = dict[str, dict[str, Any]]  # hex digest -> record


class KeySpec(BaseModel):
    """What the admin API accepts for a new key (the same fields as a key of the file, without the secret)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@-]*$")
    tenant: str | None = Field(None, min_length=1, max_length=128)
    models: list[str] = Field(default_factory=lambda: ["*"], max_length=100)
    rpm: int | None = Field(None, ge=1)
    tpm: int | None = Field(None, ge=1)
    budget: BudgetSettings | None = None
    expires_at: float | None = Field(None, gt=0, description="Unix time after which the key is refused.")


def new_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def digest_hex(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def principal_of_record(record: Mapping[str, Any]) -> Principal:
    budget = record.get("budget")
    return Principal(
        str(record["name"]),
        record.get("tenant"),
        tuple(record.get("models") or ("*",)),
        record.get("rpm"),
        record.get("tpm"),
        budget=BudgetSettings.model_validate(budget) if budget else None,
        expires_at=record.get("expires_at"),
    )


class KeyStore(Protocol):
    name: str

    async def create(self, spec: KeySpec, digest: str) -> None: ...

    async def revoke(self, name: str) -> None: ...

    async def rotate(self, name: str, digest: str) -> dict[str, Any]: ...

    async def load(self) -> tuple[int, Records]: ...

    async def version(self) -> int: ...

    async def aclose(self) -> None: ...


def _record(spec: KeySpec) -> dict[str, Any]:
    return {**spec.model_dump(mode="json"), "created_at": time.time()}


class MemoryKeyStore:
    name = "memory"

    def __init__(self) -> None:
        self._records: Records = {}
        self._by_name: dict[str, str] = {}
        self._version = 0

    async def create(self, spec: KeySpec, digest: str) -> None:
        if spec.name in self._by_name:
            raise _exists(spec.name)
        self._records[digest] = _record(spec)
        self._by_name[spec.name] = digest
        self._version += 1

    async def revoke(self, name: str) -> None:
        digest = self._by_name.pop(name, None)
        if digest is None:
            raise _unknown(name)
        self._records.pop(digest, None)
        self._version += 1

    async def rotate(self, name: str, digest: str) -> dict[str, Any]:
        old = self._by_name.get(name)
        if old is None:
            raise _unknown(name)
        record = self._records.pop(old)
        self._records[digest] = record
        self._by_name[name] = digest
        self._version += 1
        return record

    async def load(self) -> tuple[int, Records]:
        return self._version, dict(self._records)

    async def version(self) -> int:
        return self._version

    async def aclose(self) -> None:
        return None


LUA = """
local mode = ARGV[1]
if mode == 'create' then
  if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 1 then return 0 end
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
  redis.call('HSET', KEYS[1], ARGV[3], ARGV[4])
  redis.call('INCR', KEYS[3])
  return 1
end
if mode == 'revoke' then
  local digest = redis.call('HGET', KEYS[2], ARGV[2])
  if not digest then return 0 end
  redis.call('HDEL', KEYS[1], digest)
  redis.call('HDEL', KEYS[2], ARGV[2])
  redis.call('INCR', KEYS[3])
  return 1
end
if mode == 'rotate' then
  local digest = redis.call('HGET', KEYS[2], ARGV[2])
  if not digest then return false end
  local record = redis.call('HGET', KEYS[1], digest)
  redis.call('HDEL', KEYS[1], digest)
  redis.call('HSET', KEYS[1], ARGV[3], record)
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
  redis.call('INCR', KEYS[3])
  return record
end
return {tonumber(redis.call('GET', KEYS[3]) or '0'), redis.call('HGETALL', KEYS[1])}
"""


class RedisKeyStore:
    name = "redis"

    def __init__(self, endpoint: RedisEndpoint, *, prefix: str = "ugw") -> None:
        self._endpoint = endpoint
        base = f"{prefix}:keys:{{keys}}:"
        self._keys = [base + "by_digest", base + "by_name", base + "version"]
        self._version_key = self._keys[2]
        self._script = endpoint.client.register_script(LUA)

    async def _run(self, *args: Any) -> Any:
        keys = self._keys
        return await self._endpoint.call(lambda client: self._script(keys=keys, args=list(args), client=client))

    async def create(self, spec: KeySpec, digest: str) -> None:
        if not await self._run("create", spec.name, digest, orjson.dumps(_record(spec)).decode()):
            raise _exists(spec.name)

    async def revoke(self, name: str) -> None:
        if not await self._run("revoke", name):
            raise _unknown(name)

    async def rotate(self, name: str, digest: str) -> dict[str, Any]:
        record = await self._run("rotate", name, digest)
        if record is None:
            raise _unknown(name)
        loaded: dict[str, Any] = orjson.loads(record)
        return loaded

    async def load(self) -> tuple[int, Records]:
        version, flat = await self._run("load")
        records = {flat[i]: orjson.loads(flat[i + 1]) for i in range(0, len(flat), 2)}
        return int(version), records

    async def version(self) -> int:
        key = self._version_key
        value = await self._endpoint.call(lambda client: client.get(key))
        return int(value or 0)

    async def aclose(self) -> None:
        await self._endpoint.aclose()


def _exists(name: str) -> InvalidRequest:
    return InvalidRequest(f"A key named '{name}' exists already.", param="name", code="key_exists")


def _unknown(name: str) -> NotFound:
    return NotFound(f"No runtime key is named '{name}'.")


async def watch(
    store: KeyStore,
    apply: Callable[[Records], None],
    *,
    poll_s: float = POLL_S,
    ready: asyncio.Event | None = None,
) -> None:
    """Keep `apply` fed with the store's keys: load them now, then whenever the version moves. Runs until
    cancelled; Redis trouble keeps the last keys and is retried on the next poll."""
    seen: int | None = None
    warned = False
    while True:
        try:
            version = await store.version()
            if version != seen:
                seen, records = await store.load()
                apply(records)
            warned = False
        except ServiceUnavailable as exc:
            if not warned:
                log.warning("runtime keys: cannot reach the key store (%s); keeping the keys last seen", exc.message)
                warned = True
        except Exception:
            if not warned:
                log.exception("runtime keys: reloading failed; keeping the keys last seen")
                warned = True
        if ready is not None:
            ready.set()
        await asyncio.sleep(poll_s)


def build_keystore(auth: AuthSettings, limits: RateLimitSettings) -> KeyStore | None:
    """The runtime key store, when the admin API is on: the rate limits' Redis, else this process's memory."""
    if auth.admin_key_env is None:
        return None
    if limits.backend == "redis" and limits.redis_url:
        return RedisKeyStore(
            RedisEndpoint(limits.redis_url, timeout_s=max(limits.timeout_s, 0.5), decode_responses=True),
            prefix=limits.key_prefix,
        )
    return MemoryKeyStore()


def _applier(get_auth: Callable[[], Authenticator]) -> Callable[[Records], None]:
    def apply(records: Records) -> None:
        get_auth().replace_runtime({bytes.fromhex(d): principal_of_record(r) for d, r in records.items()})

    return apply


class _HasAuth(Protocol):
    @property
    def auth(self) -> Authenticator: ...


async def refresh(store: KeyStore, holder: _HasAuth) -> None:
    """Load the keys now (after a change made through this process, so it takes effect here at once)."""
    _, records = await store.load()
    _applier(lambda: holder.auth)(records)


async def start_watching(
    store: KeyStore, get_auth: Callable[[], Authenticator], stack: AsyncExitStack, *, poll_s: float = POLL_S
) -> None:
    """Load the runtime keys before serving (bounded wait), then keep them current in a background task that
    `stack` cancels at close. `get_auth` is called on every change: a reload may swap the authenticator."""
    ready = asyncio.Event()
    task = asyncio.get_running_loop().create_task(watch(store, _applier(get_auth), poll_s=poll_s, ready=ready))

    async def stop() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    stack.push_async_callback(stop)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(ready.wait(), 2.0)
