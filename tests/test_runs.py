"""What a run is (Azurite): its row and totals in one partition, completion claimed once with an
ETag, overlap, producer runs; and the planner and the worker driving it, on an injected clock."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from typing import Any, Final

import pytest
from azure.data.tables.aio import TableClient
from azure.storage.queue.aio import QueueClient

from sync.clock import ManualClock
from sync.config.settings import Settings, StorageSettings
from sync.config.storage_names import BATCH_QUEUE, LEDGER_TABLE
from sync.message.contract import Message, RecordRef
from sync.message.counts import MessageCounts, RequestUsage
from sync.message.ids import is_planned, run_id_of
from sync.plan import planner
from sync.services import open_services
from sync.state import ledger, manifests, runs
from sync.state.manifests import PlanManifest
from sync.state.runs import RunRow, is_complete
from sync.state.storage import table_client
from sync.telemetry import names
from sync.work import worker

START_S = 1_795_000_000.0
NOW = datetime.fromtimestamp(START_S, UTC)


def row(planned: int, *, plan_complete: bool = True, completed: bool = False) -> RunRow:
    return RunRow("run-x", "plan", planned, 1, plan_complete, START_S, completed=completed)


@pytest.mark.parametrize(("run", "counts", "complete"), [
    (row(10), MessageCounts(written=10), True),
    (row(10), MessageCounts(written=7, dead_lettered=3), True),
    (row(10), MessageCounts(written=7, dead_lettered=1, reenqueued=2), False),
    (row(10, plan_complete=False), MessageCounts(written=10), False),
    (row(0), MessageCounts(), True),
], ids=["all written", "written and dead-lettered reach planned",
        "re-enqueued records are still open", "a plan still paging is never complete",
        "an empty plan is complete at once"])
def test_when_a_run_is_complete(run: RunRow, counts: MessageCounts, complete: bool) -> None:
    assert is_complete(run, counts) is complete


@pytest.mark.parametrize(("batch_id", "run_id", "planned"), [
    ("run-20261122T020000Z-1a2b3c-p000003-007", "run-20261122T020000Z-1a2b3c", True),
    ("run-20261122T020000Z-1a2b3c-p000003-007.1", "run-20261122T020000Z-1a2b3c", True),
    ("import-000001", "import-000001", False),
    ("import-000001.1.2", "import-000001", False),
], ids=["a planner's batch", "a planner's split remainder", "a producer's message",
        "a producer's split remainder"])
def test_the_run_of_a_batch(batch_id: str, run_id: str, planned: bool) -> None:
    assert (run_id_of(batch_id), is_planned(batch_id)) == (run_id, planned)


def test_the_index_puts_the_latest_start_first() -> None:
    assert runs.index_key(START_S + 1, "run-b") < runs.index_key(START_S, "run-a")


@pytest.fixture
def events(caplog: pytest.LogCaptureFixture) -> Iterator[Callable[[str], list[Any]]]:
    with caplog.at_level(logging.INFO, logger="sync.events"):
        yield lambda name: [r for r in caplog.records
                            if r.name == "sync.events" and r.getMessage() == name]


async def plan_run(table: TableClient, run_id: str, records: int, started_s: float) -> None:
    await runs.start_plan(table, run_id, started_s)
    await manifests.record_plan(table, PlanManifest(run_id, records, 2, 1, complete=True))


async def test_a_run_completes_once_with_its_counts_and_duration(
        storage: StorageSettings, events: Callable[[str], list[Any]]) -> None:
    clock = ManualClock(wall_start_s=START_S)
    async with table_client(storage, LEDGER_TABLE, None) as table:
        await plan_run(table, "run-a", 10, clock.wall_s())
        await ledger.record_message(table, "run-a-p000000-000", 0, MessageCounts(written=5,
                                                                              reenqueued=5))
        clock.advance(60)
        assert not await runs.complete_if_done(table, "run-a", clock.wall_s())
        await ledger.record_message(table, "run-a-p000000-000", 1, MessageCounts(
            written=2, unchanged=2, dead_lettered=1,
            dead_lettered_by_reason=Counter({"record_missing": 1}),
            requests=RequestUsage(reads=1, writes=3, retries=1)))
        clock.advance(15.5)
        assert await runs.complete_if_done(table, "run-a", clock.wall_s())
        assert not await runs.complete_if_done(table, "run-a", clock.wall_s())
        totals = await runs.read_run(table, "run-a")
    (event,) = events(names.RUN_COMPLETED)
    assert {key: getattr(event, key) for key in (
        names.RUN_ID, names.DEFINITION, names.PLANNED, names.WRITTEN, names.DEAD_LETTERED,
        names.UNCHANGED, names.REQUESTS, names.DURATION_S, names.OVERLAPPED)} == {
        names.RUN_ID: "run-a", names.DEFINITION: names.DEFAULT_DEFINITION, names.PLANNED: 10,
        names.WRITTEN: 7, names.DEAD_LETTERED: 1, names.UNCHANGED: 2, names.REQUESTS: 5,
        names.DURATION_S: 75.5, names.OVERLAPPED: False}
    assert totals is not None
    assert totals.run.completed
    assert totals.run.completed_s == START_S + 75.5
    assert (totals.done, totals.open, totals.counts.reenqueued) == (10, 0, 5)


async def test_two_concurrent_completers_emit_exactly_one_event(
        storage: StorageSettings, events: Callable[[str], list[Any]]) -> None:
    async with (table_client(storage, LEDGER_TABLE, None) as first,
                table_client(storage, LEDGER_TABLE, None) as second):
        await plan_run(first, "run-b", 3, START_S)
        await ledger.record_message(first, "run-b-p000000-000", 0, MessageCounts(written=3))
        claims = await asyncio.gather(*(runs.complete_if_done(table, "run-b", START_S + 9)
                                        for table in (first, second, first, second)))
    assert sorted(claims) == [False, False, False, True]
    assert len(events(names.RUN_COMPLETED)) == 1


async def test_a_plan_that_starts_beside_an_incomplete_run_overlaps_it(
        storage: StorageSettings, events: Callable[[str], list[Any]]) -> None:
    async with table_client(storage, LEDGER_TABLE, None) as table:
        await plan_run(table, "run-old", 5, START_S)
        assert await runs.start_plan(table, "run-new", START_S + 86_400) == "run-old"
        await manifests.record_plan(table, PlanManifest("run-new", 0, 0, 1, complete=True))
        assert await runs.complete_if_done(table, "run-new", START_S + 86_401)
        old, new = await runs.read_run(table, "run-old"), await runs.read_run(table, "run-new")
        assert await runs.latest_run_id(table) == "run-new"
        assert await runs.start_plan(table, "run-third", START_S + 2 * 86_400) is None
    (overlap,) = events(names.RUN_OVERLAPPED)
    assert (getattr(overlap, names.RUN_ID), getattr(overlap, names.PREVIOUS_RUN_ID)) == (
        "run-new", "run-old")
    assert old is not None
    assert new is not None
    assert (old.run.overlapped_by, new.run.previous_run_id) == ("run-new", "run-old")
    assert not old.run.completed
    (completed,) = events(names.RUN_COMPLETED)
    assert getattr(completed, names.OVERLAPPED) is True


async def test_a_producers_message_is_its_own_run_recorded_once(
        storage: StorageSettings, events: Callable[[str], list[Any]]) -> None:
    async with table_client(storage, LEDGER_TABLE, None) as table:
        assert await runs.start_message_run(table, "import-000001", 4, START_S)
        assert not await runs.start_message_run(table, "import-000001", 4, START_S + 1)
        assert await runs.latest_run_id(table) == "import-000001"
        await ledger.record_message(table, "import-000001", 0, MessageCounts(written=2,
                                                                         reenqueued=2))
        await ledger.record_message(table, "import-000001.1", 1, MessageCounts(written=2))
        assert await runs.complete_if_done(table, "import-000001", START_S + 30)
        assert await runs.read_run(table, "no-such-run") is None
    assert [getattr(e, names.PLANNED) for e in events(names.RUN_PLANNED)] == [4]
    (completed,) = events(names.RUN_COMPLETED)
    assert getattr(completed, names.DURATION_S) == 30


UNHURRIED: Final = {"SYNC_MESSAGE_DEADLINE_S": "3600", "SYNC_MAX_WAIT_S": "60"}
"""The longest message deadline and admission wait: a cold instance waiting for its share of
the cluster (a real Table round trip) is not given up on while the manual clock of
``time_passing`` runs ahead."""


@contextlib.asynccontextmanager
async def time_passing(clock: ManualClock, step_s: float = 1.0) -> AsyncIterator[None]:
    """While the body runs, the manual clock moves ``step_s`` whenever something sleeps on it,
    as time would: a wait the worker makes (a slot, a back-off after a slow answer under load)
    ends instead of hanging the test. Something always sleeps while a message runs (the pause
    watch), so the clock runs up to 10 times faster than the work: a test using this sets the
    waits it must not give up (``UNHURRIED``), or on a busy machine a message stops at its
    deadline, or a cold instance's admission gives up before its share arrives."""
    async def tick() -> None:
        while True:
            await asyncio.sleep(0.1)
            if clock.sleepers:
                clock.advance(step_s)

    ticking = asyncio.ensure_future(tick())
    try:
        yield
    finally:
        ticking.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticking


