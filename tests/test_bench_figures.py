"""The bench's arithmetic on one row: rates, share of the ceiling, 429s by facet, the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.ceiling import Ceiling, ceiling_of
from bench.chart import layout, results_of, share_points, trailing_rates
from bench.chart import main as chart_main
from bench.figures import (
    Result,
    Span,
    by_facet,
    from_first_write,
    steady_span,
    steady_windows,
    supplied_until_s,
    whole_windows_rate_per_s,
)
from bench.report import growth_line, markdown, table_line
from bench.runbaseline import merge_timelines
from bench.runproduct import drain_records, held_records, row_timeline
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


@pytest.mark.parametrize(("timeline", "window_s", "rate", "windows"), [
    ([], 10.0, 0.0, 0),
    ([(0.0, 0), (10.0, 500), (20.0, 700), (30.0, 900)], 10.0, 20.0, 2),
    ([(0.0, 0), (5.0, 100)], 10.0, 0.0, 0),
    ([(0.0, 0), (9.5, 800), (10.5, 1600), (12.0, 1700)], 10.0, 0.0, 0),
    ([(0.0, 0), (9.9, 500), (14.0, 700), (19.9, 900), (20.3, 1000), (24.0, 1100),
      (29.9, 1300), (30.5, 1300), (41.0, 1300)], 10.0, 40.0, 1),
    ([(0.0, 0), (9.9, 800), (10.1, 900), (19.9, 900), (20.1, 1000), (29.9, 1000),
      (30.1, 1100), (31.0, 1110)], 10.0, 10.0, 2),
], ids=["no samples", "the first window's burst is left out",
        "a run within the first window has no steady rate",
        "out of records early in the second window: no steady rate, not the burst's rate",
        "the idle tail after the last record is not a window",
        "a burst as each window ends counts once per whole window"])
def test_the_steady_rate_is_read_over_whole_windows_after_the_first(
        timeline: list[tuple[float, int]], window_s: float, rate: float, windows: int) -> None:
    assert whole_windows_rate_per_s(timeline, window_s) == pytest.approx(rate)
    assert steady_windows(timeline, window_s) == windows


@pytest.mark.parametrize(("timeline", "shifted"), [
    ([], []),
    ([(0.0, 0), (0.5, 0)], [(0.0, 0), (0.5, 0)]),
    ([(0.0, 0), (0.5, 0), (4.0, 0), (4.5, 100), (5.0, 300)], [(0.0, 0), (0.5, 100), (1.0, 300)]),
    ([(0.0, 50), (0.5, 150)], [(0.0, 50), (0.5, 150)]),
], ids=["no samples", "nothing written yet: unchanged",
        "the start and the plan are left out", "writing from the first sample"])
def test_a_timeline_starts_at_the_last_sample_before_the_first_write(
        timeline: list[tuple[float, int]], shifted: list[tuple[float, int]]) -> None:
    assert from_first_write(timeline) == shifted


def test_a_product_row_is_read_from_the_service_count_when_it_has_one() -> None:
    """The ledger moves as whole messages finish: 16 messages sharing a slow enrichment API
    finish together, so it jumps by 1,600 where the writes landed all along."""
    ledger = [[0.0, 0], [3.0, 0], [5.0, 0], [16.0, 1600]]
    service = [[0.0, 0], [3.0, 0], [5.0, 300], [16.0, 1600]]
    assert row_timeline({"timeline": ledger, "service_timeline": service}) == [
        (0.0, 0), (2.0, 300), (13.0, 1600)]
    assert row_timeline({"timeline": ledger}) == [(0.0, 0), (3.0, 0), (5.0, 0), (16.0, 1600)]
    assert row_timeline({"timeline": ledger, "service_timeline": []})[-1] == (16.0, 1600)


def _result(**changes: object) -> Result:
    values: dict[str, object] = {
        "name": "dataverse-bound/product-x1/bulk", "kind": "product",
        "scenario": "dataverse-bound", "mode": "bulk", "seeded": 1000, "written": 1000,
        "elapsed_s": 20.0, "window_s": 10.0,
        "timeline": [(0.0, 0), (10.0, 500), (20.0, 1000), (20.5, 1025)], "cpu_s": 0.25,
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


def test_a_row_without_a_whole_window_after_the_first_shows_no_steady_rate() -> None:
    result = _result(timeline=[(0.0, 0), (10.0, 500), (13.0, 1000)], elapsed_s=13.0)
    assert (result.steady_windows, result.steady_rate_per_s, result.share_of_ceiling) == (0, 0, 0)
    assert "| dataverse-bound/product-x1/bulk | - (no whole window after the first) | - |" \
        in table_line(result)


def test_a_row_that_stalls_with_records_left_counts_its_idle_windows() -> None:
    timeline = [(0.0, 0), (9.0, 400), (10.5, 450), (20.0, 500), (31.0, 500)]
    assert whole_windows_rate_per_s(timeline, 10.0) == 0.0  # as if it had run out at 20 s
    assert whole_windows_rate_per_s(timeline, 10.0, ran_out=False) == pytest.approx(2.5)
    stalled = _result(seeded=2000, written=500, unfinished=1500, timeline=timeline)
    assert (stalled.ran_out, stalled.steady_windows) == (False, 2)
    assert stalled.steady_rate_per_s == pytest.approx(2.5)


@pytest.mark.parametrize(("timeline", "span"), [
    ([(0.0, 0), (10.0, 500), (20.0, 700), (30.0, 900)], Span(10.0, 10.0, 2, (500, 900), 3)),
    ([(0.0, 0), (9.9, 800), (10.1, 900), (19.9, 900), (20.1, 1000), (20.4, 1100)],
     Span(10.1, 10.0, 1, (900, 1000), 3)),
    ([(0.0, 0), (9.5, 100), (10.6, 200), (20.5, 300), (20.7, 400), (21.0, 400)],
     Span(10.6, 10.0, 1, (200, 300), 2)),
    ([(0.0, 0), (5.0, 100)], None),
], ids=["whole windows from the first sample after the first window",
        "a sample a little past whole windows is left out: it could hold a second burst",
        "the span ends at its last sample within it (a rate may read low, never high)",
        "no sample after the first window"])
def test_the_steady_window_states_its_start_end_and_samples(
        timeline: list[tuple[float, int]], span: Span | None) -> None:
    found = steady_span(timeline, 10.0)
    assert found == span
    if found is not None:
        assert (found.end_s, found.length_s) == (found.start_s + found.length_s,
                                                 10.0 * found.windows)


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


@pytest.mark.parametrize(("timeline", "points"), [
    ([(0.0, 0), (5.0, 50), (10.0, 100), (15.0, 150), (20.0, 200)],
     [(10.0, 10.0), (15.0, 10.0), (20.0, 10.0)]),
    ([(0.0, 0), (0.5, 800), (10.0, 800), (10.5, 1600), (20.0, 1600), (20.5, 2400)],
     [(10.0, 80.0), (10.5, 80.0), (20.0, 80.0), (20.5, 80.0)]),
    ([(0.0, 0), (4.0, 0), (10.0, 600), (14.0, 600), (20.0, 600)],
     [(10.0, 60.0), (14.0, 60.0), (20.0, 0.0)]),
], ids=["a steady pace", "a burst each window reads once a window, never as a spike",
        "a pause shows where it was"])
def test_the_chart_smooths_each_row_over_the_service_window(
        timeline: list[tuple[float, int]], points: list[tuple[float, float]]) -> None:
    assert trailing_rates(timeline, 10.0, 10.0, 20.5) == points


def test_the_chart_draws_a_row_as_a_share_of_its_ceiling_over_its_steady_window() -> None:
    row = _result(timeline=[(0.0, 0), (5.0, 250), (10.0, 500), (15.0, 750), (20.0, 1000),
                            (25.0, 1000)])
    assert share_points(row) == [(10.0, 100.0), (15.0, 100.0), (20.0, 100.0)]
    assert share_points(_result(timeline=[(0.0, 0), (5.0, 1000)])) == []


def test_the_chart_has_a_panel_per_scenario_and_mode_in_the_table_s_order() -> None:
    rows = [_result(name=f"{scenario}/x/{mode}", scenario=scenario, mode=mode)
            for scenario, mode in (("b", "bulk"), ("a", "single"), ("b", "single"),
                                   ("a", "calls"))]
    rows.append(_result(name="c/x/bulk", scenario="c", status="could not run"))
    assert layout(rows) == [("b", ["single", "bulk"]), ("a", ["single", "calls"])]


def test_a_stored_report_can_be_charted_again(tmp_path: Path) -> None:
    report = {"rows": [{**_result().as_dict(), "timeline": [[0.0, 0], [10.0, 500]]}],
              "machine": {"cores": 2, "memory_mib": 2048, "cpu": "x", "python": "3.11"}}
    rows = results_of(report)
    assert rows[0].timeline == [(0.0, 0), (10.0, 500)]
    source, out = tmp_path / "bench.json", tmp_path / "bench.png"
    source.write_text(json.dumps(report))
    assert chart_main([str(source), str(out)]) == 0
    assert out.read_bytes().startswith(b"\x89PNG")


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
    assert growth_line(row) == \
        "| growth/bulk/10000 | 10,000 | 2.500 | 0.200 | 80 | 1.5 | 150.0 | - | - | - | - |"
    row.beside_peak_rss_mib = {"launcher": 61.4, "dataverse-emulator": 402.6, "azurite": 90.0}
    assert growth_line(row).endswith("| 150.0 | 61 | 403 | - | 90 |")
    text = markdown([row], [], "m", {})
    assert "| launcher peak RSS MiB | Dataverse emulator peak RSS MiB |" in text
    assert text.count("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n") == 1
    assert "| growth/bulk/10000 | 10,000 |" in markdown([row], [], "m", {})
    assert _result(planner_s=None).planner_us_per_record is None


@pytest.mark.parametrize(("seeded", "drain", "expected"), [
    (1000, 300, 6.0),    # 300 left at t=6 (done 700): the last sample with the hosts' fill
    (1000, 100, 8.0),
    (1000, 0, 10.0),
    (1000, 2000, None),  # never that many left
], ids=["drain of 300", "drain of 100", "no drain", "never enough"])
def test_a_run_that_ran_out_is_supplied_until_fewer_than_its_hosts_hold_are_left(
        seeded: int, drain: int, expected: float | None) -> None:
    timeline = [(0.0, 0), (2.0, 200), (4.0, 450), (6.0, 700), (8.0, 900), (10.0, 1000)]
    assert supplied_until_s(timeline, seeded, drain) == expected


def test_the_drain_at_the_end_of_a_run_is_not_its_steady_rate() -> None:
    """Steady at 100/s until 1,000 of 1,100 are done at t=10, then 100 more in 5 s (the last
    messages, nothing behind them): the span ends where the hosts' fill was last all there."""
    timeline = [(float(t), 100 * t) for t in range(11)] + [(15.0, 1100)]
    drained = steady_span(timeline, 2.0, supplied_until=supplied_until_s(timeline, 1100, 100))
    whole = steady_span(timeline, 2.0)
    assert drained is not None
    assert whole is not None
    assert drained.rate_per_s == pytest.approx(100.0)
    assert whole.rate_per_s < 90.0


@pytest.mark.parametrize(("processes", "rate_per_s", "expected"), [
    (3, 40.0, 400),     # single writes: one window at 40/s, not the 4,800 three hosts hold
    (1, 80.0, 800),
    (1, 800.0, None),   # bulk: the hosts' fill comes first
    (3, 800.0, None),
])
def test_a_row_drains_from_its_last_window_or_its_hosts_fill_whichever_is_fewer(
        processes: int, rate_per_s: float, expected: int | None) -> None:
    held = held_records(processes)
    assert held == 1600 * processes  # host.json's batchSize 16 x SYNC_BATCH_SIZE 100
    assert drain_records(processes, rate_per_s, 10.0) == (held if expected is None else expected)
