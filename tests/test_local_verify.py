"""The local run's emulator check (``sync.local.verify``) against a real Dataverse emulator:
it reads the rows a page at a time, keeps counts and the first unaccounted ids, and holds
about a page of rows, not the table."""

from __future__ import annotations

import tracemalloc
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from sync.config.table_definition import SyncDefinition, parse_definition
from sync.local.emulators.webapi import EmulatorConfig, RunningEmulator, start_emulator
from sync.local.environments import Checked, combined
from sync.local.verify import (
    UNACCOUNTED_IDS_KEPT,
    Verification,
    expected_columns,
    verify,
    with_cancelled,
)

DEFINITION: SyncDefinition = parse_definition("")


@pytest.fixture
async def emulator(request: pytest.FixtureRequest) -> AsyncIterator[RunningEmulator]:
    running = await start_emulator(EmulatorConfig(records=request.param))
    yield running
    await running.close()


async def rows_of(url: str) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.get(
            f"{url}/_emulator/records") as answer:
        rows: list[dict[str, Any]] = (await answer.json())["value"]
    return rows


async def enrich(url: str, rows: list[dict[str, Any]]) -> None:
    """Give ``rows`` what the enrichment emulator answers for them, as a run would."""
    changes = [{"accountid": row["accountid"], **(expected_columns(
        row["websiteurl"], DEFINITION) or {})} for row in rows]
    async with aiohttp.ClientSession() as session:
        for start in range(0, len(changes), 1000):
            async with session.post(f"{url}/_emulator/records",
                                    json={"rows": changes[start:start + 1000]}) as answer:
                assert answer.status == 200, await answer.text()


@pytest.mark.parametrize("emulator", [23], indirect=True)
async def test_every_page_is_counted(emulator: RunningEmulator) -> None:
    rows = await rows_of(emulator.url)
    await enrich(emulator.url, rows[:4])
    dead = {str(row["accountid"]) for row in rows[4:7]}
    check = await verify(emulator.url, DEFINITION, dead, {"records": {"created": 1}},
                         page_rows=5)
    assert (check.records, check.enriched, check.dead_lettered, check.created) == (23, 4, 3, 1)
    assert check.unaccounted == [str(row["accountid"]) for row in rows[7:]]
    assert check.unaccounted_count == 16
    assert not check.ok


@pytest.mark.parametrize("emulator", [UNACCOUNTED_IDS_KEPT + 203], indirect=True)
async def test_the_count_is_exact_and_the_ids_kept_are_the_first(
        emulator: RunningEmulator) -> None:
    rows = await rows_of(emulator.url)
    check = await verify(emulator.url, DEFINITION, set(), {})
    assert check.unaccounted_count == UNACCOUNTED_IDS_KEPT + 203
    assert check.unaccounted == [str(row["accountid"]) for row in rows[:UNACCOUNTED_IDS_KEPT]]


@pytest.mark.parametrize("emulator", [30_000], indirect=True)
async def test_the_check_holds_a_page_of_rows_not_the_table(
        emulator: RunningEmulator) -> None:
    """With the emulator in this process, the check's peak memory (both ends of each page
    included) stays a small share of what the table's rows take."""
    tracemalloc.start()
    try:
        table_b = tracemalloc.get_traced_memory()[0]
        await enrich(emulator.url, await rows_of(emulator.url))  # every row rewritten: traced
        table_b = tracemalloc.get_traced_memory()[0] - table_b
        tracemalloc.reset_peak()
        start_b = tracemalloc.get_traced_memory()[0]
        check = await verify(emulator.url, DEFINITION, set(), {})
        peak_b = tracemalloc.get_traced_memory()[1] - start_b
    finally:
        tracemalloc.stop()
    assert (check.enriched, check.records) == (30_000, 30_000)
    assert peak_b < table_b / 5, (peak_b, table_b)


def test_a_cancel_that_covers_every_missing_record_leaves_none_unaccounted() -> None:
    check = Verification(records=5000, unaccounted=["a", "b"], unaccounted_count=4000)
    assert with_cancelled(check, 4000).unaccounted_count == 0
    assert with_cancelled(check, 4000).cancelled == 4000
    assert with_cancelled(check, 3999) == check
    assert Verification(unaccounted=["a", "b"]).unaccounted_count == 2


def test_environments_add_up_their_counts_and_keep_the_first_ids() -> None:
    first = Verification(records=10, enriched=5, unaccounted=[f"a{n}" for n in range(5)])
    many = [f"b{n}" for n in range(UNACCOUNTED_IDS_KEPT)]
    second = Verification(records=9000, dead_lettered=2, created=1, unaccounted=many,
                          unaccounted_count=8998)
    total = combined([Checked("env1", {}, first), Checked("env2", {}, second),
                      Checked("env3", {}, None)])
    assert total is not None
    assert (total.records, total.enriched, total.dead_lettered, total.created) == \
        (9010, 5, 2, 1)
    assert total.unaccounted_count == 9003
    assert total.unaccounted == [*first.unaccounted, *many[:UNACCOUNTED_IDS_KEPT - 5]]
