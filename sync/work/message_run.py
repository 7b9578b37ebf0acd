"""The live state of one message run: what each record became, what to send back, and when.

Each record of the message ends in exactly one place: written, dead-lettered (its own fault),
or unfinished: back on the queue in one fresh message whose delay is the longest any fault asked
for (a Retry-After, an open circuit's time left, a service fault's back-off), carrying what was
learnt about each record that failed (its history) so nothing depends on dequeue counts.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

from sync.budget.governor import GATE_CODE
from sync.clients.dataverse import SERVICE as DATAVERSE
from sync.failures.errors import CircuitOpen, Deferred, ServiceFault, SyncError, Throttled
from sync.message.contract import Message, RecordHistory, RecordRef, Scalar, columns_problem
from sync.message.counts import MessageCounts
from sync.safety.dry_run import Preview

LATER: Final = "enrichment_later"
"""Why a record the enrichment API will answer later goes back on the queue."""


def now_iso() -> str:
    """The current UTC time as ISO 8601 with seconds."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


THROTTLED: Final = "throttled"
"""Why records wait that a throttle sent back (a 429's Retry-After, a closed gate, no slot)."""


def deferral_reason(error: Deferred) -> str:
    """Why records a deferral sends back wait: an open circuit, or a throttle."""
    return "circuit_open" if isinstance(error, CircuitOpen) else THROTTLED


@dataclass(slots=True)
class MessageRun:
    """Per-message bookkeeping, shared by the enrichment and the write phases."""

    message: Message
    counts: MessageCounts = field(default_factory=MessageCounts)
    finished: set[str] = field(default_factory=set)
    delay_s: float = 0.0
    """The longest delay any fault asked for: the re-enqueue delay of the unfinished records."""
    stopped_services: dict[str, str] = field(default_factory=dict)
    """Services this message sends nothing more to, with the reason (throttled, circuit)."""
    histories: dict[str, RecordHistory] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    """Why each record that failed is still unfinished (service_fault, suspected_record_fault)."""
    preview: Preview | None = None
    """A dry run's findings for this message; None when the definition writes."""
    written_ids: list[str] = field(default_factory=list)
    """The records written, in order (their before-images are kept for a rollback)."""
    halved: bool = False
    """The unfinished records go back in two messages (an unexpected error stopped them)."""
    enriched: dict[str, Mapping[str, Scalar]] = field(default_factory=dict)
    """What the enrichment answered for each record of the message (or what it carried):
    sent back with a record that goes back on the queue, so it is not paid for twice."""

    # What the governed calls are told (sync.budget.dependency.CallHooks).

    def stop_delay(self, service: str) -> float | None:
        """The re-enqueue delay once ``service`` stopped this message; None while it has not."""
        return self.delay_s if service in self.stopped_services else None

    def count_429(self, error: Throttled) -> None:
        """A 429 answer, by its code."""
        if error.code != GATE_CODE:
            self.counts.throttled_by_code[error.code or f"{error.service}-429"] += 1

    def count_retry(self, fault: ServiceFault) -> None:
        self.counts.transient_retries += 1

    def count_request(self, service: str, kind: str, *, retry: bool) -> None:
        """A request sent; only Dataverse's are request usage."""
        if service == DATAVERSE:
            self.counts.requests.count(kind, retry=retry)

    # What the phases record.

    def stopped(self, service: str) -> bool:
        return service in self.stopped_services

    def deferred(self, error: Deferred) -> None:
        """Stop sending to the service; the unfinished records wait for the delay."""
        self.stopped_services.setdefault(error.service, deferral_reason(error))
        self.delay_s = max(self.delay_s, error.retry_after_s)

    def wait(self, delay_s: float) -> None:
        """Records left unfinished by a service fault come back after at least ``delay_s``."""
        self.delay_s = max(self.delay_s, delay_s)

    def failed(self, record: RecordRef, fault: SyncError, *, strike: bool = False,
               reason: str = "service_fault") -> None:
        """Remember a failure of ``record`` for its history (sent back with it)."""
        self.reasons[record.id] = reason
        before = self.histories.get(record.id) or record.history or RecordHistory()
        seen = now_iso()
        self.histories[record.id] = replace(
            before, attempts=before.attempts + 1, strikes=before.strikes + int(strike),
            first_seen=before.first_seen or seen, last_seen=seen, last_fault=str(fault))

    def later(self, record: RecordRef, delay_s: float) -> None:
        """The enrichment API will answer later: the record waits ``delay_s`` on the queue
        (not a failure: its history counts the laters, nothing else)."""
        self.reasons[record.id] = LATER
        before = self.histories.get(record.id) or record.history or RecordHistory()
        seen = now_iso()
        self.histories[record.id] = replace(before, laters=before.laters + 1,
                                            first_seen=before.first_seen or seen, last_seen=seen)
        self.counts.enrichment.laters += 1
        self.delay_s = max(self.delay_s, delay_s)

    def history_after_bug(self, record: RecordRef, summary: str) -> RecordHistory:
        """The record's history with one more delivery an unexpected error stopped."""
        before = self.history_of(record)
        seen = now_iso()
        return replace(before, errors=before.errors + 1, first_seen=before.first_seen or seen,
                       last_seen=seen, last_fault=summary)

    def failed_by_bug(self, record: RecordRef, summary: str) -> None:
        """An unexpected error stopped the record (``sync.work.bugs``): its history counts it."""
        self.histories[record.id] = self.history_after_bug(record, summary)
        self.reasons[record.id] = "unexpected_error"

    def halve(self) -> None:
        """Send the unfinished records back in two messages, not one."""
        self.halved = True

    def poisoned(self, record_id: str) -> None:
        """The record went to the poison queue (``sync.work.bugs``): done until replayed."""
        self.counts.poisoned += 1
        self.finished.add(record_id)

    def history_of(self, record: RecordRef) -> RecordHistory:
        return self.histories.get(record.id) or record.history or RecordHistory()

    def written(self, record_id: str) -> None:
        self.counts.written += 1
        self.finished.add(record_id)
        self.written_ids.append(record_id)

    def previewed(self, record_id: str) -> None:
        """A dry run settled the record: it is done, and nothing was written."""
        self.counts.previewed += 1
        self.finished.add(record_id)

    def unchanged(self, record_id: str) -> None:
        """The record already holds its enriched values: nothing to write."""
        self.counts.unchanged += 1
        self.finished.add(record_id)

    def dead_lettered(self, record_id: str, reason: str) -> None:
        self.counts.dead_lettered += 1
        self.counts.dead_lettered_by_reason[reason] += 1
        self.finished.add(record_id)

    def reason_unfinished(self, record_id: str) -> str:
        """Why a record goes back on the queue."""
        if record_id in self.reasons:
            return self.reasons[record_id]
        return next(iter(self.stopped_services.values()), "service_fault")

    def keep_enriched(self, items: Iterable[tuple[RecordRef, Mapping[str, Any]]]) -> None:
        """Remember the enriched values of the message's records, to send back with any that
        go back on the queue; values that could not travel in a message are not kept."""
        for record, values in items:
            if columns_problem(values) is None:
                self.enriched[record.id] = dict(values)

    def unfinished(self) -> tuple[RecordRef, ...]:
        """The records still to do, each with its history and its enriched values."""
        return tuple(replace(r, history=self.histories.get(r.id, r.history),
                             enriched=self.enriched.get(r.id, r.enriched))
                     for r in self.message.records if r.id not in self.finished)
