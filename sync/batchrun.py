"""The live state of one message's fan-out: what each record became, and whether to stop."""

from __future__ import annotations

from dataclasses import dataclass, field

from sync.contract import BatchMessage, RecordRef
from sync.errors import Throttled
from sync.governor import GATE_CODE
from sync.ledger import BatchCounts


@dataclass(slots=True)
class BatchRun:
    """Per-message bookkeeping, shared by the enrichment and the write phases."""

    message: BatchMessage
    counts: BatchCounts = field(default_factory=BatchCounts)
    finished: set[str] = field(default_factory=set)
    retry_after_s: float | None = None
    """The longest Retry-After any service gave this message: the re-enqueue delay."""
    throttled_services: set[str] = field(default_factory=set)

    def stopped(self, service: str) -> bool:
        """``service`` throttled: send it nothing more for this message."""
        return service in self.throttled_services

    def stop_delay(self, service: str) -> float | None:
        """The re-enqueue delay once ``service`` stopped this message; None while it has not."""
        return self.retry_after_s if service in self.throttled_services else None

    def count_429(self, error: Throttled) -> None:
        """A 429 answer, by its code."""
        if error.code != GATE_CODE:
            self.counts.throttled_by_code[error.code or f"{error.service}-429"] += 1

    def throttled(self, error: Throttled) -> None:
        """Stop sending to the service; keep the longest Retry-After as the delay."""
        self.throttled_services.add(error.service)
        self.retry_after_s = max(self.retry_after_s or 0.0, error.retry_after_s)

    def written(self, record_id: str) -> None:
        self.counts.written += 1
        self.finished.add(record_id)

    def dead_lettered(self, record_id: str) -> None:
        self.counts.dead_lettered += 1
        self.finished.add(record_id)

    def unfinished(self) -> tuple[RecordRef, ...]:
        return tuple(r for r in self.message.records if r.id not in self.finished)