async def test_the_planner_and_the_worker_complete_the_run(
        app_env: dict[str, str], events: Callable[[str], list[Any]]) -> None:
    clock = ManualClock(wall_start_s=START_S)
    services = open_services(Settings.from_env({**app_env, "SYNC_BATCH_SIZE": "20",
                                                **UNHURRIED}), clock=clock)
    await services.start()
    try:
        assert await planner.plan(services, NOW) is None
        (planned,) = events(names.RUN_PLANNED)
        run_id = getattr(planned, names.RUN_ID)
        assert getattr(planned, names.PLANNED) == 50
        clock.advance(600)
        async with QueueClient.from_connection_string(
                str(services.settings.storage.connection_string), BATCH_QUEUE) as queue, \
                time_passing(clock):
            messages = [m async for m in queue.receive_messages(messages_per_page=32)]
            counts = [await worker.process_message(services, base64.b64decode(message.content))
                      for message in messages]
        totals = await runs.read_run(services.storage.ledger, run_id)
    finally:
        await services.close()
    assert len(messages) == 3
    assert len(events(names.RUN_COMPLETED)) == 1, [
        (c.written, c.reenqueued, dict(c.reenqueued_by_reason), dict(c.throttled_by_code))
        for c in counts]
    (completed,) = events(names.RUN_COMPLETED)
    assert getattr(completed, names.WRITTEN) == 50
    assert getattr(completed, names.DURATION_S) >= 600
    assert totals is not None
    assert totals.run.completed


async def test_a_producers_message_through_the_worker(
        app_env: dict[str, str], events: Callable[[str], list[Any]]) -> None:
    clock = ManualClock(wall_start_s=START_S)
    services = open_services(Settings.from_env(app_env), clock=clock)
    await services.start()
    try:
        rows = [RecordRef(f"00000000-0000-4000-8000-{n:012d}", "https://example.com")
                for n in range(2)]
        message = Message("upstream-7", tuple(rows))
        await worker.process_message(services, message.to_json().encode())
        totals = await runs.read_run(services.storage.ledger, "upstream-7")
    finally:
        await services.close()
    assert totals is not None
    assert (totals.run.kind, totals.run.planned, totals.done) == ("message", 2, 2)
    assert totals.run.completed
    assert len(events(names.RUN_COMPLETED)) == 1
