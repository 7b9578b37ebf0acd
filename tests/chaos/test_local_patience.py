"""``python -m sync local`` is as patient as the Functions host: faults staged mid-run on the
command users run, from outside, as a user or an operator would (processes signalled by pid,
the operator's ``sync cancel``, the emulator's ``/_emulator/faults``).

- Azurite stopped (SIGSTOP) for 100 s: the run waits it out and finishes on its own.
- ``kill -9`` of one of three hosts: reported; the other two finish its messages after their
  lease (the local host's 60 s).
- An enrichment outage that outlasts the stall bound inside one back-off: the outage lasts 25 s,
  the run is judged blocked after 20 s without progress, and the circuit's first opening lasts
  30-50 s (``SYNC_CIRCUIT_OPEN_S`` 40 with its jitter), so the back-off in force at the bound
  always comes round after the outage has cleared: its probe passes and the run finishes on
  its own, not blocked, having stood still longer than the bound. (Whether an outage longer
  than the bound blocks depends on which opening is in force at the bound, which the jitter
  draws; ``tests/test_blocked.py`` covers both sides of the rule with its clock injected.)
- ``sync cancel --run`` mid-run: the summary counts the rest cancelled, exit 0.
- ``timeout -s TERM 25 python -m sync local``: one graceful stop (GNU ``timeout`` sends SIGTERM
  twice), over within 10 s, no process, no ``storage.json``, no Azurite folder left.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import pytest
from azure.core.exceptions import AzureError

from sync.config.settings import StorageSettings
from sync.config.storage_names import BATCH_QUEUE, LEDGER_TABLE, STATE_TABLE
from sync.local.azurite import ROOT
from sync.local.processes import STOP_TIMEOUT_S
from sync.local.progress import Snapshot, snapshot
from sync.state import runs
from sync.state.ledger_rows import PLAN_KIND
from sync.state.storage import queue_client, table_client
from tests.chaos.harness import FAST_ENV, RECORDS, Result, add_fault, note, wait_until
from tests.test_signals import START_WAIT_S, LocalRun, command_line

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(600)]
"""Long enough for a run's own ``--timeout-s`` (300 s at most here) and the exit wait after it."""

SLOW_RUN: Final = ("--emulator-arg=--bulk-target-ms=300",)
"""Writes of about 3 s a message of 10 records: the run is still going when the test acts."""
SMALL_MESSAGES: Final = {"SYNC_BATCH_SIZE": "10"}
AZURITE_STOPPED_S: Final = 100.0
OUTAGE_S: Final = 25.0
OUTAGE_STALL_BOUND_S: Final = 20.0
OUTAGE_CIRCUIT_OPEN_S: Final = 40.0
"""The first opening lasts 3/4 to 5/4 of this (``CircuitPolicy.open_for_s``): 30 s at least,
longer than the outage and the bound, with the seconds before the first trip to spare."""
STOP_BOUND_S: Final = 10.0
"""SIGTERM or Ctrl-C ends ``sync local`` within this, everything stopped."""


@pytest.fixture
def started(local_run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[LocalRun]]:
    """Stacks started in this test, with the chaos suite's short settings; whatever a failed
    test leaves is killed by pid."""
    for name, value in {**FAST_ENV, **SMALL_MESSAGES}.items():
        monkeypatch.setenv(name, value)
    runs: list[LocalRun] = []
    yield runs
    for run in runs:
        run.kill_everything()


def start(runs: list[LocalRun], *args: str, wrapper: tuple[str, ...] = ()) -> LocalRun:
    runs.append(LocalRun(*args, wrapper=wrapper))
    return runs[-1]


def run_dir() -> Path:
    return Path(os.environ["SYNC_LOCAL_RUN_DIR"])


def storage_of_the_stack() -> StorageSettings | None:
    """The running stack's storage, from the file it writes for operator commands."""
    try:
        saved = json.loads((run_dir() / "storage.json").read_text())
    except (OSError, ValueError):
        return None
    return StorageSettings(connection_string=str(saved["connection_string"]))


async def progress(storage: StorageSettings) -> Snapshot:
    async with (table_client(storage, LEDGER_TABLE, None) as ledger,
                table_client(storage, STATE_TABLE, None) as state,
                queue_client(storage, BATCH_QUEUE, None) as batches):
        return await snapshot(ledger, batches, time.monotonic(), state)


async def until_share_done(share: float, timeout_s: float = 90.0) -> StorageSettings:
    """Wait until ``share`` of the planned records are done; the stack's storage."""
    found: list[StorageSettings] = []

    async def reached() -> bool:
        storage = storage_of_the_stack()
        if storage is None:
            return False
        try:
            snap = await progress(storage)
        except AzureError:  # its tables not created yet: ask again
            return False
        found[:] = [storage]
        return snap.plan_complete and snap.planned > 0 and snap.done >= snap.planned * share

    assert await wait_until(reached, timeout_s, poll_s=0.5), "the run did not get under way"
    return found[0]


