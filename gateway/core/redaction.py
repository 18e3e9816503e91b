"""Scrubbing of text that came from an upstream (error bodies, in-band error events) before it goes anywhere
a client, a log or a span can see it.

Two nets: every configured upstream key (registered by the dialect that holds it) is removed whole, and so is
any fragment of one at least `_MIN_FRAGMENT` characters long; and anything shaped like a credential is
removed whatever its origin: `Bearer <token>`, `sk-...`/`key-...`/`AIza...` keys, long hex runs and long
mixed-case base64url runs. Redaction always runs on the whole text, before any truncation, so a key cut at the
truncation point can never survive as a fragment.
"""

from __future__ import annotations

import re
import threading

__all__ = ["bounded", "redact", "register_secret"]

_REDACTED = "[redacted]"
_MIN_SECRET = 8  # shorter "keys" (test fixtures, placeholders) would redact ordinary words
_MIN_FRAGMENT = 12
_SCAN_LIMIT = 64 * 1024  # upstream text longer than this is cut (after the cut, it is redacted and cut again)

_secrets: set[str] = set()
_ordered: tuple[str, ...] = ()
_lock = threading.Lock()

_BEARER = re.compile(r"(?i)\b(bearer|basic|token)\s+[A-Za-z0-9._~+/=-]{6,}")
_KEYLIKE = re.compile(r"\b(sk-|sk_|key-|AIza|xox[abp]-|ghp_|gsk_)[A-Za-z0-9_\-]{6,}")
_RUN = re.compile(r"[A-Za-z0-9_\-+/]{12,}")
_HEX = re.compile(r"[0-9a-fA-F]{24,}")


def register_secret(secret: str | None) -> None:
    """Remember an upstream key so that it (or a fragment of it) is removed from every upstream text."""
    global _ordered
    if not secret or len(secret) < _MIN_SECRET:
        return
    with _lock:
        if secret not in _secrets:
            _secrets.add(secret)
            _ordered = tuple(sorted(_secrets, key=len, reverse=True))


def _credential_like(token: str, secrets: tuple[str, ...]) -> bool:
    if len(token) >= _MIN_FRAGMENT and any(token in s for s in secrets):
        return True  # a piece of a configured key
    for hex_run in _HEX.findall(token):
        if any(c.isdigit() for c in hex_run) and any(c.isalpha() for c in hex_run):
            return True
    if len(token) >= 24:
        # Random base64/base64url: upper, lower and digits all present, and few separators. Model names and
        # identifiers ("meta-llama-3-1-405b-instruct") are lowercase and word-separated.
        upper = sum(c.isupper() for c in token)
        lower = sum(c.islower() for c in token)
        digits = sum(c.isdigit() for c in token)
        separators = sum(c in "-_" for c in token)
        if upper >= 2 and lower >= 2 and digits >= 2 and separators * 6 < len(token):
            return True
    return False


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """`text` without configured keys, the given `secrets`, or anything shaped like a credential."""
    if len(text) > _SCAN_LIMIT:
        text = text[:_SCAN_LIMIT]
    known = tuple(s for s in secrets if s and len(s) >= _MIN_SECRET) + _ordered
    for secret in known:
        if secret in text:
            text = text.replace(secret, _REDACTED)
    for secret in secrets:  # short given secrets too, whole only
        if secret and secret in text:
            text = text.replace(secret, _REDACTED)
    text = _BEARER.sub(lambda m: f"{m.group(1)} {_REDACTED}", text)
    text = _KEYLIKE.sub(_REDACTED, text)
    return _RUN.sub(lambda m: _REDACTED if _credential_like(m.group(0), known) else m.group(0), text)


def bounded(text: str, limit: int = 256) -> str:
    """Client-supplied text echoed in a message or a log line, cut to `limit` characters with an ellipsis."""
    return text if len(text) <= limit else text[:limit] + "…"
