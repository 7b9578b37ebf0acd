"""A mapping the table refuses, tried as a new user would: ``python -m sync local`` against a
Dataverse stand-in that refuses one mapped column on every write (400 ``0x80048d19``). The run
dead-letters at most the threshold's worth (across two instances), the definition's circuit
opens with the refusal, the run reports itself blocked with that reason, and the command exits
1 (docs/operations.md: "the run blocked")."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.harness import RECORDS, Result, note, run_local

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(240)]

THRESHOLD = 20
TYPE_REFUSAL = {"kind": "error", "preset": "400-type", "hits": "writes"}


def test_a_mapping_the_table_refuses_blocks_the_run_after_the_threshold(
        tmp_path: Path, local_run_dir: Path) -> None:
    run = run_local(tmp_path / "figures.json", instances=2, timeout_s=120.0,
                    env={"SYNC_SYSTEMATIC_RECORDS": str(THRESHOLD)},
                    dataverse_faults=(TYPE_REFUSAL,), extra_args=("--blocked-after-s", "5"))
    figures = run.figures
    assert figures is not None, run.explain()
    note(Result("mapping the table refuses",
                "400 0x80048d19 (a mapped column's type) on every write", RECORDS,
                figures["written"], run.dead_by_reason, run.wall_s,
                outcome="blocked" if run.code == 1 else f"exit {run.code}"))
    assert run.code == 1, run.explain()
    assert not figures["finished"], run.explain()
    assert figures["written"] == 0, run.explain()
    assert 1 <= figures["dead_lettered"] <= THRESHOLD, run.explain()
    assert "0x80048d19" in figures["blocked_by"], run.explain()
    assert "definition:default" in figures["blocked_by"], run.explain()
    assert "Edm.Int32" in run.stdout, run.explain()
    # the records not dead-lettered wait on the queue for the mapping to be fixed
    assert figures["reenqueued_by_reason"]["systematic_fault"] >= 1, run.explain()
    assert set(figures["reenqueued_by_reason"]) <= {"systematic_fault", "circuit_open"}, \
        run.explain()
