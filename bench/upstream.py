"""A fast fixed-answer OpenAI-compatible upstream for the benchmark: raw asyncio HTTP/1.1 with keep-alive.

`python bench/upstream.py PORT [DELAY_MS]`. Non-streaming requests get one fixed `chat.completion`; a body
containing `"stream":true` gets a fixed SSE stream (role, 8 content chunks, finish, usage, [DONE]). With
DELAY_MS the answer (or the first event) waits that long, so a slow model can be simulated.
"""

from __future__ import annotations

import asyncio
import sys

import orjson

ANSWER = orjson.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello there, this is a fixed answer."},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 9, "total_tokens": 18},
    }
)


def _chunk(delta: dict[str, object], finish: str | None = None, **extra: object) -> bytes:
    body = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **extra,
    }
    return b"data: " + orjson.dumps(body) + b"\n\n"


EVENTS = (
    [_chunk({"role": "assistant", "content": ""})]
    + [_chunk({"content": f"word{i} "}) for i in range(8)]
    + [
        _chunk({}, "stop"),
        b"data: "
        + orjson.dumps(
            {
                "id": "chatcmpl-bench",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "m",
                "choices": [],
                "usage": {"prompt_tokens": 9, "completion_tokens": 8, "total_tokens": 17},
            }
        )
        + b"\n\n",
        b"data: [DONE]\n\n",
    ]
)
STREAM = b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in EVENTS) + b"0\r\n\r\n"
JSON_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(ANSWER)
SSE_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length) if length else b""
            if delay:
                await asyncio.sleep(delay)
            if b'"stream":true' in body:
                writer.write(SSE_HEAD + STREAM)
            else:
                writer.write(JSON_HEAD + ANSWER)
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main(port: int, delay_ms: float) -> None:
    server = await asyncio.start_server(lambda r, w: handle(r, w, delay_ms / 1000), "127.0.0.1", port, backlog=1024)
    print(f"upstream listening on {port}", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) > 2 else 0.0))
