"""Building blocks of the chaos scenarios: the real stack, faults, and the invariant.

Two ways to run a scenario:

- ``run_local``: ``python -m sync local`` in a subprocess, faults given at start with
  ``--emulator-arg=--fault=...`` / ``--enrichment-arg=--fault=...``; the figures come from its
  ``--json-out`` file. This is exactly what a user runs.
- ``Stack``: the same pieces (``Children``, the emulators' command lines, host processes) started
  by the test on a storage account of the session's Azurite, so the test can act mid-run (kill a
  host, stop Azurite, add or clear a fault rule) and read the queues afterwards.

Either way the invariant is the product's promise: every record written with its expected value,
or dead-lettered for a reason of its own, or still on the queue; nothing dead-lettered for a
service fault; nothing created.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import aiohttp

from sync.config.settings import Settings, StorageSettings
from sync.config.storage_names import (
    BATCH_QUEUE,
    DEAD_LETTER_QUEUE,
    LEDGER_TABLE,
    POISON_QUEUE,
    STATE_TABLE,
)
from sync.local.azurite import ROOT, Azurite, StorageAccount, azurite_command
from sync.local.azurite import _wait_for_ports as wait_for_ports
from sync.local.emulators.enrichment import EnrichmentConfig
from sync.local.emulators.webapi.store import seeded_id
from sync.local.processes import Child, Children
from sync.local.progress import Snapshot, snapshot, watch
from sync.local.stack import local_token
from sync.local.verify import Verification, emulator_stats, verify
from sync.state.dead_letters import RECORD_REASONS
from sync.state.storage import ensure_resources, queue_client, table_client

RECORDS: Final = int(os.environ.get("CHAOS_RECORDS", "400"))
"""Accounts each scenario seeds (``make chaos CHAOS_RECORDS=...``)."""
EMULATOR_SEED: Final = 1
"""The Dataverse emulator's default seed: record ``n``'s id is ``seeded_id(n, EMULATOR_SEED)``."""
FAST_ENV: Final = {
    "SYNC_CIRCUIT_OPEN_S": "1", "SYNC_CIRCUIT_MAX_OPEN_S": "5", "SYNC_CIRCUIT_THRESHOLD": "8",
    "SYNC_MAX_RETRIES": "2", "SYNC_RECORD_PROBES": "3", "SYNC_BATCH_SIZE": "50",
    "SYNC_PAGE_SIZE": "100", "SYNC_STATE_REFRESH_S": "0.5", "SYNC_LEASE_S": "5",
}
"""Short settings: circuits open for 1-5 s, small messages and pages, so faults show quickly."""
LOG_ROOT: Final = ROOT / ".local-run" / "chaos"
RESULTS_PATH: Final = LOG_ROOT / "results.md"
URL_WAIT_S: Final = 60.0


def record_id(index: int) -> str:
    """The id of the emulator's seeded account number ``index``."""
    return seeded_id(index, EMULATOR_SEED)


# ---------------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class Result:
    """One scenario's row of the chaos table (docs/failures.md)."""

    scenario: str
    fault: str
    records: int
    written: int
    dead_lettered: dict[str, int]
    wall_s: float
    outcome: str = "ok"
    """"ok", or the test's outcome when it did not pass (set by the suite's conftest)."""


RESULTS: list[Result] = []


def note(result: Result) -> None:
    """Keep a scenario's figures for the table written at the end of the session."""
    RESULTS.append(result)


