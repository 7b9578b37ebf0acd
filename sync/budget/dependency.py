"""One governed call to a dependency: the only path every request to Dataverse or the
enrichment API takes, for every write mode, the planner's reads and the enrichment calls.

In order: the message may have stopped sending to this dependency (a throttle or an open
circuit met earlier: the call is deferred at once); the circuit admits it (or raises
CircuitOpen; a half-open circuit's probe first claims the next opening on the cluster's row, so
one probe goes per back-off period cluster-wide); the governor admits it (limit, gate); the
answer is judged by the triage and booked: a 429 closes the gate (and is published to the
cluster) and is waited out in-process when short, a service fault counts toward the circuit (an
opening is published), a failed probe keeps it open for longer, whatever the fault (an ambiguous
one included: one request cannot tell, and the circuit opened because the service kept
failing), a success resets it and is evidence for the scope of ambiguous faults. Service faults
are retried by the one retry loop; what is left is raised for the caller to defer or
dead-letter.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Final, Protocol, TypeVar

from sync.budget.governor import GATE_CODE, Governor
from sync.clock import SYSTEM_CLOCK, Clock
from sync.failures.circuit import Circuit
from sync.failures.errors import AmbiguousFault, RecordFault, ServiceFault, Throttled
from sync.failures.retry import RetryPolicy, retrying
from sync.failures.scope import ScopeLog
from sync.telemetry import metrics

logger = logging.getLogger(__name__)

T = TypeVar("T")
SHORT_WAIT_RETRIES: Final = 3
"""Short throttles waited out in-process for one call before it is deferred to the queue."""

PublishGate = Callable[[Throttled], Awaitable[None]]


class SharedCircuit(Protocol):
    """The cluster's row of a circuit (sync.budget.circuit_row.CircuitRow)."""

    async def publish(self) -> None:
        """Share the circuit's current state, unless the row holds a newer one."""

    async def claim_probe(self) -> bool:
        """Claim the half-open probe for this instance; False when another instance did."""


class CallHooks(Protocol):
    """What one message's run is told about its calls (sync.work.message_run.MessageRun)."""

    def stop_delay(self, service: str) -> float | None:
        """The delay once the message stopped sending to ``service``; None while it may."""

    def count_429(self, error: Throttled) -> None: ...

    def count_retry(self, fault: ServiceFault) -> None: ...

    def count_request(self, service: str, kind: str, *, retry: bool) -> None:
        """A request sent (``kind``: read or write); ``retry``: a re-send of the same call."""


