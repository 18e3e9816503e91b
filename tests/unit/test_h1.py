"""The upstream HTTP/1.1 client (`gateway/providers/_h1.py`) driven directly against loopback servers that write
exact bytes: bodies by length, by chunks and by connection close, compressed bodies, interim answers, keep-alive
and its failures, the connection cap, timeouts, broken answers and back-pressure. Every test runs on asyncio's
loop and on uvloop (the gateway's).

A server's handler runs until the client closes its connection (or the handler ends it), and leaving `serve`
waits for every handler: a connection the pool leaks hangs the test until its timeout."""

from __future__ import annotations

import asyncio
import gc
import gzip
import logging
import shutil
import socket
import ssl
import struct
import subprocess
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import pytest

from gateway.providers._h1 import BadResponse, Pool, Response, _ssl_context

pytestmark = [pytest.mark.timeout(10), pytest.mark.uvloop]


class Peer:
    """The server's side of one accepted connection."""

    def __init__(self, upstream: Upstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.upstream = upstream
        self.index = upstream.accepted  # 0 for the first connection the server accepted
        self.reader = reader
        self.writer = writer

    async def request(self) -> bytes | None:
        """The next request, head and body, as received; None once the client closed the connection."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise
            return None
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        raw = head + await self.reader.readexactly(length)
        self.upstream.requests.append((self.index, raw))
        return raw

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def client_closed(self) -> None:
        """Until the client closes the connection (whatever else it sends is dropped)."""
        with suppress(ConnectionError):
            while await self.reader.read(1 << 16):
                pass

    def reset(self) -> None:
        """End the connection with a TCP reset rather than a close."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


Handler = Callable[[Peer], Awaitable[None]]


class Upstream:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.accepted = 0
        self.requests: list[tuple[int, bytes]] = []  # (connection index, raw request)
        self.port = 0
        self.scheme = "http"
        self.tasks: list[asyncio.Task[Any]] = []
        self.errors: list[BaseException] = []
        self._ended: dict[int, asyncio.Future[None]] = {}

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def ended(self, index: int) -> asyncio.Future[None]:
        """Done when the handler of connection `index` has returned and its socket is closed."""
        if index not in self._ended:
            self._ended[index] = asyncio.get_running_loop().create_future()
        return self._ended[index]

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.append(task)
        peer = Peer(self, reader, writer)
        self.accepted += 1
        try:
            await self.handler(peer)
        except asyncio.CancelledError:
            pass  # the test failed: its connections are not waited for
        except Exception as exc:
            self.errors.append(exc)
        finally:
            writer.close()
            with suppress(OSError):
                await writer.wait_closed()
            ended = self.ended(peer.index)
            if not ended.done():
                ended.set_result(None)


@asynccontextmanager
async def serve(handler: Handler, tls: ssl.SSLContext | None = None) -> AsyncIterator[Upstream]:
    """A loopback server running `handler` for each connection; on leaving, every connection must have ended."""
    upstream = Upstream(handler)
    async with asyncio.timeout(5):  # pytest-timeout's alarm is not handled while uvloop waits for I/O
        server = await asyncio.start_server(upstream.serve, "127.0.0.1", 0, ssl=tls)
        upstream.scheme = "https" if tls else "http"
        upstream.port = server.sockets[0].getsockname()[1]
        try:
            yield upstream
        except BaseException:
            for task in upstream.tasks:
                task.cancel()
            raise
        finally:
            server.close()
            await server.wait_closed()
            await asyncio.gather(*upstream.tasks, return_exceptions=True)
    if upstream.errors:
        raise upstream.errors[0]


@asynccontextmanager
async def pool_for(upstream: Upstream, **options: Any) -> AsyncIterator[Pool]:
    settings: dict[str, Any] = {"limit": 8, "connect_s": 5.0, "read_s": 5.0}
    settings.update(options)
    base = settings.pop("base_url", upstream.url)
    pool = Pool(base, settings.pop("headers", {}), **settings)
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture(autouse=True, scope="module")
def no_unclosed_resources() -> Iterator[None]:
    """A transport or socket left open warns when collected, and warnings are errors: collect once at the end
    (a collection after every test would cost more than the tests)."""
    yield
    gc.collect()


def soon(seconds: float = 5.0) -> float:
    return asyncio.get_running_loop().time() + seconds


def answer(body: bytes = b"ok", *fields: str, status: bytes = b"200 OK") -> bytes:
    head = "".join(f"{field}\r\n" for field in fields).encode("latin-1")
    return b"HTTP/1.1 %s\r\ncontent-length: %d\r\n%s\r\n%s" % (status, len(body), head, body)


OK = answer()


def answering(*answers: bytes) -> Handler:
    """Each request on a connection gets the next of `answers` (the last one repeats), until the client closes."""

    async def handler(peer: Peer) -> None:
        count = 0
        while await peer.request() is not None:
            await peer.send(answers[min(count, len(answers) - 1)])
            count += 1

    return handler


def chunked(*chunks: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks) + b"0\r\n\r\n"


async def fetch(pool: Pool, path: str = "/x", **kwargs: Any) -> tuple[Response, bytes]:
    response = await pool.post(path, b"{}", deadline=soon(), **kwargs)
    try:
        return response, await response.read()
    finally:
        response.release()


async def read_all(response: Response) -> list[bytes]:
    pieces = []
    while data := await response.readany():
        pieces.append(data)
    return pieces


# --- bodies ---------------------------------------------------------------------------------------------------


async def test_a_body_with_a_content_length_is_read_whole() -> None:
    async with serve(answering(answer(b"hello world"))) as upstream, pool_for(upstream) as pool:
        response = await pool.post("/x", b"{}", deadline=soon())
        try:
            assert (response.status, response.content_length, response.eof_delimited) == (200, 11, False)
            assert await response.read() == b"hello world"
            assert await response.readany() == b""
        finally:
            response.release()


async def test_a_chunked_body_is_read_whole_from_many_small_writes() -> None:
    wire = answer(b"", "transfer-encoding: chunked")
    wire = wire.replace(b"content-length: 0\r\n", b"") + chunked(b"hello ", b"chunked ", b"world" * 50)

    async def handler(peer: Peer) -> None:
        await peer.request()
        for start in range(0, len(wire), 7):
            await peer.send(wire[start : start + 7])
        await answering(OK)(peer)

    async with serve(handler) as upstream, pool_for(upstream) as pool:
        response, body = await fetch(pool)
        assert body == b"hello chunked " + b"world" * 50
        assert (response.content_length, response.eof_delimited) == (None, False)
        assert (await fetch(pool))[1] == b"ok"
        assert upstream.accepted == 1  # a chunked answer leaves the connection reusable


async def test_a_chunked_body_is_streamed_with_chunk_framing_split_across_writes() -> None:
    pieces = [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",  # a chunk's data split
        b"lo\r\n1",  # a chunk's size line split: 0x10
        b"0\r\n0123456789abcdef\r",  # the line break after a chunk's data split
        b"\n0\r\n\r\n",
    ]
    turn = asyncio.Event()

    async def handler(peer: Peer) -> None:
        await peer.request()
        for piece in pieces:
            await peer.send(piece)
            await turn.wait()  # the client has read what this piece carried
            turn.clear()
        await answering(OK)(peer)

    async with serve(handler) as upstream, pool_for(upstream) as pool:
        response = await pool.post("/x", b"{}", deadline=soon())
        try:
            for expected in (b"hel", b"lo", b"0123456789abcdef"):
                got = b""
                while len(got) < len(expected):
                    got += await response.readany()
                assert got == expected
                turn.set()
            assert await response.readany() == b""
            turn.set()
        finally:
            response.release()
        assert (await fetch(pool))[1] == b"ok"
        assert upstream.accepted == 1


async def test_a_body_delimited_by_the_connection_close_ends_at_eof_and_the_connection_is_not_reused() -> None:
    turn = asyncio.Event()

    async def handler(peer: Peer) -> None:
        if peer.index > 0:
            return await answering(OK)(peer)
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the")
        await turn.wait()
        await peer.send(b" end")
        # returning closes the connection: the end of the body

    async with serve(handler) as upstream, pool_for(upstream) as pool:
        response = await pool.post("/x", b"{}", deadline=soon())
        try:
            assert (response.content_length, response.eof_delimited) == (None, True)
            got = b""
            while len(got) < len(b"until the"):
                got += await response.readany()
            turn.set()
            assert got + await response.read() == b"until the end"
        finally:
            response.release()
        assert (await fetch(pool))[1] == b"ok"
        assert upstream.accepted == 2


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_compressed_bodies_are_decompressed_whole_and_streamed(encoding: str) -> None:
    body = b'{"choices": [{"text": "compressible"}]}' * 500
    packed = gzip.compress(body) if encoding == "gzip" else zlib.compress(body)
    whole = answer(packed, f"Content-Encoding: {encoding}")
    streamed = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-encoding: %s\r\n\r\n" % encoding.encode()

    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(whole)
        await peer.request()
        await peer.send(streamed)
        for start in range(0, len(packed), 100):
            await peer.send(chunked(packed[start : start + 100])[:-5])  # without the terminating chunk
        await peer.send(b"0\r\n\r\n")
        await peer.client_closed()

    async with serve(handler) as upstream, pool_for(upstream) as pool:
        assert (await fetch(pool))[1] == body
        response = await pool.post("/x", b"{}", deadline=soon())
        try:
            assert b"".join(await read_all(response)) == body
        finally:
            response.release()
        assert upstream.accepted == 1
        assert b"\r\naccept-encoding: gzip\r\n" in upstream.requests[0][1]  # a zlib-wrapped deflate is read too


async def test_a_compressed_body_expands_no_further_than_one_byte_past_the_limit() -> None:
    bomb = gzip.compress(b"\0" * (8 << 20))  # 8 MiB from about 8 KiB
    async with serve(answering(answer(bomb, "content-encoding: gzip"))) as upstream:
        async with pool_for(upstream, max_body=1000) as pool:
            _, body = await fetch(pool)
            assert len(body) == 1001  # the caller sees it went over; the rest was never decoded
        assert upstream.accepted == 1


async def test_a_compressed_body_cut_inside_its_framing_is_a_bad_response() -> None:
    cut = gzip.compress(b"x" * 5000)[:-12]  # the HTTP framing is whole, the gzip stream is not
    async with serve(answering(answer(cut, "content-encoding: gzip"))) as upstream, pool_for(upstream) as pool:
        with pytest.raises(BadResponse, match="compressed"):
            await fetch(pool)


async def test_a_calls_own_header_replaces_a_configured_one() -> None:
    async with serve(answering(OK)) as upstream, pool_for(upstream, headers={"Anthropic-Beta": "configured"}) as pool:
        await fetch(pool, headers={"anthropic-beta": "per-call"})
    head = upstream.requests[0][1].partition(b"\r\n\r\n")[0].lower()
    assert head.count(b"anthropic-beta:") == 1
    assert b"anthropic-beta: per-call" in head


async def test_a_corrupt_compressed_body_is_a_bad_response() -> None:
    corrupt = answer(b"not gzip at all", "content-encoding: gzip")
    async with serve(answering(corrupt)) as upstream, pool_for(upstream) as pool:
        with pytest.raises(BadResponse):  # from the post or the read
            await fetch(pool)


@pytest.mark.parametrize("split", [False, True], ids=["one-write", "two-writes"])
async def test_an_interim_100_continue_is_skipped_for_the_final_answer(split: bool) -> None:
    interim = b"HTTP/1.1 100 Continue\r\nx-interim: 1\r\n\r\n"
    final = answer(b"done", "x-final: 2", status=b"201 Created")

    async def handler(peer: Peer) -> None:
        while await peer.request() is not None:
            if split:
                await peer.send(interim)
                await peer.send(final)
            else:
                await peer.send(interim + final)

    async with serve(handler) as upstream, pool_for(upstream) as pool:
        for _ in range(2):
            response, body = await fetch(pool)
            assert (response.status, body) == (201, b"done")
            assert response.headers == {"content-length": "4", "x-final": "2"}
        assert upstream.accepted == 1


async def test_header_names_are_lower_cased_and_repeated_fields_joined() -> None:
    wire = answer(b"ok", "X-Request-ID: abc", "Vary: Accept", "vary: Origin", "Set-Cookie: a=1", "X-Empty:")
    async with serve(answering(wire)) as upstream, pool_for(upstream) as pool:
        response, _ = await fetch(pool)
        assert response.headers == {
            "content-length": "2",
            "x-request-id": "abc",
            "vary": "Accept, Origin",
            "set-cookie": "a=1",
            "x-empty": "",
        }


# --- the request ------------------------------------------------------------------------------------------------


async def test_the_request_as_the_server_receives_it() -> None:
    async with serve(answering(OK)) as upstream:
        base = f"http://user:secret@127.0.0.1:{upstream.port}/api/v1/"
        configured = {"Authorization": "Bearer k", "X-Configured": "c"}
        async with pool_for(upstream, base_url=base, headers=configured) as pool:
            response = await pool.post(
                "/chat/completions",
                b'{"a": 1}',
                deadline=soon(),
                headers={"x-call": "yes"},
                params={"alt": "sse", "q": "a b&c=d/é"},
            )
            assert await response.read() == b"ok"
            response.release()
    raw = upstream.requests[0][1]
    head, _, body = raw.partition(b"\r\n\r\n")
    request_line, *lines = head.decode("latin-1").split("\r\n")
    assert request_line == "POST /api/v1/chat/completions?alt=sse&q=a+b%26c%3Dd%2F%C3%A9 HTTP/1.1"
    fields = [line.split(": ", 1) for line in lines]
    assert sorted(name for name, _ in fields) == sorted({name for name, _ in fields})  # no field twice
    assert dict(fields) == {
        "host": f"127.0.0.1:{upstream.port}",
        "accept-encoding": "gzip",
        "authorization": "Bearer k",
        "x-configured": "c",
        "x-call": "yes",
        "content-length": "8",
    }
    assert body == b'{"a": 1}'
    assert b"user" not in raw
    assert b"secret" not in raw


async def test_a_base_url_without_a_path_posts_to_the_path_alone() -> None:
    async with serve(answering(OK)) as upstream, pool_for(upstream, base_url=upstream.url + "/") as pool:
        await fetch(pool, "/v1/messages")
    assert upstream.requests[0][1].startswith(b"POST /v1/messages HTTP/1.1\r\n")


async def test_line_breaks_in_a_header_or_the_target_are_refused_before_anything_is_sent() -> None:
    async with serve(answering(OK)) as upstream:
        with pytest.raises(ValueError, match="line break"):
            Pool(upstream.url, {"x-configured": "a\r\ninjected: 1"}, limit=1, connect_s=1, read_s=1)
        async with pool_for(upstream) as pool:
            for headers in ({"x-call": "a\r\ninjected: 1"}, {"x-call": "a\nb"}, {"x-\rcall": "a"}):
                with pytest.raises(ValueError, match="line break"):
                    await pool.post("/x", b"{}", deadline=soon(), headers=headers)
            with pytest.raises(ValueError, match="line break"):
                await pool.post("/x HTTP/1.1\r\nhost: elsewhere\r\n\r\nPOST /y", b"{}", deadline=soon())
            assert upstream.accepted == 0
            assert (await fetch(pool))[1] == b"ok"


def test_a_base_url_must_be_http_or_https() -> None:
    for url in ("ftp://example.com", "example.com/v1", "http:///v1"):
        with pytest.raises(ValueError, match="not an http"):
            Pool(url, {}, limit=1, connect_s=1, read_s=1)


# --- keep-alive -------------------------------------------------------------------------------------------------


async def test_a_kept_alive_connection_serves_the_next_request() -> None:
    async with serve(answering(answer(b"first"), answer(b"second"))) as upstream, pool_for(upstream) as pool:
        assert (await fetch(pool))[1] == b"first"
        assert (await fetch(pool))[1] == b"second"
    assert upstream.accepted == 1
    assert [index for index, _ in upstream.requests] == [0, 0]


@pytest.mark.parametrize(
    "wire",
    [answer(b"ok", "Connection: close"), b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok"],
    ids=["connection-close", "http-1.0"],
)
async def test_an_answer_that_ends_the_connection_is_not_reused(wire: bytes) -> None:
    async with serve(answering(wire)) as upstream, pool_for(upstream) as pool:
        assert (await fetch(pool))[1] == b"ok"
        assert (await fetch(pool))[1] == b"ok"
        await upstream.ended(0)  # the client closed the first one: the server had kept it open
    assert upstream.accepted == 2


async def test_bytes_after_the_end_of_an_answer_are_not_part_of_it_and_the_connection_is_dropped() -> None:
    extra = answer(b"ok") + answer(b"unasked for", status=b"500 Internal Server Error")
    async with serve(answering(extra, OK)) as upstream, pool_for(upstream) as pool:
        response, body = await fetch(pool)
        assert (response.status, body, response.headers) == (200, b"ok", {"content-length": "2"})
        assert (await fetch(pool))[1] == b"ok"
    assert upstream.accepted == 2


async def test_a_kept_alive_connection_dropped_by_the_upstream_is_retried_once_on_a_new_one() -> None:
    async def handler(peer: Peer) -> None:
        if peer.index > 0:
            return await answering(answer(b"again"))(peer)
        await peer.request()
        await peer.send(OK)
        await peer.request()  # closed without a byte of answer, as when the server timed the idle connection out

    async with serve(handler) as upstream, pool_for(upstream) as pool:
        assert (await fetch(pool))[1] == b"ok"
        assert (await fetch(pool))[1] == b"again"
    assert upstream.accepted == 2
    assert [index for index, _ in upstream.requests] == [0, 0, 1]
    assert upstream.requests[1][1] == upstream.requests[2][1]


async def test_a_kept_alive_connection_the_upstream_closed_while_idle_is_replaced() -> None:
    async def handler(peer: Peer) -> None:
        if peer.index > 0:
            return await answering(answer(b"again"))(peer)
        await peer.request()
        await peer.send(OK)

    async with serve(handler) as upstream, pool_for(upstream) as pool:
        assert (await fetch(pool))[1] == b"ok"
        await upstream.ended(0)
        assert (await fetch(pool))[1] == b"again"
    assert upstream.accepted == 2


async def test_a_new_connection_closed_before_any_answer_is_not_retried() -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()

    async with serve(handler) as upstream, pool_for(upstream) as pool:
        with pytest.raises(ConnectionError):
            await pool.post("/x", b"{}", deadline=soon())
    assert upstream.accepted == 1
    assert len(upstream.requests) == 1


async def test_a_kept_alive_connection_closed_in_the_middle_of_an_answer_is_not_retried() -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(OK)
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\ncontent-le")

    async with serve(handler) as upstream, pool_for(upstream) as pool:
        await fetch(pool)
        with pytest.raises(BadResponse):
            await pool.post("/x", b"{}", deadline=soon())
    assert upstream.accepted == 1


async def test_an_idle_connection_older_than_keepalive_s_is_not_reused() -> None:
    async with serve(answering(OK)) as upstream, pool_for(upstream, keepalive_s=0.0) as pool:
        await fetch(pool)
        await fetch(pool)
        await upstream.ended(0)  # closed by the pool
    assert upstream.accepted == 2


async def test_releasing_an_answer_whose_body_has_not_all_arrived_closes_the_connection() -> None:
    async def handler(peer: Peer) -> None:
        if peer.index > 0:
            return await answering(OK)(peer)
        await peer.request()
        await peer.send(answer(b"0123456789")[:-5])
        await peer.client_closed()

    async with serve(handler) as upstream, pool_for(upstream) as pool:
        response = await pool.post("/x", b"{}", deadline=soon())
        response.release()
        await upstream.ended(0)
        assert (await fetch(pool))[1] == b"ok"
    assert upstream.accepted == 2


# --- the connection cap -------------------------------------------------------------------------------------------


async def parked_post(pool: Pool, deadline: float) -> asyncio.Task[Response]:
    """A post started in a task, returned once it waits for a connection (it runs until its first wait)."""
    parked = asyncio.Event()

    async def post() -> Response:
        parked.set()
        return await pool.post("/x", b"{}", deadline=deadline)

    task = asyncio.create_task(post())
    await parked.wait()
    return task


async def test_at_the_cap_a_post_waits_for_the_connection_in_use_and_reuses_it() -> None:
    async with serve(answering(answer(b"first"), answer(b"second"))) as upstream, pool_for(upstream, limit=1) as pool:
        first = await pool.post("/x", b"{}", deadline=soon())
        waiting = await parked_post(pool, soon())
        assert not waiting.done()
        assert await first.read() == b"first"
        first.release()
        second = await waiting
        assert await second.read() == b"second"
        second.release()
    assert upstream.accepted == 1


async def test_waiting_for_a_connection_ends_at_the_deadline() -> None:
    async with serve(answering(OK)) as upstream, pool_for(upstream, limit=1) as pool:
        first = await pool.post("/x", b"{}", deadline=soon())
        with pytest.raises(TimeoutError):
            await pool.post("/x", b"{}", deadline=soon(0.05))
        await first.read()
        first.release()
        assert (await fetch(pool))[1] == b"ok"
    assert upstream.accepted == 1


async def test_a_waiter_cancelled_as_it_is_handed_the_connection_passes_it_on() -> None:
    async with serve(answering(OK)) as upstream, pool_for(upstream, limit=1) as pool:
        first = await pool.post("/x", b"{}", deadline=soon())
        cancelled = await parked_post(pool, soon())
        waiting = await parked_post(pool, soon(2))
        await first.read()
        first.release()  # hands the connection to the first waiter…
        cancelled.cancel()  # …which is cancelled (a lost race, a client gone) before it could take it
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        response = await waiting
        assert await response.read() == b"ok"
        response.release()
    assert upstream.accepted == 1


async def test_a_connection_that_fails_frees_its_place_under_the_cap() -> None:
    async def handler(peer: Peer) -> None:
        if peer.index == 0:
            await peer.request()
            await peer.send(b"not http\r\n\r\n")
            return
        await answering(OK)(peer)

    async with serve(handler) as upstream, pool_for(upstream, limit=1) as pool:
        with pytest.raises(BadResponse):
            await pool.post("/x", b"{}", deadline=soon())
        assert (await fetch(pool))[1] == b"ok"
    assert upstream.accepted == 2


async def test_a_post_cancelled_while_waiting_for_its_answer_closes_its_connection() -> None:
    asked = asyncio.Event()

    async def handler(peer: Peer) -> None:
        if peer.index > 0:
            return await answering(OK)(peer)
        await peer.request()
        asked.set()  # and no answer comes
        await peer.client_closed()

    async with serve(handler) as upstream, pool_for(upstream, limit=1) as pool:
        task = asyncio.create_task(pool.post("/x", b"{}", deadline=soon()))
        await asked.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await upstream.ended(0)
        assert (await fetch(pool))[1] == b"ok"  # and its place under the cap is free
    assert upstream.accepted == 2


# --- closing the pool ---------------------------------------------------------------------------------------------


async def test_closing_the_pool_closes_idle_connections_and_refuses_later_posts() -> None:
    async with serve(answering(OK)) as upstream, pool_for(upstream) as pool:
        await fetch(pool)
        pool.close()
        await upstream.ended(0)
        with pytest.raises(ConnectionError):
            await pool.post("/x", b"{}", deadline=soon())
    assert upstream.accepted == 1


async def test_closing_the_pool_wakes_waiters_and_closes_connections_in_use_once_released() -> None:
    async with serve(answering(OK)) as upstream, pool_for(upstream, limit=1) as pool:
        first = await pool.post("/x", b"{}", deadline=soon())
        waiting = await parked_post(pool, soon())
        pool.close()
        with pytest.raises(ConnectionError):
            await waiting
        assert await first.read() == b"ok"  # an answer in flight is still read
        first.release()
        await upstream.ended(0)
    assert upstream.accepted == 1


# --- timeouts and failures ------------------------------------------------------------------------------------


async def test_a_read_times_out_when_no_byte_comes_for_read_s() -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(answer(b"0123456789")[:-7])
        await peer.client_closed()

    async with serve(handler) as upstream, pool_for(upstream, read_s=0.05) as pool:
        response = await pool.post("/x", b"{}", deadline=soon())
        try:
            assert await response.readany() == b"012"
            with pytest.raises(TimeoutError):
                await response.readany()
        finally:
            response.release()


async def test_a_post_times_out_when_no_answer_comes_for_read_s() -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.client_closed()

    async with serve(handler) as upstream, pool_for(upstream, read_s=0.05) as pool:
        with pytest.raises(TimeoutError):
            await pool.post("/x", b"{}", deadline=soon())
        await upstream.ended(0)  # the connection was closed, not kept


async def test_a_read_times_out_at_the_deadline() -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(answer(b"0123456789")[:-7])
        await peer.client_closed()

    async with serve(handler) as upstream, pool_for(upstream, read_s=30.0) as pool:
        response = await pool.post("/x", b"{}", deadline=soon(0.1))
        try:
            with pytest.raises(TimeoutError):
                await response.read()
        finally:
            response.release()


async def test_a_post_past_its_deadline_times_out() -> None:
    async with serve(answering(OK)) as upstream, pool_for(upstream) as pool:
        await fetch(pool)
        with pytest.raises(TimeoutError):
            await pool.post("/x", b"{}", deadline=soon(-1))


async def test_a_refused_connection_is_a_connection_error_and_frees_its_place() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    pool = Pool(f"http://127.0.0.1:{port}", {}, limit=1, connect_s=5.0, read_s=5.0)
    try:
        async with asyncio.timeout(5):
            for _ in range(2):
                with pytest.raises(ConnectionError):
                    await pool.post("/x", b"{}", deadline=soon())
    finally:
        pool.close()


async def test_a_connection_not_accepted_in_connect_s_times_out_and_frees_its_place() -> None:
    with socket.socket() as listener, socket.socket() as filler:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)  # never accepted: once its queue is full, the kernel ignores new connection attempts
        filler.setblocking(False)
        filler.connect_ex(listener.getsockname())
        pool = Pool(f"http://127.0.0.1:{listener.getsockname()[1]}", {}, limit=1, connect_s=0.05, read_s=5.0)
        try:
            async with asyncio.timeout(5):
                for _ in range(2):  # a place kept by the first would keep the second waiting past the guard
                    with pytest.raises(TimeoutError):
                        await pool.post("/x", b"{}", deadline=soon(30))
        finally:
            pool.close()


@pytest.mark.parametrize(
    "wire",
    [
        b"garbage\r\n\r\n",
        b"HTTP/1.1 abc OK\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n",
    ],
    ids=["not-http", "bad-status", "bad-length", "bad-chunk"],
)
async def test_an_answer_that_is_not_http_is_a_bad_response(wire: bytes) -> None:
    async with serve(answering(wire)) as upstream, pool_for(upstream) as pool:
        with pytest.raises(BadResponse) as caught:  # from the post or the read
            await fetch(pool)
        assert isinstance(caught.value, ConnectionError)
        await upstream.ended(0)


async def test_an_upgrade_answer_is_a_bad_response_without_a_protocol_error(caplog: pytest.LogCaptureFixture) -> None:
    wire = b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n"
    async with serve(answering(wire)) as upstream, pool_for(upstream) as pool:
        with pytest.raises(BadResponse):
            await pool.post("/x", b"{}", deadline=soon())
        await upstream.ended(0)
    assert [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING] == []


async def test_an_idle_connection_the_upstream_speaks_on_is_dropped() -> None:
    released = asyncio.Event()

    async def handler(peer: Peer) -> None:
        if peer.index > 0:
            return await answering(OK)(peer)
        await peer.request()
        await peer.send(OK)
        await released.wait()
        await peer.send(answer(b"idle too long", "connection: close", status=b"408 Request Timeout"))
        await peer.client_closed()

    async with serve(handler) as upstream, pool_for(upstream) as pool:
        await fetch(pool)
        released.set()
        await upstream.ended(0)  # the client closed it on the unasked-for answer
        assert (await fetch(pool))[1] == b"ok"
    assert upstream.accepted == 2


@pytest.mark.parametrize("status", [b"204 No Content", b"304 Not Modified"])
async def test_an_answer_without_a_body_by_its_status_keeps_the_connection(status: bytes) -> None:
    async with serve(answering(b"HTTP/1.1 %s\r\n\r\n" % status, OK)) as upstream, pool_for(upstream) as pool:
        response, body = await fetch(pool)
        assert (response.status, body) == (int(status[:3]), b"")
        assert (await fetch(pool))[1] == b"ok"
    assert upstream.accepted == 1


@pytest.mark.parametrize("reader", ["read", "readany"])
@pytest.mark.parametrize(
    ("framing", "first", "end"),
    [
        ("content-length: 10", b"abcd", "close"),
        ("content-length: 10", b"abcd", "reset"),
        ("transfer-encoding: chunked", b"4\r\nabcd\r\n", "close"),
        ("transfer-encoding: chunked", b"4\r\nabcd\r\n", "reset"),
        ("Transfer-Encoding: Chunked", b"4\r\nabcd\r\n", "close"),
        ("content-type: text/plain", b"abcd", "reset"),  # ends with the connection, but not with a reset
    ],
    ids=["length-close", "length-reset", "chunked-close", "chunked-reset", "Chunked-close", "eof-reset"],
)
async def test_a_connection_ended_in_the_middle_of_a_body_is_a_bad_response(
    framing: str, first: bytes, end: str, reader: str
) -> None:
    turn = asyncio.Event()

    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\n%s\r\n\r\n%s" % (framing.encode(), first))
        await turn.wait()
        if end == "reset":
            peer.reset()

    async with serve(handler) as upstream, pool_for(upstream) as pool:
        response = await pool.post("/x", b"{}", deadline=soon())
        try:
            got = b""
            while len(got) < 4:
                got += await response.readany()
            assert got == b"abcd"
            turn.set()
            with pytest.raises(BadResponse):
                await (response.read() if reader == "read" else read_all(response))
        finally:
            response.release()


# --- back-pressure ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rest", ["readany", "read"], ids=["slow-to-the-end", "then-read"])
async def test_a_slow_reader_stops_the_socket_being_read_and_still_gets_the_whole_body(rest: str) -> None:
    body = bytes(range(256)) * (16 * 4096)  # 16 MiB
    bound = 1 << 20  # what may sit unread in the process: well under the body

    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(answer(body))
        await answering(OK)(peer)

    async with serve(handler) as upstream, pool_for(upstream) as pool:
        response = await pool.post("/x", b"{}", deadline=soon())
        pieces = []
        try:
            while True:
                for _ in range(20):  # a slow consumer: the loop turns many times between two reads
                    await asyncio.sleep(0)
                data = await response.readany()
                if not data:
                    break
                assert len(data) <= bound
                pieces.append(data)
                if rest == "read" and len(pieces) == 3:
                    pieces.append(await response.read())  # reading all of it resumes a paused socket
        finally:
            response.release()
        assert b"".join(pieces) == body
        assert (await fetch(pool))[1] == b"ok"  # read to its end: the connection is reused
    assert upstream.accepted == 1


# --- TLS --------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    """A server context whose self-signed certificate (for 127.0.0.1) the client's context is told to trust;
    made by the openssl command, as the redis tests use redis-server."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl command")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    request = "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=127.0.0.1"
    request += " -addext subjectAltName=IP:127.0.0.1"
    subprocess.run([openssl, *request.split(), "-keyout", key, "-out", cert], check=True, capture_output=True)
    _ssl_context().load_verify_locations(cafile=str(cert))  # the client's one context for every https pool
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    return server


