"""The DOP hint as a hard cluster-wide bound, measured by the emulator's own peak concurrency:
several instances (Services objects in one process, each with its own slots and lease) against
Azurite and the Dataverse emulator over HTTP."""

from __future__ import annotations

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


async def emulator(services: Services, path: str, method: str = "GET") -> Any:
    async with aiohttp.ClientSession() as session, session.request(
            method, f"{services.settings.dataverse_url}/_emulator/{path}",
            params={"entityset": "accounts"} if path == "records" else None) as answer:
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
    holder = next(s for s in instances if s.first_lane.governor.share > 0)
    await holder.first_lane.dataverse.who_am_i()
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
