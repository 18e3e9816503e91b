"""SSE decoding: any byte split of a stream decodes to the same events."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.providers._sse import SSEDecoder, SSEEvent

STREAM = (
    b": ping\n\n"
    b'data: {"a": 1}\n\n'
    b'event: message_start\r\ndata: {"b": "\xc3\xa9\xe2\x82\xac"}\r\n\r\n'
    b"data: line one\rdata: line two\r\r"
    b"id: 7\ndata:no-space\n\n"
    b"data: [DONE]\n\n"
)
EXPECTED = [
    SSEEvent('{"a": 1}'),
    SSEEvent('{"b": "\u00e9\u20ac"}', event="message_start"),
    SSEEvent("line one\nline two"),
    SSEEvent("no-space", id="7"),
    SSEEvent("[DONE]", id="7"),  # the last event id persists (WHATWG)
]


def decode(pieces: list[bytes]) -> list[SSEEvent]:
    decoder = SSEDecoder()
    events: list[SSEEvent] = []
    for piece in pieces:
        events += decoder.feed(piece)
    return events


def test_whole_stream_decodes_every_line_ending_and_field() -> None:
    assert decode([STREAM]) == EXPECTED


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_any_byte_split_decodes_to_the_same_events(cuts: list[int]) -> None:
    points = sorted(set(cuts))
    pieces = [STREAM[a:b] for a, b in zip([0, *points], [*points, len(STREAM)], strict=True)]
    assert decode(pieces) == EXPECTED


def test_comment_only_keepalive_and_event_without_data_produce_nothing() -> None:
    assert decode([b": keep-alive\n\nevent: ping\n\n"]) == []


def test_incomplete_event_at_end_is_not_emitted() -> None:
    assert decode([b'data: {"partial": true}\n']) == []
