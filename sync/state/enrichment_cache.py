"""The enrichment cache: what the enrichment API answered for a request, kept in Table Storage for
the definition's ``cache.ttl_s``, so a re-run, a replay or a record that comes back does not pay
for the same answer again (shared/DESIGN.md, invariant 10).

Rows: ``PartitionKey`` the definition and the key's first hex digit (16 shards a definition),
``RowKey`` the key: a SHA-256 of the spec's request shape, the mapping and the request's inputs
(``cache_key``), so a changed spec or mapping never reads an old answer. A row holds the mapped
columns (``Columns``, JSON) or a no match (``NoMatch``), and ``ExpiresAt`` (wall seconds). A row
read after its expiry is a miss.

Owner and lifetime: the planner's timer deletes every row whose ``ExpiresAt`` passed more than
``SKEW_S`` ago, once per tick, after the before-images' sweep (``sweep_quietly``, called from
``sync.entry``), within ``SWEEP_BUDGET_S``; the next tick goes on. The table is then at most
the distinct requests of one TTL. A definition that stops caching (or is removed) leaves rows
that the same sweep deletes when they expire: the sweep reads the whole table, not one
definition's partitions. Reads and writes that fail are logged and count as misses: the cache
never fails a record.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TransactionOperation, UpdateMode
from azure.data.tables.aio import TableClient

from sync.state.sweeps import quietly

logger = logging.getLogger(__name__)

SKEW_S: Final = 300.0
"""Rows are swept this long after they expire: instances' clocks may disagree by this much."""
SWEEP_BUDGET_S: Final = 60.0
TRANSACTION_MAX: Final = 100
"""Operations per Table Storage transaction (one partition each)."""
MAX_COLUMNS_CHARS: Final = 32_000
"""A row's columns as JSON: Table Storage holds at most 32K characters in a string property."""


@dataclass(frozen=True, slots=True)
class Cached:
    """A cached answer: the columns, or None for a no match."""

    columns: dict[str, Any] | None


def cache_key(fingerprint: str, mapping: Mapping[str, str], inputs: Sequence[Any]) -> str:
    """The row key of a request: its shape, the mapping, and what it asks."""
    text = json.dumps([fingerprint, sorted(mapping.items()), list(inputs)], default=str,
                      separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def partition_of(definition: str, key: str) -> str:
    return f"{definition}|{key[0]}"


class EnrichmentCache:
    """One definition's cached answers in the shared table."""

    __slots__ = ("_definition", "_table", "_ttl_s")

    def __init__(self, table: TableClient, definition: str, ttl_s: float) -> None:
        if ttl_s <= 0:
            raise ValueError(f"ttl_s must be positive, got {ttl_s}")
        self._table, self._definition, self._ttl_s = table, definition, ttl_s

    def __repr__(self) -> str:
        return f"EnrichmentCache({self._definition!r}, ttl_s={self._ttl_s:g})"

    async def get(self, key: str, now_s: float) -> Cached | None:
        """The answer cached for ``key``, None when there is none (or it expired)."""
        try:
            row = await self._table.get_entity(partition_of(self._definition, key), key)
        except ResourceNotFoundError:
            return None
        except Exception:
            logger.exception("enrichment cache not read; the API is asked",
                             extra={"event": "enrichment_cache_read_failed"})
            return None
        if float(row.get("ExpiresAt", 0.0)) <= now_s:
            return None
        if row.get("NoMatch"):
            return Cached(None)
        return Cached(json.loads(str(row.get("Columns") or "{}")))

    async def get_many(self, keys: Sequence[str], now_s: float) -> list[Cached | None]:
        return list(await asyncio.gather(*(self.get(key, now_s) for key in keys)))

    async def put(self, key: str, cached: Cached, now_s: float) -> None:
        """Keep an answer for the TTL; a failure is logged (the answer is paid for once more
        next time, nothing else)."""
        text = "" if cached.columns is None else json.dumps(cached.columns)
        if len(text) > MAX_COLUMNS_CHARS:
            return
        entity = {"PartitionKey": partition_of(self._definition, key), "RowKey": key,
                  "Columns": text, "NoMatch": cached.columns is None,
                  "ExpiresAt": float(now_s + self._ttl_s)}
        try:
            await self._table.upsert_entity(entity, mode=UpdateMode.REPLACE)
        except Exception:
            logger.exception("enrichment answer not cached",
                             extra={"event": "enrichment_cache_write_failed"})


async def sweep(table: TableClient, now_s: float, *, monotonic_s: Callable[[], float],
                budget_s: float = SWEEP_BUDGET_S) -> int:
    """Delete the rows that expired more than ``SKEW_S`` ago, within ``budget_s``; how many."""
    deadline_s = monotonic_s() + budget_s
    rows = table.query_entities(f"ExpiresAt lt {float(now_s - SKEW_S)!r}",
                                select=["PartitionKey", "RowKey"])
    pending: defaultdict[str, list[str]] = defaultdict(list)
    gone = 0
    async for row in rows:
        keys = pending[str(row["PartitionKey"])]
        keys.append(str(row["RowKey"]))
        if len(keys) == TRANSACTION_MAX:
            gone += await _delete(table, str(row["PartitionKey"]), pending.pop(
                str(row["PartitionKey"])))
        if monotonic_s() > deadline_s:
            break
    for partition, keys in pending.items():
        gone += await _delete(table, partition, keys)
    return gone


async def _delete(table: TableClient, partition: str, keys: list[str]) -> int:
    operations: list[tuple[TransactionOperation, dict[str, Any]]] = [
        (TransactionOperation.DELETE, {"PartitionKey": partition, "RowKey": key})
        for key in keys]
    await table.submit_transaction(operations)
    return len(keys)


async def sweep_quietly(table: TableClient, now_s: float, *,
                        monotonic_s: Callable[[], float]) -> int:
    """``sweep``, logging instead of raising: the plan it follows must not fail for it."""
    return await quietly(sweep(table, now_s, monotonic_s=monotonic_s),
                         "expired enrichment answers", "enrichment_cache", unit="records")
