"""Every metric, span, event and attribute name the app emits: the contract with the alerts,
the workbook and anyone querying Application Insights. Changing one is a breaking change."""

from __future__ import annotations

from typing import Final

# Attributes.
RUN_ID: Final = "sync.run_id"
DEFINITION: Final = "sync.definition"
MESSAGE_ID: Final = "sync.message_id"
RECORDS: Final = "sync.records"
MODE: Final = "sync.mode"
OUTCOME: Final = "sync.outcome"
REASON: Final = "sync.reason"
FACET: Final = "sync.facet"
LANE: Final = "sync.lane"
SERVICE: Final = "sync.service"
QUEUE: Final = "sync.queue"
PLANNED: Final = "sync.planned"
WRITTEN: Final = "sync.written"
DEAD_LETTERED: Final = "sync.dead_lettered"
CANCELLED: Final = "sync.cancelled"
FAILURE_RATE: Final = "sync.failure_rate"
UNCHANGED: Final = "sync.unchanged"
REQUESTS: Final = "sync.requests"
DURATION_S: Final = "sync.duration_s"
OVERLAPPED: Final = "sync.overlapped"
PREVIOUS_RUN_ID: Final = "sync.previous_run_id"
ERROR_TYPE: Final = "sync.error_type"
TRACE_HASH: Final = "sync.trace_hash"

DEFAULT_DEFINITION: Final = "default"
MESSAGE_DEFINITION: Final = DEFAULT_DEFINITION
"""A message's definition before it is decoded (one that cannot be decoded keeps it)."""
"""The definition name of today's single-definition settings."""

# Metrics: (name, unit).
RECORDS_WRITTEN: Final = "sync.records.written"            # counter; DEFINITION, MODE
RECORDS_DEAD_LETTERED: Final = "sync.records.dead_lettered"  # counter; DEFINITION, REASON
RECORDS_REENQUEUED: Final = "sync.records.reenqueued"      # counter; DEFINITION, REASON
RECORDS_UNCHANGED: Final = "sync.records.unchanged"        # counter; DEFINITION
MESSAGES_POISONED: Final = "sync.messages.poisoned"        # counter; REASON
DATAVERSE_THROTTLED: Final = "sync.dataverse.throttled"    # counter; FACET, LANE
DOP_IN_USE: Final = "sync.dataverse.dop_in_use"            # gauge; requests in flight
DOP_HINT: Final = "sync.dataverse.dop_hint"                # gauge; x-ms-dop-hint
GATE_WAIT: Final = "sync.throttle_gate.wait"               # histogram, s; SERVICE
CIRCUIT_STATE: Final = "sync.circuit.state"                # gauge 0 closed 1 half-open 2 open
QUEUE_DEPTH: Final = "sync.queue.depth"                    # gauge; QUEUE
QUEUE_OLDEST_AGE: Final = "sync.queue.oldest_age"          # gauge, s; QUEUE
ENRICHMENT_LATENCY: Final = "sync.enrichment.latency"      # histogram, ms
ENRICHMENT_CALLS: Final = "sync.enrichment.calls"          # counter; DEFINITION
ENRICHMENT_CACHE: Final = "sync.enrichment.cache"          # counter; DEFINITION, OUTCOME
UNEXPECTED_ERRORS: Final = "sync.unexpected_errors"        # counter; DEFINITION, ERROR_TYPE,
                                                           # TRACE_HASH, OUTCOME
SYSTEMATIC_FAULTS: Final = "sync.systematic_faults"        # counter; DEFINITION, REASON

# Spans.
PROCESS_BATCH: Final = "sync.process_batch"
PLAN: Final = "sync.plan"

# Events (Application Insights customEvents).
RUN_PLANNED: Final = "run_planned"          # RUN_ID, DEFINITION, PLANNED
RUN_COMPLETED: Final = "run_completed"      # RUN_ID, DEFINITION, PLANNED, WRITTEN,
                                            # DEAD_LETTERED, UNCHANGED, CANCELLED,
                                            # REQUESTS, DURATION_S, OVERLAPPED
RUN_OVERLAPPED: Final = "run_overlapped"    # RUN_ID, PREVIOUS_RUN_ID, DEFINITION
CANARY_FAILED: Final = "canary_failed"      # RUN_ID, DEFINITION, DEAD_LETTERED, WRITTEN,
                                            # FAILURE_RATE
