"""The bench's plan: which rows run, in which environments, at what sizes; the helpers that read
the processes and logs of a run."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pytest

from bench.machine import _meminfo_kib, summary
from bench.proctree import TreeSampler, merged, peak_by_role, role_of, sum_by_role
from bench.runproduct import planner_seconds
from bench.scenarios import (
    DATAVERSE_BOUND,
    DEFAULT_SCALE,
    ENRICHMENT_BOUND,
    GROWTH,
    KINDS,
    MILLION,
    MODES,
    PATTERNS,
    QUICK_SCALE,
    RowSpec,
    Scenario,
    plan_rows,
    select,
)
from sync.local.emulators.webapi.cli import config_from, configure_parser
from sync.local.emulators.webapi.stats import ceiling
from sync.local.processes import ResourceUsage


def _emulator_ceiling(scenario: Scenario, time_scale: float) -> dict[str, float]:
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    return ceiling(config_from(parser.parse_args(scenario.emulator_args(time_scale))))


def test_every_row_kind_runs_and_baselines_cover_every_pattern_and_mode_in_both_scenarios() -> None:
    rows = plan_rows(DEFAULT_SCALE)
    assert {row.kind for row in rows} == set(KINDS)
    for scenario in (DATAVERSE_BOUND, ENRICHMENT_BOUND):
        baselines = {(r.pattern, r.mode) for r in rows
                     if r.kind == "baseline" and r.scenario == scenario}
        products = {(r.processes, r.mode) for r in rows
                    if r.kind == "product" and r.scenario == scenario}
        assert baselines == {(p, m) for p in PATTERNS for m in MODES}
        assert products == {(k, m) for k in (1, 3) for m in MODES}
    assert len({row.name for row in rows}) == len(rows)


def test_the_nightly_job_and_the_peer_write_50000_accounts_at_the_documented_limits() -> None:
    assert "peer" not in {row.kind for row in plan_rows(DEFAULT_SCALE)}  # opt-in: --peer
    rows = {row.kind: row for row in plan_rows(DEFAULT_SCALE, peer=True)}
    for kind in ("nightly", "peer"):
        assert (rows[kind].records, rows[kind].scenario) == (50_000, DATAVERSE_BOUND)
        assert rows[kind].mode == "bulk"


def test_growth_runs_10k_and_100k_by_default_and_1m_only_when_asked() -> None:
    def sizes(rows: list[RowSpec]) -> list[int]:
        return [r.records for r in rows if r.kind == "growth"]

    assert sizes(plan_rows(DEFAULT_SCALE)) == [10_000, 100_000]
    assert sizes(plan_rows(DEFAULT_SCALE, million=True)) == [10_000, 100_000, MILLION]
    assert all(r.mode == "bulk" and r.scenario == GROWTH for r in plan_rows(DEFAULT_SCALE)
               if r.kind == "growth")


def test_the_3_process_baseline_runs_3_processes_and_bulk_rows_name_the_bulk_guidance() -> None:
    rows = {row.name: row for row in plan_rows(QUICK_SCALE)}
    assert rows["dataverse-bound/recommended-x3/batch"].processes == 3
    assert rows["dataverse-bound/sequential/bulk"].note.startswith("bulk at 1")
    assert rows["enrichment-bound/recommended-x1/bulk"].note.startswith("bulk at the DOP hint")
    assert rows["enrichment-bound/recommended-x1/single"].note == ""


def test_the_governor_is_measured_with_and_without_the_rate_limit_headers() -> None:
    names = [row.name for row in plan_rows(DEFAULT_SCALE)]
    for mode in ("single", "bulk"):
        assert f"dataverse-bound/product-x1/{mode}" in names
        assert f"dataverse-bound/product-x1-no-ratelimit-headers/{mode}" in names


def test_skipping_unchanged_records_and_the_bulk_etag_check_are_measured() -> None:
    rows = {row.name: row for row in plan_rows(DEFAULT_SCALE)}
    for mode in MODES:
        assert "90%" in rows[f"dataverse-bound/product-x1-unchanged-90/{mode}"].note
    assert "ETag" in rows["dataverse-bound/product-x1-no-etag-check/bulk"].note


@pytest.mark.parametrize(("only", "names"), [
    ("", 52),  # 50, the two probes of the enrichment API and the peer (with --peer)
    ("nightly", ["nightly/bulk"]),
    ("peer,growth/bulk/300", ["peer/bulk", "growth/bulk/300"]),
    ("enrichment-bound/product-*/bulk", ["enrichment-bound/product-x1/bulk",
                                         "enrichment-bound/product-x3/bulk"]),
    ("nothing-by-this-name", []),
], ids=["empty selects all", "a substring", "several, comma-separated", "a shell pattern",
        "no match"])
def test_only_selects_rows_by_name(only: str, names: int | list[str]) -> None:
    chosen = [row.name for row in select(plan_rows(QUICK_SCALE, peer=True), only)]
    assert (len(chosen) if isinstance(names, int) else chosen) == names


def test_the_dataverse_bound_scenario_is_bound_by_dataverse_in_every_mode() -> None:
    modes = _emulator_ceiling(DATAVERSE_BOUND, DEFAULT_SCALE.time_scale)
    assert all(modes[m] < DATAVERSE_BOUND.enrichment_rate_per_s for m in MODES)
    assert modes["single"] == pytest.approx(40.0)  # 20 requests/s per server, 2 servers


def test_the_enrichment_bound_scenario_is_bound_by_the_enrichment_api_in_every_mode() -> None:
    modes = _emulator_ceiling(ENRICHMENT_BOUND, DEFAULT_SCALE.time_scale)
    assert all(modes[m] > ENRICHMENT_BOUND.enrichment_rate_per_s for m in MODES)


def test_row_sizes_follow_the_ceiling_within_the_scales_bounds() -> None:
    # a client at 40/s with the first window's burst is busy past the timed run (21 s)
    assert DEFAULT_SCALE.records_for(40.0) == int(40 * (21 + 10) * 1.1)
    assert DEFAULT_SCALE.records_for(40.0) / 40.0 - DEFAULT_SCALE.window_s \
        > DEFAULT_SCALE.timed_run_s
    assert DEFAULT_SCALE.records_for(1.0) == DEFAULT_SCALE.min_records
    assert QUICK_SCALE.records_for(800.0) == QUICK_SCALE.max_records
    assert DEFAULT_SCALE.product_timeout_s(2_000, 100.0) == 110.0
    assert DEFAULT_SCALE.product_timeout_s(100_000, 20_000.0) == 830.0
    assert DEFAULT_SCALE.product_timeout_s(100, 800.0) == 60.0


@pytest.mark.parametrize(("argv", "role"), [
    (["/x/node", "/x/node_modules/.bin/azurite", "--silent"], "azurite"),
    (["python", "-m", "sync", "emulator", "dataverse", "--records", "5"], "dataverse-emulator"),
    (["python", "-m", "sync", "emulator", "enrichment"], "enrichment-emulator"),
    (["python", "-m", "sync", "host", "--fire-timer"], "host"),
    (["python", "-m", "sync", "local", "--records", "5"], "launcher"),
    (["bash"], "other"),
], ids=["azurite", "dataverse emulator", "enrichment emulator", "host", "sync local", "other"])
def test_processes_are_told_apart_by_command_line(argv: list[str], role: str) -> None:
    assert role_of(argv) == role


def test_cpu_is_summed_per_role() -> None:
    usage = {1: ("host", ResourceUsage(1.5, 80.0)), 2: ("host", ResourceUsage(0.5, 70.0)),
             3: ("azurite", ResourceUsage(2.0, 90.0))}
    assert sum_by_role(usage) == {"azurite": 2.0, "host": 2.0}


def test_peak_memory_is_the_largest_process_per_role() -> None:
    usage = {1: ("host", ResourceUsage(1.5, 80.0)), 2: ("host", ResourceUsage(0.5, 70.0)),
             3: ("launcher", ResourceUsage(2.0, 61.0))}
    assert peak_by_role(usage) == {"host": 80.0, "launcher": 61.0}


def test_a_process_that_is_exiting_keeps_its_role_and_its_peak() -> None:
    known = merged(None, "dataverse-emulator", ResourceUsage(3.0, 900.0))
    assert known == ("dataverse-emulator", ResourceUsage(3.0, 900.0))
    exiting = merged(known, "other", ResourceUsage(3.5, 0.0))  # a zombie: no argv, no memory
    assert exiting == ("dataverse-emulator", ResourceUsage(3.5, 900.0))
    started = merged(("launcher", ResourceUsage(0.1, 60.0)), "host", ResourceUsage(0.2, 30.0))
    assert started == ("host", ResourceUsage(0.2, 30.0))  # forked, then its own program


def test_the_sampler_counts_the_root_process_with_its_children() -> None:
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as child:
        try:
            sampler = TreeSampler(os.getpid())
            sampler.sample()
        finally:
            child.kill()
    assert {os.getpid(), child.pid} <= set(sampler.last)
    assert sampler.peak_rss_by_role()["other"] > 0


def test_planner_cost_is_read_from_the_planning_hosts_log() -> None:
    lines = ["2026-12-01 03:00:00,000 11 INFO sync.local.host: serving 3 functions",
             "2026-12-01 03:00:01,500 11 INFO sync.plan.planner: plan r1: 5000 records so far; "
             "continuing in a new invocation",
             "2026-12-01 03:00:02,250 11 INFO sync.plan.planner: plan r1 (full): 10000 records in "
             "100 batches from 2 pages, 0 skipped"]
    assert planner_seconds(lines) == pytest.approx(2.25)
    assert planner_seconds(lines[:2]) is None
    assert planner_seconds([]) is None


def test_the_machine_is_named_by_cores_memory_cpu_and_python() -> None:
    assert _meminfo_kib("MemFree: 5 kB\nMemTotal:  24683520 kB\n") == 24_683_520
    assert summary({"cores": 2, "memory_mib": 24_105, "cpu": "Xeon", "python": "3.11.7"}) \
        == "2 cores, 23.5 GiB, Xeon, Python 3.11.7"
