"""A deployment's life, compressed (``make soak``; docs/failures.md, "The soak").

``NIGHTS`` nightly runs of one definition on one storage account, each a day later on the
hosts' injected clocks, with upstream producers' messages beside them from the second night.
Each night four hosts start (clocks skewed by up to 3 s either way), one is killed with SIGKILL
mid-run and replaced, and all are stopped before the next night. Every third night the DOP hint
is lowered mid-run from 6 to 2; one account a night has a website that makes the definition's
hook raise; on ``REFUSED_NIGHT`` the table refuses the mapping until it is fixed.

It asserts every run completes exactly once with its exact tallies; the rows of every table
after the last night within a fixed bound of those after the third; requests in flight never
above the hint in force (the emulator's count, per server and per user), but for the moments
after it is lowered until the instances have seen it; enrichment calls per record at most one;
the bug's record poisoned with its type and trace hash each night, the rest written; the
refused mapping stopped by the definition's circuit after at most the threshold of dead
letters.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from pathlib import Path
from typing import Any, Final

import pytest

from sync.config.storage_names import POISON_QUEUE
from sync.local.azurite import StorageAccount
from sync.message.counts import MessageCounts
from sync.message.ids import run_id_of
from sync.state.runs import RunTotals
from tests.chaos.harness import queue_bodies, start_stack, wait_until
from tests.soak import life as soak
from tests.soak.life import Life
from tests.soak.measures import (
    COUNTED,
    FIGURES,
    Figures,
    circuits,
    completions,
    latest_plan,
    rows_per_table,
    totals,
)

pytestmark = [pytest.mark.soak, pytest.mark.timeout(soak.NIGHTS * 60 + 600)]

FULL_LIFE: Final = 30
"""The nights the proof needs (``SOAK_NIGHTS`` shorter is for trying the soak out)."""
NIGHT_BOUND_S: Final = 150.0
"""The longest one night may take to complete all its runs."""
HINT_SEEN_S: Final = 5.0
"""After the hint is lowered, how long an admission may still find more in flight than the
new hint (never more than the one before): the first answer carrying it, one refresh of every
instance (``SYNC_STATE_REFRESH_S`` 0.5 s) and the requests already admitted (400 ms at most),
with room for a loaded machine."""
EARLY_NIGHT: Final = 3
ROW_SLACK: Final = 20
"""Rows that do not scale with runs: the hint, gate, slots, circuits, schedule, checkpoint."""
KEPT_NIGHTS: Final = 8 + 2
"""Nights whose rows the retention keeps at most: 8 days, the night being swept and the night
just run."""
KILLED_AT_MOST: Final = soak.HOST_JSON_BATCH * soak.BATCH
"""Records a killed host can have been carrying: its messages in flight."""
STEADY_FACTOR: Final = 1.25
"""The last night's rows over the most after any night of the middle of the life."""
BUG_REASON: Final = "unexpected_error: TypeError (trace "


@pytest.fixture
def figures() -> Figures:
    """The figures of this session's soak, printed at its end (conftest.py)."""
    return FIGURES


async def test_a_year_of_nights_leaves_the_state_small_and_every_run_complete(
        account: StorageAccount, log_dir: Path, figures: Figures) -> None:
    started_s = time.monotonic()
    stack = await start_stack(account, log_dir, records=soak.RECORDS + soak.PRODUCED,
                              env=soak.ENV, dataverse_args=soak.DATAVERSE_ARGS)
    life = Life(stack, soak.write_host_json(log_dir))
    try:
        for night in range(1, soak.NIGHTS + 1):
            await _night(life, night, figures)
            figures.wall_s = time.monotonic() - started_s
            figures.lifetimes, figures.killed = life.started, life.killed
        await _read_emulators(stack, figures)
    finally:
        life.stop_all()
        stack.stop()
    _assert_bounded(figures)
    _assert_within_hint(figures)
    assert figures.lifetimes == soak.NIGHTS * (soak.HOSTS + 1)
    assert figures.lifetimes >= 100 or soak.NIGHTS < FULL_LIFE
    assert max(abs(s) for s in life.offsets_s) <= soak.SKEW_S
    assert figures.enrichment["asked_again"] == 0, figures.enrichment
    assert figures.enrichment["served"] <= figures.records_asked, figures.enrichment


