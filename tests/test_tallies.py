"""Each process's tally of a planned run (Azurite): the completion check reads the run's row
and its tallies, never every message's row; tallies never count short; the exact sum decides."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from azure.data.tables.aio import TableClient

from sync.config.settings import StorageSettings
from sync.config.storage_names import LEDGER_TABLE
from sync.message.counts import MessageCounts
from sync.state import ledger, ledger_rows, manifests, runs
from sync.state.ledger_rows import run_partition
from sync.state.manifests import PlanManifest
from sync.state.storage import table_client
from sync.state.tallies import Tallies

START_S = 1_795_000_000.0


class CountingTable:
    """A real ledger client that counts the rows its queries return."""

    def __init__(self, table: TableClient) -> None:
        self._table = table
        self.rows_read = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._table, name)

    def query_entities(self, query: str, **kwargs: Any) -> AsyncIterator[Any]:
        async def counted() -> AsyncIterator[Any]:
            async for entity in self._table.query_entities(query, **kwargs):
                self.rows_read += 1
                yield entity
        return counted()


async def plan_run(table: TableClient, run_id: str, records: int) -> None:
    await runs.start_plan(table, run_id, START_S)
    await manifests.record_plan(table, PlanManifest(run_id, records, records // 10, 1,
                                                 complete=True))


def batch(run_id: str, number: int) -> str:
    return f"{run_id}-p000000-{number:03d}"


async def tally_rows(table: TableClient, run_id: str) -> list[dict[str, Any]]:
    rows = table.query_entities(f"PartitionKey eq '{run_partition(run_id)}' and "
                                f"RowKey ge 'tally:' and RowKey lt 'tally;'")
    return [dict(entity) async for entity in rows]


async def test_the_completion_check_reads_the_tallies_not_every_message(
        storage: StorageSettings) -> None:
    async with table_client(storage, LEDGER_TABLE, None) as table:
        counting = CountingTable(table)
        check: Any = counting  # the ledger client complete_if_done takes
        await plan_run(table, "run-big", 1000)
        for number in range(60):
            await ledger.record_message(table, batch("run-big", number), 0,
                                        MessageCounts(written=10))
        counting.rows_read = 0
        assert not await runs.complete_if_done(check, "run-big", START_S + 5)
        assert counting.rows_read == 2  # the run's row and this process's tally
        for number in range(60, 100):
            await ledger.record_message(table, batch("run-big", number), 0,
                                        MessageCounts(written=10))
        counting.rows_read = 0
        assert await runs.complete_if_done(check, "run-big", START_S + 9)
        # the tallies, then once the exact sum (the run's row, its tally, 100 messages' rows)
        assert counting.rows_read == 2 + (1 + 1 + 100)
        totals = await runs.read_run(table, "run-big")
    assert totals is not None
    assert totals.run.completed
    assert totals.counts.written == 1000


async def test_each_process_keeps_its_own_tally_and_a_message_done_twice_counts_twice(
        storage: StorageSettings) -> None:
    async with (table_client(storage, LEDGER_TABLE, None) as first,
                table_client(storage, LEDGER_TABLE, None) as second):
        await plan_run(first, "run-two", 30)
        await ledger.record_message(first, batch("run-two", 0), 0, MessageCounts(written=10))
        await ledger.record_message(second, batch("run-two", 1), 0, MessageCounts(written=10))
        # the same message processed again by the other process (its delete failed)
        await ledger.record_message(first, batch("run-two", 1), 0,
                                    MessageCounts(unchanged=10))
        quick = await runs.read_totals(first, "run-two")
        exact = await runs.read_run(first, "run-two")
        rows = await tally_rows(first, "run-two")
        assert not await runs.complete_if_done(second, "run-two", START_S + 1)
    assert quick is not None
    assert exact is not None
    assert (quick.exact, quick.counts.written, quick.counts.unchanged) == (False, 20, 10)
    assert (exact.exact, exact.counts.written, exact.counts.unchanged) == (True, 10, 10)
    assert sorted(row["Written"] + row["Unchanged"] for row in rows) == [10, 20]
    assert not exact.run.completed  # the tallies said 30 of 30; the exact sum says 20


async def test_concurrent_messages_store_the_latest_total(storage: StorageSettings) -> None:
    async with table_client(storage, LEDGER_TABLE, None) as table:
        await plan_run(table, "run-burst", 400)
        await asyncio.gather(*(ledger.record_message(table, batch("run-burst", n), 0,
                                                     MessageCounts(written=10))
                               for n in range(40)))
        (row,) = await tally_rows(table, "run-burst")
        assert await runs.complete_if_done(table, "run-burst", START_S + 3)
    assert row["Written"] == 400


async def test_a_forgotten_run_starts_a_new_tally_and_the_sum_holds(
        storage: StorageSettings) -> None:
    tallies = Tallies(kept_runs=1)
    async with table_client(storage, LEDGER_TABLE, None) as table:
        for run_id in ("run-a", "run-b"):
            await plan_run(table, run_id, 30)
        await tallies.add(table, "run-a", MessageCounts(written=10))
        await tallies.add(table, "run-b", MessageCounts(written=10))  # forgets run-a
        await tallies.add(table, "run-a", MessageCounts(written=5, dead_lettered=5))
        rows = await tally_rows(table, "run-a")
        totals = await runs.read_totals(table, "run-a")
    assert len(rows) == 2
    assert totals is not None
    assert (totals.counts.written, totals.counts.dead_lettered) == (15, 5)


async def test_a_run_started_before_tallies_is_summed_exactly(
        storage: StorageSettings) -> None:
    async with table_client(storage, LEDGER_TABLE, None) as table:
        await manifests.record_plan(table, PlanManifest("run-old", 20, 2, 1, complete=True))
        await table.upsert_entity(ledger_rows.message_entity(batch("run-old", 0), 0,
                                                        MessageCounts(written=20)))
        totals = await runs.read_totals(table, "run-old")
        assert await runs.complete_if_done(table, "run-old", START_S + 1)
    assert totals is not None
    assert totals.exact
    assert totals.counts.written == 20


async def test_a_producers_message_is_not_tallied(storage: StorageSettings) -> None:
    async with table_client(storage, LEDGER_TABLE, None) as table:
        await runs.start_message_run(table, "upstream-7", 3, START_S)
        await ledger.record_message(table, "upstream-7", 0, MessageCounts(written=3))
        rows = await tally_rows(table, "upstream-7")
        assert await runs.complete_if_done(table, "upstream-7", START_S + 1)
    assert rows == []


async def test_a_run_the_tallies_missed_is_completed_by_the_next_plan(
        storage: StorageSettings) -> None:
    async with table_client(storage, LEDGER_TABLE, None) as table:
        await plan_run(table, "run-missed", 20)
        # an instance that keeps no tally (an older version, mid-deployment) wrote the rows
        await table.upsert_entity(ledger_rows.message_entity(batch("run-missed", 0), 0,
                                                        MessageCounts(written=20)))
        assert not await runs.complete_if_done(table, "run-missed", START_S + 5)
        overlapped = await runs.start_plan(table, "run-next", START_S + 86_400)
        missed = await runs.read_run(table, "run-missed")
        following = await runs.read_run(table, "run-next")
    assert overlapped is None
    assert missed is not None
    assert missed.run.completed
    assert following is not None
    assert following.run.previous_run_id == ""


async def test_a_message_counted_twice_sends_one_check_to_the_exact_sum_not_every_one(
        storage: StorageSettings) -> None:
    """A redelivered message makes the tallies count 10 records twice: they say 100 of 100
    while 10 are still on the queue. The exact sum is read once, says 90, and is noted; the
    checks after each of the next messages read the run's row and tallies alone until the
    tallies have grown by the 10 missing records."""
    async with table_client(storage, LEDGER_TABLE, None) as table:
        counting = CountingTable(table)
        check: Any = counting
        await plan_run(table, "run-twice", 100)
        for number in range(9):
            await ledger.record_message(table, batch("run-twice", number), 0,
                                        MessageCounts(written=10))
        await ledger.record_message(table, batch("run-twice", 4), 0, MessageCounts(unchanged=10))
        counting.rows_read = 0
        assert not await runs.complete_if_done(check, "run-twice", START_S + 1)
        assert counting.rows_read == 2 + (1 + 1 + 9)  # the tallies, then the exact sum once
        reads = []
        for number in range(9):  # the last 10 records come one a message
            await ledger.record_message(table, batch("run-twice", 10 + number), 0,
                                        MessageCounts(written=1))
            counting.rows_read = 0
            assert not await runs.complete_if_done(check, "run-twice", START_S + 2)
            reads.append(counting.rows_read)
        await ledger.record_message(table, batch("run-twice", 19), 0, MessageCounts(written=1))
        counting.rows_read = 0
        assert await runs.complete_if_done(check, "run-twice", START_S + 3)
        totals = await runs.read_run(table, "run-twice")
    assert reads == [2] * 9
    assert counting.rows_read == 2 + (1 + 1 + 19)
    assert totals is not None
    assert (totals.run.completed, totals.counts.written, totals.counts.unchanged) == (True, 90, 10)
