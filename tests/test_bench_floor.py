"""The HTTP client floor: the runner, each client in its own process against a real enrichment
emulator on 127.0.0.1, makes the calls it was asked for and answers their CPU; the report and
target 3 name the floor when it was measured and leave it out when not (figures made up)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.callcost import BARE, CLIENTS, PRODUCT, CallCost, Floor
from bench.cli import main as bench_main
from bench.figures import Result
from bench.floor import FloorPlan, calls, measure_floor
from bench.report import markdown
from bench.scenarios import FLOOR, selected
from bench.targets import evaluate

CPU_TARGET = "<= 0.3 ms CPU per record (hosts and planner)"
FLOOR_NOTE = "one enrichment call per record costs at least 0.20 ms: the HTTP client floor"


def test_the_floor_runner_makes_every_call_asked_for_and_answers_their_cpu(
        tmp_path: Path) -> None:
    plan = FloorPlan(requests=200, warmup=20, time_bound_s=60.0)
    floor = measure_floor(plan, tmp_path)
    assert [(c.client, c.concurrency) for c in floor.costs] == [
        (client, concurrency) for client in CLIENTS for concurrency in (16, 64)]
    assert all(c.requests == 200 for c in floor.costs)
    assert all(c.cpu_ms_per_call > 0 and c.elapsed_s > 0 for c in floor.costs)
    assert floor.floor_ms == min(c.cpu_ms_per_call for c in floor.of(BARE))
    assert (tmp_path / "floor-enrichment.log").read_text().startswith(
        "Enrichment API emulator listening on http://127.0.0.1:")


async def test_calls_makes_each_numbered_call_once_with_the_concurrency_asked() -> None:
    seen: list[int] = []

    async def call(number: int) -> None:
        seen.append(number)

    assert await calls(call, 50, 4, deadline_s=float("inf")) == 50
    assert sorted(seen) == list(range(50))


async def test_calls_starts_none_after_the_deadline_and_a_failed_call_raises() -> None:
    async def fail(number: int) -> None:
        raise ConnectionError(f"call {number}")

    assert await calls(fail, 10, 2, deadline_s=0.0) == 0
    with pytest.raises(ExceptionGroup):
        await calls(fail, 10, 2, deadline_s=float("inf"))


@pytest.mark.parametrize("plan", [
    {"requests": 0}, {"warmup": -1}, {"time_bound_s": 0.0}],
    ids=["no calls", "a negative warm-up", "no time"])
def test_an_impossible_plan_is_refused(plan: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="impossible floor plan"):
        FloorPlan(**plan)  # type: ignore[arg-type]


def _floor() -> Floor:
    return Floor((CallCost(BARE, 16, 1000, 0.210, 1.0), CallCost(BARE, 64, 1000, 0.200, 1.0),
                  CallCost(PRODUCT, 16, 1000, 0.262, 1.0),
                  CallCost(PRODUCT, 64, 1000, 0.250, 1.0)))


def _nightly(cpu_s: float) -> Result:
    return Result(name="nightly/bulk", kind="nightly", scenario="dataverse-bound", mode="bulk",
                  seeded=1000, written=1000, elapsed_s=10.0, window_s=1.0, cpu_s=cpu_s)


def test_the_floor_line_gives_both_clients_at_each_concurrency() -> None:
    floor = _floor()
    assert floor.line() == ("HTTP client floor: 0.210/0.200 ms CPU per call (aiohttp, "
                            "concurrency 16/64); the product's enrichment call: 0.262/0.250 ms")
    assert floor.floor_ms == pytest.approx(0.200)
    assert floor.as_dict()["costs"][3]["cpu_ms_per_call"] == pytest.approx(0.250)


def test_target_3_names_the_floor_when_measured_and_keeps_its_verdict() -> None:
    with_floor = {v.target: v for v in evaluate([_nightly(0.485)], _floor())}[CPU_TARGET]
    without = {v.target: v for v in evaluate([_nightly(0.485)])}[CPU_TARGET]
    assert with_floor.detail == f"worst nightly/bulk 0.485 ms/record ({FLOOR_NOTE})"
    assert with_floor.passed is False
    assert without.detail == "worst nightly/bulk 0.485 ms/record"
    assert without.passed is False


def test_target_3_not_run_still_names_a_measured_floor() -> None:
    verdict = {v.target: v for v in evaluate([], _floor())}[CPU_TARGET]
    assert verdict.passed is None
    assert verdict.detail == f"not run ({FLOOR_NOTE})"


def test_the_report_shows_the_floor_line_before_the_targets_only_when_measured() -> None:
    verdicts = evaluate([_nightly(0.2)], _floor())
    shown = markdown([_nightly(0.2)], verdicts, "m", {}, _floor())
    left_out = markdown([_nightly(0.2)], evaluate([_nightly(0.2)]), "m", {})
    line = f"{_floor().line()} (`python -m bench.floor`)."
    assert line in shown
    assert shown.index(line) < shown.index("Targets:")
    assert "HTTP client floor" not in left_out


@pytest.mark.parametrize(("only", "runs"), [
    ("", True), ("floor", True), ("nightly,floor", True), ("nightly", False),
    ("dataverse-bound/*", False)],
    ids=["a whole bench", "only the floor", "the floor among rows", "rows without it",
         "a pattern of rows"])
def test_only_selects_the_floor_by_its_name(only: str, runs: bool) -> None:
    assert selected(FLOOR, only) is runs


def test_the_bench_lists_the_floor_first_and_only_floor_lists_it_alone(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_main(["--quick", "--only", "floor", "--list"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "floor  the HTTP client's CPU per call, bare aiohttp and the product's (runs first)"]
    assert bench_main(["--quick", "--list"]) == 0
    assert capsys.readouterr().out.startswith("floor  ")
