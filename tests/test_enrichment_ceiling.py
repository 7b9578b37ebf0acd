"""The enrichment API's stated bound holds: neither a greedy client (many calls in flight,
ignores 429 and Retry-After) nor an oracle (knows the rate and burst, spends the burst and then
paces) gets more calls served than ``burst + rate_per_s x T`` for the run's own length T (the
emulator's ``run.bound_calls``), by more than 5%; the oracle reaches at least ``ORACLE_SHARE``
of it, so the bound is also near what a client can reach.

Over HTTP on 127.0.0.1, the greedy and the oracle side by side on two emulators, bounded in
time (``RUN_S``) and count (``MAX_SENDS``). The measure is the emulator's: its count of 200s and
its own elapsed time from the first call to the last admitted one. The bucket's arithmetic is
held on its own first, on a clock passed in."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from sync.local.emulators.enrichment import EnrichmentConfig, TokenBucket, start_enrichment
from sync.local.emulators.enrichment.bound import Admissions, run_bound_calls
from sync.local.emulators.enrichment.probes import (
    EnrichmentProbe,
    greedy,
    oracle,
    oracle_send_at_s,
)
from sync.local.emulators.webapi.probes import Seen

RATE_PER_S = 100.0
BURST = 50
RUN_S = 3.0
MAX_SENDS = 5_000
GREEDY_WORKERS = 16
TOLERANCE = 1.05
ORACLE_SHARE = 0.85
"""The oracle paces at 95% of the rate after the burst; the rest is slack for a loaded loop."""


def _admit(bucket: TokenBucket, admissions: Admissions, times_s: list[float]) -> None:
    for now_s in times_s:
        admissions.reached(now_s)
        if bucket.take(now_s) == 0:
            admissions.admit(now_s)


@pytest.mark.parametrize(("rate_per_s", "burst", "every_s", "run_s"), [
    (100.0, 50, 0.001, 3.0),
    (100.0, 100, 0.0001, 1.0),
    (10.0, 1, 0.001, 5.0),
    (500.0, 500, 0.0005, 2.0),
], ids=["ten times the rate for three seconds", "a hundred times the rate for one second",
        "a bucket of one token", "the emulator's defaults"])
def test_a_bucket_pushed_past_its_rate_admits_its_bound_and_no_more(
        rate_per_s: float, burst: int, every_s: float, run_s: float) -> None:
    bucket, admissions = TokenBucket(rate_per_s, burst, 0.0), Admissions()
    _admit(bucket, admissions, [n * every_s for n in range(int(run_s / every_s) + 1)])
    bound = run_bound_calls(rate_per_s, burst, admissions.elapsed_s())
    assert 0.95 * bound <= admissions.admitted <= bound  # a late arrival wastes refill time


@pytest.mark.parametrize(("rate_per_s", "burst", "margin"), [
    (100.0, 50, 0.95), (100.0, 1, 0.95), (10.0, 10, 1.0), (500.0, 500, 0.5)])
def test_the_oracles_schedule_never_finds_the_bucket_empty(rate_per_s: float, burst: int,
                                                          margin: float) -> None:
    bucket, admissions = TokenBucket(rate_per_s, burst, 0.0), Admissions()
    burst_answered_s = 0.002
    paced = [oracle_send_at_s(burst_answered_s, n, rate_per_s, margin) for n in range(1, 500)]
    _admit(bucket, admissions, [0.001] * burst + paced)
    assert admissions.admitted == burst + len(paced)


def test_a_bucket_refuses_an_impossible_limit() -> None:
    with pytest.raises(ValueError, match="rate_per_s > 0 and burst >= 1"):
        TokenBucket(0.0, 10, 0.0)


async def _probe_one(client: str) -> tuple[Seen, dict[str, Any]]:
    config = EnrichmentConfig(rate_per_s=RATE_PER_S, burst=BURST, latency_ms=1.0)
    runner, url = await start_enrichment(config)
    try:
        probe = EnrichmentProbe(url, run_s=RUN_S, max_sends=MAX_SENDS)
        if client == "greedy":
            seen = await greedy(probe, GREEDY_WORKERS)
        else:
            seen = await oracle(probe, config.rate_per_s, config.burst)
        async with aiohttp.ClientSession() as admin, admin.get(
                f"{url}/_emulator/stats") as answer:
            stats: dict[str, Any] = await answer.json()
        return seen, stats
    finally:
        await runner.cleanup()


@pytest.mark.timeout(60)
async def test_no_client_gets_more_served_than_the_stated_bound() -> None:
    (greedy_seen, greedy_stats), (oracle_seen, oracle_stats) = await asyncio.gather(
        _probe_one("greedy"), _probe_one("oracle"))
    for seen, stats in ((greedy_seen, greedy_stats), (oracle_seen, oracle_stats)):
        served, run = stats["served"], stats["run"]
        assert stats["limit"] == {"rate_per_s": RATE_PER_S, "burst": BURST, "buckets": 1}
        assert stats["ceiling_per_s"] == RATE_PER_S
        assert run["elapsed_s"] > 1.0  # well past the burst (the clients send for RUN_S)
        assert served == seen.accepted == run["admitted"]  # the emulator and client agree
        assert run["bound_calls"] == pytest.approx(BURST + RATE_PER_S * run["elapsed_s"])
        assert 0 < served <= run["bound_calls"] * TOLERANCE, (seen, stats)
    assert greedy_stats["429"] > 0
    assert greedy_seen.throttled > 0
    assert oracle_seen.throttled == 0  # it knows the limit
    assert oracle_stats["served"] >= ORACLE_SHARE * oracle_stats["run"]["bound_calls"]


async def test_the_stats_are_neither_limited_nor_counted() -> None:
    runner, url = await start_enrichment(EnrichmentConfig(rate_per_s=1.0, burst=1))
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(5):
                async with session.get(f"{url}/_emulator/stats") as answer:
                    assert answer.status == 200
                    stats = await answer.json()
    finally:
        await runner.cleanup()
    assert stats["served"] == 0
    assert stats["run"] == {"elapsed_s": 0.0, "admitted": 0, "bound_calls": 1.0}
    assert "429" not in stats
    assert stats["limit"]["buckets"] == 0
