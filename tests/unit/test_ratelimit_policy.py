"""Rate-limit header values (OpenAI's Go-style durations) and token estimates."""

from __future__ import annotations

import pytest

from gateway.ratelimit.policy import estimate_tokens, format_duration


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.0001, "1ms"),
        (0.012, "12ms"),
        (0.999, "999ms"),
        (1, "1s"),
        (1.5, "1.5s"),
        (12.34, "12.34s"),
        (59.9995, "1m0s"),
        (60, "1m0s"),
        (360, "6m0s"),
        (361.25, "6m1.25s"),
        (3600, "1h0m0s"),
        (3723, "1h2m3s"),
        (-1, "0s"),
    ],
)
def test_go_style_durations(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_estimate_uses_the_output_cap_times_n() -> None:
    body = {"messages": [{"role": "user", "content": "x" * 300}]}
    prompt, total = estimate_tokens(body, default_output_tokens=100)
    assert prompt >= 100  # bytes/3: pessimistic on purpose
    assert total == prompt + 100
    assert estimate_tokens({**body, "max_tokens": 7}, default_output_tokens=100)[1] == prompt + 7
    assert estimate_tokens({**body, "max_completion_tokens": 9, "max_tokens": 7, "n": 3})[1] == prompt + 27
