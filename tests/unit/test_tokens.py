"""The gateway's own token count, used when an upstream reports none."""

from __future__ import annotations

from gateway.core.tokens import chunk_tokens, estimate_completion, estimate_prompt, estimate_usage, text_tokens


def test_text_is_about_four_characters_a_token() -> None:
    assert [text_tokens(t) for t in ("", "abc", "abcd", "abcde", "x" * 400)] == [0, 1, 1, 2, 100]


def test_a_prompt_counts_its_messages_framing_images_and_tools() -> None:
    body = {
        "messages": [
            {"role": "system", "content": "Be brief."},  # 3 + 3
            {"role": "user", "content": [{"type": "text", "text": "What is this?"}, {"type": "image_url"}]},
        ],
        "tools": [{"type": "function", "function": {"name": "f"}}],
    }
    tools_json = '[{"type":"function","function":{"name":"f"}}]'  # 47 characters: 12 tokens
    assert estimate_prompt(body) == 3 + (3 + 3) + (3 + 4 + 765) + text_tokens(tools_json)
    assert text_tokens(tools_json) == 12


def test_answers_and_stream_deltas_count_text_and_tool_calls() -> None:
    message = {"content": "Hello there!", "tool_calls": [{"function": {"name": "f", "arguments": '{"q":1}'}}]}
    assert estimate_completion([{"message": message}]) == 3 + 2
    assert chunk_tokens({"choices": [{"delta": {"content": "Hi you"}}]}) == 2
    assert chunk_tokens({"choices": [], "usage": {}}) == 0


def test_an_estimate_is_marked_and_stays_marked_when_summed() -> None:
    usage = estimate_usage({"messages": [{"role": "user", "content": "hello"}]}, 7)
    assert usage.estimated
    assert (usage + usage).estimated
    assert "estimated" not in usage.to_dict()
