"""What ``python -m sync local`` answers when it cannot succeed: a run blocked by a refusal ends
non-zero and names it, with nothing dead-lettered; a bad setting stops it before it starts."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sync.local.azurite import ROOT
from tests.chaos.harness import FAST_ENV, RECORDS, Result, note, run_local

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(180)]

BLOCKED_TIMEOUT_S = 25.0


def test_a_table_wide_permanent_403_ends_blocked_and_names_it(tmp_path: Path) -> None:
    run = run_local(tmp_path / "run.json", timeout_s=BLOCKED_TIMEOUT_S,
                    dataverse_faults=({"preset": "403-privilege", "hits": "writes"},))
    figures = run.figures or {}
    note(Result("permanent table-wide 403 (sync local)", "403 on every write, never cleared",
                RECORDS, int(figures.get("written", 0)), run.dead_by_reason, run.wall_s,
                "blocked, exit 1" if run.code == 1 else f"exit {run.code}"))
    assert run.code == 1, run.explain()
    assert "FAILED: blocked:" in run.stderr, run.explain()
    assert "403 Forbidden on" in run.stderr, run.explain()
    assert "check the application user's permissions" in run.stderr, run.explain()
    assert "circuit open" in run.stdout, run.explain()
    assert "OK:" not in run.stdout, run.explain()
    assert figures["planned"] == RECORDS
    assert figures["written"] == 0
    assert figures["dead_lettered"] == 0
    assert not figures["finished"]
    assert "403 Forbidden" in figures["blocked_by"]
    assert len(run.unaccounted) == RECORDS  # every record still to do: on the queue


TYPED_SETTINGS = (
    "DATAVERSE_TIMEOUT_S", "DATAVERSE_MAX_CONCURRENCY", "DATAVERSE_KEEP_AFFINITY",
    "ENRICHMENT_TIMEOUT_S", "SYNC_DEFINITION", "SYNC_PAGE_SIZE", "SYNC_BATCH_SIZE",
    "SYNC_PLAN_BUDGET_S", "SYNC_MAX_RETRIES", "SYNC_CIRCUIT_THRESHOLD", "SYNC_CIRCUIT_OPEN_S",
    "SYNC_CIRCUIT_MAX_OPEN_S", "SYNC_RECORD_PROBES", "SYNC_WRITE_MODE",
    "SYNC_BATCH_OPERATIONS", "SYNC_BULK_TARGETS", "SYNC_MAX_WAIT_S", "SYNC_STATE_REFRESH_S",
    "SYNC_LEASE_S",
)
"""The settings a user of ``sync local`` sets that have a form to check (the stack sets the
storage connection, the endpoints and the key itself)."""


def _local_with(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sync", "local", "--records", "10",
                           "--timeout-s", "30"],
                          env={**os.environ, **FAST_ENV, **env}, cwd=ROOT, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL, check=False)


@pytest.mark.parametrize("name", TYPED_SETTINGS)
def test_a_garbage_setting_stops_sync_local_before_anything_starts(name: str) -> None:
    done = _local_with({name: "garbage"})
    assert done.returncode == 2, done.stderr
    assert "nothing was started" in done.stderr
    assert f"  - {name} " in done.stderr, done.stderr
    assert "Starting Azurite" not in done.stdout


def test_every_garbage_setting_is_named_at_once() -> None:
    started_s = time.monotonic()
    done = _local_with(dict.fromkeys(TYPED_SETTINGS, "garbage"))
    assert done.returncode == 2, done.stderr
    problems = [line for line in done.stderr.splitlines() if line.startswith("  - ")]
    for name in TYPED_SETTINGS:
        assert any(line.startswith(f"  - {name} ") for line in problems), (name, done.stderr)
    assert "Starting Azurite" not in done.stdout
    note(Result("every setting garbage (sync local)", f"{len(TYPED_SETTINGS)} settings",
                0, 0, {}, time.monotonic() - started_s, "exit 2, each named, nothing started"))
