"""The app's metrics: the instruments named in ``names.py``, created from the global meter.

Until telemetry is configured (``sync.telemetry.setup``) the global meter is OpenTelemetry's
no-op proxy: every call below costs a method call and nothing more. Once a MeterProvider is
set, the same instruments record into it (the API rebinds proxy instruments).

The code calls the small functions here from the places that know: the invocation boundary
(``sync.telemetry.tracing``) for a message's outcome, ``sync.budget.dependency`` for 429s, admission
waits and latency. What is a state rather than an event (DOP in use, the hint, circuit states)
is read when the metrics are collected, from the services ``watch`` registered.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from sync.config.lanes import DEFAULT_LANE
from sync.message.counts import MessageCounts
from sync.telemetry import names

METER: Final = metrics.get_meter("sync")

FACETS: Final = {"0x80072322": "requests", "0x80072321": "execution_time",
                 "0x80072326": "concurrency"}
"""The service protection error codes (shared/dataverse-facts.md) by facet; any other 429 code
(or none) is counted as ``other``."""
OTHER_FACET: Final = "other"

CIRCUIT_CODES: Final = {"closed": 0, "half-open": 1, "open": 2}
"""CIRCUIT_STATE's values: the alerts query ``== 2`` for open."""

POISON_REASON: Final = "contract_violation"
"""Why the worker poisons a message that breaks the contract (the poison envelope holds the
detail; the host's own poisoning after maxDequeueCount shows in the poison queue's depth)."""
BUG_REASON: Final = "unexpected_error"
"""Why the worker poisons the records an unexpected error (a bug) kept stopping."""

ENRICHMENT_SERVICE: Final = "enrichment"
"""The dependency whose call latency ENRICHMENT_LATENCY records."""

GATE_WAIT_MIN_S: Final = 0.001
"""Admissions that waited less than this did not wait (not recorded: it keeps the histogram
about waits and the per-request cost off the hot path)."""

_written = METER.create_counter(names.RECORDS_WRITTEN, unit="{record}",
                                description="Records written to Dataverse")
_dead_lettered = METER.create_counter(names.RECORDS_DEAD_LETTERED, unit="{record}",
                                      description="Records dead-lettered, by reason")
_reenqueued = METER.create_counter(names.RECORDS_REENQUEUED, unit="{record}",
                                   description="Records sent back on the queue, by reason")
_unchanged = METER.create_counter(names.RECORDS_UNCHANGED, unit="{record}",
                                  description="Records not written: already holding their "
                                              "enriched values")
_enrichment_calls = METER.create_counter(names.ENRICHMENT_CALLS, unit="{call}",
                                         description="Enrichment API calls sent (what its "
                                                     "provider bills)")
_enrichment_cache = METER.create_counter(names.ENRICHMENT_CACHE, unit="{record}",
                                         description="Enrichment cache lookups: hit or miss")
_poisoned = METER.create_counter(names.MESSAGES_POISONED, unit="{message}",
                                 description="Messages the worker put on the poison queue")
_unexpected = METER.create_counter(names.UNEXPECTED_ERRORS, unit="{error}",
                                   description="Unexpected errors (bugs) that stopped a "
                                               "message, by type and trace hash; outcome "
                                               "retried or poisoned")
_systematic = METER.create_counter(names.SYSTEMATIC_FAULTS, unit="{opening}",
                                   description="A definition's circuit opened by a refusal "
                                               "most of its records met (a systematic fault)")
_throttled = METER.create_counter(names.DATAVERSE_THROTTLED, unit="{response}",
                                  description="Dataverse 429 answers, by facet")
_gate_wait = METER.create_histogram(names.GATE_WAIT, unit="s",
                                    description="Time a request waited for admission "
                                                "(throttle gate, request slot, limit)")
_latency = METER.create_histogram(names.ENRICHMENT_LATENCY, unit="ms",
                                  description="Duration of a successful enrichment call")
_queue_depth = METER.create_gauge(names.QUEUE_DEPTH, unit="{message}",
                                  description="Approximate number of messages in a queue")
_queue_age = METER.create_gauge(names.QUEUE_OLDEST_AGE, unit="s",
                                description="Age of the oldest visible message of a queue")


@dataclass(frozen=True, slots=True)
class Watched:
    """What the observable gauges read from one process's services."""

    dop_in_use: Callable[[], int]
    dop_hint: Callable[[], int | None]
    circuits: Mapping[str, Callable[[], str]] = field(default_factory=dict)
    """Service name -> its circuit's state (closed, half-open, open)."""


_watched: dict[int, Watched] = {}


def watch(key: int, watched: Watched) -> None:
    """Read ``watched`` at every collection until ``unwatch(key)``."""
    _watched[key] = watched


