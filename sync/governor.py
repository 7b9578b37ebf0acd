"""The per-process bound on concurrent Dataverse requests, shared by every invocation."""

from __future__ import annotations

import asyncio
from types import TracebackType


class Governor:
    """An async context manager that admits at most ``limit`` requests at once.

    One governor serves every invocation a worker process runs, so the bound holds for the
    process, not per message.
    """

    __slots__ = ("_in_flight", "_limit", "_semaphore")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        self._limit = limit
        self._in_flight = 0
        self._semaphore = asyncio.Semaphore(limit)

    def __repr__(self) -> str:
        return f"Governor(limit={self._limit}, in_flight={self._in_flight})"

    @property
    def limit(self) -> int:
        """Requests admitted at once."""
        return self._limit

    @property
    def in_flight(self) -> int:
        """Requests admitted and not yet finished."""
        return self._in_flight

    async def __aenter__(self) -> None:
        await self._semaphore.acquire()
        self._in_flight += 1

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        self._in_flight -= 1
        self._semaphore.release()