class Dependency:
    """A service we call, with its governor, circuit and scope log."""

    __slots__ = ("_publish_gate", "_shared", "circuit", "clock", "governor", "lane", "name",
                 "policy", "scope")

    def __init__(self, name: str, governor: Governor, circuit: Circuit, policy: RetryPolicy,
                 *, clock: Clock = SYSTEM_CLOCK, shared: SharedCircuit | None = None,
                 publish_gate: PublishGate | None = None, lane: str = "") -> None:
        """``shared``: the circuit's row in the cluster (None: this process alone); ``lane``:
        the lane a Dataverse dependency writes through (``prod/sync1``), for the telemetry of
        its 429s; empty for the enrichment API's."""
        self.name, self.governor, self.circuit, self.policy = name, governor, circuit, policy
        self.lane = lane
        self.clock = clock
        self.scope = ScopeLog()
        self._shared, self._publish_gate = shared, publish_gate

    def __repr__(self) -> str:
        return f"Dependency({self.name!r}, {self.governor!r}, {self.circuit!r})"

    async def call(self, send: Callable[[], Awaitable[T]], hooks: CallHooks, *,
                   split_ambiguous: bool = False, kind: str = "write",
                   closes_circuit: bool = True) -> T:
        """``send()`` under every rule above. With ``split_ambiguous`` an ambiguous fault is
        raised at once (the caller splits its request) instead of retried. An ambiguous fault
        does not count toward the circuit here: the scope decides whose it is, and counts it
        (``record_failure``) when it is the service's. Every send is counted with ``hooks``
        (request usage): the first as ``kind``, the others as retries. Only a write can be a
        half-open circuit's probe and close it; a read that succeeds resets the count of faults,
        and one with ``closes_circuit`` False (a writer's own read: an ETag check, a re-read
        after a 412) not even that: it answers while every write is refused."""
        sends = 0
        ticket = self.governor.ticket()  # kept by every retry: its place in line

        async def counted() -> T:
            nonlocal sends
            hooks.count_request(self.name, kind, retry=sends > 0)
            sends += 1
            return await send()

        return await retrying(lambda: self._admitted(counted, hooks, kind, closes_circuit,
                                                     ticket),
                              self.policy, clock=self.clock,
                              on_retry=lambda fault, _: hooks.count_retry(fault),
                              retryable=lambda fault: not (split_ambiguous and
                                                           isinstance(fault, AmbiguousFault)))

    async def _admitted(self, send: Callable[[], Awaitable[T]], hooks: CallHooks,
                        kind: str, closes_circuit: bool, ticket: int) -> T:
        for attempt in range(SHORT_WAIT_RETRIES + 1):
            try:
                return await self._once(send, hooks, kind, closes_circuit, ticket)
            except Throttled as error:
                if error.code == GATE_CODE or error.retry_after_s > self.governor.max_wait_s \
                        or attempt == SHORT_WAIT_RETRIES:
                    raise
                if self.governor.gate_remaining_s() == 0:  # it covered this request alone
                    await self.clock.sleep(error.retry_after_s)
        raise AssertionError("unreachable: the last attempt returns or raises")  # pragma: no cover

    async def _once(self, send: Callable[[], Awaitable[T]], hooks: CallHooks, kind: str,
                    closes_circuit: bool, ticket: int) -> T:
        self._refuse_if_stopped(hooks)
        asked_s = self.clock.monotonic_s()
        async with self.governor.entry(ticket):
            metrics.admission_waited(self.name, self.clock.monotonic_s() - asked_s)
            self._refuse_if_stopped(hooks)
            closes = closes_circuit and kind == "write"
            probe = await self._admit(probe=closes)
            sent_s = self.clock.monotonic_s()
            try:
                result = await send()
            except Throttled as error:
                self._release(probe)
                await self.on_throttled(error, hooks)
                raise
            except RecordFault:
                self._answered(sent_s, closes=closes, accepted=False, counts=closes_circuit)
                raise
            except AmbiguousFault as fault:  # the scope decides, unless it was the probe
                if probe:
                    fault.probe = True
                    await self.record_failure(fault, probe=True)
                raise
            except ServiceFault as fault:
                await self.record_failure(fault, probe=probe)
                raise
            except BaseException:
                self._release(probe)
                raise
        # Only a write that succeeded is evidence that a record's failed write was its own: a read
        # (a page, an ETag check, a re-read after a 412) succeeds while every write is refused.
        self._answered(sent_s, closes=closes, accepted=kind == "write", counts=closes_circuit)
        metrics.answered(self.name, self.clock.monotonic_s() - sent_s)
        return result

    async def _admit(self, *, probe: bool) -> bool:
        """The circuit's admission (CircuitOpen when it holds the call back); answers whether
        the call is its half-open probe, claimed for the cluster first. A claim another instance
        won leaves this one waiting its opening; a claim that cannot be written (storage
        unreachable) lets the probe go for this process alone."""
        if not self.circuit.admit(probe=probe):
            return False
        if self._shared is None:
            return True
        try:
            if await self._shared.claim_probe():
                return True
        except Exception:
            logger.exception("%s probe not claimed for the cluster; probing alone", self.name,
                             extra={"event": "circuit_claim_failed", "service": self.name})
            return True
        self.circuit.released()
        if self.circuit.state == "closed":
            return False
        raise self.circuit.refusal()

    def _release(self, probe: bool) -> None:
        if probe:
            self.circuit.unanswered()

    def _refuse_if_stopped(self, hooks: CallHooks) -> None:
        delay_s = hooks.stop_delay(self.name)
        if delay_s is not None:
            raise Throttled(self.name, delay_s, GATE_CODE)

    async def on_throttled(self, error: Throttled, hooks: CallHooks) -> None:
        """A 429 (answered directly or inside a $batch part), counted: when its evidence covers
        every request (``sync.budget.governor.closes_for_all``) the gate closes here and for the
        cluster; else the request that met it waits its own Retry-After."""
        for_all = self.governor.throttled(error)
        hooks.count_429(error)
        metrics.throttled(self.name, error.code, self.lane)
        if for_all and self._publish_gate is not None:
            try:
                await self._publish_gate(error)
            except Exception:
                logger.exception("gate not published; this instance still waits",
                                 extra={"event": "gate_publish_failed"})

    def _answered(self, sent_s: float, *, closes: bool, accepted: bool, counts: bool) -> None:
        """The service answered: a write may close the circuit, a read resets its count (one
        that does not ``counts``, a writer's own read, not even that); an ``accepted`` write is
        the scope's evidence."""
        self.governor.succeeded()
        if accepted:
            self.scope.succeeded(sent_s)
        if not closes:
            if counts:
                self.circuit.answered()
            return
        if self.circuit.succeeded():
            logger.info("%s circuit closed", self.name,
                        extra={"event": "circuit_closed", "service": self.name})
            self._schedule_publish()

    async def record_failure(self, fault: ServiceFault, *, probe: bool = False) -> None:
        """A service fault counts toward the circuit (``probe``: the half-open probe failed);
        an opening is logged and published."""
        if not self.circuit.failed(fault, probe=probe):
            return
        logger.warning("%s circuit open for %.0f s: %s", self.name, self.circuit.open_for_s(),
                       self.circuit.view.reason,
                       extra={"event": "circuit_opened", "service": self.name})
        await self._publish_view()

    def _schedule_publish(self) -> None:
        """Publish a closing without holding up the call that closed it (tracked, never lost;
        the row's generation keeps it from undoing a newer opening)."""
        if self._shared is not None:
            task = asyncio.get_running_loop().create_task(self._publish_view())
            _PUBLISHING.add(task)
            task.add_done_callback(_PUBLISHING.discard)

    async def _publish_view(self) -> None:
        if self._shared is None:
            return
        try:
            await self._shared.publish()
        except Exception:
            logger.exception("circuit state not published",
                             extra={"event": "circuit_publish_failed"})


_PUBLISHING: set[asyncio.Task[None]] = set()
