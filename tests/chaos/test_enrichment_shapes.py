"""``python -m sync local --enrichment-shape NAME`` against every shipped shape: every record
written or dead-lettered for a fault of its own (a no match); a 402 mid-run stops the line with
"out of credits" and dead-letters nothing for it; 202s are asked again until they answer; the
cache answers a second identical run."""

from __future__ import annotations

from pathlib import Path

import pytest

from sync.local.emulators.enrichment import SHAPES
from tests.chaos.harness import RECORDS, Result, assert_local_ok, note, run_local

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(300)]

SHIPPED = sorted(set(SHAPES) - {"today"})
BOUND_S = 120.0
"""Every shape's run must finish within this (Clearbit-like 202s wait 30 s on the queue)."""


def shape_args(shape: str, *more: str) -> tuple[str, ...]:
    return ("--enrichment-shape", shape, *more)


@pytest.mark.parametrize("shape", SHIPPED)
def test_every_record_is_synced_against_each_shipped_shape(shape: str, tmp_path: Path) -> None:
    run = run_local(tmp_path / "run.json", timeout_s=BOUND_S, extra_args=shape_args(shape))
    note(Result(f"enrichment shape {shape}", "none", RECORDS,
                (run.figures or {}).get("written", 0), run.dead_by_reason, run.wall_s))
    assert_local_ok(run, RECORDS)
    assert set(run.dead_by_reason) <= {"not_enrichable"}, run.explain()
    assert run.figures is not None
    usage = run.figures["enrichment"]
    if shape == "clearbit":  # 202 first, then asked again and answered
        assert usage["laters"] > 0, run.explain()
        assert run.figures["reenqueued_by_reason"].get("enrichment_later") == usage["laters"]
    if shape == "pdl-bulk":
        assert usage["calls"] < usage["inputs"] / 10, run.explain()


def test_out_of_credits_mid_run_stops_the_line_and_dead_letters_nothing(
        tmp_path: Path) -> None:
    half = RECORDS // 2
    run = run_local(tmp_path / "run.json", timeout_s=200.0, extra_args=shape_args(
        "pdl", f"--enrichment-arg=--out-of-credits-after={half}"))
    note(Result("enrichment out of credits", f"402 after {half} companies", RECORDS,
                (run.figures or {}).get("written", 0), run.dead_by_reason, run.wall_s))
    assert run.code == 1, run.explain()
    assert "out of credits" in run.stderr, run.explain()
    assert run.figures is not None
    assert not run.figures["finished"]
    assert "out of credits" in run.figures["blocked_by"]
    assert set(run.dead_by_reason) <= {"not_enrichable"}, run.explain()  # no match, not 402
    assert run.figures["written"] <= half
    assert run.figures["reenqueued_by_reason"].get("circuit_open", 0) > 0


def test_the_cache_answers_a_second_identical_run(tmp_path: Path) -> None:
    cache = tmp_path / "cache.json"
    args = shape_args("pdl", "--enrichment-cache", str(cache))
    first = run_local(tmp_path / "first.json", timeout_s=BOUND_S, extra_args=args)
    second = run_local(tmp_path / "second.json", timeout_s=BOUND_S, extra_args=args)
    for run in (first, second):
        assert_local_ok(run, RECORDS)
    assert first.figures is not None
    assert second.figures is not None
    calls = [run.figures["enrichment"]["calls"] for run in (first, second)]  # type: ignore[index]
    note(Result("enrichment cache", f"calls per run {calls[0]} then {calls[1]}", RECORDS,
                second.figures["written"], second.dead_by_reason, second.wall_s))
    assert calls[0] >= RECORDS
    assert calls[1] * 2 <= calls[0]
    assert second.figures["enrichment"]["cache_hits"] == RECORDS
