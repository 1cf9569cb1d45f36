"""Streaming generators that also return a value (an explanation streams its text, then
returns the `Explanation`): one way to drain them, one way to pass both pieces on."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import Any, TypeVar

Y = TypeVar("Y")
R = TypeVar("R")


def drain(gen: Generator[Any, Any, R]) -> R:
    """Run `gen` to the end, discarding what it yields; its return value."""
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


def with_result(gen: Generator[Y, Any, R]) -> Iterator[tuple[Y, R | None]]:
    """`(piece, None)` for each yielded piece, then `(last piece, result)` once it returns."""
    last: Any = None
    while True:
        try:
            last = next(gen)
        except StopIteration as stop:
            yield last, stop.value
            return
        yield last, None
