"""A fast fixed-answer OpenAI-compatible upstream for the benchmark: raw asyncio HTTP/1.1 with keep-alive.

`python bench/upstream.py PORT [DELAY_MS]`. Non-streaming requests get one fixed `chat.completion`; a body
containing `"stream":true` gets a fixed SSE stream of 16 events (role, 12 content chunks, finish, usage, [DONE]),
all in one write. With DELAY_MS the answer (or the first event) waits that long, so a slow model can be simulated.
A stream request for a model whose name starts with `paced` (the upstream model id the gateway sends, or the
client's `paced/...` that a passthrough forwards) is paced instead: one event every PACE_MS (2), each its own
write, so a proxy's added time to first event is measured on a stream that cannot arrive in one read.
"""

from __future__ import annotations

import asyncio
import re
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
    + [_chunk({"content": f"word{i} "}) for i in range(12)]
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
FRAMES = [b"%x\r\n%s\r\n" % (len(e), e) for e in EVENTS]
STREAM = b"".join(FRAMES) + b"0\r\n\r\n"
PACE_S = 0.002
_STREAM = re.compile(rb'"stream":\s*true')  # compact (orjson) or spaced (the openai SDK's json.dumps)
_PACED = re.compile(rb'"model":\s*"paced')
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
            streaming = _STREAM.search(body) is not None
            if streaming and _PACED.search(body):
                writer.write(SSE_HEAD)
                for frame in FRAMES:
                    writer.write(frame)
                    await asyncio.sleep(PACE_S)
                writer.write(b"0\r\n\r\n")
            elif streaming:
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