def child_pid(run: LocalRun, marker: bytes) -> int:
    """The pid of the stack's child whose command line holds ``marker``."""
    return next(pid for pid, _ in run.children if marker in command_line(pid))


def figures(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def assert_all_written(run: LocalRun, code: int, data: dict[str, Any], records: int) -> None:
    """Exit 0, every record written; found unchanged where a message came back after its
    writes landed but before its end was recorded (a lease that ran out)."""
    assert code == 0, run.output
    assert data["finished"], run.output
    assert (data["written"] + data["unchanged"], data["dead_lettered"]) == (records, 0), \
        run.output
    assert data["verification"]["enriched"] == records, run.output
    assert data["verification"]["unaccounted"] == [], run.output
    assert "Traceback" not in run.output
    assert "OK: every record is written" in run.output


async def test_azurite_stopped_for_100_s_mid_run(started: list[LocalRun], tmp_path: Path
                                                 ) -> None:
    began_s = time.monotonic()
    out = tmp_path / "run.json"
    run = start(started, "--records", str(RECORDS), "--instances", "2", "--timeout-s", "300",
                "--json-out", str(out), *SLOW_RUN)
    await until_share_done(0.2)
    azurite = child_pid(run, b"azurite")
    os.kill(azurite, signal.SIGSTOP)
    try:
        await asyncio.sleep(AZURITE_STOPPED_S)
    finally:
        os.kill(azurite, signal.SIGCONT)
    code = await asyncio.to_thread(run.wait_for_exit)
    data = figures(out)
    note(Result("Azurite stopped (sync local)", f"SIGSTOP for {AZURITE_STOPPED_S:g} s at 20%, "
                "2 hosts", RECORDS, data["written"] + data["unchanged"],
                data["dead_lettered_by_reason"],
                time.monotonic() - began_s, "ok, finished on its own" if code == 0 else
                f"exit {code}"))
    assert_all_written(run, code, data, RECORDS)
    assert "storage unreachable since" in run.output
    assert data["ended_hosts"] == ""  # both hosts lived through it
    logs = " ".join(p.read_text() for p in run_dir().glob("host-*.log"))
    assert "storage unreachable since" in logs + run.output


async def test_kill_9_of_one_of_three_hosts(started: list[LocalRun], tmp_path: Path) -> None:
    began_s = time.monotonic()
    out = tmp_path / "run.json"
    records = 2 * RECORDS
    run = start(started, "--records", str(records), "--instances", "3", "--timeout-s", "240",
                "--json-out", str(out), *SLOW_RUN)
    await until_share_done(0.2)
    victim = next(pid for pid, _ in run.children
                  if command_line(pid).endswith(b"\0host\0"))  # not the timer's host-0
    os.killpg(victim, signal.SIGKILL)
    code = await asyncio.to_thread(run.wait_for_exit)
    data = figures(out)
    note(Result("kill -9 of a host (sync local)", "SIGKILL to 1 of 3 hosts at 20%", records,
                data["written"] + data["unchanged"], data["dead_lettered_by_reason"],
                time.monotonic() - began_s,
                "ok, the others finished its work" if code == 0 else f"exit {code}"))
    assert_all_written(run, code, data, records)
    assert re.search(r"host-[12] ended \(SIGKILL\) after \d+ s; the 2 other host\(s\) take "
                     r"over its messages", run.output), run.output
    assert re.search(r"hosts +2 of 3 ran to the end; host-[12] ended \(SIGKILL\)", run.output)


async def test_an_enrichment_outage_longer_than_the_stall_bound_clears_before_the_probe(
        started: list[LocalRun], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    began_s = time.monotonic()
    monkeypatch.setenv("SYNC_CIRCUIT_OPEN_S", str(OUTAGE_CIRCUIT_OPEN_S))
    monkeypatch.setenv("SYNC_CIRCUIT_MAX_OPEN_S", str(2 * OUTAGE_CIRCUIT_OPEN_S))
    out = tmp_path / "run.json"
    run = start(started, "--records", str(RECORDS), "--timeout-s", "200", "--json-out",
                str(out), "--blocked-after-s", str(OUTAGE_STALL_BOUND_S), *SLOW_RUN)
    await until_share_done(0.1)
    await add_fault(enrichment_url(), {"preset": "down", "window_s": OUTAGE_S})
    code = await asyncio.to_thread(run.wait_for_exit)
    data = figures(out)
    note(Result("enrichment outage past the stall bound (sync local)",
                f"503 on every call for {OUTAGE_S:g} s from 10%; circuit's first opening "
                f"{0.75 * OUTAGE_CIRCUIT_OPEN_S:g}-{1.25 * OUTAGE_CIRCUIT_OPEN_S:g} s, "
                f"blocked after {OUTAGE_STALL_BOUND_S:g} s",
                RECORDS, data["written"], data["dead_lettered_by_reason"],
                time.monotonic() - began_s, "ok, not blocked" if code == 0 else f"exit {code}"))
    assert_all_written(run, code, data, RECORDS)
    assert data["blocked"] == ""
    assert data["reenqueued_by_reason"].get("circuit_open", 0) + \
        data["reenqueued_by_reason"].get("service_fault", 0) > 0, run.output
    assert longest_stall_s(data["timeline"]) > OUTAGE_STALL_BOUND_S, data["timeline"]


def enrichment_url() -> str:
    log = (run_dir() / "enrichment-emulator.log").read_text()
    match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", log)
    assert match, log
    return match.group(1)


def longest_stall_s(timeline: list[list[float]]) -> float:
    """The longest time the ledger's count of done records stood still, with records left."""
    longest, since = 0.0, None
    for (at_s, done), (_, before) in zip(timeline[1:], timeline, strict=False):
        since = since if done == before and since is not None else at_s
        longest = max(longest, at_s - since)
    return longest


CANCELLED_RUN_RECORDS: Final = max(RECORDS, 1200)
"""Enough messages (of 10) that the cancel, read by the workers within the flag cache's 5 s,
lands while most of them still wait on the queue, whatever CHAOS_RECORDS is."""


async def test_cancel_mid_run(started: list[LocalRun], tmp_path: Path) -> None:
    began_s = time.monotonic()
    out = tmp_path / "run.json"
    records = CANCELLED_RUN_RECORDS
    run = start(started, "--records", str(records), "--timeout-s", "120", "--json-out",
                str(out), *SLOW_RUN)
    storage = await until_share_done(0.2)
    run_id = await latest_run(storage)
    cancel = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "sync", "cancel", "--local", "--run", run_id,
                         "--reason", "chaos: cancel mid-run", "--yes"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert cancel.returncode == 0, cancel.stderr
    code = await asyncio.to_thread(run.wait_for_exit)
    data = figures(out)
    note(Result("cancel mid-run (sync local)", "sync cancel --run at 20%", records,
                data["written"], data["dead_lettered_by_reason"], time.monotonic() - began_s,
                f"cancelled {data['cancelled']}, exit {code}"))
    assert code == 0, run.output
    assert data["cancelled"] > 0, run.output
    assert data["written"] + data["unchanged"] + data["dead_lettered"] + data["cancelled"] == \
        records, run.output
    assert data["verification"]["unaccounted"] == [], run.output
    assert data["verification"]["cancelled"] + data["verification"]["enriched"] == records
    assert re.search(rf"cancelled +{data['cancelled']:,}", run.output), run.output
    assert "OK: the run was cancelled (sync cancel)" in run.output
    assert "unaccounted for" not in run.output


async def latest_run(storage: StorageSettings) -> str:
    async with table_client(storage, LEDGER_TABLE, None) as ledger:
        run_id = await runs.latest_run_id(ledger, PLAN_KIND)
    assert run_id
    return run_id


def test_timeout_s_term_around_sync_local_stops_it_within_10_s(started: list[LocalRun]
                                                                ) -> None:
    began_s = time.monotonic()
    limit_s = 25
    run = start(started, "--records", "20000", wrapper=("timeout", "-s", "TERM", str(limit_s)))
    run.wait_until("Azurite", lambda: any(b"azurite" in command_line(pid)
                                          for pid, _ in run.seen), START_WAIT_S)
    azurite = next(pid for pid, _ in run.seen if b"azurite" in command_line(pid))
    folder = Path(command_line(azurite).split(b"\0--location\0")[1].split(b"\0")[0].decode())
    assert folder.is_dir()
    code = run.wait_for_exit()
    stop_s = time.monotonic() - began_s - limit_s
    note(Result("timeout -s TERM around sync local", f"SIGTERM (twice) after {limit_s} s",
                20000, 0, {}, time.monotonic() - began_s,
                f"stopped in {stop_s:.1f} s, exit {code}, nothing left"))
    assert code == 124, run.output  # timeout's own code: the command timed out
    assert run.output.count("Interrupted by SIGTERM") == 1, run.output
    assert "again: killing" not in run.output, run.output
    assert "Stopped: no process this run started is left." in run.output
    assert stop_s < STOP_BOUND_S, run.output
    assert STOP_TIMEOUT_S < STOP_BOUND_S
    assert run.left_alive() == []
    assert not (run_dir() / "storage.json").exists()
    assert not folder.exists()
