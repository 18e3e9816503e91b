"""One pydantic validation error → an `InvalidRequest` naming the field as a path (`messages[0].content`)."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from gateway.core.errors import InvalidRequest

__all__ = ["validated"]

M = TypeVar("M", bound=BaseModel)

_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "list", "dict", "none"})


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif "[" in part or part in _TYPE_TAGS or part.startswith(("function-", "constrained-")):
            continue  # pydantic's union-member tags are not fields
        else:
            out += f".{part}" if out else part
    return out


def validated(schema: type[M], body: Any) -> M:
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    try:
        return schema.model_validate(body)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        param = _path(tuple(first["loc"])) or None
        raise InvalidRequest(f"invalid value for '{param or 'body'}': {first['msg']}", param=param) from None
