"""API keys, framework-free: the HTTP edge passes the `Authorization` header in, gets a `Principal`
out or an error to render.

- A key is configured as `key` (inline, for tests and demos), `key_env` (read from the environment at start) or
  `key_sha256` (only the digest in the file). All three become a SHA-256 digest in memory; a presented key is
  hashed and compared with `hmac.compare_digest` against every configured digest (no early exit), so timing
  reveals nothing about which key or how much of it matched.
- Missing or wrong key: 401 `invalid_api_key`. Model outside the key's globs (`fnmatch`, case-sensitive): 403
  `model_not_allowed`. No keys configured: every request is the anonymous principal (the CLI warns loudly).
- Nothing here logs, and no message contains a presented or configured key.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from gateway.core.errors import AuthenticationFailed, ModelNotAllowed
from gateway.core.redaction import bounded
from gateway.settings import AuthSettings, BudgetSettings, KeySettings

__all__ = ["ANONYMOUS", "Authenticator", "Principal"]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, by name. `limits` are the key's own requests/tokens per minute."""

    name: str
    tenant: str | None = None
    models: tuple[str, ...] = ("*",)
    rpm: int | None = None
    tpm: int | None = None
    anonymous: bool = False
    budget: BudgetSettings | None = None
    expires_at: float | None = None  # Unix time; runtime keys may expire

    def may_use(self, model: str) -> bool:
        if self.models == ("*",):  # the default: no glob matching on every request
            return True
        return any(fnmatch.fnmatchcase(model, pattern) for pattern in self.models)


ANONYMOUS = Principal("anonymous", anonymous=True)


def _digest(key: KeySettings, env: Mapping[str, str]) -> bytes:
    if key.key_sha256 is not None:
        return bytes.fromhex(key.key_sha256)
    if key.key is not None:
        secret = key.key.get_secret_value()
    else:
        assert key.key_env is not None  # exactly one source: validated by KeySettings
        secret = env.get(key.key_env, "")
        if not secret:
            raise ValueError(f"auth key {key.name!r}: environment variable {key.key_env} is not set")
    return hashlib.sha256(secret.encode()).digest()


class Authenticator:
    """The static keys of the file, compared in constant time, plus the keys created at runtime (gateway/keystore.py),
    found by their digest, and the admin key of the admin API."""

    def __init__(
        self,
        keys: Sequence[tuple[bytes, Principal]],
        *,
        admin: bytes | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = list(keys)
        self._runtime: dict[bytes, Principal] = {}
        self._admin = admin
        self._clock = clock

    @property
    def static_names(self) -> list[str]:
        return [p.name for _, p in self._keys]

    @property
    def admin_enabled(self) -> bool:
        return self._admin is not None

    def replace_runtime(self, keys: Mapping[bytes, Principal]) -> None:
        """Swap the runtime keys in one assignment (a request sees the old set or the new one, never half)."""
        self._runtime = dict(keys)

    @property
    def runtime(self) -> Mapping[bytes, Principal]:
        return self._runtime

    def is_admin(self, authorization: str | None) -> bool:
        scheme, _, presented = (authorization or "").strip().partition(" ")
        if self._admin is None or scheme.lower() != "bearer" or not presented.strip():
            return False
        return hmac.compare_digest(hashlib.sha256(presented.strip().encode()).digest(), self._admin)

    @classmethod
    def from_settings(cls, settings: AuthSettings, env: Mapping[str, str] | None = None) -> Authenticator:
        env = os.environ if env is None else env
        admin = None
        if settings.admin_key_env is not None:
            secret = env.get(settings.admin_key_env, "")
            if not secret:
                raise ValueError(f"auth.admin_key_env: environment variable {settings.admin_key_env} is not set")
            admin = hashlib.sha256(secret.encode()).digest()
        return cls(
            [
                (
                    _digest(k, env),
                    Principal(k.name, k.tenant, tuple(k.models), k.rpm, k.tpm, budget=k.budget),
                )
                for k in settings.keys
            ],
            admin=admin,
        )

    @property
    def open(self) -> bool:
        """No keys configured and no admin API to create any: everyone is let in."""
        return not self._keys and self._admin is None

    def authenticate(self, authorization: str | None) -> Principal:
        """The principal behind an `Authorization: Bearer KEY` header, or AuthenticationFailed."""
        if self.open:
            return ANONYMOUS
        scheme, _, presented = (authorization or "").strip().partition(" ")
        presented = presented.strip()
        if scheme.lower() != "bearer" or not presented:
            raise AuthenticationFailed(
                "You didn't provide an API key. Send it as 'Authorization: Bearer YOUR_KEY'.", param=None
            )
        digest = hashlib.sha256(presented.encode()).digest()
        found: Principal | None = None
        for candidate, principal in self._keys:
            if hmac.compare_digest(digest, candidate) and found is None:
                found = principal
        if found is None:
            found = self._runtime.get(digest)
        if found is None:
            raise AuthenticationFailed("Incorrect API key provided.")
        if found.expires_at is not None and self._clock() >= found.expires_at:
            raise AuthenticationFailed("This API key has expired.")
        return found

    @staticmethod
    def authorize(principal: Principal, model: str) -> None:
        """403 unless the key's model globs allow `model`."""
        if not principal.may_use(model):
            message = f"The key '{principal.name}' is not allowed to use the model '{bounded(model)}'."
            raise ModelNotAllowed(message, param="model")
