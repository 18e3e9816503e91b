"""A lean HTTP/1.1 client for upstream calls: one keep-alive connection pool per provider, requests written in one
piece, responses parsed by httptools (llhttp, the parser uvicorn serves with) straight from the socket.

Why not aiohttp: its client machinery (request and response objects, multidicts, URL objects, a timer context per
request, a stream reader with its own buffers) cost about 75 µs of CPU per call on this path, more than a quarter
of a whole request's; this costs a fraction of that (docs/performance.md). It does only what an upstream LLM API
needs: POST with a known body, `Content-Length` or chunked or close-delimited answers, gzip/deflate bodies,
TLS, keep-alive with an idle limit, a connection cap with a queue, and three timeouts (connect, between reads,
and the call's deadline). No cookies, redirects, proxies or HTTP/2.

Errors are the standard library's: `TimeoutError` for a timeout, `ConnectionError` (an `OSError`) for a refused,
reset or closed connection and for a response that is not HTTP.
"""

from __future__ import annotations

import asyncio
import ssl
import sys
import zlib
from collections import deque
from collections.abc import Mapping
from typing import cast
from urllib.parse import urlencode, urlsplit

import httptools

__all__ = ["BadResponse", "Pool", "Response"]

KEEPALIVE_S = 15.0  # an idle connection older than this is closed rather than reused (servers drop them too)
LINGER_S = 1.0  # how long a released answer's connection waits for the end of its message (Response.release)
_HIGH_WATER = 1 << 18  # unread body bytes beyond which the socket stops being read (a slow consumer)


class BadResponse(ConnectionError):
    """The upstream's answer is not valid HTTP/1.1, or the connection ended in the middle of it."""


class _Stale(BadResponse):
    """A kept-alive connection closed before any byte of its answer: the request is sent again, once, on a new
    connection (the server closed it while idle; it never saw the request)."""


_SSL: list[ssl.SSLContext] = []


def _ssl_context() -> ssl.SSLContext:
    if not _SSL:
        _SSL.append(ssl.create_default_context())
    return _SSL[0]


def _check(value: str) -> str:
    if "\r" in value or "\n" in value:
        raise ValueError("an HTTP header may not contain a line break")
    return value


def _header_block(headers: Mapping[str, str]) -> bytes:
    return b"".join(f"{_check(k)}: {_check(v)}\r\n".encode("latin-1") for k, v in headers.items())


