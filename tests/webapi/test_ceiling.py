"""The emulator's stated bound holds: neither a greedy client (more in flight than allowed,
no cookies, ignores every hint and Retry-After) nor an oracle (knows the limits, paces each
server perfectly) gets more records accepted than ``stats.run_bound`` allows for the run's
own length, by more than 5%.

Each case runs on a time scale (a 2 s window, every per-second rate the documented one) for
about two windows, the greedy and the oracle side by side on two emulators; bounded in time
(``RUN_S``) and in count (``MAX_SENDS``). The measure is the emulator's: its count of records
written and its own elapsed time from the first request to the last."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from sync.local.emulators.webapi import EmulatorConfig, start_emulator
from sync.local.emulators.webapi.probes import Probe, Seen, greedy, oracle
from sync.local.emulators.webapi.stats import facet_requests
from tests.webapi.conftest import token_for

FACTOR = 150.0  # window 300 s / 150 = 2 s
RUN_S = 4.0
MAX_SENDS = 20_000
TOLERANCE = 1.05

CASES: list[tuple[str, str, int, dict[str, Any]]] = [
    ("single writes, bound by the request count", "single", 1, {}),
    ("bulk writes, bound by execution time", "bulk", 20,
     {"bulk_target_ms": 20.0, "max_batch_operations": 20}),
    ("bulk writes, in-flight time counted only once spent (the lenient assumption)", "bulk",
     20, {"bulk_target_ms": 20.0, "max_batch_operations": 20, "exec_in_flight_share": 0.0}),
    ("slow single writes, bound by concurrency", "single", 1,
     {"max_concurrent": 2, "write_ms_min": 400.0, "write_ms_max": 400.0}),
]


def binding_facet(config: EmulatorConfig, mode: str) -> str:
    found = facet_requests(config, mode, 1.0, burst=False)
    return min(found, key=lambda facet: found[facet])


async def probe_one(config: EmulatorConfig, mode: str, targets: int,
                    client: str) -> tuple[Seen, dict[str, Any]]:
    running = await start_emulator(config)
    try:
        async with aiohttp.ClientSession() as admin:
            async with admin.get(f"{running.url}/_emulator/records") as answer:
                ids = [row["accountid"] for row in (await answer.json())["value"]]
            probe = Probe(running.url, token_for(client), ids, mode=mode, targets=targets,
                          run_s=RUN_S, max_sends=MAX_SENDS)
            if client == "greedy":
                seen = await greedy(probe, workers=2 * config.max_concurrent * config.servers)
            else:
                seen = await oracle(probe, config)
            async with admin.get(f"{running.url}/_emulator/stats") as answer:
                stats: dict[str, Any] = await answer.json()
        return seen, stats
    finally:
        await running.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("mode", "targets", "overrides"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
async def test_no_client_beats_the_stated_bound(mode: str, targets: int,
                                                overrides: dict[str, Any]) -> None:
    config = EmulatorConfig.time_scaled(FACTOR, records=400, servers=2, **overrides)
    assert config.window_s == 2.0
    (greedy_seen, greedy_stats), (oracle_seen, oracle_stats) = await asyncio.gather(
        probe_one(config, mode, targets, "greedy"), probe_one(config, mode, targets, "oracle"))
    for seen, stats in ((greedy_seen, greedy_stats), (oracle_seen, oracle_stats)):
        written = stats["records"]["updated"]
        bound = stats["run"]["bound_records"][mode]
        assert stats["run"]["elapsed_s"] >= config.window_s  # past the first window's burst
        assert written == seen.records  # the emulator and the client agree on the work
        assert 0 < written <= bound * TOLERANCE, (binding_facet(config, mode), seen, stats)
    assert greedy_stats["throttled"] > 0  # the greedy client pushed into the limits
    assert greedy_seen.throttled >= oracle_seen.throttled


def test_the_cases_cover_every_facet() -> None:
    facets = {binding_facet(EmulatorConfig.time_scaled(FACTOR, **c[3]), c[1]) for c in CASES}
    assert facets == {"requests", "execution", "concurrency"}
