"""The run ledger in Table Storage (Azurite): rows per batch attempt, sums, plan manifests."""

from __future__ import annotations

from collections import Counter

from sync.config.settings import StorageSettings
from sync.config.storage_names import LEDGER_TABLE
from sync.message.counts import MessageCounts
from sync.state import ledger, manifests
from sync.state.manifests import PlanManifest
from sync.state.storage import table_client


async def test_counts_sum_and_reprocessing_overwrites(storage: StorageSettings) -> None:
    async with table_client(storage, LEDGER_TABLE, None) as table:
        await ledger.record_message(table, "run-a-000001", 0, MessageCounts(
            written=90, reenqueued=10, throttled_by_code=Counter({"0x80072322": 1})))
        await ledger.record_message(table, "run-a-000001", 1, MessageCounts(written=9,
                                                                         dead_lettered=1))
        # the same attempt processed again (a host retry) replaces its row, never adds to it
        await ledger.record_message(table, "run-a-000002", 0, MessageCounts(written=3))
        await ledger.record_message(table, "run-a-000002", 0, MessageCounts(written=100))
        totals = await ledger.message_totals(table)
    assert (totals.written, totals.dead_lettered, totals.reenqueued) == (199, 1, 10)
    assert totals.throttled_by_code == Counter({"0x80072322": 1})
    assert totals.throttled == 1


async def test_plan_manifests_round_trip(storage: StorageSettings) -> None:
    first = PlanManifest("run-1", records=0, batches=0, pages=0, complete=False)
    done = PlanManifest("run-1", records=12_000, batches=120, pages=3, complete=True)
    async with table_client(storage, LEDGER_TABLE, None) as table:
        await manifests.record_plan(table, first)
        assert await manifests.plans(table) == [first]
        await manifests.record_plan(table, done)
        assert await manifests.plans(table) == [done]


async def test_every_test_gets_an_empty_account(storage: StorageSettings) -> None:
    async with table_client(storage, LEDGER_TABLE, None) as table:
        assert await manifests.plans(table) == []
        assert (await ledger.message_totals(table)).written == 0
