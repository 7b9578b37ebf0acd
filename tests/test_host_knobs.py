"""The local host's own knobs (``sync.local.host_knobs``): a clock offset handed to the
services as an injected clock, and the lease it takes on a message. Local-only: the soak
(``make soak``) runs each instance on its own clock, days ahead, and kills hosts mid-run."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.storage.queue.aio import QueueClient

from sync.clock import SYSTEM_CLOCK, SkewedClock
from sync.config.settings import StorageSettings
from sync.config.storage_names import BATCH_QUEUE, LEDGER_TABLE, POISON_QUEUE
from sync.local.azurite import ROOT
from sync.local.functions_index import IndexedFunction, QueueOptions
from sync.local.host_knobs import CLOCK_OFFSET_VAR, MESSAGE_LEASE_VAR, clock_of, message_lease_s
from sync.local.hostrunner import LEASE_S, QueueListener
from sync.state import runs
from sync.state.storage import table_client
from tests.test_host_runner import eventually

DAY_S = 86_400


def test_without_an_offset_the_host_keeps_the_machines_clock() -> None:
    assert clock_of({}) is SYSTEM_CLOCK
    assert clock_of({CLOCK_OFFSET_VAR: " "}) is SYSTEM_CLOCK
    assert clock_of({CLOCK_OFFSET_VAR: "0"}) is SYSTEM_CLOCK


@pytest.mark.parametrize("offset_s", [-2.5, 3.0, 30 * DAY_S + 1.25],
                         ids=["behind", "ahead", "a month and a skew ahead"])
def test_an_offset_skews_the_wall_clock_only(offset_s: float) -> None:
    clock = clock_of({CLOCK_OFFSET_VAR: str(offset_s)})
    assert isinstance(clock, SkewedClock)
    assert clock.offset_s == offset_s
    assert clock.monotonic_s() - SYSTEM_CLOCK.monotonic_s() < 1.0


@pytest.mark.parametrize(("variable", "text"), [
    (CLOCK_OFFSET_VAR, "soon"), (CLOCK_OFFSET_VAR, "inf"), (MESSAGE_LEASE_VAR, "1"),
    (MESSAGE_LEASE_VAR, "2.5"), (MESSAGE_LEASE_VAR, "nan")],
    ids=["an offset that is no number", "an endless offset", "a lease too short to renew",
         "a lease in part seconds", "a lease that is no number"])
def test_a_bad_knob_is_refused_with_its_name(variable: str, text: str) -> None:
    with pytest.raises(ValueError, match=variable):
        clock_of({variable: text}) if variable == CLOCK_OFFSET_VAR else \
            message_lease_s({variable: text})


def test_the_lease_is_the_hosts_unless_set() -> None:
    assert message_lease_s({}) == LEASE_S
    assert message_lease_s({MESSAGE_LEASE_VAR: "6"}) == 6


async def test_a_listener_leases_a_message_for_its_lease(app_env: dict[str, str]) -> None:
    """The message stays invisible for the lease given, not the host's 60 s."""
    conn = app_env["AzureWebJobsStorage"]
    taken: list[Any] = []
    stop = asyncio.Event()

    async def hold(msg: Any) -> None:
        taken.append(msg)
        await stop.wait()

    function = IndexedFunction("hold", "queueTrigger", "msg", hold, queue_name=BATCH_QUEUE,
                               connection="AzureWebJobsStorage")
    async with (QueueClient.from_connection_string(conn, BATCH_QUEUE) as queue,
                QueueClient.from_connection_string(conn, POISON_QUEUE) as poison):
        await queue.send_message("x")
        options = QueueOptions(batch_size=1, new_batch_threshold=0, message_encoding="none")
        task = asyncio.create_task(QueueListener(function, queue, poison, options,
                                                 lease_s=20).run(stop))

        async def fetched() -> bool:
            return bool(taken)

        await eventually(fetched, "the message taken")
        stop.set()
        await asyncio.wait_for(task, 10)
    lease_s = (taken[0].time_next_visible - taken[0].insertion_time).total_seconds()
    assert 15 < lease_s < 40


async def test_a_host_with_an_offset_plans_on_its_own_day(app_env: dict[str, str]) -> None:
    """``python -m sync host --fire-timer`` 40 days ahead: its run is of that day."""
    env = {**os.environ, CLOCK_OFFSET_VAR: str(40 * DAY_S), "PYTHONUNBUFFERED": "1"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sync", "host", "--fire-timer", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    found: list[str] = []
    try:
        async with table_client(_storage(app_env), LEDGER_TABLE, None) as ledger:
            async def planned() -> bool:
                run_id = await runs.latest_run_id(ledger, "plan")
                found.extend([run_id] if run_id else [])
                return bool(found)

            await eventually(planned, "the host's plan")
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 20)
    day = datetime.fromtimestamp(SYSTEM_CLOCK.wall_s() + 40 * DAY_S, UTC)
    assert found[0].startswith(f"run-{day:%Y%m%d}")


def _storage(app_env: dict[str, str]) -> StorageSettings:
    return StorageSettings(connection_string=app_env["AzureWebJobsStorage"])
