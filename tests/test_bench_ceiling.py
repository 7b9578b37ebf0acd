"""The bench's ceiling is the emulator's: every scenario runs on ``EmulatorConfig.time_scaled``
(the options the bench gives the emulator make exactly that configuration), and what the bench
reads from the emulator's ``/_emulator/stats`` and caps by the enrichment API agrees with the
emulator's own ``ceiling(config, enrichment_rate_per_s=...)`` for each scenario; the enrichment
API's ceiling is the one its emulator states, started with the bench's options."""

from __future__ import annotations

import argparse
import math
from typing import Any

import aiohttp
import pytest

from bench.ceiling import ceiling_of, enrichment_ceiling, row_limits
from bench.scenarios import DEFAULT_SCALE, GROWTH, MODES, QUICK_SCALE, SCENARIOS, Scale, Scenario
from sync.local.emulators.enrichment import start_enrichment
from sync.local.emulators.enrichment.cli import config_from as enrichment_config_from
from sync.local.emulators.enrichment.cli import configure_parser as configure_enrichment
from sync.local.emulators.webapi import start_emulator
from sync.local.emulators.webapi.cli import config_from, configure_parser
from sync.local.emulators.webapi.stats import ceiling

CASES = [(scenario, scale) for scenario in (*SCENARIOS, GROWTH)
         for scale in (DEFAULT_SCALE, QUICK_SCALE)]
IDS = [f"{scenario.name} at {scale.window_s:g} s windows" for scenario, scale in CASES]


def _parsed(scenario: Scenario, scale: Scale) -> Any:
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    return config_from(parser.parse_args(scenario.emulator_args(scale.time_scale)))


@pytest.mark.parametrize(("scenario", "scale"), CASES, ids=IDS)
def test_the_emulator_runs_each_scenario_on_the_time_scale(scenario: Scenario,
                                                           scale: Scale) -> None:
    config = scenario.emulator_config(scale.time_scale)
    assert _parsed(scenario, scale) == config
    assert config.window_s == pytest.approx(scale.window_s)
    assert config.retry_after_resolution_s == 1.0  # Retry-After whole seconds, at least 1 s
    assert config.max_requests / config.window_s == pytest.approx(20.0)  # 6000 per 300 s
    assert config.max_exec_ms / config.window_s == pytest.approx(4000.0)  # 1,200,000 ms


async def stats_of(url: str) -> Any:
    """An emulator's ``/_emulator/stats`` (either emulator has one)."""
    async with aiohttp.ClientSession() as session, session.get(
            f"{url}/_emulator/stats") as answer:
        return await answer.json()


@pytest.mark.parametrize(("scenario", "scale"), CASES, ids=IDS)
async def test_the_bench_reads_the_emulators_ceiling_and_caps_it_as_the_emulator_does(
        scenario: Scenario, scale: Scale) -> None:
    config = scenario.emulator_config(scale.time_scale)
    running = await start_emulator(config)
    try:
        stats = await stats_of(running.url)
    finally:
        await running.close()
    found = ceiling_of(stats, scenario.enrichment_rate_per_s)
    expected = ceiling(config, enrichment_rate_per_s=scenario.enrichment_rate_per_s)
    assert found.overall_per_s == pytest.approx(expected["overall"])
    for mode in MODES:
        assert found.dataverse_per_s[mode] == pytest.approx(expected[mode])
        assert found.mode_per_s(mode) == pytest.approx(min(expected[mode],
                                                           expected["enrichment"]))
    assert found.overall_per_s >= max(found.mode_per_s(mode) for mode in MODES)


def test_a_time_scale_below_1_is_refused() -> None:
    with pytest.raises(ValueError, match="time_scale"):
        Scale(time_scale=0.5)


@pytest.mark.parametrize("scenario", [*SCENARIOS, GROWTH], ids=lambda s: s.name)
async def test_the_bench_reads_the_enrichment_emulators_ceiling(scenario: Scenario) -> None:
    parser = argparse.ArgumentParser()
    configure_enrichment(parser)
    config = enrichment_config_from(parser.parse_args(scenario.enrichment_args()))
    runner, url = await start_enrichment(config)
    try:
        stats = await stats_of(url)
    finally:
        await runner.cleanup()
    assert enrichment_ceiling(stats) == scenario.enrichment_rate_per_s
    assert stats["limit"]["burst"] == scenario.enrichment_burst == max(
        1, int(scenario.enrichment_rate_per_s))  # a one-second bucket


@pytest.mark.parametrize(("scenario", "steady_per_s", "span_s", "expected"), [
    ("dataverse-bound", 800.0, 10.0, 800.0),
    ("enrichment-bound", 100.0, 10.0, 110.0),
    ("enrichment-bound", 100.0, 20.0, 105.0),
    ("enrichment-bound", 100.0, math.inf, 100.0),
    ("enrichment-bound", 60.0, 10.0, 60.0),
    ("growth", 20_000.0, 50.0, 20_400.0),
    ("no such scenario", 50.0, 10.0, 50.0),
], ids=["Dataverse binds: its ceiling bounds every whole window",
        "the enrichment API binds: a one-second bucket over one 10 s window is 10% more",
        "over two windows, 5% more", "the steady ceiling: the burst spread over forever",
        "a mode Dataverse binds below the enrichment API's rate: no burst",
        "the growth scenario's enrichment API binds bulk",
        "a row of no known scenario: its steady ceiling"])
def test_a_row_s_ceiling_over_its_steady_window_counts_the_enrichment_burst(
        scenario: str, steady_per_s: float, span_s: float, expected: float) -> None:
    assert row_limits(scenario, steady_per_s).per_s(span_s) == pytest.approx(expected)
