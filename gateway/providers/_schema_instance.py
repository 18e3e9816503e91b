"""A minimal instance of a JSON Schema, so the mock provider can answer `response_format: json_schema` and call
tools with arguments their schemas accept. Covers what structured-output schemas use: objects (their required
properties, or all of them when none are marked), strings (with `format`, `minLength`, `pattern`-free), numbers
and integers (within their bounds), booleans, null, arrays (`minItems` items), `enum`, `const`, `anyOf`/`oneOf`
(the first branch that is not null), `allOf` (merged), type lists, and local `$ref`s (`#/$defs/...`)."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["instance_of"]

_MAX_DEPTH = 12  # a recursive schema (a tree of itself) stops here with the smallest value its type allows

_FORMATS = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "00:00:00Z",
    "email": "user@example.com",
    "uri": "https://example.com",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "ipv4": "127.0.0.1",
}


def _resolve(ref: str, root: dict[str, Any]) -> dict[str, Any]:
    node: Any = root
    if not ref.startswith("#"):
        return {}
    for part in ref.lstrip("#").strip("/").split("/"):
        if not part:
            continue
        node = node.get(part.replace("~1", "/").replace("~0", "~")) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else {}


def _number(schema: dict[str, Any], integer: bool) -> int | float:
    low = schema.get("minimum")
    if low is None and schema.get("exclusiveMinimum") is not None:
        low = schema["exclusiveMinimum"] + (1 if integer else 0.5)
    high = schema.get("maximum")
    if high is None and schema.get("exclusiveMaximum") is not None:
        high = schema["exclusiveMaximum"] - (1 if integer else 0.5)
    value: float = 0
    if low is not None:
        value = max(value, low)
    if high is not None and value > high:
        value = high
    if integer:
        return math.ceil(value) if low is not None else int(value)
    return value


def _string(schema: dict[str, Any], name: str) -> str:
    fmt = schema.get("format")
    if isinstance(fmt, str) and fmt in _FORMATS:
        return _FORMATS[fmt]
    text = name or "text"
    low = schema.get("minLength")
    if isinstance(low, int) and len(text) < low:
        text = text + "x" * (low - len(text))
    high = schema.get("maxLength")
    if isinstance(high, int):
        text = text[:high]
    return text


def _instance(schema: Any, root: dict[str, Any], name: str, depth: int) -> Any:
    if not isinstance(schema, dict) or depth > _MAX_DEPTH:
        return None
    if "$ref" in schema:
        return _instance(
            {**_resolve(str(schema["$ref"]), root), **{k: v for k, v in schema.items() if k != "$ref"}},
            root,
            name,
            depth + 1,
        )
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        branches = schema.get(key)
        if isinstance(branches, list) and branches:
            chosen = next((b for b in branches if isinstance(b, dict) and b.get("type") != "null"), branches[0])
            return _instance(chosen, root, name, depth + 1)
    if isinstance(schema.get("allOf"), list):
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            part = _resolve(part["$ref"], root) if isinstance(part, dict) and "$ref" in part else part
            if isinstance(part, dict):
                merged.setdefault("properties", {}).update(part.get("properties") or {})
                merged["required"] = [*merged.get("required", []), *(part.get("required") or [])]
                for k, v in part.items():
                    merged.setdefault(k, v)
        return _instance(merged, root, name, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    if kind == "object":
        properties = schema.get("properties") or {}
        required = schema.get("required")
        names = required if isinstance(required, list) else list(properties)
        return {n: _instance(properties.get(n, {}), root, n, depth + 1) for n in names}
    if kind == "array":
        low = schema.get("minItems")
        count = low if isinstance(low, int) else 1
        items = schema.get("items")
        if isinstance(schema.get("prefixItems"), list):
            return [_instance(i, root, name, depth + 1) for i in schema["prefixItems"]]
        return [_instance(items if isinstance(items, dict) else {}, root, name, depth + 1) for _ in range(count)]
    if kind in ("number", "integer"):
        return _number(schema, kind == "integer")
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return _string(schema, name)


def instance_of(schema: Any) -> Any:
    """A small value that validates against `schema` (for the schema features listed above)."""
    root = schema if isinstance(schema, dict) else {}
    return _instance(root, root, "", 0)
