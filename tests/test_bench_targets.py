"""The issue's targets, evaluated on made-up rows (reported pass/fail, not asserted on runs)."""

from __future__ import annotations

import pytest

from bench.figures import Result
from bench.targets import HONEST, Verdict, evaluate, report_fails


def _row(name: str, kind: str, mode: str, rate_per_s: float, **changes: object) -> Result:
    scenario = name.split("/", 1)[0]
    values: dict[str, object] = {
        "name": name, "kind": kind, "scenario": scenario, "mode": mode, "seeded": 1000,
        "written": 1000, "elapsed_s": 1000 / rate_per_s, "window_s": 1.0,
        "timeline": [(float(t), round(rate_per_s * t)) for t in range(4)],
        "ceiling_per_s": 100.0, "overall_ceiling_per_s": 100.0, "cpu_s": 0.2,
        "peak_rss_mib": 80.0}
    return Result(**{**values, **changes})  # type: ignore[arg-type]


def _by_target(results: list[Result]) -> dict[str, Verdict]:
    return {v.target.split(":")[0]: v for v in evaluate(results)}


def test_the_best_mode_passes_at_90_percent_of_the_ceiling_ahead_of_its_baselines() -> None:
    verdicts = _by_target([
        _row("dataverse-bound/product-x1/bulk", "product", "bulk", 95.0),
        _row("dataverse-bound/product-x1/single", "product", "single", 30.0),
        _row("dataverse-bound/fixed-52/bulk", "baseline", "bulk", 60.0),
    ])
    verdict = verdicts["dataverse-bound x1"]
    assert verdict.passed is True
    assert "bulk 95.0/s = 95% of 100/s" in verdict.detail
    assert "fixed-52/bulk 60.0/s" in verdict.detail
    assert verdicts["dataverse-bound x3"].passed is None


def test_the_best_mode_fails_below_90_percent_or_behind_a_baseline_of_its_mode() -> None:
    slow = _by_target([_row("enrichment-bound/product-x3/bulk", "product", "bulk", 89.0)])
    behind = _by_target([
        _row("enrichment-bound/product-x3/bulk", "product", "bulk", 95.0),
        _row("enrichment-bound/recommended-x3/bulk", "baseline", "bulk", 96.0),
        _row("enrichment-bound/recommended-x3/single", "baseline", "single", 99.0),
    ])
    assert slow["enrichment-bound x3"].passed is False
    assert behind["enrichment-bound x3"].passed is False


def test_modes_tied_for_the_best_rate_are_judged_by_the_one_furthest_ahead() -> None:
    """At the enrichment API's limit two modes of ours are both the best mode; the verdict
    takes the one whose best baseline is slowest, whatever order the rows come in."""
    rows = [_row("enrichment-bound/product-x1/batch", "product", "batch", 100.0),
            _row("enrichment-bound/product-x1/bulk", "product", "bulk", 100.0),
            _row("enrichment-bound/fixed-52/batch", "baseline", "batch", 110.0),
            _row("enrichment-bound/sequential/bulk", "baseline", "bulk", 80.0)]
    for order in (rows, rows[::-1]):
        verdict = _by_target(order)["enrichment-bound x1"]
        assert verdict.passed is True
        assert "bulk 100.0/s" in verdict.detail
        assert "sequential/bulk 80.0/s" in verdict.detail


def test_a_tie_with_a_baseline_passes_only_at_the_ceiling() -> None:
    at_ceiling = _by_target([_row("enrichment-bound/product-x1/bulk", "product", "bulk", 100.0),
                             _row("enrichment-bound/sequential/bulk", "baseline", "bulk", 100.0)])
    below = _by_target([_row("enrichment-bound/product-x1/bulk", "product", "bulk", 95.0),
                        _row("enrichment-bound/sequential/bulk", "baseline", "bulk", 95.0)])
    assert at_ceiling["enrichment-bound x1"].passed is True
    assert below["enrichment-bound x1"].passed is False


def test_one_lost_or_failed_record_in_any_run_of_ours_fails_and_baselines_do_not_count() -> None:
    clean = _by_target([_row("nightly/bulk", "nightly", "bulk", 50.0),
                        _row("x/fixed-52/bulk", "baseline", "bulk", 50.0, failed=300)])
    failed = _by_target([_row("growth/bulk/10000", "growth", "bulk", 50.0, failed=1)])
    lost = _by_target([_row("x/product-x1/bulk", "product", "bulk", 50.0, lost=2)])
    target = "0 lost, 0 failed in every run of ours"
    assert clean[target].passed is True
    assert failed[target].passed is False
    assert "lost 2 failed 0" in lost[target].detail


