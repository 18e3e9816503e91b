"""What the dialects that build embeddings responses themselves share: the OpenAI response shape, and
`encoding_format: base64` (each vector as little-endian float32 bytes, base64-encoded, as OpenAI sends it)."""

from __future__ import annotations

import base64
import struct
from collections.abc import Sequence
from typing import Any

__all__ = ["embedding_response", "encoded"]


def encoded(vector: Sequence[float], encoding_format: Any) -> list[float] | str:
    if encoding_format == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return list(vector)


def embedding_response(
    vectors: Sequence[Sequence[float]], *, model: str, encoding_format: Any, prompt_tokens: int
) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": encoded(v, encoding_format)} for i, v in enumerate(vectors)
        ],
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }
