"""The admin API's client, for `ultra-gateway keys`: one HTTP call with the admin key, the JSON answer back."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

__all__ = ["AdminCallFailed", "call_admin"]


class AdminCallFailed(Exception):
    """The gateway answered with an error (its message), or could not be reached."""


def call_admin(base: str, method: str, path: str, admin_key: str, body: Any = None, timeout_s: float = 10.0) -> Any:
    if not base.startswith(("http://", "https://")):
        raise AdminCallFailed(f"{base}: the URL must start with http:// or https://")
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
        base.rstrip("/") + path,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"authorization": f"Bearer {admin_key}", "content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read())["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = f"HTTP {exc.code}"
        raise AdminCallFailed(message) from None
    except (OSError, TimeoutError) as exc:
        raise AdminCallFailed(f"{base}: {exc}") from None
