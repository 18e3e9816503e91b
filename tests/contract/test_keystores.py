"""One contract for both runtime key stores (memory; Redis: one server, a Cluster, Sentinel): create, rotate,
revoke, the version that tells replicas to reload, and what the authenticator makes of the records."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway._redis import RedisEndpoint
from gateway.auth import Authenticator
from gateway.core.errors import AuthenticationFailed, InvalidRequest, NotFound
from gateway.keystore import KeySpec, KeyStore, MemoryKeyStore, RedisKeyStore, digest_hex, principal_of_record

pytestmark = pytest.mark.timeout(30)

REDIS_URL_FIXTURE = {"redis": "redis_url", "redis-cluster": "redis_cluster_url", "redis-sentinel": "redis_sentinel_url"}


@pytest.fixture(params=["memory", *(pytest.param(name, marks=pytest.mark.redis) for name in REDIS_URL_FIXTURE)])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[KeyStore]:
    if request.param == "memory":
        keys: KeyStore = MemoryKeyStore()
    else:
        url = request.getfixturevalue(REDIS_URL_FIXTURE[request.param])
        keys = RedisKeyStore(RedisEndpoint(url, timeout_s=1.0, decode_responses=True))
    yield keys
    await keys.aclose()


def authenticator(records: dict[str, dict[str, object]], now: float = 1000.0) -> Authenticator:
    auth = Authenticator([], admin=b"x" * 32, clock=lambda: now)
    auth.replace_runtime({bytes.fromhex(d): principal_of_record(r) for d, r in records.items()})
    return auth


async def test_create_rotate_revoke(store: KeyStore) -> None:
    start = await store.version()
    spec = KeySpec(name="bot", tenant="acme", models=["m/*"], rpm=5, budget={"usd": 2, "period": "day"})  # type: ignore[arg-type]
    await store.create(spec, digest_hex("secret-1"))
    with pytest.raises(InvalidRequest):
        await store.create(spec, digest_hex("secret-2"))
    version, records = await store.load()
    assert version > start
    assert list(records) == [digest_hex("secret-1")]
    principal = authenticator(records).authenticate("Bearer secret-1")
    assert (principal.name, principal.tenant, principal.models, principal.rpm) == ("bot", "acme", ("m/*",), 5)
    assert principal.budget is not None
    assert principal.budget.usd == 2
    record = await store.rotate("bot", digest_hex("secret-2"))
    assert record["name"] == "bot"
    _, records = await store.load()
    auth = authenticator(records)
    assert auth.authenticate("Bearer secret-2").name == "bot"
    with pytest.raises(AuthenticationFailed):
        auth.authenticate("Bearer secret-1")
    await store.revoke("bot")
    with pytest.raises(NotFound):
        await store.revoke("bot")
    with pytest.raises(NotFound):
        await store.rotate("bot", digest_hex("secret-3"))
    version_after, records = await store.load()
    assert records == {}
    assert version_after > version


async def test_expired_keys_are_refused(store: KeyStore) -> None:
    await store.create(KeySpec(name="old", expires_at=999.0), digest_hex("s"))
    _, records = await store.load()
    with pytest.raises(AuthenticationFailed, match="expired"):
        authenticator(records, now=1000.0).authenticate("Bearer s")
    assert authenticator(records, now=998.0).authenticate("Bearer s").name == "old"