async def test_tls_answers_by_length_chunks_and_close_on_one_kept_connection(certificate: ssl.SSLContext) -> None:
    body = bytes(range(256)) * 16384  # 4 MiB: more than the read buffer, so reading pauses and resumes under TLS
    chunks = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + chunked(b"over ", b"tls")

    async def handler(peer: Peer) -> None:
        if peer.index == 0:
            return await answering(answer(body), chunks)(peer)
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\n\r\nuntil the end")  # and the close ends it

    async with serve(handler, certificate) as upstream, pool_for(upstream) as pool:
        response = await pool.post("/x", b"{}", deadline=soon())
        try:
            pieces = []
            for _ in range(2):
                for _ in range(20):  # slow at first
                    await asyncio.sleep(0)
                pieces.append(await response.readany())
            pieces.append(await response.read())
            assert b"".join(pieces) == body
        finally:
            response.release()
        assert (await fetch(pool))[1] == b"over tls"
        assert upstream.accepted == 1
        pool.close()
        await upstream.ended(0)
        async with pool_for(upstream) as again:
            response, received = await fetch(again)
            assert (response.eof_delimited, received) == (True, b"until the end")
    assert upstream.accepted == 2


async def test_a_tls_certificate_for_another_name_is_refused(certificate: ssl.SSLContext) -> None:
    async with serve(answering(OK), certificate) as upstream:
        pool = Pool(f"https://localhost:{upstream.port}", {}, limit=1, connect_s=5.0, read_s=5.0)
        try:
            with pytest.raises(ssl.SSLCertVerificationError):  # an OSError, as HttpProvider expects
                await pool.post("/x", b"{}", deadline=soon())
        finally:
            pool.close()


