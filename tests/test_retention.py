"""A year of nights in little (Azurite): every run leaves rows in several tables, and the
planner's sweep deletes them once the retention has passed, so the shared state after many
nights is the size it was after the retention's worth. The timer's tick runs on the services'
clock, and sweeps the dead-letter and poison indexes too."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import pytest
from azure.data.tables.aio import TableClient

from sync import entry
from sync.clock import SYSTEM_CLOCK, SkewedClock
from sync.config.settings import Settings, StorageSettings
from sync.message.counts import MessageCounts
from sync.safety import flags, retention
from sync.safety.before_images import DAY_S, EXPIRED_ROW
from sync.safety.canary import CANARY_PARTITION, admitted_partition
from sync.services import open_services
from sync.state import ledger, runs
from sync.state.run_retention import first_expired_key
from sync.state.storage import Stores, open_stores
from sync.work import worker

START_S = 1_795_000_000.0
KEEP = retention.Retention(state_days=10, rollback_days=2)  # in force: 10 days


@pytest.fixture
async def stores(storage: StorageSettings) -> AsyncIterator[Stores]:
    opened = open_stores(storage)
    yield opened
    await opened.close()


async def count(table: TableClient, query: str = "") -> int:
    return len([row async for row in table.query_entities(query or "PartitionKey ne ''",
                                                         select=["RowKey"])])


async def one_night(stores: Stores, night: int) -> tuple[str, str]:
    """What a night leaves behind: a planned run with a message, a canary, a report, an image
    tombstone and a cancelled flag; and a producer's message, its own run."""
    started_s = START_S + night * DAY_S
    planned, produced = f"run-{night:04d}", f"import-{night:04d}"
    await runs.start_plan(stores.ledger, planned, started_s, definition="accounts")
    await ledger.record_message(stores.ledger, f"{planned}-p000000-000", 0,
                                MessageCounts(written=3))
    await runs.start_message_run(stores.ledger, produced, 2, started_s)
    await ledger.record_message(stores.ledger, produced, 0, MessageCounts(written=2))
    state = stores.state
    await state.upsert_entity({"PartitionKey": CANARY_PARTITION, "RowKey": planned})
    await state.upsert_entity({"PartitionKey": admitted_partition(planned), "RowKey": "id-1"})
    await stores.reports.upsert_entity({"PartitionKey": planned, "RowKey": "msg:1"})
    await stores.before_images.upsert_entity({"PartitionKey": planned, "RowKey": EXPIRED_ROW})
    await flags.set_flag(state, flags.run_scope(planned), flags.CANCELLED, "test", started_s)
    return planned, produced


async def rows_now(stores: Stores) -> int:
    return sum([await count(stores.ledger), await count(stores.state),
                await count(stores.reports), await count(stores.before_images)])


async def test_the_shared_state_stays_the_size_of_the_retention(stores: Stores) -> None:
    sizes: dict[int, int] = {}
    names: list[tuple[str, str]] = []
    for night in range(30):
        names.append(await one_night(stores, night))
        now_s = START_S + night * DAY_S + 3600.0
        await retention.sweep(stores, now_s, KEEP, monotonic_s=lambda: 0.0)
        sizes[night] = await rows_now(stores)
    assert sizes[29] == sizes[12] == sizes[20]  # grown to the retention's worth, no further
    assert sizes[29] > 0
    kept = await count(stores.ledger, "PartitionKey eq 'index:plan'")
    assert kept == KEEP.days  # the nights of the last 10 days
    old, _ = names[0]
    assert await runs.read_run(stores.ledger, old) is None
    assert await count(stores.before_images, f"PartitionKey eq '{old}'") == 0
    assert (await flags.read_flag(stores.state, flags.run_scope(old))).state == flags.RUNNING
    recent, produced = names[-1]
    totals = await runs.read_run(stores.ledger, recent)
    assert totals is not None
    assert totals.counts.written == 3
    assert await runs.read_run(stores.ledger, produced) is not None


async def test_a_run_within_its_images_sweep_range_is_kept(stores: Stores) -> None:
    """A state retention shorter than the images' retention plus the sweep's look-back is
    stretched: the image sweep still finds the run, and rollback still says "expired"."""
    short = retention.Retention(state_days=1, rollback_days=14)
    assert short.days == 21
    planned, _ = await one_night(stores, 0)
    await retention.sweep(stores, START_S + 20 * DAY_S, short, monotonic_s=lambda: 0.0)
    assert await runs.read_run(stores.ledger, planned) is not None
    await retention.sweep(stores, START_S + 22 * DAY_S, short, monotonic_s=lambda: 0.0)
    assert await runs.read_run(stores.ledger, planned) is None


