"""Faults on demand over real HTTP: 500, 503, reset connections and slow answers at the
configured rate (within statistical bounds), repeatable with the same seed, and counted in
the stats exactly as the client saw them."""

from __future__ import annotations

import math
import random

import aiohttp
import pytest

from sync.local.emulators.webapi.injection import FAULT_HEADER
from tests.webapi.conftest import FAST, Client


def within(count: int, trials: int, rate: float) -> bool:
    """``count`` of ``trials`` is within four standard deviations of ``rate``."""
    spread = 4 * math.sqrt(trials * rate * (1 - rate))
    return abs(count - trials * rate) <= spread


@pytest.mark.parametrize(("fault", "status"), [("fault_500_rate", 500),
                                               ("fault_503_rate", 503)])
async def test_error_answers_appear_at_the_configured_rate(client: Client, fault: str,
                                                           status: int) -> None:
    await client.configure(records=1, seed=7, **FAST, **{fault: 0.3})
    answers = [await client.get("WhoAmI") for _ in range(400)]
    statuses = [a.status for a in answers]
    assert set(statuses) == {200, status}
    assert within(statuses.count(status), 400, 0.3)
    failed = next(a for a in answers if a.status == status)
    assert set(failed.error) == {"code", "message"}
    assert (await client.admin("stats"))["faults"] == {str(status): statuses.count(status)}


async def test_reset_connections_appear_at_the_configured_rate(client: Client) -> None:
    await client.configure(records=1, seed=3, reset_rate=0.3, **FAST)
    record = (await client.ids(1))[0]
    resets = 0
    connector = aiohttp.TCPConnector(force_close=True)  # one connection per request
    async with aiohttp.ClientSession(connector=connector) as fresh:
        for _ in range(200):  # PATCH: aiohttp silently retries an idempotent GET once
            try:
                answer = await client.patch(record, {"description": "x"}, session=fresh)
            except aiohttp.ClientConnectionError:
                resets += 1
            else:
                assert answer.status == 204
    assert within(resets, 200, 0.3)
    assert (await client.admin("stats"))["faults"] == {"reset": resets}


async def test_slow_answers_appear_at_the_configured_rate(client: Client) -> None:
    """Which answers were slowed is read from the mark the emulator puts on them, never from
    how long they took; the seeded RNG decides the same ones every run."""
    await client.configure(records=1, seed=5, slow_rate=0.25, slow_ms=1.0, **FAST)
    marks = [(await client.get("WhoAmI")).headers.get(FAULT_HEADER) for _ in range(80)]
    draws = random.Random(5 + 1)  # the emulator's fault RNG: one draw per request
    assert marks == ["slow" if draws.random() < 0.25 else None for _ in range(80)]
    assert within(marks.count("slow"), 80, 0.25)
    assert (await client.admin("stats"))["faults"] == {"slow": marks.count("slow")}


async def statuses_with_seed(client: Client, seed: int) -> list[int]:
    await client.configure(records=1, seed=seed, fault_500_rate=0.2, fault_503_rate=0.2,
                           **FAST)
    return [(await client.get("WhoAmI")).status for _ in range(60)]


async def test_faults_are_repeatable_with_the_same_seed(client: Client) -> None:
    first = await statuses_with_seed(client, 11)
    assert await statuses_with_seed(client, 11) == first
    assert await statuses_with_seed(client, 12) != first
    assert {500, 503} <= set(first)


async def test_faults_can_be_switched_on_and_off_at_run_time(client: Client) -> None:
    await client.configure(records=1, **FAST)
    assert (await client.get("WhoAmI")).status == 200
    await client.admin("config", "PATCH", {"fault_503_rate": 1.0})
    assert (await client.get("WhoAmI")).status == 503
    await client.admin("config", "PATCH", {"fault_503_rate": 0.0})
    assert (await client.get("WhoAmI")).status == 200
