"""`start`: an awaitable that is ready costs no wait; one that is not resumes exactly where it stopped."""

from __future__ import annotations

import asyncio

import pytest

from gateway.core.aio import Pending, start


async def ready_value() -> int:
    return 7


async def after(event: asyncio.Event, value: int) -> int:
    await event.wait()
    return value


async def test_a_ready_awaitable_is_finished_at_once() -> None:
    done, value = start(ready_value())
    assert done
    assert value == 7


async def test_an_awaitable_that_waits_is_resumed_where_it_stopped() -> None:
    event = asyncio.Event()
    done, pending = start(after(event, 3))
    assert not done
    assert isinstance(pending, Pending)
    asyncio.get_running_loop().call_soon(event.set)
    assert await pending == 3


async def test_errors_before_the_first_wait_propagate_from_start() -> None:
    async def empty() -> int:
        raise StopAsyncIteration

    with pytest.raises(StopAsyncIteration):
        start(empty())


async def test_errors_after_the_wait_propagate_from_the_await() -> None:
    event = asyncio.Event()

    async def fails() -> None:
        await event.wait()
        raise ValueError("late")

    done, pending = start(fails())
    assert not done
    event.set()
    with pytest.raises(ValueError, match="late"):
        await pending  # type: ignore[misc]


async def test_a_cancellation_reaches_the_suspended_frame() -> None:
    seen: list[str] = []
    parked = asyncio.Event()

    async def waits() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            seen.append("cancelled inside")
            raise

    async def runner() -> None:
        done, pending = start(waits())
        assert not done
        parked.set()
        await pending  # type: ignore[misc]

    task = asyncio.ensure_future(runner())
    await parked.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == ["cancelled inside"]


async def test_close_runs_the_suspended_frame_s_cleanup() -> None:
    cleaned: list[bool] = []

    async def waits() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cleaned.append(True)

    done, pending = start(waits())
    assert not done
    pending.close()  # type: ignore[union-attr]
    assert cleaned == [True]


async def test_async_generators_step_by_step() -> None:
    event = asyncio.Event()

    async def gen():  # type: ignore[no-untyped-def]
        yield 1
        yield 2
        await event.wait()
        yield 3

    iterator = gen()
    assert start(iterator.__anext__()) == (True, 1)
    assert start(iterator.__anext__()) == (True, 2)
    done, pending = start(iterator.__anext__())
    assert not done
    event.set()
    assert await pending == 3  # type: ignore[misc]
    with pytest.raises(StopAsyncIteration):
        start(iterator.__anext__())