def test_cpu_per_record_is_judged_by_the_worst_run_of_ours() -> None:
    cheap = _by_target([_row("nightly/bulk", "nightly", "bulk", 50.0, cpu_s=0.3)])
    costly = _by_target([_row("nightly/bulk", "nightly", "bulk", 50.0, cpu_s=0.3),
                         _row("growth/bulk/10000", "growth", "bulk", 50.0, cpu_s=0.31)])
    target = "<= 0.3 ms CPU per record (hosts and planner)"
    assert cheap[target].passed is True
    assert costly[target].passed is False
    assert "growth/bulk/10000 0.310" in costly[target].detail


def test_rss_growth_compares_the_smallest_and_largest_growth_sizes() -> None:
    def growth(records: int, rss_mib: float) -> Result:
        return _row(f"growth/bulk/{records}", "growth", "bulk", 50.0, seeded=records,
                    peak_rss_mib=rss_mib)

    target = "peak RSS within 10% from 10k to 1M records"
    flat = _by_target([growth(100_000, 87.0), growth(10_000, 80.0)])[target]
    grown = _by_target([growth(10_000, 80.0), growth(1_000_000, 90.0)])[target]
    assert flat.passed is True
    assert "(1M not run: --million)" in flat.detail
    assert grown.passed is False
    assert "not run" not in grown.detail
    assert _by_target([growth(10_000, 80.0)])[target].passed is None


def test_rows_that_could_not_run_are_left_out() -> None:
    verdicts = evaluate([_row("peer/bulk", "peer", "bulk", 1.0, status="waiting")])
    assert all(v.passed is None for v in verdicts)


@pytest.mark.parametrize(("rows", "passed", "detail"), [
    ([_row("dataverse-bound/greedy-probe/single", "probe", "single", 104.0,
           bound_records=1000.0),
      _row("dataverse-bound/oracle-probe/single", "probe", "single", 95.0,
           bound_records=1100.0)],
     True, "2 rows; highest dataverse-bound/greedy-probe/single 104% of its ceiling"),
    ([_row("dataverse-bound/product-x1/bulk", "product", "bulk", 106.0)], False,
     "dataverse-bound/product-x1/bulk 106% of its ceiling"),
    ([_row("d/greedy-probe/bulk", "probe", "bulk", 90.0, bound_records=900.0)], False,
     "d/greedy-probe/bulk 111% of its run's bound"),
    ([_row("enrichment-bound/fixed-52/batch", "baseline", "batch", 110.0)], True,
     "1 rows; highest enrichment-bound/fixed-52/batch 73% of its ceiling"),
    ([_row("enrichment-bound/fixed-52/batch", "baseline", "batch", 150.0,
           timeline=[(0.0, 0), (10.0, 100), (20.0, 1600)], window_s=10.0)], False,
     "enrichment-bound/fixed-52/batch 136% of its ceiling"),
    ([], None, "not run"),
], ids=["probes within 5% of the ceiling and their runs' bound",
        "a product row 6% above its ceiling fails the report",
        "a probe above its run's bound",
        "110/s over two 1 s windows: the enrichment API's burst lets 150/s in",
        "over one 10 s window a one-second burst is 10% more, not 50%",
        "no row: not run"])
def test_every_row_is_held_to_its_ceiling_over_its_steady_window(
        rows: list[Result], passed: bool | None, detail: str) -> None:
    for row in rows:
        if row.scenario == "enrichment-bound":
            row.ceiling_per_s = 100.0  # the enrichment API's rate (a one-second bucket)
    verdict = _by_target(rows)[HONEST]
    assert (verdict.passed, verdict.detail) == (passed, detail)
    assert (report_fails(evaluate(rows)) is not None) == (passed is False)


def test_a_row_without_a_steady_rate_is_not_compared() -> None:
    short = _row("dataverse-bound/product-x1/bulk", "product", "bulk", 95.0,
                 timeline=[(0.0, 0), (1.0, 500), (1.2, 1000)])
    rival = _row("dataverse-bound/recommended-x1/bulk", "baseline", "bulk", 50.0,
                 timeline=[(0.0, 0), (1.0, 900), (1.3, 1000)])
    verdict = _by_target([short, rival])["dataverse-bound x1"]
    assert (verdict.passed, verdict.detail) == (None, "not run")
