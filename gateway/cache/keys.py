"""The cache key: a digest of the canonical request, scoped so one tenant never receives another's
answer.

In the digest: the requested model name and every field that can change the answer (messages, tools,
tool_choice, response_format, sampling parameters, stop, seed, n, logprobs, unknown passthrough fields...),
the scope, and the strategy hints that steer routing (`x-ultra-priority`). Not in it: `stream` and
`stream_options` (a cached answer is replayed as a stream when asked), `user`, `metadata`, `store`,
`service_tier`, `prompt_cache_key`, `safety_identifier`.

Canonical form: nulls dropped, `stop: "x"` → `["x"]`, integral floats as integers (`1.0` hashes as `1`), keys
sorted, compact UTF-8 JSON. Message text is never rewritten. The digest is an HMAC when a secret is configured
(short prompts then cannot be confirmed by hashing guesses), else SHA-256.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import orjson

__all__ = ["EXCLUDED_FIELDS", "SCHEMA", "CacheKey", "Scope", "canonical", "make_key", "scope_id"]

SCHEMA = 1
"""Bump when the stored format or anything that shapes answers before the cache (translation, prompts) changes."""

Scope = Literal["key", "tenant", "global"]

EXCLUDED_FIELDS = frozenset(
    {"stream", "stream_options", "user", "metadata", "store", "service_tier", "prompt_cache_key", "safety_identifier"}
)


def scope_id(scope: Scope, *, key_name: str | None, tenant: str | None) -> str:
    """`k:<key name>`, `t:<tenant>` (a key without a tenant is its own tenant) or `g`. Never the secret."""
    if scope == "global":
        return "g"
    name = key_name or "anonymous"
    if scope == "tenant":
        return f"t:{tenant}" if tenant else f"k:{name}"
    return f"k:{name}"


def _normalize(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _normalize(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_normalize(v) for v in value]
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def canonical(body: Mapping[str, Any]) -> dict[str, Any]:
    """The output-changing part of a request body, normalized."""
    material = {k: v for k, v in body.items() if k not in EXCLUDED_FIELDS and v is not None}
    stop = material.get("stop")
    if isinstance(stop, str):
        material["stop"] = [stop]
    normalized: dict[str, Any] = _normalize(material)
    return normalized


@dataclass(frozen=True, slots=True)
class CacheKey:
    scope: str
    digest: str

    def value_key(self, prefix: str) -> str:
        # Value and lock share the `{scope:digest}` hash tag: one Cluster slot, spread across slots by digest.
        return f"{prefix}:v{SCHEMA}:cache:{{{self.scope}:{self.digest}}}"

    def lock_key(self, prefix: str) -> str:
        return f"{prefix}:v{SCHEMA}:cachelock:{{{self.scope}:{self.digest}}}"


def make_key(
    body: Mapping[str, Any],
    *,
    scope: str,
    hints: Mapping[str, str] | None = None,
    secret: bytes | None = None,
) -> CacheKey:
    material = {"v": SCHEMA, "scope": scope, "request": canonical(body), "hints": dict(sorted((hints or {}).items()))}
    payload = orjson.dumps(material, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    digest = hmac.new(secret, payload, hashlib.sha256) if secret else hashlib.sha256(payload)
    return CacheKey(scope, digest.hexdigest())
