"""What the soak reads back: rows per table, each run's tallies and completion events, the
circuits, the emulators' counts; and the table it prints (``make soak``; docs/failures.md)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from sync.budget.cluster import read_circuits
from sync.config.settings import StorageSettings
from sync.config.storage_names import (
    BEFORE_IMAGE_TABLE,
    DEAD_LETTER_TABLE,
    ENRICHMENT_CACHE_TABLE,
    LEDGER_TABLE,
    POISON_TABLE,
    REPORT_TABLE,
    STATE_TABLE,
)
from sync.failures.circuit import CircuitView
from sync.state import runs
from sync.state.runs import RunTotals
from sync.state.storage import table_client

COUNTED: Final = (STATE_TABLE, LEDGER_TABLE, REPORT_TABLE, BEFORE_IMAGE_TABLE,
                  DEAD_LETTER_TABLE, POISON_TABLE, ENRICHMENT_CACHE_TABLE)
"""The shared state whose size must not grow with the nights."""


async def rows_per_table(storage: StorageSettings) -> dict[str, int]:
    """Rows in each table of ``COUNTED``."""
    counts: dict[str, int] = {}
    for name in COUNTED:
        async with table_client(storage, name, None) as table:
            counts[name] = sum([1 async for _ in table.list_entities(select=["PartitionKey"])])
    return counts


async def partitions(storage: StorageSettings, name: str) -> Counter[str]:
    """Rows of one table by partition (what grew, when a bound fails)."""
    async with table_client(storage, name, None) as table:
        return Counter([str(row["PartitionKey"])
                        async for row in table.list_entities(select=["PartitionKey"])])


async def totals(storage: StorageSettings, run_id: str) -> RunTotals | None:
    """A run's row and the exact sum of its messages' rows."""
    async with table_client(storage, LEDGER_TABLE, None) as ledger:
        return await runs.read_run(ledger, run_id)


async def latest_plan(storage: StorageSettings) -> str | None:
    async with table_client(storage, LEDGER_TABLE, None) as ledger:
        return await runs.latest_run_id(ledger, "plan")


async def circuits(storage: StorageSettings) -> dict[str, CircuitView]:
    """Every circuit the cluster shares (the services' and the definitions')."""
    async with table_client(storage, STATE_TABLE, None) as state:
        return await read_circuits(state)


def completions(logs: Iterable[Path], run_ids: Iterable[str]) -> dict[str, int]:
    """How many times each run's ``run_completed`` was logged, over every host's log."""
    text = "\n".join(path.read_text(errors="replace") for path in logs if path.exists())
    return {run_id: len(re.findall(rf"run {re.escape(run_id)} completed:", text))
            for run_id in run_ids}


@dataclass
class Figures:
    """What the table at the end shows."""

    nights: int = 0
    runs: int = 0
    lifetimes: int = 0
    killed: int = 0
    rows_by_night: dict[int, dict[str, int]] = field(default_factory=dict)
    peak_in_flight: dict[str, dict[str, Any]] = field(default_factory=dict)
    """By scope (a server, a user over every server), the emulator's ``in_flight_vs_hint``."""
    hint_changes: int = 0
    records_asked: int = 0
    enrichment: dict[str, Any] = field(default_factory=dict)
    poisoned: int = 0
    refused_dead_lettered: int = 0
    wall_s: float = 0.0

    def row_table(self, early: int, late: int) -> list[str]:
        first, last = self.rows_by_night.get(early, {}), self.rows_by_night.get(late, {})
        peak = {name: max((rows.get(name, 0) for rows in self.rows_by_night.values()),
                          default=0) for name in COUNTED}
        lines = [f"| table | rows after run {early} | rows after run {late} "
                 "| most after any run |", "|---|---:|---:|---:|"]
        lines += [f"| {name} | {first.get(name, 0)} | {last.get(name, 0)} | {peak[name]} |"
                  for name in COUNTED]
        return lines

    def markdown(self, early: int = 3) -> str:
        late = max(self.rows_by_night, default=early)
        calls = self.enrichment.get("served", 0)
        per_record = calls / self.records_asked if self.records_asked else 0.0
        head = ["| measure | value |", "|---|---|",
                f"| nightly runs (and producer runs) | {self.nights} ({self.runs - self.nights}) |",
                f"| instance lifetimes (killed with SIGKILL) | {self.lifetimes} ({self.killed}) |",
                f"| enrichment calls per record asked | {calls} / {self.records_asked} = "
                f"{per_record:.3f} (asked again: {self.enrichment.get('asked_again', 0)}) |",
                f"| records poisoned by the bug (one a night) | {self.poisoned} |",
                f"| dead-lettered by the refused mapping | {self.refused_dead_lettered} |",
                f"| hint changes (6 to 2 and back) | {self.hint_changes} |",
                f"| wall time | {self.wall_s:.0f} s |"]
        flight = ["| scope | peak in flight | hint then | admissions over the hint in force "
                  "| latest after a change (s) | over the hint before it |",
                  "|---|---:|---:|---:|---:|---:|"]
        flight += [f"| {_scope(name)} | {s['peak']} | {s['peak_hint']} | {s['over']} | "
                   f"{s['latest_over_s']} | {s['over_before']} |"
                   for name, s in sorted(self.peak_in_flight.items())]
        return "\n".join([*head, "", *self.row_table(early, late), "", *flight]) + "\n"

    def rows_by_table(self) -> str:
        """Each table's rows after every night, in order (the curve the bound reads)."""
        nights = sorted(self.rows_by_night)
        return "\n".join(f"{name}: " + " ".join(str(self.rows_by_night[n][name])
                                                for n in nights) for name in COUNTED) + "\n"


def _scope(name: str) -> str:
    """A scope of the emulator's count as the table names it."""
    return "the sync's user, over every server" if name.startswith("user:") else name


FIGURES: Final = Figures()
"""The session's figures: the test fills them, conftest.py prints and saves them."""
