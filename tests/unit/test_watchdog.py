"""The request watchdog: one timer cancels requests past their end, on every event loop it is used from."""

from __future__ import annotations

import asyncio

import pytest

from gateway.http.watchdog import WATCHDOG


async def _guarded(end_in_s: float) -> str | None:
    guard = WATCHDOG.guard(end_in_s)
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        assert guard.fired is not None
        guard.task.uncancel()
        return guard.fired
    finally:
        WATCHDOG.release(guard)
    return None


@pytest.mark.parametrize("run", range(3))
def test_a_request_past_its_end_is_cancelled_on_each_new_loop(run: int) -> None:
    # Each asyncio.run is a new loop: a tick left on the previous one must not leave this one unwatched.
    async def main() -> str | None:
        async with asyncio.timeout(3):
            return await _guarded(0.15)

    assert asyncio.run(main()) == "deadline"
