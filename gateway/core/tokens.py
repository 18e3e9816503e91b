"""Counting tokens when an upstream does not: the gateway's own estimate, so every call is billed, limited and
reported even when the upstream sends no usage (llama.cpp's server in streams, some proxies) or the call was
cut before its usage arrived.

The estimate is documented and deterministic: about four characters of text per token (the usual figure for
English with the GPT tokenizers), plus the per-message framing OpenAI's chat format adds (3 tokens a message,
3 to prime the reply). Tools count by the length of their JSON. An image part counts a flat 765 tokens (a
1024x1024 picture at high detail). A usage built here is marked `estimated`.

No tokenizer library is used: the well-kept one (tiktoken) downloads its vocabularies on first use, which a
gateway without internet access cannot do on its answer path.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from gateway.core.types import Chunk, Usage, text_of

__all__ = ["chunk_tokens", "estimate_completion", "estimate_prompt", "estimate_usage", "text_tokens"]

_CHARS_PER_TOKEN = 4
_PER_MESSAGE = 3
_REPLY_PRIMING = 3
_PER_IMAGE = 765


def text_tokens(text: str) -> int:
    return (len(text) + _CHARS_PER_TOKEN - 1) // _CHARS_PER_TOKEN


def estimate_prompt(body: Mapping[str, Any]) -> int:
    """The prompt of a chat request body: messages, their framing, and the tools offered."""
    total = _REPLY_PRIMING
    for message in body.get("messages") or ():
        if not isinstance(message, Mapping):
            continue
        total += _PER_MESSAGE + text_tokens(text_of(message.get("content")))
        content = message.get("content")
        if isinstance(content, list):
            total += _PER_IMAGE * sum(1 for p in content if isinstance(p, Mapping) and p.get("type") == "image_url")
        for call in message.get("tool_calls") or ():
            total += text_tokens(json.dumps(call.get("function") or {}, separators=(",", ":")))
    tools = body.get("tools")
    if tools:
        total += text_tokens(json.dumps(tools, separators=(",", ":")))
    return total


def estimate_completion(choices: Iterable[Mapping[str, Any]], *, key: str = "message") -> int:
    """The text and tool-call arguments of answer choices (`message`) or of stream deltas (`delta`)."""
    total = 0
    for choice in choices:
        part = choice.get(key) or {}
        total += text_tokens((part.get("content") or "") + (part.get("refusal") or ""))
        for call in part.get("tool_calls") or ():
            function = call.get("function") or {}
            total += text_tokens((function.get("name") or "") + (function.get("arguments") or ""))
    return total


def estimate_usage(body: Mapping[str, Any], completion_tokens: int) -> Usage:
    return Usage(estimate_prompt(body), completion_tokens, estimated=True)


def chunk_tokens(chunk: Chunk) -> int:
    """What one stream chunk adds to the answer."""
    return estimate_completion(chunk.get("choices") or (), key="delta")
