"""An unexpected exception is a bug, not a service fault: it surfaces instead of looping.

When something other than a service fault (a storage outage, a dependency's answer: those are
settled where they happen) stops a message, each unfinished record's history counts it
(``RecordHistory.errors``: it travels with the record, so redeliveries and fresh copies count,
not the host's dequeue count), and

- the records go back on the queue in halves (``MessageRun.halve``), after a growing delay, so
  a record that makes the code raise ends alone while its siblings are written;
- a record that met the error ``SYNC_BUG_ATTEMPTS`` times, the last of them alone (or
  ``SPLIT_DELIVERIES`` more times in company: a fault no halving isolates), goes to the poison
  queue with the error's type and a hash of its trace, and counts as ``poisoned`` (done) in its
  run; ``sync poison replay`` sends it back once the bug is fixed.

Every occurrence counts ``sync.unexpected_errors`` (the alert ``unexpected-errors`` fires on it)
with the type and the trace hash. The exception's text and the trace's values are never
logged, kept or sent: they may hold personal data or secrets; the hash is taken over the
frames' file, function and line, which name the code and nothing of the data.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import traceback
from dataclasses import dataclass
from pathlib import PurePath
from typing import Final

from sync.message.contract import Message, RecordRef
from sync.message.ids import REMAINDER, part_id
from sync.telemetry import metrics
from sync.work.context import Work
from sync.work.filing import reject
from sync.work.message_run import MessageRun
from sync.work.settle import service_delay_s

logger = logging.getLogger(__name__)

UNEXPECTED: Final = "unexpected_error"
"""Why records an unexpected error stopped go back on the queue, and their poison reason."""
SPLIT_DELIVERIES: Final = 10
"""Halvings that isolate one record of the largest message (1,000 records)."""
HASH_CHARS: Final = 12


@dataclass(frozen=True, slots=True)
class Bug:
    """What is kept of an unexpected exception: its type and a hash of where it was raised."""

    error_type: str
    trace_hash: str
    frames: str
    """``file:function:line`` of each frame, innermost last (code, never values)."""

    @property
    def summary(self) -> str:
        return f"{UNEXPECTED}: {self.error_type} (trace {self.trace_hash})"


def bug_of(error: BaseException) -> Bug:
    """The bug an exception shows: the innermost of a group of one (a task group's), its type
    name and the hash of its frames."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    kind = type(error)
    name = kind.__qualname__ if kind.__module__ == "builtins" else \
        f"{kind.__module__}.{kind.__qualname__}"
    frames = " < ".join(f"{'/'.join(PurePath(f.filename).parts[-2:])}:{f.name}:{f.lineno}"
                        for f in traceback.extract_tb(error.__traceback__))
    digest = hashlib.sha256(f"{name}|{frames}".encode()).hexdigest()[:HASH_CHARS]
    return Bug(name, digest, frames)


def is_due(errors: int, alone: bool, attempts: int) -> bool:
    """Whether records that met an unexpected error ``errors`` times go to the poison queue."""
    return errors >= attempts + SPLIT_DELIVERIES or (alone and errors >= attempts)


async def settle_bug(work: Work, run: MessageRun, error: BaseException) -> None:
    """The unfinished records of a message an unexpected error stopped: back on the queue in
    halves, or, when due, to the poison queue (see the module)."""
    bug = bug_of(error)
    remaining = run.unfinished()
    errors = 1 + max((r.history.errors for r in remaining if r.history), default=0)
    due = bool(remaining) and is_due(errors, len(remaining) == 1, work.settings.bug_attempts)
    metrics.unexpected_error(work.named.name, bug.error_type, bug.trace_hash, poisoned=due)
    logger.error("message %s stopped by an unexpected %s (trace %s, delivery %d of its "
                 "records): %s", run.message.batch_id, bug.error_type, bug.trace_hash, errors,
                 bug.frames, extra={"event": UNEXPECTED, "batch_id": run.message.batch_id,
                                    "error_type": bug.error_type, "trace_hash": bug.trace_hash})
    if due:
        await _poison(work, run, remaining, bug, errors)
        return
    for record in remaining:
        run.failed_by_bug(record, bug.summary)
    run.halve()
    run.wait(service_delay_s(run, work.circuit_policy))


async def _poison(work: Work, run: MessageRun, records: tuple[RecordRef, ...], bug: Bug,
                  errors: int) -> None:
    """Put ``records`` on the poison queue as one message, with the bug's type and hash."""
    parent = run.message
    carried = tuple(dataclasses.replace(r, history=run.history_after_bug(r, bug.summary))
                    for r in records)
    message = Message(part_id(parent.batch_id, parent.attempt, REMAINDER,
                              (r.id for r in records)),
                      carried, attempt=parent.attempt + 1, definition=parent.definition)
    reason = f"{bug.summary} after {errors} deliveries"
    await reject(work.storage, work.settings, message.to_json().encode("utf-8"), reason,
                 now_s=work.dataverse_dep.clock.wall_s())
    for record in records:
        run.poisoned(record.id)
