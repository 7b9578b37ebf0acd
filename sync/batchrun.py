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

    @property
    def stopped(self) -> bool:
        """A service throttled: send nothing more for this message."""
        return self.retry_after_s is not None

    def throttled(self, error: Throttled, answers: int = 1) -> None:
        """Stop sending; remember the longest Retry-After; count real 429 answers."""
        if error.code != GATE_CODE:
            self.counts.throttled_by_code[error.code or f"{error.service}-429"] += answers
        self.retry_after_s = max(self.retry_after_s or 0.0, error.retry_after_s)

    def written(self, record_id: str) -> None:
        self.counts.written += 1
        self.finished.add(record_id)

    def dead_lettered(self, record_id: str) -> None:
        self.counts.dead_lettered += 1
        self.finished.add(record_id)

    def unfinished(self) -> tuple[RecordRef, ...]:
        return tuple(r for r in self.message.records if r.id not in self.finished)
