"""Unit tests marked `virtual_time` run on an event loop whose clock jumps to its next timer
(`gateway/eval/_virtual_time.py`); those marked `uvloop` run twice, on asyncio's usual loop and on uvloop; every
other async test gets asyncio's usual loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import pytest
import uvloop

from gateway.eval._virtual_time import VirtualTimeLoop


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    if item.get_closest_marker("virtual_time") is not None:
        return {"virtual_time": VirtualTimeLoop}
    if item.get_closest_marker("uvloop") is not None:
        return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
    return {"asyncio": asyncio.new_event_loop}