async def test_flags_past_the_retention_go_unless_they_still_stop_something(
        stores: Stores) -> None:
    state = stores.state
    old_s, now_s = START_S, START_S + 40 * DAY_S
    for scope, value in [("definition:resumed", flags.RUNNING),
                         ("definition:paused", flags.PAUSED),
                         ("definition:cancelled", flags.CANCELLED),
                         ("run:paused", flags.PAUSED), ("run:cancelled", flags.CANCELLED)]:
        await flags.set_flag(state, scope, value, "", old_s)
    await flags.set_flag(state, "run:recent", flags.CANCELLED, "", now_s - DAY_S)
    assert await flags.sweep_flags(state, now_s, retention_days=30) == 2
    left = {str(row["RowKey"]) async for row in state.query_entities(
        f"PartitionKey eq '{flags.CONTROL_PARTITION}'")}
    assert left == {"definition:paused", "definition:cancelled", "run:paused", "run:recent"}


def test_the_first_expired_key_sorts_after_every_run_started_since() -> None:
    cutoff_s = START_S
    assert runs.index_key(cutoff_s - 1, "run-a") >= first_expired_key(cutoff_s)
    assert runs.index_key(cutoff_s, "run-a") < first_expired_key(cutoff_s)
    assert runs.index_key(cutoff_s + 5000, "run-a") < first_expired_key(cutoff_s)


AHEAD_S = 40 * DAY_S
"""How far ahead of the machine's the clock of the services under test runs."""


@pytest.fixture
def ahead() -> Iterator[SkewedClock]:
    """This process's services built on a clock ``AHEAD_S`` ahead (as the local host's
    ``SYNC_LOCAL_CLOCK_OFFSET_S`` builds them), the system clock again after."""
    clock = SkewedClock(SYSTEM_CLOCK, AHEAD_S)
    entry.use_clock(clock)
    yield clock
    entry.use_clock(SYSTEM_CLOCK)


async def index_row(table: TableClient, key: str, expires_at_s: float) -> None:
    await table.upsert_entity({"PartitionKey": "run-x", "RowKey": key,
                               "ExpiresAt": expires_at_s})


async def test_the_timers_tick_runs_on_the_services_clock_and_sweeps_expired_index_rows(
        app_env: dict[str, str], ahead: SkewedClock, stores: Stores) -> None:
    """The tick plans at the services' time (the run's id and start are of that day), and
    deletes the dead-letter and poison index rows whose expiry that time has passed."""
    now_s = ahead.wall_s()
    for table in (stores.dead_letter_index, stores.poison_index):
        await index_row(table, "expired", now_s - 60.0)
        await index_row(table, "kept", now_s + DAY_S)
    try:
        await entry.plan_sync()
        run_id = await runs.latest_run_id(stores.ledger, "plan")
    finally:
        await entry.close_services()
    assert run_id is not None
    assert run_id.startswith(f"run-{datetime.fromtimestamp(now_s, UTC):%Y%m%d}")
    totals = await runs.read_run(stores.ledger, run_id)
    assert totals is not None
    assert abs(totals.run.started_s - now_s) < DAY_S
    for table in (stores.dead_letter_index, stores.poison_index):
        left = [str(row["RowKey"]) async for row in table.list_entities()]
        assert left == ["kept"], table.table_name


async def test_a_poison_index_row_expires_the_retention_after_the_workers_clock(
        app_env: dict[str, str], stores: Stores) -> None:
    clock = SkewedClock(SYSTEM_CLOCK, AHEAD_S)
    services = open_services(Settings.from_env({**app_env,
                                                "SYNC_DEADLETTER_RETENTION_DAYS": "2"}),
                             clock=clock)
    try:
        counts = await worker.process_message(services, b"not a message")
    finally:
        await services.close()
    assert counts.rejected_messages == 1
    (row,) = [row async for row in stores.poison_index.list_entities()]
    assert abs(float(row["ExpiresAt"]) - (clock.wall_s() + 2 * DAY_S)) < 600.0
