"""Awaiting only what is not ready yet.

`start(awaitable)` runs an awaitable up to its first suspension. If it finished without suspending, its result
is there at once: a stream's next chunk that was already read and decoded costs no timer and no trip through
the event loop, and the chunks that are ready together can be sent together. If it had to wait, a `Pending` is
returned: awaiting it resumes the same awaitable where it stopped, exactly as if it had been awaited from the
start (the event loop waits on the same future; a cancellation reaches the same frame).
"""

from __future__ import annotations

from collections.abc import Awaitable, Generator
from typing import Any, Generic, TypeVar

__all__ = ["Pending", "start"]

T = TypeVar("T")


class Pending(Generic[T]):
    """A started awaitable, suspended at its first wait. Await it once, or `close()` it if it will not be."""

    __slots__ = ("_iterator", "_yielded")

    def __init__(self, iterator: Generator[Any, Any, T], yielded: Any) -> None:
        self._iterator = iterator
        self._yielded = yielded

    def __await__(self) -> Generator[Any, Any, T]:
        iterator, yielded = self._iterator, self._yielded
        while True:  # what `yield from iterator` does, from its second step on
            try:
                sent = yield yielded
            except GeneratorExit:
                iterator.close()
                raise
            except BaseException as exc:
                try:
                    yielded = iterator.throw(exc)
                except StopIteration as stop:
                    return stop.value  # type: ignore[no-any-return]
            else:
                try:
                    yielded = iterator.send(sent)
                except StopIteration as stop:
                    return stop.value  # type: ignore[no-any-return]

    def close(self) -> None:
        self._iterator.close()


def start(awaitable: Awaitable[T]) -> tuple[bool, T | Pending[T]]:
    """`(True, result)` if the awaitable finished without waiting, else `(False, Pending)`. Its exceptions
    propagate from here when raised before the first wait."""
    iterator = awaitable.__await__()
    try:
        yielded = iterator.send(None)
    except StopIteration as stop:
        return True, stop.value
    return False, Pending(iterator, yielded)
