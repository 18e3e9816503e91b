"""No piece of an upstream key survives the trip from an upstream error body to a message: redaction runs on the
whole text before any truncation, removes configured keys and fragments of them, and anything shaped like a
credential."""

from __future__ import annotations

import pytest

from gateway.core.errors import UpstreamConnectionError
from gateway.core.redaction import bounded, redact
from gateway.providers.anthropic import AnthropicDialect
from gateway.providers.gemini import GeminiDialect
from gateway.providers.openai_compat import OpenAIDialect

HEX_KEY = "4f1c9a7be2d35068" * 4  # 64 hex characters, no recognisable prefix


def _leaks(text: str, secret: str, window: int = 12) -> list[str]:
    """Every `window`-long piece of `secret` that appears in `text`."""
    return [secret[i : i + window] for i in range(len(secret) - window + 1) if secret[i : i + window] in text]


@pytest.mark.parametrize("dialect", [OpenAIDialect, AnthropicDialect, GeminiDialect])
@pytest.mark.parametrize("offset", [0, 150, 170, 190, 199])
def test_a_key_cut_by_truncation_leaves_no_fragment(dialect: type, offset: int) -> None:
    # A non-JSON error page that echoes the key so that a 200-byte cut would land inside it.
    body = ("x" * offset + f" Authorization: {HEX_KEY} " + "y" * 400).encode()
    error = dialect(HEX_KEY).parse_error(500, {}, body)
    assert _leaks(error.message, HEX_KEY) == []
    assert _leaks(str(error), HEX_KEY) == []


def test_prefixless_keys_and_bearer_tokens_are_removed_without_being_configured() -> None:
    token = "Zx9QmR2vT7kLp4WnY8sD3fGh6JcB1aE5"
    text = f"auth header was Bearer {token}; raw {HEX_KEY}; key sk-proj-AbC123dEf456"
    out = redact(text)
    assert token not in out
    assert HEX_KEY[:24] not in out
    assert "AbC123" not in out
    assert "[redacted]" in out


def test_a_fragment_of_a_configured_key_is_removed() -> None:
    secret = "plainlowercasesecretvalue"  # not credential-shaped: only known because it is configured
    assert "lowercasesecret" in redact("leak: lowercasesecretval")
    assert "lowercasesecret" not in redact("leak: lowercasesecretval", (secret,))


def test_ordinary_upstream_text_is_kept() -> None:
    text = "The model anthropic/claude-3-5-sonnet-20241022 does not exist or you do not have access to it."
    assert redact(text) == text
    assert (
        redact("meta-llama-3-1-405b-instruct-turbo is overloaded") == "meta-llama-3-1-405b-instruct-turbo is overloaded"
    )


def test_every_upstream_error_message_is_scrubbed_whoever_built_it() -> None:
    error = UpstreamConnectionError(f"openai: reset after sending Bearer {HEX_KEY}")
    assert HEX_KEY[:12] not in error.message
    assert HEX_KEY[:12] not in str(error)


def test_bounded_cuts_long_client_text_with_an_ellipsis() -> None:
    assert bounded("a" * 10) == "a" * 10
    assert bounded("a" * 1_000_000) == "a" * 256 + "…"
