"""What goes to the dead-letter and poison queues: the item and a reason a person can act on.

A dead letter is one record that failed for a fault of its own: its id and input, the table, the
run and batch it came from, a stable reason code, the service's status, error code and message,
how many attempts it took and when it was first and last seen failing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Final

from sync.failures.errors import AmbiguousFault, RecordFault, SyncError
from sync.message.contract import RecordHistory, RecordRef

MAX_ECHOED_CHARS: Final = 40_000
"""A rejected message is echoed up to this length, so the envelope fits a queue message."""
_SPLIT_SUFFIX: Final = re.compile(r"(?:\.\d+)+$")
SUSPECTED: Final = "suspected_record_fault"
RECORD_REASONS: Final = frozenset({"unusable_input", "not_enrichable", "input_refused",
                                   "record_missing", "changed_since_read", "conflict",
                                   "value_refused", "refused", SUSPECTED})
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
                    history: RecordHistory, now_iso: str) -> str:
    """A dead letter for one record that failed for a fault of its own."""
    status = getattr(fault, "status", None)
    return json.dumps({
        "kind": "record", "reason": reason_of(fault), "table": origin.table,
        "definition": origin.definition, "run_id": origin.run_id, "batch_id": origin.batch_id,
        "record": {"id": record.id, "input": record.input},
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


REPLAY_MARK: Final = ":replay-"
"""Between the run id and the replay's token in the batch id of a replayed message."""


def replay_batch_id(run_id: str, token: str) -> str:
    """The batch id of a message that replays dead letters of ``run_id``: ``run_id_of`` maps
    it back to the run (a run id too long to fit beside the mark is cut)."""
    return f"{run_id[:128 - len(REPLAY_MARK) - len(token)]}{REPLAY_MARK}{token}"


def run_id_of(batch_id: str) -> str:
    """The run a batch belongs to: a planner's batch (``<run>-p<page>-<n>``) its plan's run; a
    replay of a run's dead letters (``<run>:replay-<token>``) that run; a producer's batch its
    own run, without the ``.<n>`` suffixes the worker gives the parts of a remainder it had to
    split (``sync.work.worker``)."""
    head, mark, _ = batch_id.partition(REPLAY_MARK)
    if mark:
        return head
    if is_planned(batch_id):
        return batch_id.rpartition("-p")[0]
    return _SPLIT_SUFFIX.sub("", batch_id) or batch_id


def is_planned(batch_id: str) -> bool:
    """Whether the batch came from the planner (its run has a plan) or from a producer."""
    head, sep, _ = batch_id.rpartition("-p")
    return bool(sep) and head.startswith("run-")
