"""A deployment's life on the local stack, compressed: the stack, its hosts and what a night
does to them.

Time: every host runs on an injected clock (``SYNC_LOCAL_CLOCK_OFFSET_S``,
``sync.local.host_knobs``) that is ``night`` days ahead of the machine's plus its own skew of
up to ``SKEW_S`` either way. So each night's timer finds the daily schedule due, runs, flags,
images, cache answers and index rows carry that night's time, and the sweeps of the planner's
timer see days pass. Hosts are started for a night and stopped (or killed) before the next, so
each night's hosts carry that night's day. The retentions are their shortest (a day; a run's
rows are kept ``SYNC_ROLLBACK_RETENTION_DAYS`` + 7 = 8 days, the least the code allows).
"""

from __future__ import annotations

import json
import os
import random
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import aiohttp

from sync.config.storage_names import BATCH_QUEUE
from sync.local.emulators.webapi.store import seeded_id
from sync.local.processes import HOST_STOP_S, Child, stop_processes
from sync.message.contract import RecordRef
from sync.message.producer import messages_for, send
from sync.state.storage import queue_client
from tests.chaos.harness import EMULATOR_SEED, Stack, add_fault, clear_faults

NIGHTS: Final = int(os.environ.get("SOAK_NIGHTS", "30"))
"""Nightly runs (``make soak SOAK_NIGHTS=...`` for a shorter life; the proof needs 30)."""
RECORDS: Final = 40
"""Accounts the nightly run plans: each night gives each a new website, as a person would."""
PRODUCED: Final = 10
"""Accounts upstream producers send each night, in messages of ``BATCH`` (each its own run)."""
BATCH: Final = 5
HOSTS: Final = 4
SERVERS: Final = 2
HINT_PER_SERVER: Final = 3
"""x-ms-dop-hint = this times the servers: 6."""
LOW_HINT_PER_SERVER: Final = 1
"""The hint lowered mid-run: 2."""
LOWERED_EVERY: Final = 3
"""Every third night the hint is lowered mid-run."""
REFUSED_NIGHT: Final = min(NIGHTS, 5)
"""The night a mapping the table refuses is deployed (the emulator's ``400-type`` preset)."""
SYSTEMATIC_RECORDS: Final = 10
SKEW_S: Final = 3.0
DAY_S: Final = 86_400
MESSAGE_LEASE_S: Final = 6
"""The local host's lease on a message: a killed host's messages come back this soon."""
BUG_RECORD: Final = 0
"""The account whose website makes the hook raise each night."""
DEFINITION: Final = {
    "mapping": {"numberofemployees": "employees", "address1_country": "country",
                "description": "description"},
    "enrichment": {"hook": "tests.soak.hook:company", "cache": {"ttl_s": DAY_S}}}
ENV: Final = {
    "SYNC_DEFINITION": json.dumps(DEFINITION), "SYNC_WRITE_MODE": "single",
    "SYNC_BATCH_SIZE": str(BATCH), "SYNC_STATE_RETENTION_DAYS": "1",
    "SYNC_ROLLBACK_RETENTION_DAYS": "1", "SYNC_DEADLETTER_RETENTION_DAYS": "1",
    "SYNC_CLOCK_SKEW_S": str(2 * SKEW_S), "SYNC_BUG_ATTEMPTS": "3",
    "SYNC_SYSTEMATIC_RECORDS": str(SYSTEMATIC_RECORDS),
    "SYNC_LOCAL_MESSAGE_LEASE_S": str(MESSAGE_LEASE_S)}
"""On top of the chaos suite's short settings: a skew allowance of the most two instances'
clocks differ (two offsets of up to ``SKEW_S`` either way)."""
DATAVERSE_ARGS: Final = ("--servers", str(SERVERS), "--dop-hint", str(HINT_PER_SERVER),
                         "--write-ms-min", "200", "--write-ms-max", "400")
"""Single writes of 200-400 ms, so a night's writes take a few seconds at the hint."""
HOST_JSON_BATCH: Final = 2
HOST_JSON: Final = {"version": "2.0", "extensions": {"queues": {
    "batchSize": HOST_JSON_BATCH, "newBatchThreshold": 1, "maxDequeueCount": 5,
    "visibilityTimeout": "00:00:02", "maxPollingInterval": "00:00:01",
    "messageEncoding": "none"}}}
