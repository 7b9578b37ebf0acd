"""The bench's arithmetic on one row: rates, share of the ceiling, 429s by facet, the report."""

from __future__ import annotations

import pytest

from bench.ceiling import Ceiling, ceiling_of
from bench.figures import Result, by_facet, steady_rate_per_s
from bench.report import growth_line, markdown, rate_series, table_line
from bench.runbaseline import merge_timelines
from bench.targets import Verdict


@pytest.mark.parametrize(("codes", "facets"), [
    ({}, {}),
    ({"0x80072322": 3}, {"requests": 3}),
    ({"0x80072321": 2, "0x80072326": 1, "enrichment-429": 5},
     {"concurrency": 1, "enrichment": 5, "exec-time": 2}),
    ({"0x80040203": 4}, {"0x80040203": 4}),
], ids=["none", "request count", "each facet once", "an unknown code keeps its code"])
def test_429s_are_named_by_facet(codes: dict[str, int], facets: dict[str, int]) -> None:
    assert by_facet(codes) == facets


@pytest.mark.parametrize(("timeline", "window_s", "rate"), [
    ([], 10.0, 0.0),
    ([(0.0, 0), (10.0, 500), (20.0, 700), (30.0, 900)], 10.0, 20.0),
    ([(0.0, 0), (5.0, 100)], 10.0, 20.0),
    ([(0.0, 0), (12.0, 100)], 10.0, 100 / 12),
], ids=["no samples", "the first window's burst is left out",
        "a run within the first window is measured whole",
        "one sample after the window falls back to the whole run"])
def test_steady_rate_is_after_the_first_window(timeline: list[tuple[float, int]],
                                               window_s: float, rate: float) -> None:
    assert steady_rate_per_s(timeline, window_s) == pytest.approx(rate)


def _result(**changes: object) -> Result:
    values: dict[str, object] = {
        "name": "dataverse-bound/product-x1/bulk", "kind": "product",
        "scenario": "dataverse-bound", "mode": "bulk", "seeded": 1000, "written": 1000,
        "elapsed_s": 20.0, "window_s": 10.0,
        "timeline": [(0.0, 0), (10.0, 500), (20.0, 1000)], "cpu_s": 0.25,
        "peak_rss_mib": 80.0, "ceiling_per_s": 50.0, "overall_ceiling_per_s": 50.0,
        "throttled_by_code": {"0x80072321": 2}}
    return Result(**{**values, **changes})  # type: ignore[arg-type]


def test_a_row_reports_its_rates_share_and_cpu_per_record() -> None:
    result = _result()
    assert result.rate_per_s == 50.0
    assert result.steady_rate_per_s == 50.0
    assert result.share_of_ceiling == 1.0
    assert result.cpu_ms_per_record == pytest.approx(0.25)
    assert result.time_ms_per_record == pytest.approx(20.0)
    assert result.as_dict()["facets"] == {"exec-time": 2}


def test_a_row_that_wrote_nothing_has_no_per_record_figures() -> None:
    result = _result(written=0, timeline=[], elapsed_s=0.0)
    assert (result.rate_per_s, result.cpu_ms_per_record, result.share_of_ceiling) == (0, 0, 0)


def test_the_ceiling_of_a_mode_is_capped_by_the_enrichment_api() -> None:
    ceiling = ceiling_of({"ceiling": {"single": 40, "batch": 80, "bulk": 800, "overall": 800}},
                         enrichment_rate_per_s=100.0)
    assert [ceiling.mode_per_s(m) for m in ("single", "batch", "bulk")] == [40, 80, 100]
    assert ceiling.overall_per_s == 100.0
    assert Ceiling({"single": 1, "batch": 2, "bulk": 3}, 10).as_dict()["overall_per_s"] == 3


def test_timelines_of_processes_side_by_side_add_up() -> None:
    merged = merge_timelines([[(0.0, 0), (1.0, 10), (2.0, 20)], [(0.5, 5), (2.0, 7)]])
    assert merged == [(0.0, 0), (0.5, 5), (1.0, 15), (2.0, 27)]


def test_the_plot_draws_the_rate_between_every_fourth_sample() -> None:
    timeline = [(float(t), 10 * t) for t in range(9)]
    assert rate_series(timeline) == [(4.0, 10.0), (8.0, 10.0)]


def test_a_table_line_shows_facets_and_a_row_that_could_not_run_says_why() -> None:
    line = table_line(_result())
    assert "| exec-time 2 |" in line
    assert "| 0/0 |" in line
    waiting = table_line(_result(status="needs emulator https/metadata", kind="peer"))
    assert waiting.endswith("| needs emulator https/metadata |")


def test_the_markdown_report_names_the_machine_ceilings_rows_and_targets() -> None:
    ceiling = Ceiling({"single": 40, "batch": 80, "bulk": 800}, 5000).as_dict()
    text = markdown([_result()], [Verdict("t", True, "fine")], "2 cores, 23.5 GiB",
                    {"dataverse-bound": ceiling})
    assert text.startswith("Machine: 2 cores, 23.5 GiB")
    assert "- dataverse-bound: single 40, batch 80, bulk 800; enrichment API 5000; best 800" \
        in text
    assert "| dataverse-bound/product-x1/bulk | 50.0 | 100% |" in text
    assert "- PASS  t: fine" in text
    assert "growth row" not in text


def test_growth_rows_get_their_own_table_of_costs_per_record() -> None:
    row = _result(name="growth/bulk/10000", kind="growth", written=10_000, elapsed_s=25.0,
                  cpu_s=2.0, planner_s=1.5)
    assert row.planner_us_per_record == pytest.approx(150.0)
    assert growth_line(row) == "| growth/bulk/10000 | 10,000 | 2.500 | 0.200 | 80 | 1.5 | 150.0 |"
    assert "| growth/bulk/10000 | 10,000 |" in markdown([row], [], "m", {})
    assert _result(planner_s=None).planner_us_per_record is None
