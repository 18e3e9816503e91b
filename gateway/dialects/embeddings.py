"""OpenAI's embeddings request, validated: what `/v1/embeddings` accepts before it is passed, as sent, to the
deployment that serves it. `input` is a string, a list of strings, a token array or a list of token arrays
(at most 2048 items, none empty); `encoding_format` is `float` or `base64`; `dimensions` is a positive integer."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.core.errors import InvalidRequest
from gateway.dialects._validation import validated

__all__ = ["MAX_INPUTS", "embeddings_request", "token_estimate_body"]

MAX_INPUTS = 2048

_Item = Annotated[str, Field(min_length=1)] | Annotated[list[int], Field(min_length=1)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: Annotated[str, Field(min_length=1)]
    input: (
        Annotated[str, Field(min_length=1)]
        | Annotated[list[int], Field(min_length=1)]
        | Annotated[list[_Item], Field(min_length=1, max_length=MAX_INPUTS)]
    )
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: Annotated[int, Field(ge=1)] | None = None
    user: str | None = None


def embeddings_request(body: Any) -> dict[str, Any]:
    """The body, checked (400 naming the field otherwise); returned unchanged for passthrough."""
    request = validated(_Request, body)
    if isinstance(request.input, list) and not request.input:
        raise InvalidRequest("input must not be empty", param="input")
    result: dict[str, Any] = body
    return result


def token_estimate_body(body: dict[str, Any]) -> dict[str, Any]:
    """What the rate limiter estimates an embeddings call from: its input as the prompt and no output."""
    return {"messages": body.get("input"), "max_tokens": 1}
