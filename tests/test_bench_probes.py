"""The probe rows: the greedy client, run by the bench's probe runner against the emulator of
the Dataverse-bound scenario on a time scale, gets no more than the emulator's proven ceiling
(over whole windows) and its run's bound allow, within 5%; so do the greedy and the oracle
against the enrichment emulator of the enrichment-bound scenario; the arithmetic that reads a
probe's timeline."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from bench.ceiling import Ceiling, ceiling_of
from bench.enrichprobe import run_enrichment_probe
from bench.figures import Result, whole_windows_rate_per_s
from bench.probe import probe_config, run_probe
from bench.runprobe import enrichment_probe_result, probe_result
from bench.scenarios import (
    DATAVERSE_BOUND,
    ENRICHMENT_BOUND,
    ENRICHMENT_CALLS,
    PROBES,
    QUICK_SCALE,
    RowSpec,
    Scale,
    plan_rows,
)
from bench.targets import CEILING_TOLERANCE
from sync.local.emulators.enrichment import EnrichmentConfig, start_enrichment
from sync.local.emulators.enrichment.probes import EnrichmentProbe
from sync.local.emulators.webapi import start_emulator
from sync.local.emulators.webapi.probes import Probe
from sync.local.emulators.webapi.stats import ceiling as dataverse_ceiling
from sync.local.emulators.webapi.stats import request_shape
from tests.webapi.conftest import token_for

SCALE = Scale(time_scale=150.0, run_s=3.0)  # a 2 s window; probes send for 2 windows + 1 s
MAX_SENDS = 10_000


@pytest.mark.parametrize(("timeline", "window_s", "rate"), [
    ([(0.0, 0), (0.5, 80), (1.9, 80), (2.1, 160), (3.9, 160), (4.1, 240), (4.6, 240)], 2.0,
     40.0),
    ([(0.0, 0), (1.5, 30), (3.5, 70), (5.5, 110), (6.2, 124)], 2.0, 20.0),
    ([(0.0, 0), (1.0, 10), (2.0, 20), (3.0, 60)], 2.0, 0.0),
], ids=["a burst each window: one per whole window counted",
        "a steady pace: the samples before each end",
        "under two windows: no steady rate"])
def test_a_probes_rate_is_read_over_whole_windows(timeline: list[tuple[float, int]],
                                                  window_s: float, rate: float) -> None:
    assert whole_windows_rate_per_s(timeline, window_s) == pytest.approx(rate)


def test_the_oracle_paces_for_the_bulk_requests_it_sends() -> None:
    config = DATAVERSE_BOUND.emulator_config(SCALE.time_scale)
    assert request_shape(probe_config(config, "bulk"), "bulk")[0] == 100
    assert probe_config(config, "single") == config


async def _ids(url: str) -> list[str]:
    async with aiohttp.ClientSession() as session, session.get(
            f"{url}/_emulator/records") as answer:
        return [row["accountid"] for row in (await answer.json())["value"]]


@pytest.mark.timeout(60)
async def test_the_greedy_probe_row_stays_within_5_percent_of_the_proven_ceiling() -> None:
    config = DATAVERSE_BOUND.emulator_config(SCALE.time_scale, records=200)
    running = await start_emulator(config)
    try:
        probe = Probe(running.url, token_for("greedy"), await _ids(running.url),
                      run_s=SCALE.probe_run_s, max_sends=MAX_SENDS)
        tally = await run_probe("greedy", probe, config)
        async with aiohttp.ClientSession() as session, session.get(
                f"{running.url}/_emulator/stats") as answer:
            stats: dict[str, Any] = await answer.json()
    finally:
        await running.close()
    spec = RowSpec("probe", DATAVERSE_BOUND, "single", "greedy", records=200)
    row: Result = probe_result(spec, SCALE, ceiling_of(stats, 5000.0),
                               {**tally, "cpu_s": 0.0, "peak_rss_mib": 0.0}, stats)
    assert stats["throttled"] > 0  # it pushed into the limits
    assert tally["timeline"][-1][1] == row.written == tally["records"] > 0
    assert row.written <= row.bound_records * CEILING_TOLERANCE
    # the bound is the claim; how much it reaches after the first window depends on the
    # machine's load, so only the upper side is asserted
    assert row.steady_rate_per_s <= row.ceiling_per_s * CEILING_TOLERANCE
    assert row.note.startswith("probe: all in flight")


def test_probes_send_for_two_windows_and_a_second_at_least() -> None:
    assert QUICK_SCALE.probe_run_s == 7.0
    assert SCALE.probe_run_s == 5.0


async def _enrichment_row(kind: str) -> tuple[Result, dict[str, Any]]:
    scenario = ENRICHMENT_BOUND
    config = EnrichmentConfig(rate_per_s=scenario.enrichment_rate_per_s,
                              burst=scenario.enrichment_burst)
    runner, url = await start_enrichment(config)
    try:
        probe = EnrichmentProbe(url, run_s=SCALE.probe_run_s, max_sends=MAX_SENDS)
        tally = await run_enrichment_probe(kind, probe, scenario)
        async with aiohttp.ClientSession() as session, session.get(
                f"{url}/_emulator/stats") as answer:
            stats: dict[str, Any] = await answer.json()
    finally:
        await runner.cleanup()
    ceiling = Ceiling(dataverse_ceiling(scenario.emulator_config(SCALE.time_scale)),
                      config.rate_per_s)
    row = enrichment_probe_result(RowSpec("probe", scenario, ENRICHMENT_CALLS, kind), SCALE,
                                  ceiling, {**tally, "cpu_s": 0.0, "peak_rss_mib": 0.0}, stats)
    return row, tally


@pytest.mark.timeout(60)
async def test_the_enrichment_probe_rows_stay_within_5_percent_of_the_enrichment_ceiling(
        ) -> None:
    (greedy, greedy_tally), (oracle, oracle_tally) = await asyncio.gather(
        _enrichment_row("greedy"), _enrichment_row("oracle"))
    for row, tally in ((greedy, greedy_tally), (oracle, oracle_tally)):
        assert row.ceiling_per_s == ENRICHMENT_BOUND.enrichment_rate_per_s
        assert tally["timeline"][-1][1] == row.written == tally["accepted"] > 0
        assert row.written <= row.bound_records * CEILING_TOLERANCE
        assert row.steady_windows >= 1
        assert row.steady_rate_per_s <= row.ceiling_per_s * CEILING_TOLERANCE
        assert row.note.startswith("probe of the enrichment API")
    assert greedy.facets["enrichment"] > 0  # it pushed into the limit
    assert oracle.facets == {}  # it knows the limit


def test_the_bench_plans_both_probes_for_each_ceiling() -> None:
    probes = [row.name for row in plan_rows(QUICK_SCALE) if row.kind == "probe"]
    assert [name for name in probes if name.startswith("enrichment-bound/")] == [
        f"enrichment-bound/{kind}-probe/{ENRICHMENT_CALLS}" for kind in PROBES]
    assert len([name for name in probes if name.startswith("dataverse-bound/")]) == 4
