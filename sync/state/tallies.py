"""Tallies: one process's running totals of each planned run, one row per process and run in
the run's ledger partition, so a completion check sums a few rows instead of every message's.

Owner and lifetime: the rows live in their run's partition and go with it; the in-memory cache
keeps at most ``KEPT_RUNS`` runs, the least recently counted forgotten first."""

from __future__ import annotations

import asyncio
import secrets
import weakref
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient

from sync.message.counts import MessageCounts
from sync.message.ids import REPLAY_MARK, is_planned
from sync.state.ledger_rows import counts_fields, run_partition

TALLY_PREFIX: Final = "tally:"


TALLY_END: Final = "tally;"


KEPT_RUNS: Final = 64
"""Runs a process keeps a tally for; the least recently counted is forgotten first (a later
message of a forgotten run starts a new row)."""


def tallied(batch_id: str) -> bool:
    """Whether a message's counts go into its run's tallies: the planner's messages (and the
    remainders split from them) and replays of a run's dead letters. A producer's message is
    its own small run, summed exactly."""
    return is_planned(batch_id) or REPLAY_MARK in batch_id


@dataclass(slots=True)
class Tally:
    """One process's running totals of one run, and how much of them its row holds."""

    row_key: str
    counts: MessageCounts = field(default_factory=MessageCounts)
    version: int = 0
    stored: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Tallies:
    """The tallies kept through one ledger client, by run."""

    def __init__(self, kept_runs: int = KEPT_RUNS) -> None:
        self._kept_runs = kept_runs
        self._by_run: OrderedDict[str, Tally] = OrderedDict()

    async def add(self, table: TableClient, run_id: str, counts: MessageCounts) -> None:
        """Count one processed message; return once a row holding its counts is stored. The
        writes are serialized and each stores the latest total, so none goes back in time."""
        tally = self._tally(run_id)
        tally.counts.add(counts)
        tally.version += 1
        mine = tally.version
        async with tally.lock:
            if tally.stored >= mine:
                return  # a later message's write already stored these counts
            version = tally.version
            await table.upsert_entity({"PartitionKey": run_partition(run_id),
                                       "RowKey": tally.row_key, **counts_fields(tally.counts)},
                                      mode=UpdateMode.REPLACE)
            tally.stored = version

    def _tally(self, run_id: str) -> Tally:
        tally = self._by_run.get(run_id)
        if tally is None:
            tally = self._by_run[run_id] = Tally(f"{TALLY_PREFIX}{secrets.token_hex(8)}")
            while len(self._by_run) > self._kept_runs:
                self._by_run.popitem(last=False)
        self._by_run.move_to_end(run_id)
        return tally


_TALLIES: weakref.WeakKeyDictionary[TableClient, Tallies] = weakref.WeakKeyDictionary()


def tallies_of(table: TableClient) -> Tallies:
    """The tallies kept through this ledger client (a host has one: one per process)."""
    found = _TALLIES.get(table)
    if found is None:
        found = _TALLIES[table] = Tallies()
    return found


def is_tally_row(entity: Mapping[str, Any]) -> bool:
    return str(entity["RowKey"]).startswith(TALLY_PREFIX)
