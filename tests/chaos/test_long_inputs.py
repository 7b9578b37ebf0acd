"""Records whose input the message contract refuses (2,049 and 16,000 characters) among normal
ones: each is dead-lettered alone as ``unusable_input`` when the table is planned, every other
record is written, and nothing reaches the poison queue. Before, one such record made a message
over 64 KiB that Storage refused at every tick (nothing of the table planned), or a message that
broke the contract went to poison whole with its innocent siblings."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final

import aiohttp
import pytest

from sync.config.table_definition import SyncDefinition
from sync.local.processes import Children
from sync.local.verify import is_enriched
from tests.chaos.harness import (
    RECORDS,
    URL_WAIT_S,
    Result,
    Stack,
    assert_nothing_lost,
    findings,
    note,
    patch_record_at,
    record_id,
    run_local,
    watch_run,
)

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(240)]

StartStack = Callable[..., Awaitable[Stack]]
BOUND_S = 90.0
LONG: Final = {7: "https://www.contoso.example/" + "x" * 2021, 42: "é" * 16_000,
               43: "https://" + "é" * 16_000, 99: "ü" * 2049}
"""Websites of records among the first 100 (the scenario holds at any CHAOS_RECORDS of 100 or
more): 2,049 characters (one over the contract's 2,048) and 16,000 (a message of 64 KiB and
more, as JSON escapes them)."""
FAULT: Final = "4 inputs of 2,049 and 16,000 characters"


async def give_long_inputs(dataverse_url: str) -> None:
    """Change the records' websites through the Web API, before anything is planned."""
    for index, website in LONG.items():
        assert await patch_record_at(dataverse_url, record_id(index),
                                     {"websiteurl": website}) == 204


async def enriched_ids(dataverse_url: str) -> set[str]:
    async with aiohttp.ClientSession() as session, session.get(
            f"{dataverse_url}/_emulator/records", params={"entityset": "accounts"}) as answer:
        data = await answer.json()
    rows = data.get("value", data) if isinstance(data, dict) else data
    return {str(row["accountid"]) for row in rows if is_enriched(row, SyncDefinition())}


async def test_long_inputs_through_sync_local(tmp_path: Path, log_dir: Path) -> None:
    """The command users run, against an emulator this test seeded with the long inputs
    (``--dataverse-url``): OK, exit 0, the long ones dead-lettered, every other written."""
    children = Children(log_dir)
    try:
        _, url = children.start("dataverse-emulator",
                                ["emulator", "dataverse", "--records", str(RECORDS)],
                                wait_for_url_s=URL_WAIT_S)
        await give_long_inputs(url)
        run = run_local(tmp_path / "run.json", timeout_s=120.0,
                        extra_args=("--dataverse-url", url))
        figures = run.figures or {}
        note(Result("long inputs (sync local)", FAULT, RECORDS, int(figures.get("written", 0)),
                    run.dead_by_reason, run.wall_s, f"exit {run.code}"))
        assert run.code == 0, run.explain()
        assert "OK:" in run.stdout, run.explain()
        assert figures["finished"], run.explain()
        assert figures["planned"] == RECORDS
        assert figures["written"] == RECORDS - len(LONG)
        assert run.dead_by_reason == {"unusable_input": len(LONG)}
        assert figures["poisoned"] == 0
        long_ids = {record_id(index) for index in LONG}
        written = await enriched_ids(url)
        assert len(written) == RECORDS - len(LONG)
        assert not written & long_ids
    finally:
        children.stop_all()


async def test_long_inputs_through_the_pieces(stacks: StartStack) -> None:
    """A host plans and works; the dead letters are exactly the long inputs, each with the
    reason the contract gives."""
    started_s = time.monotonic()
    stack = await stacks()
    await give_long_inputs(stack.dataverse_url)
    stack.start_host(fire_timer=True)
    found = await findings(stack, await watch_run(stack, BOUND_S))
    note(Result("long inputs", FAULT, stack.records, found.snapshot.counts.written,
                found.dead_by_reason, time.monotonic() - started_s))
    assert_nothing_lost(found)
    dead = {str(d["record"]["id"]): d for d in found.dead_letters}
    assert set(dead) == {record_id(index) for index in LONG}, found.explain()
    for index, website in LONG.items():
        letter = dead[record_id(index)]
        assert letter["reason"] == "unusable_input"
        assert f"input must be a string of 1-2048 characters; it holds {len(website)}" in \
            letter["message"]
    assert found.verification.enriched == stack.records - len(LONG)
    assert found.poison == []
