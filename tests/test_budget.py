"""The DOP hint as a hard cluster-wide bound, measured by the emulator's own peak concurrency:
several instances (Services objects in one process, each with its own slots and lease) against
Azurite and the Dataverse emulator over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from sync.local.verify import is_enriched
from sync.message.contract import Message, RecordRef
from sync.message.counts import MessageCounts
from sync.services import Services
from tests import hosting

Make = Callable[..., Any]
LIMIT_S = 120.0
FAST = {"write_ms_min": 20.0, "write_ms_max": 30.0, "request_overhead_ms": 1.0}
SETTINGS = {"SYNC_WRITE_MODE": "single", "SYNC_STATE_REFRESH_S": "0.2", "SYNC_LEASE_S": "5"}


async def emulator(services: Services, path: str, method: str = "GET",
                   body: dict[str, Any] | None = None) -> Any:
    async with aiohttp.ClientSession() as session, session.request(
            method, f"{services.settings.dataverse_url}/_emulator/{path}",
            params={"entityset": "accounts"} if path == "records" else None,
            json=body) as answer:
        return await answer.json()


async def rows(services: Services) -> list[dict[str, Any]]:
    return list((await emulator(services, "records"))["value"])


async def enqueue(services: Services, count: int, size: int) -> set[str]:
    records = [RecordRef(str(r["accountid"]), str(r["websiteurl"]))
               for r in (await rows(services))[:count]]
    for start in range(0, len(records), size):
        message = Message(f"b-{start:06d}", tuple(records[start:start + size]))
        await services.storage.batches.send_message(message.to_json())
    return {r.id for r in records}


async def run_instances(instances: list[Services], expected: int) -> MessageCounts:
    return await hosting.run_instances(instances, expected, LIMIT_S)


async def learn_hint(instances: list[Services], hint: int) -> None:
    """One instance asks Dataverse once; every instance refreshes until it knows the hint."""
    await instances[0].first_lane.dataverse.who_am_i()
    for _ in range(3):
        for services in instances:
            await services.first_lane.cluster.refresh()
    assert all(s.first_lane.cluster.view.hint == hint for s in instances)


async def check_written(services: Services, ids: set[str]) -> None:
    current = {str(r["accountid"]): r for r in await rows(services)}
    assert all(is_enriched(current[i], services.settings.definitions.first.table) for i in ids)


@pytest.mark.emulator(records=240, servers=1, dop_hint=2, **FAST)
@pytest.mark.timeout(LIMIT_S + 60)
async def test_four_instances_never_exceed_a_hint_of_two(make_services: Make) -> None:
    instances = [await make_services(**SETTINGS) for _ in range(4)]
    await learn_hint(instances, 2)
    assert sum(s.first_lane.governor.share for s in instances) <= 2
    await emulator(instances[0], "reset-stats", "POST")
    ids = await enqueue(instances[0], 240, size=10)
    totals = await run_instances(instances, len(ids))
    stats = await emulator(instances[0], "stats")
    peak = max(stats["peak_concurrency_by_user"].values())
    assert (totals.written, totals.dead_lettered) == (240, 0)
    await check_written(instances[0], ids)
    assert peak <= 2
    assert totals.reenqueued_by_reason  # instances without a slot sent their work back


@pytest.mark.emulator(records=120, servers=1, dop_hint=6, **FAST)
@pytest.mark.timeout(LIMIT_S + 60)
async def test_one_instance_uses_the_whole_hint(make_services: Make) -> None:
    (alone,) = instances = [await make_services(**SETTINGS)]
    await learn_hint(instances, 6)
    assert alone.first_lane.governor.share == 6
    await emulator(alone, "reset-stats", "POST")
    ids = await enqueue(alone, 120, size=40)
    totals = await run_instances(instances, len(ids))
    stats = await emulator(alone, "stats")
    assert (totals.written, totals.dead_lettered, totals.reenqueued) == (120, 0, 0)
    await check_written(alone, ids)
    assert max(stats["peak_concurrency_by_user"].values()) == 6


def peak(stats: dict[str, Any]) -> int:
    return max(stats["peak_concurrency_by_user"].values())


@pytest.mark.emulator(records=160, servers=1, dop_hint=2, **FAST)
@pytest.mark.timeout(LIMIT_S + 60)
async def test_cold_instances_never_exceed_the_hint_from_the_first_request(
        make_services: Make) -> None:
    """A fresh deployment: no hint row, no instance has asked Dataverse yet. Four instances
    start together and take work at once; their first requests already stay within the hint
    of 2 (the unknown hint's pool is one slot until an answer tells it)."""
    instances = [await make_services(**SETTINGS) for _ in range(4)]
    ids = await enqueue(instances[0], 160, size=10)
    totals = await run_instances(instances, len(ids))
    stats = await emulator(instances[0], "stats")
    assert (totals.written, totals.dead_lettered) == (160, 0)
    await check_written(instances[0], ids)
    assert peak(stats) <= 2


async def until_every_view_says(instances: list[Services], hint: int) -> None:
    """Bounded: the background refreshers bring every instance to ``hint``."""
    for _ in range(200):
        if all(s.first_lane.cluster.view.hint == hint for s in instances):
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"not every instance learned the hint {hint}")


@pytest.mark.emulator(records=400, servers=1, dop_hint=6, **FAST)
@pytest.mark.timeout(LIMIT_S + 60)
async def test_a_hint_lowered_mid_run_holds_cluster_wide_and_never_flips_back(
        make_services: Make) -> None:
    """The service lowers its hint from 6 to 2 while four instances work: once one of them has
    seen it, every instance follows within a refresh, and the instances that sent nothing since
    (whose last sighting is the old 6) never write the old hint back."""
    instances = [await make_services(**SETTINGS) for _ in range(4)]
    await learn_hint(instances, 6)
    ids = await enqueue(instances[0], 400, size=10)
    await run_instances(instances, 100)  # the first part of the run, under a hint of 6
    await emulator(instances[0], "config", "PATCH", {"dop_hint": 2})
    holder = next(s for s in instances if s.first_lane.governor.share > 0)
    await holder.first_lane.dataverse.who_am_i()  # one instance sees the lowered hint
    await until_every_view_says(instances, 2)
    await asyncio.sleep(2 * float(SETTINGS["SYNC_STATE_REFRESH_S"]))  # slots above it go back
    await emulator(instances[0], "reset-stats", "POST")
    totals = await run_instances(instances, len(ids))
    stats = await emulator(instances[0], "stats")
    assert (totals.written, totals.dead_lettered) == (400, 0)
    assert peak(stats) <= 2
    assert all(s.first_lane.cluster.view.hint == 2 for s in instances)
