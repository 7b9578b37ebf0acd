"""The baseline loops against the emulators over real HTTP: every write mode writes what it
enriched; a throttled loop waits out Retry-After and counts the 429 by its code."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from bench.baselines import FIXED_CONCURRENCY, Loop, Target, loop_of, run_baseline, units
from sync.clients.enrichment import domain_of
from sync.config.table_definition import DEFAULT_DEFINITION, parse_definition
from sync.local.emulators.enrichment import EnrichmentConfig
from sync.local.stack import local_token
from sync.local.verify import is_enriched

SECONDS = 60.0
"""A bound on each loop; the tests count records, they never measure time."""


async def _rows(dataverse_url: str) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.get(
            f"{dataverse_url}/_emulator/records", params={"entityset": "accounts"}) as got:
        data = await got.json()
    rows: list[dict[str, Any]] = data["value"] if isinstance(data, dict) else data
    return rows


async def _stats(dataverse_url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(
            f"{dataverse_url}/_emulator/stats") as got:
        stats: dict[str, Any] = await got.json()
    return stats


def _target(dataverse_url: str, enrichment_url: str) -> Target:
    return Target(dataverse_url, enrichment_url, local_token(), EnrichmentConfig().api_key,
                  dict(DEFAULT_DEFINITION["mapping"]))


def _records(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(str(r["accountid"]), domain_of(str(r["websiteurl"]))) for r in rows]


def test_records_are_cut_into_one_write_request_each() -> None:
    records = [(str(n), f"d{n}.example") for n in range(25)]
    assert [len(u) for u in units(records, "single")] == [1] * 25
    assert [len(u) for u in units(records, "batch")] == [10, 10, 5]
    assert [len(u) for u in units(records, "bulk")] == [25]


def test_patterns_name_their_concurrency_and_cookie_handling() -> None:
    assert loop_of("sequential") == Loop(1, keep_cookies=True)
    assert loop_of("fixed-52") == Loop(FIXED_CONCURRENCY, keep_cookies=True)
    assert loop_of("recommended-x3") == Loop(None, keep_cookies=False)
    with pytest.raises(ValueError, match="unknown baseline pattern"):
        loop_of("hopeful")


@pytest.mark.parametrize(("pattern", "mode"), [
    ("sequential", "single"), ("fixed-52", "batch"), ("recommended-x1", "bulk")])
async def test_every_mode_writes_the_enriched_columns_of_every_record(
        dataverse_url: str, enrichment_url: str, pattern: str, mode: str) -> None:
    records = _records(await _rows(dataverse_url))[:25]
    tally = await run_baseline(pattern, mode, _target(dataverse_url, enrichment_url), records,
                               SECONDS, grace_s=1.0)
    assert (tally.written, tally.failed) == (25, 0)
    written = {r["accountid"]: r for r in await _rows(dataverse_url)}
    definition = parse_definition(None)
    assert all(is_enriched(written[record_id], definition) for record_id, _ in records)
    stats = await _stats(dataverse_url)
    assert stats["records"]["created"] == 0
    assert tally.timeline[-1][1] == 25


@pytest.mark.emulator(records=6, window_s=1.0, max_requests=3, servers=1)
async def test_a_throttled_loop_retries_after_retry_after_and_counts_the_429_by_code(
        dataverse_url: str, enrichment_url: str) -> None:
    records = _records(await _rows(dataverse_url))
    tally = await run_baseline("sequential", "single", _target(dataverse_url, enrichment_url),
                               records, SECONDS, grace_s=1.0)
    assert (tally.written, tally.failed) == (6, 0)
    assert tally.throttled_by_code["0x80072322"] >= 1
    assert tally.retry_wait_s > 0
