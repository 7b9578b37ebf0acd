"""Splitting a sequence into consecutive groups."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def chunk(items: Iterable[T], size: int) -> Iterator[tuple[T, ...]]:
    """Consecutive groups of at most ``size`` items, in order."""
    if size < 1:
        raise ValueError(f"size must be at least 1, got {size}")
    group: list[T] = []
    for item in items:
        group.append(item)
        if len(group) == size:
            yield tuple(group)
            group = []
    if group:
        yield tuple(group)