async def _night(life: Life, night: int, figures: Figures) -> None:
    stack = life.stack
    await soak.edit_websites(stack, night)
    await soak.set_hint(stack, soak.HINT_PER_SERVER)
    refused = night == soak.REFUSED_NIGHT
    await soak.refuse_mapping(stack, refused)
    before = await latest_plan(stack.storage)
    life.start_host(night, fire_timer=True)
    for _ in range(soak.HOSTS - 1):
        life.start_host(night)
    produced = [run_id_of(b) for b in await soak.produce(stack, night)] if night > 1 else []
    run_id = await _planned(stack, before)
    planned = soak.RECORDS + (soak.PRODUCED if night == 1 else 0)
    if refused:
        figures.refused_dead_lettered = await _blocked_then_fixed(stack, [run_id, *produced])
    else:
        await _under_way(stack, run_id, planned)
    if night % soak.LOWERED_EVERY == 0:
        await soak.set_hint(stack, soak.LOW_HINT_PER_SERVER)
    life.kill(life.alive[1])
    life.start_host(night)
    await _all_complete(stack, [run_id, *produced])
    life.stop_all()
    dead = await _check_runs(life, night, {run_id: planned} | dict.fromkeys(produced, soak.BATCH),
                             figures)
    assert dead == (figures.refused_dead_lettered if refused else 0)
    figures.rows_by_night[night] = await rows_per_table(stack.storage)
    figures.nights = night


async def _planned(stack: soak.Stack, before: str | None) -> str:
    found: list[str] = []

    async def planned() -> bool:
        latest = await latest_plan(stack.storage)
        if latest is not None and latest != before:
            found.append(latest)
        return bool(found)

    assert await wait_until(planned, 60.0), "the night's timer planned no run"
    return found[0]


async def _under_way(stack: soak.Stack, run_id: str, planned: int) -> None:
    """Until the plan is complete and a quarter of the run is done."""
    async def under_way() -> bool:
        found = await totals(stack.storage, run_id)
        return (found is not None and found.run.plan_complete
                and found.done >= planned / 4)

    assert await wait_until(under_way, 60.0), await totals(stack.storage, run_id)


async def _blocked_then_fixed(stack: soak.Stack, run_ids: list[str]) -> int:
    """The mapping the table refuses: wait for the definition's circuit to open with the
    refusal, see nothing written and nothing more dead-lettered while it is open, fix the
    mapping; answer the records dead-lettered (over the night's runs: the count is the
    definition's)."""
    async def opened() -> bool:
        view = (await circuits(stack.storage)).get("definition:default")
        return view is not None and view.trips > 0 and "0x80048d19" in view.reason

    assert await wait_until(opened, 60.0), await circuits(stack.storage)
    await asyncio.sleep(3.0)  # the messages that met the refusal have settled their rows
    first = await _sum(stack, run_ids)
    await asyncio.sleep(3.0)  # the circuit is open: nothing more is dead-lettered meanwhile
    later = await _sum(stack, run_ids)
    assert (later.dead_lettered, later.written) == (first.dead_lettered, 0), later
    assert 1 <= later.dead_lettered <= soak.SYSTEMATIC_RECORDS, later
    await soak.refuse_mapping(stack, False)
    return later.dead_lettered


async def _sum(stack: soak.Stack, run_ids: list[str]) -> MessageCounts:
    total = MessageCounts()
    for run_id in run_ids:
        found = await totals(stack.storage, run_id)
        if found is not None:
            total.add(found.counts)
    return total


async def _all_complete(stack: soak.Stack, run_ids: list[str]) -> None:
    async def complete() -> bool:
        for run_id in run_ids:
            found = await totals(stack.storage, run_id)
            if found is None or not found.run.completed:
                return False
        return True

    if not await wait_until(complete, NIGHT_BOUND_S, poll_s=0.5):
        left = {r: await totals(stack.storage, r) for r in run_ids}
        pytest.fail(f"runs not complete within {NIGHT_BOUND_S:g} s: {left}")


