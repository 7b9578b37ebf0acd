"""The one clock: a manual clock wakes sleepers in order, never goes back, and auto-advances."""

from __future__ import annotations

import asyncio

import pytest

from sync.clock import SYSTEM_CLOCK, ManualClock, SkewedClock


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


async def test_timers_fire_in_order_when_time_moves_and_a_cancelled_one_never() -> None:
    clock = ManualClock()
    fired: list[str] = []
    clock.call_later(2.0, lambda: fired.append("late"))
    clock.call_later(1.0, lambda: fired.append("soon"))
    clock.call_later(1.5, lambda: fired.append("cancelled")).cancel()
    clock.advance(1.0)
    assert fired == ["soon"]
    clock.advance(5.0)
    assert fired == ["soon", "late"]


async def test_the_system_clock_calls_back_on_the_loop() -> None:
    called = asyncio.Event()
    SYSTEM_CLOCK.call_later(0.0, called.set)
    await asyncio.wait_for(called.wait(), 5.0)


async def test_a_skewed_clock_moves_with_its_base_with_its_wall_apart() -> None:
    base = ManualClock(start_s=10, wall_start_s=1000)
    ahead = SkewedClock(base, 3.0)
    assert (ahead.monotonic_s(), ahead.wall_s()) == (10, 1003)
    fired: list[float] = []
    ahead.call_later(1.0, lambda: fired.append(ahead.wall_s()))
    base.advance(1.0)
    assert fired == [1004.0]
