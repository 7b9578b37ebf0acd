"""The one clock: a manual clock wakes sleepers in order, never goes back, and auto-advances."""

from __future__ import annotations

import asyncio

import pytest

from sync.clock import SYSTEM_CLOCK, ManualClock


async def test_sleepers_wake_in_deadline_order_when_time_moves() -> None:
    clock = ManualClock()
    woke: list[str] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append(name)

    tasks = [asyncio.create_task(sleeper("late", 5)), asyncio.create_task(sleeper("soon", 1))]
    await asyncio.sleep(0)
    assert clock.sleepers == 2
    clock.advance(1)
    await asyncio.sleep(0)
    assert woke == ["soon"]
    clock.advance(4)
    await asyncio.gather(*tasks)
    assert woke == ["soon", "late"]
    assert clock.monotonic_s() == 5


async def test_auto_advance_moves_time_by_the_sleep() -> None:
    clock = ManualClock(start_s=10, wall_start_s=1000, auto_advance=True)
    await clock.sleep(2.5)
    assert clock.monotonic_s() == 12.5
    assert clock.wall_s() == 1002.5


@pytest.mark.parametrize("seconds", [-1.0, -0.001])
def test_time_never_goes_back(seconds: float) -> None:
    with pytest.raises(ValueError, match="back"):
        ManualClock().advance(seconds)


async def test_the_system_clock_reads_real_time() -> None:
    before = SYSTEM_CLOCK.monotonic_s()
    await SYSTEM_CLOCK.sleep(0)
    assert SYSTEM_CLOCK.monotonic_s() >= before
    assert SYSTEM_CLOCK.wall_s() > 1_700_000_000