def unwatch(key: int) -> None:
    _watched.pop(key, None)


SINGLE_LANE: Final = str(DEFAULT_LANE)
"""The lane of a single-lane deployment, as the telemetry names it (``default/default``)."""


def facet_of(code: str) -> str:
    """The service protection facet a 429's error code names."""
    return FACETS.get(code, OTHER_FACET)


def message_done(counts: MessageCounts, *, definition: str, mode: str) -> None:
    """One message's outcome: records written, dead-lettered and re-enqueued, by reason."""
    if counts.written:
        _written.add(counts.written, {names.DEFINITION: definition, names.MODE: mode})
    if counts.unchanged:
        _unchanged.add(counts.unchanged, {names.DEFINITION: definition})
    for reason, count in counts.dead_lettered_by_reason.items():
        _dead_lettered.add(count, {names.DEFINITION: definition, names.REASON: reason})
    for reason, count in counts.reenqueued_by_reason.items():
        _reenqueued.add(count, {names.DEFINITION: definition, names.REASON: reason})
    if counts.rejected_messages:
        _poisoned.add(counts.rejected_messages, {names.REASON: POISON_REASON})
    _enrichment_done(counts, definition)


def unexpected_error(definition: str, error_type: str, trace_hash: str, *,
                     poisoned: bool) -> None:
    """An unexpected error stopped a message (never its text: only its type and a hash of
    its trace); ``poisoned``: its records went to the poison queue (also counted as a poisoned
    message, reason ``unexpected_error``)."""
    outcome = "poisoned" if poisoned else "retried"
    _unexpected.add(1, {names.DEFINITION: definition, names.ERROR_TYPE: error_type,
                        names.TRACE_HASH: trace_hash, names.OUTCOME: outcome})
    if poisoned:
        _poisoned.add(1, {names.REASON: BUG_REASON})


def systematic_fault(definition: str, reason: str) -> None:
    """A definition's circuit opened for a systematic record fault."""
    _systematic.add(1, {names.DEFINITION: definition, names.REASON: reason})


def _enrichment_done(counts: MessageCounts, definition: str) -> None:
    usage = counts.enrichment
    if usage.calls:
        _enrichment_calls.add(usage.calls, {names.DEFINITION: definition})
    for outcome, count in (("hit", usage.cache_hits), ("miss", usage.cache_misses)):
        if count:
            _enrichment_cache.add(count, {names.DEFINITION: definition, names.OUTCOME: outcome})


def throttled(service: str, code: str, lane: str = "") -> None:
    """A 429 answer; Dataverse's are counted by facet and lane."""
    if service == "dataverse":
        _throttled.add(1, {names.FACET: facet_of(code), names.LANE: lane or SINGLE_LANE})


def admission_waited(service: str, waited_s: float) -> None:
    """A request waited ``waited_s`` for its governor to admit it."""
    if waited_s >= GATE_WAIT_MIN_S:
        _gate_wait.record(waited_s, {names.SERVICE: service})


def answered(service: str, latency_s: float) -> None:
    """A call answered successfully after ``latency_s``."""
    if service == ENRICHMENT_SERVICE:
        _latency.record(latency_s * 1000.0)


def queue_sampled(queue: str, depth: int, oldest_age_s: float) -> None:
    """A queue's approximate depth and the age of its oldest visible message."""
    attributes = {names.QUEUE: queue}
    _queue_depth.set(depth, attributes)
    _queue_age.set(oldest_age_s, attributes)


def _dop_in_use(options: CallbackOptions) -> Iterable[Observation]:
    if _watched:
        yield Observation(sum(w.dop_in_use() for w in list(_watched.values())))


def _dop_hint(options: CallbackOptions) -> Iterable[Observation]:
    hints = [hint for w in list(_watched.values()) if (hint := w.dop_hint()) is not None]
    if hints:
        yield Observation(max(hints))


def _circuit_states(options: CallbackOptions) -> Iterable[Observation]:
    worst: dict[str, int] = {}
    for watched in list(_watched.values()):
        for service, state in watched.circuits.items():
            worst[service] = max(worst.get(service, 0), CIRCUIT_CODES[state()])
    for service, code in sorted(worst.items()):
        yield Observation(code, {names.SERVICE: service})


METER.create_observable_gauge(names.DOP_IN_USE, [_dop_in_use], unit="{request}",
                              description="Dataverse requests in flight in this process")
METER.create_observable_gauge(names.DOP_HINT, [_dop_hint], unit="{request}",
                              description="The environment's x-ms-dop-hint")
METER.create_observable_gauge(names.CIRCUIT_STATE, [_circuit_states], unit="1",
                              description="Circuit state per service: 0 closed, 1 half-open, "
                                          "2 open")
