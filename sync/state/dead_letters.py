"""What goes to the dead-letter and poison queues: the item and a reason a person can act on.

A dead letter is one record that failed for a fault of its own: its id and input, the table, the
run and batch it came from, a stable reason code, the service's status, error code and message,
how many attempts it took and when it was first and last seen failing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from sync.failures.errors import AmbiguousFault, RecordFault, SyncError
from sync.message.contract import RecordHistory, RecordRef, Scalar

MAX_ECHOED_CHARS: Final = 40_000
"""A rejected message is echoed up to this length, so the envelope fits a queue message."""
SUSPECTED: Final = "suspected_record_fault"
RECORD_REASONS: Final = frozenset({"unusable_input", "not_enrichable", "input_refused",
                                   "record_missing", "changed_since_read", "conflict",
                                   "value_refused", "refused", "never_ready", SUSPECTED})
"""Every reason a record may be dead-lettered for: its own faults, and nothing else."""


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a record came from: the table, the run, the message and its definition."""

    table: str
    run_id: str
    batch_id: str
    definition: str = "default"


def reason_of(fault: SyncError) -> str:
    """The stable reason code a dead letter is filed under."""
    if isinstance(fault, RecordFault):
        return fault.reason
    if isinstance(fault, AmbiguousFault):
        return SUSPECTED
    return "unexpected"


def record_envelope(origin: Origin, record: RecordRef, fault: SyncError,
                    history: RecordHistory, now_iso: str, *,
                    inputs: Mapping[str, Scalar] | None = None) -> str:
    """A dead letter for one record that failed for a fault of its own; ``inputs``: the other
    columns its definition's enrichment reads (``extra_inputs``), so a replay can ask again."""
    status = getattr(fault, "status", None)
    kept = {"id": record.id, "input": record.input, **({"inputs": dict(inputs)} if inputs else {})}
    return json.dumps({
        "kind": "record", "reason": reason_of(fault), "table": origin.table,
        "definition": origin.definition, "run_id": origin.run_id, "batch_id": origin.batch_id,
        "record": kept,
        "service": getattr(fault, "service", ""), "status": status,
        "code": getattr(fault, "code", ""), "message": getattr(fault, "message", "") or str(fault),
        "detail": str(fault), "attempts": history.attempts, "strikes": history.strikes,
        "first_seen": history.first_seen or now_iso, "last_seen": history.last_seen or now_iso,
        "at": now_iso})


def message_envelope(body: bytes, reason: str, now_iso: str) -> str:
    """A poison entry for a message that breaks the contract, echoing what it held."""
    text = body.decode("utf-8", "replace")
    return json.dumps({"kind": "message", "at": now_iso, "reason": reason,
                       "message": text[:MAX_ECHOED_CHARS],
                       "truncated": len(text) > MAX_ECHOED_CHARS})


