"""What became of a message's records, and the Dataverse requests it cost: the counts every
processing reports, the ledger stores (``sync.state.ledger``) and the telemetry exports."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(slots=True)
class RequestUsage:
    """Dataverse requests sent (what Power Platform entitlements count): first sends of reads
    and writes, and every re-send (a retry after a fault or a short throttle). A ``$batch`` or
    an ``UpdateMultiple`` is one request."""

    reads: int = 0
    writes: int = 0
    retries: int = 0

    @property
    def total(self) -> int:
        return self.reads + self.writes + self.retries

    def add(self, other: RequestUsage) -> None:
        self.reads += other.reads
        self.writes += other.writes
        self.retries += other.retries

    def count(self, kind: str, *, retry: bool) -> None:
        """One request sent: a ``read`` or a ``write``, first sent or re-sent."""
        if retry:
            self.retries += 1
        elif kind == "read":
            self.reads += 1
        else:
            self.writes += 1


@dataclass(slots=True)
class EnrichmentUsage:
    """The enrichment API's side (what its provider bills): calls sent (every send, a retry
    included), the records they carried (a bulk call carries several), records answered from
    the enrichment cache (hits) or asked of the API (misses; both 0 without a cache), "later"
    answers (the record waits on the queue and is asked again), and records whose values an
    earlier delivery of the run obtained and the message carried (``carried``: not asked)."""

    calls: int = 0
    inputs: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    laters: int = 0
    carried: int = 0

    def add(self, other: EnrichmentUsage) -> None:
        self.calls += other.calls
        self.inputs += other.inputs
        self.cache_hits += other.cache_hits
        self.cache_misses += other.cache_misses
        self.laters += other.laters
        self.carried += other.carried


@dataclass(slots=True)
class MessageCounts:
    """What one processing of one message did."""

    written: int = 0
    dead_lettered: int = 0
    unchanged: int = 0
    """Records whose enriched values equal what Dataverse holds: not written."""
    reenqueued: int = 0
    cancelled: int = 0
    """Records of a cancelled definition or run: not written, not dead letters, done."""
    rejected_messages: int = 0
    transient_retries: int = 0
    previewed: int = 0
    """Records a dry run settled (would change, unchanged or failed); none was written."""
    poisoned: int = 0
    """Records an unexpected error (a bug) stopped too often: on the poison queue with the
    error's type and trace hash, done until a person replays them (``sync poison replay``)."""
    requeue_delay_s: float = 0.0
    """Seconds re-enqueued work was held invisible (Retry-After plus jitter), summed."""
    throttled_by_code: Counter[str] = field(default_factory=Counter)
    dead_lettered_by_reason: Counter[str] = field(default_factory=Counter)
    reenqueued_by_reason: Counter[str] = field(default_factory=Counter)
    """Why records went back: throttled, circuit_open, service_fault, suspected_record_fault,
    changed_since_read."""
    requests: RequestUsage = field(default_factory=RequestUsage)
    """The Dataverse requests this processing sent."""
    enrichment: EnrichmentUsage = field(default_factory=EnrichmentUsage)
    """The enrichment calls this processing sent, and its cache's hits and misses."""
    definition: str = ""
    """The message's definition, for its telemetry (not stored: the run's row names it)."""

    def add(self, other: MessageCounts) -> None:
        """Add another message's counts to these."""
        self.written += other.written
        self.dead_lettered += other.dead_lettered
        self.unchanged += other.unchanged
        self.requests.add(other.requests)
        self.enrichment.add(other.enrichment)
        self.reenqueued += other.reenqueued
        self.cancelled += other.cancelled
        self.rejected_messages += other.rejected_messages
        self.transient_retries += other.transient_retries
        self.previewed += other.previewed
        self.poisoned += other.poisoned
        self.requeue_delay_s += other.requeue_delay_s
        self.throttled_by_code.update(other.throttled_by_code)
        self.dead_lettered_by_reason.update(other.dead_lettered_by_reason)
        self.reenqueued_by_reason.update(other.reenqueued_by_reason)

    @property
    def throttled(self) -> int:
        """All 429 answers, whatever their code."""
        return sum(self.throttled_by_code.values())

    @property
    def done(self) -> int:
        """Records finished: written, dead-lettered, unchanged, cancelled, poisoned by a bug,
        or settled by a dry run."""
        return (self.written + self.dead_lettered + self.unchanged + self.cancelled
                + self.previewed + self.poisoned)
