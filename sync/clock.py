"""One clock for the product and the emulators, injectable so tests move time instead of sleeping.

Every duration the code waits or measures goes through a ``Clock``:

- ``monotonic_s()``: seconds on a clock that never goes back (deadlines, windows, latencies);
- ``wall_s()``: seconds since the epoch (what instances share through Table Storage);
- ``sleep(seconds)``: wait that long on this clock;
- ``call_later(delay_s, callback)``: call back that long from now (a timer that wakes waiters,
  as ``loop.call_at`` does, without a task), cancellable.

``SYSTEM_CLOCK`` is the real one. ``ManualClock`` is for tests: time stands still until
``advance`` moves it, which wakes the sleepers and fires the timers whose time came, in order;
with
``auto_advance=True`` every ``sleep`` moves time itself and returns at once (a burst mode for
retries and back-offs, after stamina's ``set_testing``).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from typing import Final, Protocol


class Timer(Protocol):
    """A callback waiting for its time: ``cancel`` it and it is never called."""

    def cancel(self) -> None: ...


class Clock(Protocol):
    """What the code asks of time."""

    def monotonic_s(self) -> float:
        """Seconds on a clock that never goes back."""

    def wall_s(self) -> float:
        """Seconds since the Unix epoch."""

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` on this clock."""

    def call_later(self, delay_s: float, callback: Callable[[], object]) -> Timer:
        """Call ``callback`` (in the running loop) ``delay_s`` from now on this clock."""


class SystemClock:
    """The real clock: ``time.monotonic`` (as asyncio's loop uses), ``time.time``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "SystemClock()"

    def monotonic_s(self) -> float:
        return time.monotonic()

    def wall_s(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def call_later(self, delay_s: float, callback: Callable[[], object]) -> Timer:
        return asyncio.get_running_loop().call_later(max(0.0, delay_s), callback)


SYSTEM_CLOCK: Final = SystemClock()

_EPOCH_2026_S: Final = 1_767_225_600.0
"""2026-01-01T00:00:00Z: where a manual clock's wall time starts unless told otherwise."""


class ManualTimer:
    """A ``ManualClock`` timer: called by ``advance`` once its deadline has come."""

    __slots__ = ("callback", "cancelled")

    def __init__(self, callback: Callable[[], object]) -> None:
        self.callback, self.cancelled = callback, False

    def __repr__(self) -> str:
        return f"ManualTimer(cancelled={self.cancelled})"

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock:
    """A clock that moves only when told (or, with ``auto_advance``, when slept on)."""

    __slots__ = ("_auto_advance", "_now_s", "_order", "_sleepers", "_timers", "_wall_offset_s")

    def __init__(self, start_s: float = 0.0, *, wall_start_s: float = _EPOCH_2026_S,
                 auto_advance: bool = False) -> None:
        self._now_s = start_s
        self._wall_offset_s = wall_start_s - start_s
        self._auto_advance = auto_advance
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._timers: list[tuple[float, int, ManualTimer]] = []
        self._order = itertools.count()

    def __repr__(self) -> str:
        return (f"ManualClock(now_s={self._now_s:g}, sleepers={len(self._sleepers)}, "
                f"auto_advance={self._auto_advance})")

    def monotonic_s(self) -> float:
        return self._now_s

    def wall_s(self) -> float:
        return self._now_s + self._wall_offset_s

    @property
    def sleepers(self) -> int:
        """How many sleeps are waiting for time to move."""
        return sum(1 for _, _, future in self._sleepers if not future.done())

    async def sleep(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"cannot sleep a negative time, got {seconds}")
        if self._auto_advance:
            self.advance(seconds)
            await asyncio.sleep(0)
            return
        if seconds == 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now_s + seconds, next(self._order), future))
        await future

    def call_later(self, delay_s: float, callback: Callable[[], object]) -> ManualTimer:
        timer = ManualTimer(callback)
        heapq.heappush(self._timers, (self._now_s + max(0.0, delay_s), next(self._order), timer))
        return timer

    def advance(self, seconds: float) -> None:
        """Move time forward; fire every timer and wake every sleeper whose deadline has come."""
        if seconds < 0:
            raise ValueError(f"time does not go back, got {seconds}")
        self._now_s += seconds
        while self._timers and self._timers[0][0] <= self._now_s:
            _, _, timer = heapq.heappop(self._timers)
            if not timer.cancelled:
                timer.callback()
        while self._sleepers and self._sleepers[0][0] <= self._now_s:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)


class SkewedClock:
    """Another clock's time with its wall clock ``offset_s`` ahead (behind when negative): an
    instance whose clock differs from the others' (tests and the soak inject it)."""

    __slots__ = ("_base", "offset_s")

    def __init__(self, base: Clock, offset_s: float) -> None:
        self._base, self.offset_s = base, offset_s

    def __repr__(self) -> str:
        return f"SkewedClock(offset_s={self.offset_s:g}, base={self._base!r})"

    def monotonic_s(self) -> float:
        return self._base.monotonic_s()

    def wall_s(self) -> float:
        return self._base.wall_s() + self.offset_s

    async def sleep(self, seconds: float) -> None:
        await self._base.sleep(seconds)

    def call_later(self, delay_s: float, callback: Callable[[], object]) -> Timer:
        return self._base.call_later(delay_s, callback)
