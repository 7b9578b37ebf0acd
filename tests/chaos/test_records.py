"""Faults that follow single records: those records alone are dead-lettered, with a reason of
their own and the evidence; every sibling is written."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.chaos.harness import (
    FAST_ENV,
    Result,
    Stack,
    assert_nothing_lost,
    findings,
    note,
    patch_record,
    record_id,
    watch_run,
)

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(180)]

StartStack = Callable[..., Awaitable[Stack]]
BOUND_S = 90.0
PROBES = int(FAST_ENV["SYNC_RECORD_PROBES"])


async def _run_and_check(stack: Stack, name: str, fault: str, started_s: float,
                         expected_dead: dict[str, str]) -> None:
    """One host plans and works; the dead letters are exactly ``expected_dead`` (id: reason)."""
    stack.start_host(fire_timer=True)
    found = await findings(stack, await watch_run(stack, BOUND_S))
    note(Result(name, fault, stack.records, found.snapshot.counts.written, found.dead_by_reason,
                time.monotonic() - started_s))
    assert_nothing_lost(found)
    dead = {str(d["record"]["id"]): str(d["reason"]) for d in found.dead_letters}
    assert dead == expected_dead, found.explain()
    assert found.verification.enriched == stack.records - len(expected_dead)
    assert found.poison == []


@pytest.mark.parametrize(("preset", "status"), [("403-record-access", 403), ("500-plugin", 500)])
async def test_a_fault_on_a_few_records_dead_letters_them_alone(
        stacks: StartStack, preset: str, status: int) -> None:
    started_s = time.monotonic()
    targets = [record_id(n) for n in (3, 77, 150)] if preset.startswith("403") else \
        [record_id(42)]
    rule = {"preset": preset, "record_ids": targets}
    stack = await stacks(dataverse_args=(f"--fault={json.dumps(rule)}",))
    name = "403 on a few records" if status == 403 else "a record that always fails"
    await _run_and_check(stack, name, f"{preset} on writes of {len(targets)} record(s)",
                         started_s, dict.fromkeys(targets, "suspected_record_fault"))
    for letter in await _dead_letters(stack):
        assert letter["status"] == status
        assert letter["strikes"] >= PROBES
        assert letter["code"]
        assert letter["message"]
        assert letter["first_seen"]


UNUSABLE = {5: "not a url", 60: "contoso", 61: "http://", 90: "https://exa mple.com",
            91: "ftp//nowhere"}
"""Records among the first 100, so the scenario holds at any CHAOS_RECORDS of 100 or more (a
PATCH to a record the emulator does not hold would create it)."""


async def test_unusable_inputs_dead_letter_their_records_alone(stacks: StartStack) -> None:
    started_s = time.monotonic()
    stack = await stacks()
    for index, website in UNUSABLE.items():
        assert await patch_record(stack, record_id(index), {"websiteurl": website}) == 204
    await _run_and_check(stack, "unusable inputs", f"{len(UNUSABLE)} websites that are not URLs",
                         started_s,
                         {record_id(index): "unusable_input" for index in UNUSABLE})


async def _dead_letters(stack: Stack) -> list[dict[str, Any]]:
    found = await findings(stack, await watch_run(stack, 1.0))
    return found.dead_letters