class Response:
    """An upstream's answer: status and headers (lower-cased names) once `Pool.post` returns; the body through
    `read` (all of it) or `readany` (what has arrived). `release` gives the connection back when the body was
    read to its end, else closes it; `close` always closes it. Both are idempotent."""

    __slots__ = (
        "_buffered",
        "_conn",
        "_deadline",
        "_decoder",
        "_done",
        "_error",
        "_keep_alive",
        "_linger",
        "_loop",
        "_parked",
        "_parts",
        "_read_s",
        "_reading_all",
        "_room",
        "_waiter",
        "content_length",
        "eof_delimited",
        "headers",
        "received",
        "status",
    )

    def __init__(self, conn: _Conn, deadline: float, read_s: float, max_body: int | None = None) -> None:
        self._conn: _Conn | None = conn
        self._loop = conn.loop  # not asyncio.get_running_loop(): on Python 3.11 each call is a getpid()
        self._deadline = deadline
        self._read_s = read_s
        self.status = 0
        self.headers: dict[str, str] = {}
        self.content_length: int | None = None
        self.eof_delimited = False  # neither a length nor chunks: the body ends when the connection does
        self.received = False  # any byte of the answer arrived
        self._parts: list[bytes] = []
        self._buffered = 0
        self._done = False
        self._error: BaseException | None = None
        self._keep_alive = False
        self._decoder: zlib._Decompress | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._reading_all = False
        self._parked: _Conn | None = None  # released before the end of its message (see `release`)
        self._linger: asyncio.TimerHandle | None = None
        # Decompressed bytes this answer may still produce: one past the caller's limit, so that the caller sees
        # it went over, and no compressed bomb ever expands further in memory.
        self._room = sys.maxsize if max_body is None else max_body + 1

    # --- fed by the connection ------------------------------------------------------------------------------

    def _start(self, status: int, raw: list[tuple[bytes, bytes]]) -> None:
        headers: dict[str, str] = {}
        for name, value in raw:
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        self.status = status
        self.headers = headers
        length = headers.get("content-length")
        self.content_length = int(length) if length is not None and length.isdigit() else None
        self.eof_delimited = (
            self.content_length is None and "chunked" not in headers.get("transfer-encoding", "").lower()
        )
        encoding = headers.get("content-encoding", "").strip().lower()
        if encoding in ("gzip", "x-gzip", "deflate"):
            self._decoder = zlib.decompressobj(47)  # zlib or gzip framing, detected from the first bytes
        self._wake()

    def _feed(self, data: bytes) -> None:
        if self._decoder is not None:
            if self._room <= 0:
                return  # past the caller's limit already: the rest is never decoded
            try:
                data = self._decoder.decompress(data, self._room)
            except zlib.error:
                self._fail(BadResponse("the upstream's compressed body is corrupt"))
                return
            self._room -= len(data)
            if not data:
                return
        self._parts.append(data)
        self._buffered += len(data)
        if self._parked is not None:  # released: what still comes is not read by anyone
            self._parts.clear()
            return
        if self._buffered > _HIGH_WATER and not self._reading_all and self._conn is not None:
            self._conn.pause()
        self._wake()

    def _finish(self, keep_alive: bool) -> None:
        decoder = self._decoder
        if decoder is not None:
            if self._room <= 0:
                keep_alive = False  # compressed bytes were left unread on the connection's side of things
            else:
                tail = decoder.flush()
                if tail:
                    self._parts.append(tail)
                if not decoder.eof:
                    self._fail(BadResponse("the upstream's compressed body ended before its end"))
                    return
        self._done = True
        self._keep_alive = keep_alive
        self._wake()
        if self._parked is not None:
            self._parts.clear()
            self._unpark(keep_alive)

    def _fail(self, error: BaseException) -> None:
        if self._error is None and not self._done:
            self._error = error
            self._wake()
            if self._parked is not None:
                self._unpark(keep_alive=False)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # --- the caller's side ----------------------------------------------------------------------------------

    async def _wait(self) -> None:
        """Until the connection brings something: at most the read timeout, and never past the deadline."""
        if self._error is not None:
            raise _fresh(self._error)
        loop = self._loop
        waiter = self._waiter = loop.create_future()
        now = loop.time()
        due = min(now + self._read_s, self._deadline)
        if due <= now:
            self.close()
            raise TimeoutError
        timer = loop.call_at(due, _expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None
        if self._error is not None:
            raise _fresh(self._error)

    async def _headers(self) -> None:
        while not self.status:
            await self._wait()

    async def read(self) -> bytes:
        """The whole body (decompressed)."""
        self._reading_all = True
        if self._conn is not None:
            self._conn.resume()
        while not self._done:
            await self._wait()
        return self._take()

    async def readany(self) -> bytes:
        """What has arrived and was not read yet, waiting for something when nothing has; b"" at the end."""
        while not self._parts and not self._done:
            await self._wait()
        return self._take()

    def _take(self) -> bytes:
        parts = self._parts
        if not parts:
            return b""
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        parts.clear()
        self._buffered = 0
        if self._conn is not None:
            self._conn.resume()
        return data

    def release(self, *, linger: bool = False) -> None:
        """Give the connection back when the answer was read to its end, else close it. With `linger`, the caller
        says it has all it needs although the HTTP message may not have ended yet: a stream's own framing (an
        SSE `[DONE]`) often comes a moment before a chunked body's last, empty chunk. The connection then waits
        up to `LINGER_S` for that end and goes back to the pool when it comes, rather than being closed (a new
        connection, and a TLS handshake, for every stream otherwise)."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self._error is not None or (self._done and not self._keep_alive) or not (self._done or linger):
            conn.close()
        elif self._done:
            conn.pool._put(conn)
        else:
            self._parked = conn
            conn.pool._lingering.add(conn)
            self._parts.clear()
            conn.resume()
            self._linger = self._loop.call_later(LINGER_S, self._give_up)

    def _unpark(self, keep_alive: bool) -> None:
        conn, self._parked = self._parked, None
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        if conn is not None:
            conn.pool._lingering.discard(conn)
            if keep_alive:
                conn.pool._put(conn)
            else:
                conn.close()

    def _give_up(self) -> None:
        self._linger = None
        self._unpark(keep_alive=False)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


def _fresh(error: BaseException) -> BaseException:
    """A new exception like the stored one: raising the stored one would give it a traceback holding the frame
    that holds this response, a reference cycle that only the garbage collector would free."""
    return type(error)(*error.args)


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


_NO_PARSER = httptools.HttpResponseParser(object())  # what a lost connection parses with: nothing ever


class _Conn(asyncio.Protocol):
    """One connection: writes a request, parses its answer into the current `Response`."""

    def __init__(self, pool: Pool, loop: asyncio.AbstractEventLoop) -> None:
        self.pool = pool
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.response: Response | None = None
        self.idle_since = 0.0
        self.lost = False
        self.counted = True  # counted in the pool's open connections until it is forgotten
        self._raw: list[tuple[bytes, bytes]] = []
        self._paused = False

    # --- asyncio ----------------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's

    def data_received(self, data: bytes) -> None:
        response = self.response
        if response is None:  # nothing was asked: a server must not speak first
            self.close()
            return
        response.received = True
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:  # an upgrade is no answer here
            response._fail(BadResponse(f"the upstream's answer is not valid HTTP ({type(exc).__name__})"))
            self.close()

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        response = self.response
        if response is not None and not response._done:
            if response.status and response.eof_delimited and exc is None:  # a reset is no end of a body
                response._finish(keep_alive=False)
            elif not response.received:
                response._fail(_Stale("the connection closed before the upstream answered"))
            else:
                response._fail(BadResponse("the upstream closed the connection in the middle of its answer"))
        self.pool._forget(self)
        # The parser holds this protocol's callbacks, and this protocol the parser: a cycle only the garbage
        # collector would free. Nothing is parsed after the connection is lost.
        self.parser = _NO_PARSER

    # --- httptools callbacks ----------------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        response = self.response
        if response is not None and response._done:  # nothing was asked after this answer: the parser fails
            raise BadResponse("the upstream sent more than its answer")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._raw.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        raw, self._raw = self._raw, []
        if 100 <= status < 200:  # an interim answer (100 Continue …): the final one follows
            return
        if self.response is not None:
            self.response._start(status, raw)

    def on_body(self, body: bytes) -> None:
        if self.response is not None:
            self.response._feed(body)

    def on_message_complete(self) -> None:
        response = self.response
        if response is not None and response.status:
            response._finish(self.parser.should_keep_alive())

    # --- the pool's side --------------------------------------------------------------------------------------

    def send(self, response: Response, data: bytes) -> None:
        assert self.transport is not None
        self.response = response
        self.transport.write(data)

    def usable(self, now: float, keepalive_s: float) -> bool:
        transport = self.transport
        return (
            not self.lost
            and transport is not None
            and not transport.is_closing()
            and now - self.idle_since < keepalive_s
        )

    def pause(self) -> None:
        if not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        self.pool._forget(self)


class Pool:
    """Keep-alive connections to one origin, at most `limit` open; callers beyond it wait for one."""

    def __init__(
        self,
        base_url: str,
        headers: Mapping[str, str],
        *,
        limit: int,
        connect_s: float,
        read_s: float,
        keepalive_s: float = KEEPALIVE_S,
        max_body: int | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        tls = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if tls else 80)
        self.ssl = _ssl_context() if tls else None
        self.limit = limit
        self.connect_s = connect_s
        self.read_s = read_s
        self.keepalive_s = keepalive_s
        self.max_body = max_body
        self._prefix = parts.path.rstrip("/")
        netloc = parts.netloc.rpartition("@")[2]  # never the user-info
        # gzip only: "deflate" is ambiguous in the wild (zlib-wrapped or raw); a zlib-wrapped one is still read
        self._defaults = {"host": netloc, "accept-encoding": "gzip"}
        self._defaults.update({k.lower(): v for k, v in headers.items()})
        self._head = _header_block(self._defaults)
        self._idle: deque[_Conn] = deque()
        self._lingering: set[_Conn] = set()  # released answers' connections waiting for their message's end
        self._open = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.closed = False

    async def post(
        self,
        path: str,
        body: bytes,
        *,
        deadline: float,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Response:
        """POST `body` to the base URL's path + `path`; returns once the status and headers have arrived."""
        target = self._prefix + path
        if params:
            target += "?" + urlencode(params)
        _check(target)
        head = self._head
        if headers:  # a call's own header replaces a configured one of the same name
            merged = {**self._defaults, **{k.lower(): v for k, v in headers.items()}}
            head = _header_block(merged)
        data = b"POST %s HTTP/1.1\r\n%scontent-length: %d\r\n\r\n%s" % (
            target.encode("latin-1"),
            head,
            len(body),
            body,
        )
        fresh = False
        while True:
            conn, reused = await self._acquire(deadline, fresh)
            response = Response(conn, deadline, self.read_s, self.max_body)
            conn.send(response, data)
            try:
                await response._headers()
            except _Stale:
                response.close()
                if not reused:
                    raise
                fresh = True  # the server had closed the idle connection: once more, on a new one
                continue
            except BaseException:
                response.close()
                raise
            return response

    async def _acquire(self, deadline: float, fresh: bool) -> tuple[_Conn, bool]:
        loop = asyncio.get_running_loop()
        while True:
            if self.closed:
                raise ConnectionError("the connection pool is closed")
            now = loop.time()
            while self._idle and not fresh:
                conn = self._idle.pop()  # the most recently used: the least likely to have been dropped
                if conn.usable(now, self.keepalive_s):
                    return conn, True
                conn.close()
            if self._open < self.limit:
                return await self._connect(loop, deadline), False
            if fresh and self._idle:  # at the cap: make room by closing an idle one
                self._idle.popleft().close()
                continue
            waiter = loop.create_future()
            self._waiters.append(waiter)
            try:
                async with asyncio.timeout_at(deadline):
                    await waiter
            except BaseException:
                if not waiter.cancel() and not waiter.cancelled() and waiter.exception() is None:
                    self._wake_one()  # woken as it timed out or was cancelled: the turn goes to the next waiter
                raise

    async def _connect(self, loop: asyncio.AbstractEventLoop, deadline: float) -> _Conn:
        self._open += 1
        conn = _Conn(self, loop)
        try:
            async with asyncio.timeout_at(min(deadline, loop.time() + self.connect_s)):
                await loop.create_connection(
                    lambda: conn, self.host, self.port, ssl=self.ssl, server_hostname=self.host if self.ssl else None
                )
        except BaseException:
            conn.close()
            raise
        return conn

    def _put(self, conn: _Conn) -> None:
        conn.response = None
        if self.closed or conn.lost:
            conn.close()
            return
        conn.resume()
        conn.idle_since = conn.loop.time()
        self._idle.append(conn)
        self._wake_one()

    def _forget(self, conn: _Conn) -> None:
        if conn.counted:
            conn.counted = False
            self._open -= 1
            if conn in self._idle:
                self._idle.remove(conn)
            self._wake_one()

    def _wake_one(self) -> None:
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def close(self) -> None:
        """Close every idle or lingering connection; the ones in use close when their answers are released."""
        self.closed = True
        while self._idle:
            self._idle.pop().close()
        for conn in list(self._lingering):
            conn.close()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(ConnectionError("the connection pool is closed"))
