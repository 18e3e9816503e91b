"""Incremental Server-Sent Events decoding (WHATWG `text/event-stream`), shared by every streaming dialect.

Bytes arrive split anywhere; `feed` returns the events completed so far. Lines end in `\\n`, `\\r` or `\\r\\n`
(a `\\r` at the end of a buffer waits for the next byte); `:` lines are comments; several `data:` lines join with
`\\n`; one space after the colon is dropped. UTF-8 is decoded per complete line, so a multi-byte character split
across reads is never broken.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["SSEDecoder", "SSEEvent"]


class SSEEvent(NamedTuple):  # a tuple: made for every event of every stream, and cheapest to make
    data: str
    event: str | None = None
    id: str | None = None


class SSEDecoder:
    __slots__ = ("_buffer", "_data", "_event", "_id")

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[str] = []
        self._event: str | None = None
        self._id: str | None = None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        buffer = self._buffer + chunk if self._buffer else chunk
        events: list[SSEEvent] = []
        if b"\r" not in buffer:  # the common case: plain \n line endings, `data:` lines and blank ones
            lines = buffer.split(b"\n")
            self._buffer = lines.pop()
            data = self._data
            for line in lines:
                if not line:
                    if data:
                        events.append(SSEEvent("\n".join(data), self._event, self._id))
                        data = self._data = []
                    self._event = None
                elif line.startswith(b"data:"):
                    data.append(line[6 if line[5:6] == b" " else 5 :].decode("utf-8", errors="replace"))
                else:
                    self._line(line, events)
                    data = self._data
            return events
        pos, size = 0, len(buffer)
        while pos < size:
            cr, lf = buffer.find(b"\r", pos), buffer.find(b"\n", pos)
            end = min(cr, lf) if cr >= 0 and lf >= 0 else max(cr, lf)
            if end < 0:
                break
            step = 1
            if buffer[end] == 0x0D:  # \r: maybe the first half of \r\n
                if end + 1 == size:
                    break
                if buffer[end + 1] == 0x0A:
                    step = 2
            self._line(buffer[pos:end], events)
            pos = end + step
        self._buffer = buffer[pos:]
        return events

    def _line(self, line: bytes, events: list[SSEEvent]) -> None:
        if not line:
            if self._data:
                events.append(SSEEvent("\n".join(self._data), self._event, self._id))
            self._data, self._event = [], None
            return
        if line[0] == 0x3A:  # ':' comment (keep-alive)
            return
        text = line.decode("utf-8", errors="replace")
        name, sep, value = text.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            self._id = value
