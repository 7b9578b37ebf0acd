"""Names of the queues and tables the app uses; the Bicep template creates the same ones."""

from __future__ import annotations

from typing import Final

BATCH_QUEUE: Final = "sync-batches"
"""Messages of records to enrich and write; fed by the planner and by upstream producers."""

POISON_QUEUE: Final = f"{BATCH_QUEUE}-poison"
"""Where the Functions host (and the worker, for contract violations) puts unusable messages."""

DEAD_LETTER_QUEUE: Final = "sync-deadletter"
"""Single records that cannot be written, each with the reason a person can act on."""

PLAN_QUEUE: Final = "sync-plan"
"""Continuation messages that let a long plan run as many short invocations."""

LEDGER_TABLE: Final = "SyncLedger"
"""Counts per processed message, summed to report a run."""

STATE_TABLE: Final = "SyncState"
"""Shared state: the DOP hint cache, the throttle gate, instance leases, checkpoints."""

DEAD_LETTER_TABLE: Final = "SyncDeadLetters"
"""One row per dead-lettered record (partition: the run), to list, filter and replay them."""

POISON_TABLE: Final = "SyncPoison"
"""One row per poison message, whoever put it there (the worker or the Functions host)."""

REPORT_TABLE: Final = "SyncReports"
"""A dry run's findings (partition: the run; a row per processed message), for sync status."""

BEFORE_IMAGE_TABLE: Final = "SyncBeforeImages"
"""The values each written record held before (partition: the run, row: the record), kept for
``sync rollback`` until they expire."""

ENRICHMENT_CACHE_TABLE: Final = "SyncEnrichmentCache"
"""Enrichment answers by request (partition: definition and key shard, row: the key), kept
for the definition's cache TTL and swept after it (``sync.state.enrichment_cache``)."""

QUEUES: Final = (BATCH_QUEUE, POISON_QUEUE, DEAD_LETTER_QUEUE, PLAN_QUEUE)
TABLES: Final = (LEDGER_TABLE, STATE_TABLE, DEAD_LETTER_TABLE, POISON_TABLE, REPORT_TABLE,
                 BEFORE_IMAGE_TABLE, ENRICHMENT_CACHE_TABLE)

STORAGE_CONNECTION: Final = "AzureWebJobsStorage"
"""The connection setting the triggers bind to, and the prefix of its identity-based form."""