async def test_a_released_stream_waits_for_the_end_of_its_message_and_its_connection_is_reused() -> None:
    released = asyncio.Event()
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"

    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(head + chunked(b"data: [DONE]\n\n")[:-5])  # the stream's own end, not the message's
        await released.wait()
        await peer.send(b"0\r\n\r\n")  # the message's end, after the caller let go
        await peer.request()
        await peer.send(OK)
        await peer.client_closed()

    # One connection at most: the next post waits for the lingering one (a closed one would be replaced).
    async with serve(handler) as upstream, pool_for(upstream, limit=1) as pool:
        response = await pool.post("/x", b"{}", deadline=soon())
        assert await response.readany() == b"data: [DONE]\n\n"
        response.release(linger=True)
        released.set()
        assert (await fetch(pool))[1] == b"ok"
        assert upstream.accepted == 1


async def test_a_released_stream_whose_message_never_ends_is_not_reused_and_closes_with_the_pool() -> None:
    async def handler(peer: Peer) -> None:
        if peer.index == 0:
            await peer.request()
            await peer.send(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + chunked(b"data: x\n\n")[:-5])
        else:
            await peer.request()
            await peer.send(OK)
        await peer.client_closed()

    async with serve(handler) as upstream, pool_for(upstream) as pool:
        response = await pool.post("/x", b"{}", deadline=soon())
        assert await response.readany() == b"data: x\n\n"
        response.release(linger=True)
        assert (await fetch(pool))[1] == b"ok"  # not on the lingering connection
        assert upstream.accepted == 2
    # leaving: the pool closed the lingering connection (the server saw it close; no transport left open)
