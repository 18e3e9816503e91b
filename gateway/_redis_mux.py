"""One Redis connection shared by every caller of an endpoint, its commands pipelined: the hot path's scripts and
reads without redis-py's per-command machinery.

Through redis-py's asyncio client one command costs ~50 us of CPU here (`bench/profile.py --limits`: a pool
checkout and release, a retry wrapper, observability hooks, packing in Python, a parser, response callbacks);
here it is a `write` of bytes packed by hiredis and a future resolved by the connection's `data_received`, which
feeds hiredis's reader (~10 us, and replies that arrive together are read together). Replies come back in the
order the commands were written, so matching them to callers needs no ids: a queue of futures.

Timeouts: every command has the same budget. One timer watches the oldest unanswered command (replies are in
order, so nothing behind it has been answered either); when it expires the connection is closed and every
waiting caller gets TimeoutError, so a dead peer (a cable pulled, a half-open socket) costs one budget, not one
per caller, and the next command starts on a new connection. A caller that stops waiting (cancelled) leaves its
future behind; its reply is read and dropped, and the connection stays in step.

Only plain connections go this way: `redis://`, `unix://` and the master a Sentinel names. TLS (`rediss://`)
and Cluster keep redis-py's client (see gateway/_redis.py).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

import hiredis

__all__ = ["Address", "Multiplexer", "ReplyError", "pack"]

ReplyError = hiredis.ReplyError
# One command's words as RESP bytes (hiredis's stub types its argument as a 1-tuple).
pack = cast("Callable[[tuple[str | bytes | int, ...]], bytes]", hiredis.pack_command)


@dataclass(frozen=True, slots=True)
class Address:
    """Where and as whom to connect: `host`/`port`, or a unix socket `path`."""

    host: str = "localhost"
    port: int = 6379
    path: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = None


class _Connection(asyncio.Protocol):
    def __init__(self, timeout_s: float) -> None:
        self._timeout_s = timeout_s
        self._loop = asyncio.get_running_loop()
        self._reader = hiredis.Reader()
        self._pending: deque[tuple[float, asyncio.Future[Any]]] = deque()
        self._outgoing: list[bytes] = []
        self._timer: asyncio.TimerHandle | None = None
        self._transport: asyncio.Transport | None = None
        self.error: Exception | None = None  # set once the connection is unusable

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(ConnectionError(f"connection lost ({exc or 'closed by the server'})"))

    def data_received(self, data: bytes) -> None:
        reader, pending = self._reader, self._pending
        reader.feed(data)
        try:
            while (reply := reader.gets()) is not False:
                if not pending:
                    raise ConnectionError("a reply to no command")
                future = pending.popleft()[1]
                if not future.done():
                    if isinstance(reply, ReplyError):
                        future.set_exception(reply)
                    else:
                        future.set_result(reply)
        except (hiredis.ProtocolError, ConnectionError) as exc:
            self.fail(ConnectionError(str(exc)))

    def send(self, packed: bytes) -> asyncio.Future[Any]:
        """Queue one command for this loop turn's write; its reply (or ReplyError) comes on the future."""
        if self.error is not None:
            raise self.error
        loop = self._loop
        future = loop.create_future()
        deadline = loop.time() + self._timeout_s
        if not self._pending and self._timer is None:
            self._timer = loop.call_at(deadline, self._expire)
        self._pending.append((deadline, future))
        if not self._outgoing:
            loop.call_soon(self._flush)
        self._outgoing.append(packed)
        return future

    def _flush(self) -> None:
        # One write (one system call, the most expensive step of a command here) for every command queued in this
        # loop turn, by every caller: under load several requests' commands share it.
        outgoing, self._outgoing = self._outgoing, []
        if self.error is None and self._transport is not None:
            self._transport.write(b"".join(outgoing))

    def _expire(self) -> None:
        self._timer = None
        if not self._pending:
            return
        deadline = self._pending[0][0]
        if deadline > self._loop.time():
            self._timer = self._loop.call_at(deadline, self._expire)
            return
        self.fail(TimeoutError(f"no reply within {self._timeout_s} s"))

    def fail(self, error: Exception) -> None:
        """Close the connection and fail every command waiting on it."""
        if self.error is None:
            self.error = error
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._transport is not None:
            self._transport.close()
        pending, self._pending = self._pending, deque()
        for _, future in pending:
            if not future.done():
                future.set_exception(error)


class Multiplexer:
    """Every command of one endpoint on one connection, opened on first use and again after a failure."""

    def __init__(self, locate: Callable[[], Awaitable[Address]], *, timeout_s: float) -> None:
        self._locate = locate  # a Sentinel is asked again at every (re)connect: a failover moves the master
        self._timeout_s = timeout_s
        self._connection: _Connection | None = None
        self._opening: asyncio.Future[_Connection] | None = None

    async def execute(self, packed: bytes) -> Any:
        """One command's reply; ReplyError for an error reply, ConnectionError, OSError or TimeoutError when the
        connection failed (then the next command opens a new one)."""
        connection = self._connection
        if connection is None or connection.error is not None:
            connection = await self._connected()
        return await connection.send(packed)

    async def execute_many(self, commands: list[bytes]) -> list[Any]:
        """Several commands written together; each reply, or the exception it raised, in order."""
        connection = self._connection
        if connection is None or connection.error is not None:
            connection = await self._connected()
        futures = [connection.send(packed) for packed in commands]
        return list(await asyncio.gather(*futures, return_exceptions=True))

    def drop(self, error: Exception) -> None:
        """Give up the connection (e.g. it reaches a demoted master): the next command opens a new one."""
        if self._connection is not None:
            self._connection.fail(error)

    async def _connected(self) -> _Connection:
        if self._opening is None:  # concurrent first commands share one connect
            self._opening = asyncio.get_running_loop().create_future()
            opening = self._opening
            try:
                async with asyncio.timeout(self._timeout_s):
                    self._connection = await self._open()
            except BaseException as exc:
                opening.set_exception(exc if isinstance(exc, Exception) else ConnectionError("connect cancelled"))
                opening.exception()  # retrieved: a connect nobody else waited for must not warn
                raise
            else:
                opening.set_result(self._connection)
            finally:
                self._opening = None
            return self._connection
        return await asyncio.shield(self._opening)

    async def _open(self) -> _Connection:
        address = await self._locate()
        loop = asyncio.get_running_loop()
        timeout_s = self._timeout_s
        if address.path is not None:
            transport, connection = await loop.create_unix_connection(lambda: _Connection(timeout_s), address.path)
        else:
            transport, connection = await loop.create_connection(
                lambda: _Connection(timeout_s), address.host, address.port
            )
        connection.connection_made(transport)  # uvloop may call it only after this returns
        try:
            setup = []
            if address.password is not None:
                user = (address.username,) if address.username else ()
                setup.append(connection.send(pack(("AUTH", *user, address.password))))
            if address.db:
                setup.append(connection.send(pack(("SELECT", address.db))))
            for reply in await asyncio.gather(*setup, return_exceptions=True):
                if isinstance(reply, BaseException):
                    raise ConnectionError(str(reply))
        except BaseException as exc:
            connection.fail(ConnectionError(f"setup failed ({type(exc).__name__})"))
            raise
        return connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.fail(ConnectionError("closed"))
            self._connection = None