"""Two messages at a time per host, so every host of a night has work."""
TYPE_REFUSAL: Final = {"kind": "error", "preset": "400-type", "hits": "writes"}


def website(night: int, index: int) -> str:
    """Account ``index``'s website on ``night`` (the bug record's makes the hook raise)."""
    if index == BUG_RECORD:
        return f"https://bug-n{night:02d}.example.com"
    return f"https://n{night:02d}-r{index:03d}.example.com"


def account_id(index: int) -> str:
    return seeded_id(index, EMULATOR_SEED)


@dataclass
class Life:
    """The stack, the hosts alive now and every host started so far."""

    stack: Stack
    host_json: Path
    rng: random.Random = field(default_factory=lambda: random.Random(24))
    alive: list[Child] = field(default_factory=list)
    started: int = 0
    killed: int = 0
    offsets_s: list[float] = field(default_factory=list)
    """Each host's clock skew (its day offset left out)."""

    def start_host(self, night: int, *, fire_timer: bool = False) -> Child:
        """One more instance, on a clock ``night`` days ahead and skewed by up to ``SKEW_S``."""
        skew_s = round(self.rng.uniform(-SKEW_S, SKEW_S), 3)
        self.offsets_s.append(skew_s)
        env = {**self.stack.env, "SYNC_LOCAL_CLOCK_OFFSET_S": str(night * DAY_S + skew_s)}
        args = ["host", "--host-json", str(self.host_json),
                *(["--fire-timer"] if fire_timer else [])]
        child, _ = self.stack.children.start(f"night{night:02d}-host{self.started:03d}", args,
                                             env, stop_first=True)
        self.started += 1
        self.alive.append(child)
        return child

    def kill(self, child: Child) -> None:
        """SIGKILL: a crash, or Flex Consumption taking the instance away at once."""
        os.killpg(child.process.pid, signal.SIGKILL)
        child.process.wait()
        self.alive.remove(child)
        self.killed += 1

    def stop_all(self) -> None:
        """SIGTERM to every host (a scale-in): they finish what runs, then leave."""
        stop_processes([c.process for c in self.alive], HOST_STOP_S)
        self.alive.clear()


def write_host_json(folder: Path) -> Path:
    path = folder / "host.json"
    path.write_text(json.dumps(HOST_JSON))
    return path


async def emulator_call(method: str, url: str, body: Any = None) -> Any:
    async with aiohttp.ClientSession() as session, \
            session.request(method, url, json=body) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def set_hint(stack: Stack, per_server: int) -> None:
    await emulator_call("PATCH", f"{stack.dataverse_url}/_emulator/config",
                        {"dop_hint": per_server})


async def edit_websites(stack: Stack, night: int) -> None:
    """Give every planned account a new website, as a person editing them would."""
    rows = [{"accountid": account_id(i), "websiteurl": website(night, i)}
            for i in range(RECORDS)]
    await emulator_call("POST", f"{stack.dataverse_url}/_emulator/records", {"rows": rows})


async def refuse_mapping(stack: Stack, refused: bool) -> None:
    """Deploy a mapping the table refuses (every write 400 ``0x80048d19``), or fix it."""
    if refused:
        await add_fault(stack.dataverse_url, TYPE_REFUSAL)
    else:
        await clear_faults(stack.dataverse_url)


def produced(night: int) -> list[RecordRef]:
    """The records upstream producers send on ``night``."""
    return [RecordRef(account_id(RECORDS + i), f"https://p{night:02d}-{i:03d}.example.com")
            for i in range(PRODUCED)]


async def produce(stack: Stack, night: int) -> list[str]:
    """Send the night's producer messages; answer their batch ids (each its own run)."""
    messages = messages_for(produced(night), f"upstream-n{night:02d}", BATCH)
    async with queue_client(stack.storage, BATCH_QUEUE, None) as queue:
        await send(queue, messages)
    return [m.batch_id for m in messages]
