"""The canonical cache key: what changes the answer is in it, what does not is not, scopes never collide."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.cache.keys import make_key, scope_id

BASE: dict[str, Any] = {"model": "ultra-simple", "messages": [{"role": "user", "content": "Hi"}], "temperature": 0}


def key(body: dict[str, Any], scope: str = "k:a", **kw: Any) -> str:
    return make_key(body, scope=scope, **kw).digest


@pytest.mark.parametrize(
    "ignored",
    [
        {"stream": True},
        {"stream": True, "stream_options": {"include_usage": True}},
        {"user": "someone"},
        {"metadata": {"trace": "1"}},
        {"store": True},
        {"service_tier": "auto"},
        {"seed": None},  # null = absent
    ],
)
def test_fields_that_do_not_change_the_answer_are_ignored(ignored: dict[str, Any]) -> None:
    assert key({**BASE, **ignored}) == key(BASE)


@pytest.mark.parametrize(
    "changed",
    [
        {"model": "ultra-quality"},
        {"messages": [{"role": "user", "content": "Hi "}]},  # text is never normalized
        {"messages": [{"role": "user", "content": "hi"}]},
        {"temperature": 0.5},
        {"top_p": 0.9},
        {"n": 2},
        {"max_tokens": 10},
        {"stop": ["x"]},
        {"seed": 1},
        {"tools": [{"type": "function", "function": {"name": "f"}}]},
        {"tool_choice": "none"},
        {"response_format": {"type": "json_object"}},
        {"logprobs": True},
        {"some_vendor_field": 1},  # unknown fields are passed upstream, so they may change the answer
    ],
)
def test_fields_that_change_the_answer_change_the_key(changed: dict[str, Any]) -> None:
    assert key({**BASE, **changed}) != key(BASE)


def test_equivalent_spellings_hash_the_same() -> None:
    assert key({**BASE, "stop": "x"}) == key({**BASE, "stop": ["x"]})
    assert key({**BASE, "temperature": 1}) == key({**BASE, "temperature": 1.0})
    assert key(dict(reversed(list(BASE.items())))) == key(BASE)


def test_scope_and_hints_and_secret_are_part_of_the_key() -> None:
    assert key(BASE, scope="k:a") != key(BASE, scope="k:b")
    assert key(BASE, hints={"x-ultra-priority": "cost"}) != key(BASE)
    assert key(BASE, secret=b"s1") != key(BASE, secret=b"s2") != key(BASE)


def test_scope_ids() -> None:
    assert scope_id("key", key_name="team-a", tenant="acme") == "k:team-a"
    assert scope_id("tenant", key_name="team-a", tenant="acme") == "t:acme"
    assert scope_id("tenant", key_name="team-a", tenant=None) == "k:team-a"  # no tenant: its own
    assert scope_id("global", key_name="team-a", tenant="acme") == "g"


def test_value_and_lock_share_one_cluster_slot_tag() -> None:
    k = make_key(BASE, scope="k:a")
    value, lock = k.value_key("ugw"), k.lock_key("ugw")
    tag = value[value.index("{") : value.index("}") + 1]
    assert tag == lock[lock.index("{") : lock.index("}") + 1]
    assert k.digest in tag