async def _check_runs(life: Life, night: int, planned: dict[str, int],
                      figures: Figures) -> int:
    """Each run completed once, with its exact tallies, the nightly one's bug record
    poisoned; answer the records dead-lettered over the night's runs."""
    logs = sorted(life.stack.children.log_dir.glob(f"night{night:02d}-host*.log"))
    events = completions(logs, planned)
    assert events == dict.fromkeys(events, 1), events
    nightly = next(iter(planned))
    dead = 0
    for run_id, records in planned.items():
        found = await totals(life.stack.storage, run_id)
        assert found is not None
        poisoned = int(run_id == nightly)
        _assert_tallies(found, planned=records, poisoned=poisoned)
        dead += found.counts.dead_lettered
    await _assert_poisoned(life, nightly)
    figures.runs += len(planned)
    figures.poisoned += 1
    figures.records_asked += sum(planned.values()) - 1
    return dead


def _assert_tallies(found: RunTotals, *, planned: int, poisoned: int) -> None:
    """Exact: every planned record counted once, written or dead-lettered (the refused
    mapping) or poisoned (the bug). A record written by a host killed before its message's
    row was written is found already holding its values when the message comes back:
    unchanged, at most the killed host's messages' worth."""
    assert found.exact, found
    assert found.run.completed, found
    counts = found.counts
    assert (found.run.planned, found.done, counts.poisoned, counts.cancelled) == \
        (planned, planned, poisoned, 0), found
    assert counts.written + counts.unchanged + counts.dead_lettered == planned - poisoned, found
    assert counts.unchanged <= KILLED_AT_MOST, found


async def _assert_poisoned(life: Life, run_id: str) -> None:
    """The night's bug record is on the poison queue with the bug's type and trace hash."""
    bodies = await queue_bodies(life.stack.storage, POISON_QUEUE)
    mine = [b for b in bodies if run_id_of(json.loads(b["message"])["batch_id"]) == run_id]
    assert len(mine) == 1, bodies
    assert str(mine[0]["reason"]).startswith(BUG_REASON), mine[0]
    records = json.loads(mine[0]["message"])["records"]
    assert [r["id"] for r in records] == [soak.account_id(soak.BUG_RECORD)], records


async def _read_emulators(stack: soak.Stack, figures: Figures) -> None:
    dataverse = await soak.emulator_call("GET", f"{stack.dataverse_url}/_emulator/stats")
    watch = dataverse["in_flight_vs_hint"]
    figures.peak_in_flight = watch["scopes"]
    figures.hint_changes = watch["changes"]
    figures.enrichment = await soak.emulator_call("GET",
                                                  f"{stack.enrichment_url}/_emulator/stats")


def _assert_bounded(figures: Figures) -> None:
    """After the last night every table holds at most what the retention keeps: the third
    night's rows times the nights kept over three, plus the rows that never scale; and, once
    the retention is full, no more than after the nights of the middle of the life (steady,
    not growing: a night's rows vary by the messages a kill or a throttle split)."""
    if EARLY_NIGHT not in figures.rows_by_night:
        return
    early = figures.rows_by_night[EARLY_NIGHT]
    late = figures.rows_by_night[figures.nights]
    factor = math.ceil(KEPT_NIGHTS / EARLY_NIGHT)
    over = {name: (early[name], late[name]) for name in COUNTED
            if late[name] > factor * early[name] + ROW_SLACK}
    assert over == {}, over
    middle = [figures.rows_by_night[n] for n in range(KEPT_NIGHTS + 1, 2 * KEPT_NIGHTS + 1)
              if n in figures.rows_by_night and n < figures.nights]
    if not middle:
        return
    grown = {name: (max(rows[name] for rows in middle), late[name]) for name in COUNTED
             if late[name] > STEADY_FACTOR * max(rows[name] for rows in middle) + ROW_SLACK}
    assert grown == {}, grown


def _assert_within_hint(figures: Figures) -> None:
    scopes: dict[str, Any] = figures.peak_in_flight
    assert scopes, "no request reached the emulator"
    for name, scope in scopes.items():
        assert scope["over_before"] == 0, (name, scope)
        assert scope["latest_over_s"] <= HINT_SEEN_S, (name, scope)

