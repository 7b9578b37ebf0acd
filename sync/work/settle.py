"""Settling what could not be decided by the answer alone: an ambiguous fault on one record,
and how long records left by a service fault wait before they come back."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Iterable

from sync.budget.dependency import Dependency
from sync.failures.circuit import CircuitPolicy
from sync.failures.errors import AmbiguousFault, RecordFault, ServiceFault
from sync.failures.scope import is_record_fault
from sync.message.contract import RecordRef
from sync.state.dead_letters import SUSPECTED
from sync.work.message_run import MessageRun

DeadLetter = Callable[[RecordRef, RecordFault | AmbiguousFault], Awaitable[None]]


def service_delay_s(run: MessageRun, policy: CircuitPolicy,
                    rand: Callable[[], float] = random.random) -> float:
    """How long records left by a service fault wait: longer with every delivery, jittered, up
    to the circuit's cap."""
    return policy.open_for_s(run.message.attempt + 1, rand())


def wait_for_service(run: MessageRun, records: Iterable[RecordRef], fault: ServiceFault,
                     policy: CircuitPolicy, *, open_for_s: float = 0.0) -> None:
    """Records a service fault left unfinished: each remembers the fault, and they wait on the
    queue for the service's back-off (``service_delay_s``), and at least what is left of the
    circuit's opening (``open_for_s``)."""
    for record in records:
        run.failed(record, fault, reason="service_fault")
    run.wait(max(service_delay_s(run, policy), open_for_s))


async def judge_alone(run: MessageRun, record: RecordRef, fault: AmbiguousFault, *,
                      first_failure_s: float, dependency: Dependency, probes: int,
                      policy: CircuitPolicy, dead_letter: DeadLetter) -> None:
    """One record met an ambiguous fault through every retry: it is the record's when other
    work sent since its first failure succeeded (after ``probes`` such deliveries), else the
    service's. A record that met such evidence on an earlier delivery keeps it while the
    service shows no fault of its own (its circuit is not open): once its siblings are written
    it may be the last one left. Nothing is dead-lettered on one delivery's word."""
    evidence = has_evidence(run, record, first_failure_s, dependency, fault)
    reason = SUSPECTED if evidence else "service_fault"
    run.failed(record, fault, strike=evidence, reason=reason)
    if not evidence:
        await dependency.record_failure(fault)
    elif is_record_fault(run.history_of(record).strikes, probes):
        await dead_letter(record, fault)
        return
    run.wait(max(service_delay_s(run, policy), dependency.circuit.open_for_s()))


def has_evidence(run: MessageRun, record: RecordRef, first_failure_s: float,
                 dependency: Dependency, fault: AmbiguousFault | None = None) -> bool:
    """Did work sent since the record first failed succeed, or did the record already meet
    such evidence on an earlier delivery while the service shows no fault (circuit not open)?
    A circuit the record's own half-open probe reopened shows nothing new: the last record
    left is always the probe, and would otherwise never be struck again."""
    own_opening = fault is not None and fault.probe
    return dependency.scope.siblings_succeeded_since(first_failure_s) or (
        run.history_of(record).strikes > 0
        and (dependency.circuit.state != "open" or own_opening))
