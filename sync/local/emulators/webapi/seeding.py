"""Seeded accounts that already hold their enriched values: a nightly re-run where most records
did not change (``enriched_share``). The values are the enrichment emulator's answer for each
account's website under the default definition's mapping (a run with another mapping sees
them as changed)."""

from __future__ import annotations

import random

from sync.clients.enrichment import columns_from, domain_of
from sync.config.table_definition import DEFAULT_DEFINITION
from sync.failures.errors import RecordFault
from sync.local.emulators.enrichment.profiles import profile_for
from sync.local.emulators.webapi.store import Table


def enrich_share(table: Table, share: float, seed: int) -> int:
    """Give about ``share`` of the table's rows (a seeded draw) their enriched values, in
    place, before anything is served; answers how many."""
    rng = random.Random(seed + 3)
    mapping = DEFAULT_DEFINITION["mapping"]
    enriched = 0
    for record_id in table.sorted_ids:
        row = table.rows[record_id]
        if rng.random() >= share or not row.get("websiteurl"):
            continue
        try:
            values = columns_from(profile_for(domain_of(str(row["websiteurl"]))), mapping)
        except RecordFault:
            continue
        row.update(values)
        enriched += 1
    return enriched
