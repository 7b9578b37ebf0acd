"""The enrichment cache in Azurite: answers and no matches kept for the TTL, a miss after it,
and the sweep that deletes what expired (its owner: the planner's timer)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from azure.data.tables.aio import TableClient

from sync.config.settings import StorageSettings
from sync.config.storage_names import ENRICHMENT_CACHE_TABLE
from sync.state.enrichment_cache import SKEW_S, Cached, EnrichmentCache, cache_key, sweep
from sync.state.storage import table_client

NOW_S = 1_800_000_000.0


@pytest.fixture
async def table(storage: StorageSettings) -> AsyncIterator[TableClient]:
    async with table_client(storage, ENRICHMENT_CACHE_TABLE, None) as client:
        yield client


def key(text: str) -> str:
    return cache_key("spec", {"description": "summary"}, [text])


async def test_an_answer_is_kept_for_the_ttl_then_missed(table: TableClient) -> None:
    cache = EnrichmentCache(table, "accounts", ttl_s=60)
    await cache.put(key("contoso.com"), Cached({"description": "Contoso"}), NOW_S)
    assert await cache.get(key("contoso.com"), NOW_S + 59) == Cached({"description": "Contoso"})
    assert await cache.get(key("contoso.com"), NOW_S + 60) is None
    assert await cache.get(key("fabrikam.com"), NOW_S) is None


async def test_a_no_match_is_kept_too(table: TableClient) -> None:
    cache = EnrichmentCache(table, "accounts", ttl_s=60)
    await cache.put(key("nobody.example"), Cached(None), NOW_S)
    assert await cache.get_many([key("nobody.example"), key("else")], NOW_S) == [
        Cached(None), None]


async def test_definitions_do_not_read_each_others_answers(table: TableClient) -> None:
    await EnrichmentCache(table, "accounts", 60).put(key("a.com"), Cached({"x": 1}), NOW_S)
    assert await EnrichmentCache(table, "contacts", 60).get(key("a.com"), NOW_S) is None


async def test_the_sweep_deletes_what_expired_beyond_the_skew_whoever_wrote_it(
        table: TableClient) -> None:
    short = EnrichmentCache(table, "accounts", ttl_s=10)
    gone_definition = EnrichmentCache(table, "retired", ttl_s=10)
    kept = EnrichmentCache(table, "accounts", ttl_s=10_000)
    for number in range(130):
        await short.put(key(f"old{number}"), Cached({"n": number}), NOW_S)
    await gone_definition.put(key("old-retired"), Cached(None), NOW_S)
    await kept.put(key("fresh"), Cached({"n": 1}), NOW_S)
    assert await sweep(table, NOW_S + 10 + SKEW_S - 1, monotonic_s=lambda: 0.0) == 0
    assert await sweep(table, NOW_S + 10 + SKEW_S + 1, monotonic_s=lambda: 0.0) == 131
    left = [row["RowKey"] async for row in table.list_entities()]
    assert left == [key("fresh")]