def results_table() -> str:
    """The scenarios run so far as a Markdown table."""
    lines = ["| scenario | fault | records | written | dead-lettered by reason | wall s "
             "| outcome |", "|---|---|---:|---:|---|---:|---|"]
    for r in RESULTS:
        dead = ", ".join(f"{k} {v}" for k, v in sorted(r.dead_lettered.items())) or "0"
        lines.append(f"| {r.scenario} | {r.fault} | {r.records} | {r.written} | {dead} | "
                     f"{r.wall_s:.0f} | {r.outcome} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- python -m sync local


@dataclass(frozen=True, slots=True)
class LocalRun:
    """What ``python -m sync local`` printed, answered and wrote."""

    code: int
    stdout: str
    stderr: str
    figures: dict[str, Any] | None
    wall_s: float

    @property
    def dead_by_reason(self) -> dict[str, int]:
        return dict((self.figures or {}).get("dead_lettered_by_reason", {}))

    @property
    def unaccounted(self) -> list[str]:
        check = (self.figures or {}).get("verification") or {}
        return list(check.get("unaccounted", []))

    def explain(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.stdout[-3000:]}\n--- stderr\n" \
               f"{self.stderr[-3000:]}"


def run_local(json_out: Path, *, records: int = RECORDS, instances: int = 1,
              timeout_s: float = 60.0, env: dict[str, str] | None = None,
              dataverse_faults: tuple[dict[str, Any], ...] = (),
              enrichment_faults: tuple[dict[str, Any], ...] = (),
              extra_args: tuple[str, ...] = ()) -> LocalRun:
    """Run ``python -m sync local`` once with the fast settings, ``env`` on top of them."""
    command = [sys.executable, "-m", "sync", "local", "--records", str(records),
               "--instances", str(instances), "--timeout-s", str(timeout_s),
               "--json-out", str(json_out),
               *(f"--emulator-arg=--fault={json.dumps(rule)}" for rule in dataverse_faults),
               *(f"--enrichment-arg=--fault={json.dumps(rule)}" for rule in enrichment_faults),
               *extra_args]
    started_s = time.monotonic()
    done = subprocess.run(command, env={**os.environ, **FAST_ENV, **(env or {})}, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout_s + 90,
                          stdin=subprocess.DEVNULL, check=False)
    figures = json.loads(json_out.read_text()) if json_out.exists() else None
    return LocalRun(done.returncode, done.stdout, done.stderr, figures,
                    time.monotonic() - started_s)


def assert_local_ok(run: LocalRun, records: int) -> None:
    """The run ended OK: every record written or dead-lettered for its own fault."""
    assert run.code == 0, run.explain()
    assert run.figures is not None, run.explain()
    assert run.figures["finished"], run.explain()
    assert set(run.dead_by_reason) <= RECORD_REASONS, run.explain()
    check = run.figures["verification"]
    assert check["records"] == records, run.explain()
    assert check["unaccounted"] == [], run.explain()
    assert check["created"] == 0, run.explain()
    assert run.figures["written"] + run.figures["dead_lettered"] == records, run.explain()


# ------------------------------------------------------------------------ a driven stack


@dataclass
class Stack:
    """Emulators and hosts started by the test on one storage account."""

    children: Children
    env: dict[str, str]
    storage: StorageSettings
    dataverse_url: str
    enrichment_url: str
    records: int
    hosts: list[Child] = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        return Settings.from_env(self.env)

    def start_host(self, *, fire_timer: bool) -> Child:
        """One more host instance (``fire_timer``: it also starts the planner once)."""
        number = len(self.hosts)
        child, _ = self.children.start(
            f"host-{number}", ["host", *(["--fire-timer"] if fire_timer else [])], self.env)
        self.hosts.append(child)
        return child

    def stop(self) -> None:
        self.children.stop_all()


async def start_stack(account: StorageAccount, log_dir: Path, *, records: int = RECORDS,
                      env: dict[str, str] | None = None,
                      dataverse_args: tuple[str, ...] = (),
                      enrichment_args: tuple[str, ...] = ()) -> Stack:
    """The emulators on free ports and the app's queues and tables on ``account``; no host."""
    children = Children(log_dir)
    try:
        _, dataverse_url = children.start(
            "dataverse-emulator", ["emulator", "dataverse", "--records", str(records),
                                   *dataverse_args], wait_for_url_s=URL_WAIT_S)
        _, enrichment_url = children.start("enrichment-emulator",
                                           ["emulator", "enrichment", *enrichment_args],
                                           wait_for_url_s=URL_WAIT_S)
    except BaseException:
        children.stop_all()
        raise
    storage = StorageSettings(connection_string=account.connection_string)
    await ensure_resources(storage)
    full_env = {**os.environ, **FAST_ENV, "AzureWebJobsStorage": account.connection_string,
                "DATAVERSE_URL": dataverse_url, "ENRICHMENT_URL": enrichment_url,
                "ENRICHMENT_API_KEY": EnrichmentConfig().api_key,
                "SYNC_SCHEDULE": "0 0 2 * * *", "SYNC_QUEUE_METRICS_SCHEDULE": "0 * * * * *",
                "PYTHONUNBUFFERED": "1",
                "DATAVERSE_STATIC_TOKEN": local_token(), **(env or {})}
    return Stack(children, full_env, storage, dataverse_url, enrichment_url, records)


async def add_fault(base_url: str, rule: dict[str, Any] | list[dict[str, Any]]) -> None:
    """Add a fault rule to a running emulator."""
    async with aiohttp.ClientSession() as session, \
            session.post(f"{base_url}/_emulator/faults", json=rule) as response:
        assert response.status == 200, await response.text()


async def clear_faults(base_url: str) -> None:
    """Clear every fault rule of a running emulator."""
    async with aiohttp.ClientSession() as session, \
            session.delete(f"{base_url}/_emulator/faults") as response:
        assert response.status == 200, await response.text()


async def rows_by_id(stack: Stack) -> dict[str, dict[str, Any]]:
    """The emulator's accounts by id."""
    async with aiohttp.ClientSession() as session, \
            session.get(f"{stack.dataverse_url}/_emulator/records",
                        params={"entityset": "accounts"}) as response:
        data = await response.json()
    rows = data.get("value", data) if isinstance(data, dict) else data
    return {str(row["accountid"]): row for row in rows}


async def watch_run(stack: Stack, timeout_s: float, *, stall_s: float = 60.0) -> Snapshot:
    """Poll the ledger until the run is finished, blocked (stalled with a circuit open) or
    ``timeout_s`` has passed."""
    async with (table_client(stack.storage, LEDGER_TABLE, None) as table,
                table_client(stack.storage, STATE_TABLE, None) as state,
                queue_client(stack.storage, BATCH_QUEUE, None) as batches):
        return await watch(table, batches, timeout_s, None, lambda: True, state=state,
                           stall_s=stall_s)


async def queue_bodies(storage: StorageSettings, queue_name: str) -> list[dict[str, Any]]:
    """Every message of a queue (read and left to reappear later), parsed as JSON."""
    bodies: list[dict[str, Any]] = []
    async with queue_client(storage, queue_name, None) as queue:
        async for message in queue.receive_messages(messages_per_page=32,
                                                    visibility_timeout=120):
            bodies.append(json.loads(str(message.content)))
    return bodies


@dataclass(frozen=True, slots=True)
class Findings:
    """A driven run's end: the ledger's view, the queues and the emulator's rows."""

    snapshot: Snapshot
    dead_letters: list[dict[str, Any]]
    poison: list[dict[str, Any]]
    verification: Verification

    @property
    def dead_by_reason(self) -> dict[str, int]:
        return dict(Counter(str(d["reason"]) for d in self.dead_letters))

    def explain(self) -> str:
        snap = self.snapshot
        return (f"planned {snap.planned} written {snap.counts.written} dead "
                f"{dict(snap.counts.dead_lettered_by_reason)} requeued "
                f"{dict(snap.counts.reenqueued_by_reason)} queued {snap.queued_messages} "
                f"circuits {snap.blocked_by!r} unaccounted {len(self.verification.unaccounted)} "
                f"created {self.verification.created} poison {len(self.poison)}")


async def findings(stack: Stack, snap: Snapshot) -> Findings:
    """Read the dead letters, the poison queue and the emulator's rows after a run."""
    dead = await queue_bodies(stack.storage, DEAD_LETTER_QUEUE)
    poison = await queue_bodies(stack.storage, POISON_QUEUE)
    stats = await emulator_stats(stack.dataverse_url)
    ids = {str(d["record"]["id"]) for d in dead}
    check = await verify(stack.dataverse_url, stack.settings.definitions.first.table, ids, stats)
    return Findings(snap, dead, poison, check)


def assert_nothing_lost(found: Findings, *, finished: bool = True) -> None:
    """The invariant. ``finished``: and every record is written or dead-lettered by now."""
    snap, check = found.snapshot, found.verification
    assert check.created == 0, found.explain()
    assert set(found.dead_by_reason) <= RECORD_REASONS, found.dead_letters
    assert set(snap.counts.dead_lettered_by_reason) <= RECORD_REASONS, found.explain()
    if finished:
        assert snap.finished, found.explain()
        assert check.unaccounted == [], found.explain()
        assert check.enriched + check.dead_lettered == check.records, found.explain()


def encoded(body: bytes) -> str:
    """A queue message's text as producers send it (base64)."""
    return base64.b64encode(body).decode("ascii")


async def wait_until(predicate: Any, timeout_s: float, poll_s: float = 0.25) -> bool:
    """Poll the async ``predicate`` until it answers true or ``timeout_s`` passes."""
    deadline_s = time.monotonic() + timeout_s
    while time.monotonic() < deadline_s:
        if await predicate():
            return True
        await asyncio.sleep(poll_s)
    return False


async def current(stack: Stack) -> Snapshot:
    """The run as the ledger, the batches queue and the circuits show it now."""
    async with (table_client(stack.storage, LEDGER_TABLE, None) as table,
                table_client(stack.storage, STATE_TABLE, None) as state,
                queue_client(stack.storage, BATCH_QUEUE, None) as batches):
        return await snapshot(table, batches, time.monotonic(), state)


async def patch_record(stack: Stack, record: str, columns: dict[str, Any]) -> int:
    """Change a record through the Web API as another user (so the planner does not skip it as
    the sync's own write); answers the status."""
    return await patch_record_at(stack.dataverse_url, record, columns)


async def patch_record_at(dataverse_url: str, record: str, columns: dict[str, Any]) -> int:
    """``patch_record`` on any emulator, by its URL (one started for ``sync local``)."""
    url = f"{dataverse_url}/api/data/v9.2/accounts({record})"
    headers = {"Authorization": f"Bearer {local_token()}"}
    async with aiohttp.ClientSession() as session, \
            session.patch(url, json=columns, headers=headers) as response:
        return response.status


def relaunch_azurite(old: Azurite) -> Azurite:
    """Start Azurite again on the ports, folder and accounts of one that was stopped, as a
    restarted storage service would come back: same endpoints, same data."""
    ports = old.accounts[0].ports
    env = {**os.environ,
           "AZURITE_ACCOUNTS": ";".join(f"{a.name}:{a.key}" for a in old.accounts)}
    process = subprocess.Popen(
        azurite_command(old.folder, ports),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        start_new_session=True)
    try:
        wait_for_ports(process)
    except BaseException:
        process.kill()
        raise
    return Azurite(process, old.folder, old.accounts)


async def queue_length(storage: StorageSettings, queue_name: str) -> int:
    """Messages on a queue, visible or not (the service's approximate count)."""
    async with queue_client(storage, queue_name, None) as queue:
        return (await queue.get_queue_properties()).approximate_message_count or 0
