"""Acting mid-run: a host killed, Azurite killed or paused, an outage that starts and clears,
a permanent refusal that blocks the run until it is fixed. Processes are signalled by their pid."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from sync.local.azurite import Azurite, start_azurite
from tests.chaos.harness import (
    RECORDS,
    Result,
    Stack,
    add_fault,
    assert_nothing_lost,
    clear_faults,
    current,
    findings,
    note,
    relaunch_azurite,
    start_stack,
    wait_until,
    watch_run,
)

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(300)]

StartStack = Callable[..., Awaitable[Stack]]
SLOW_WRITES = ("--bulk-target-ms", "300")
SMALL_MESSAGES = {"SYNC_BATCH_SIZE": "10"}
"""Messages of 10 records taking about 3 s each to write: a host holds at most 16 at a time, so
when the test acts some messages are in flight and many are still waiting on the queue."""
HOST_LEASE_BOUND_S = 150.0
"""A killed host's messages come back when the local host's 60 s lease on them ends."""
BOUND_S = 90.0
AZURITE_DOWN_S = 8.0
AZURITE_SAVE_S = 3.0


async def _until_share_done(stack: Stack, share: float, timeout_s: float = 60.0) -> None:
    async def reached() -> bool:
        snap = await current(stack)
        return snap.plan_complete and snap.planned > 0 and snap.done >= snap.planned * share

    assert await wait_until(reached, timeout_s), "the run did not get under way"


async def _finish(stack: Stack, name: str, fault: str, started_s: float,
                  bound_s: float = BOUND_S) -> None:
    found = await findings(stack, await watch_run(stack, bound_s))
    note(Result(name, fault, stack.records, found.snapshot.counts.written, found.dead_by_reason,
                time.monotonic() - started_s))
    assert_nothing_lost(found)
    assert found.dead_letters == [], found.explain()
    assert found.verification.enriched == stack.records, found.explain()


async def test_kill_9_of_one_of_three_hosts(stacks: StartStack) -> None:
    started_s = time.monotonic()
    stack = await stacks(records=2 * RECORDS, dataverse_args=SLOW_WRITES, env=SMALL_MESSAGES)
    for number in range(3):
        stack.start_host(fire_timer=number == 0)
    await _until_share_done(stack, 0.2)
    victim = stack.hosts[0]
    os.killpg(victim.process.pid, signal.SIGKILL)
    assert victim.process.wait() == -signal.SIGKILL
    assert not (await current(stack)).finished
    await _finish(stack, "kill -9 of a host", "SIGKILL to 1 of 3 hosts at 20%", started_s,
                  HOST_LEASE_BOUND_S)


@pytest.fixture
def own_azurite() -> Iterator[list[Azurite]]:
    """An Azurite of the test's own (it is killed or paused); the last one started is stopped
    and its folder removed at the end."""
    running = [start_azurite(1)]
    yield running
    running[-1].stop()


async def test_azurite_killed_and_restarted(own_azurite: list[Azurite], log_dir: Path) -> None:
    started_s = time.monotonic()
    azurite = own_azurite[0]
    stack = await _two_hosts_a_fifth_done(azurite, log_dir)
    try:
        await _kill_azurite(azurite)
        await asyncio.sleep(AZURITE_DOWN_S)  # its output reader meets the end meanwhile
        if azurite.process.stdout is not None:
            azurite.process.stdout.close()
        own_azurite.append(relaunch_azurite(azurite))
        await _finish(stack, "Azurite killed and restarted",
                      f"SIGTERM then SIGKILL, down {AZURITE_DOWN_S + AZURITE_SAVE_S:g} s at 20%",
                      started_s)
    finally:
        stack.stop()


async def _two_hosts_a_fifth_done(azurite: Azurite, log_dir: Path) -> Stack:
    """The stack on ``azurite`` with two hosts, once a fifth of the records are done."""
    stack = await start_stack(azurite.accounts[0], log_dir, dataverse_args=SLOW_WRITES,
                              env=SMALL_MESSAGES)
    try:
        for number in range(2):
            stack.start_host(fire_timer=number == 0)
        await _until_share_done(stack, 0.2)
    except BaseException:
        stack.stop()
        raise
    return stack


async def _kill_azurite(azurite: Azurite) -> None:
    """SIGTERM (Azurite saves its stores at once but lingers on open connections), then SIGKILL.

    A bare SIGKILL loses what Azurite acknowledged in its last 5 s (its LokiJS stores are saved
    every 5 s): a ledger row or a queued message gone is the emulator's loss, not the product's,
    and Azure Storage does not lose acknowledged writes."""
    os.killpg(azurite.process.pid, signal.SIGTERM)
    await asyncio.sleep(AZURITE_SAVE_S)
    if azurite.process.poll() is None:
        os.killpg(azurite.process.pid, signal.SIGKILL)
    azurite.process.wait(timeout=30)


async def test_azurite_paused(own_azurite: list[Azurite], log_dir: Path) -> None:
    started_s = time.monotonic()
    azurite = own_azurite[0]
    stack = await _two_hosts_a_fifth_done(azurite, log_dir)
    try:
        os.killpg(azurite.process.pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(AZURITE_DOWN_S)
        finally:
            os.killpg(azurite.process.pid, signal.SIGCONT)
        await _finish(stack, "Azurite paused", f"SIGSTOP for {AZURITE_DOWN_S:g} s at 20%",
                      started_s)
    finally:
        stack.stop()


async def test_an_enrichment_outage_that_starts_and_clears_mid_run(stacks: StartStack) -> None:
    started_s = time.monotonic()
    stack = await stacks(dataverse_args=SLOW_WRITES, env=SMALL_MESSAGES)
    stack.start_host(fire_timer=True)
    await _until_share_done(stack, 0.1)
    await add_fault(stack.enrichment_url, {"preset": "down"})
    await asyncio.sleep(15)
    during = await current(stack)
    await clear_faults(stack.enrichment_url)
    assert during.counts.dead_lettered == 0
    await _finish(stack, "enrichment outage mid-run", "503 on every call for 15 s from 10%",
                  started_s)
    totals = (await current(stack)).counts
    assert totals.reenqueued_by_reason["circuit_open"] + \
        totals.reenqueued_by_reason["service_fault"] > 0


async def test_a_permanent_403_blocks_the_run_until_it_is_fixed(stacks: StartStack) -> None:
    """Nothing is written and nothing dead-lettered while every write is refused; the circuit
    says why; once the privilege is granted every record is written."""
    started_s = time.monotonic()
    stack = await stacks(dataverse_args=('--fault={"preset": "403-privilege", "hits": "writes"}',))
    for number in range(2):
        stack.start_host(fire_timer=number == 0)

    async def blocked() -> bool:
        snap = await current(stack)
        return snap.plan_complete and bool(snap.circuits)

    assert await wait_until(blocked, 60)
    await asyncio.sleep(10)
    during = await current(stack)
    assert during.counts.written == 0
    assert during.counts.dead_lettered == 0
    assert during.queued_messages > 0
    assert "403 Forbidden on" in during.blocked_by
    assert "check the application user's permissions" in during.blocked_by
    await clear_faults(stack.dataverse_url)
    await _finish(stack, "permanent 403, then granted",
                  "403 on every write until cleared after the circuit opened", started_s)
