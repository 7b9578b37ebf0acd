"""A circuit breaker per dependency, on the one clock, shared by the cluster through Table Storage.

- closed: requests go; each service fault counts, each success resets the count;
- open: after ``threshold`` consecutive service faults, or at once on a configuration fault,
  nothing is sent until ``open_until``; callers get CircuitOpen with the time left and defer
  their work to the queue. Each opening lasts longer than the last (exponential, jittered, up to
  ``max_open_s``);
- half-open: once the time has passed, one request goes as a probe: one that can prove the
  service back (a write; never a read, which answers while every write is refused). Before it
  goes, the probe claims the next, longer opening for the cluster (``next_opening``, written on
  the shared row under its ETag by ``sync.budget.circuit_row``), so every other request of every
  instance waits that opening out and the cluster sends one probe per back-off period. A
  success closes the circuit; a failure, ambiguous ones included, leaves it open for the
  claimed, longer time. While the claim is fresh (``PROBE_PENDING_S``) its answer is still to
  come, so a request held back then is told to come back in ``PROBE_WAIT_S``, not at the end of
  the claimed opening: after an outage the messages that arrive with the probe go again as soon
  as it has closed the circuit, instead of waiting out an opening nobody failed into.

Times are wall-clock seconds (``clock.wall_s``) so that instances can share them. ``failed``
answers whether it opened the circuit (or kept it open longer) and ``succeeded`` whether it
closed it: the caller (``sync.budget.dependency``) logs and publishes each change. Each state the
cluster shares has a ``generation``; a process adopts the shared state only when it is newer than
what it last saw or wrote, so an older state never replaces a newer one.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from sync.clock import SYSTEM_CLOCK, Clock
from sync.failures.errors import CircuitOpen, ConfigFault, ServiceFault

State = Literal["closed", "open", "half-open"]
PROBE_WAIT_S: Final = 1.0
"""What a caller that finds a probe already under way is told to wait (at least)."""
PROBE_PENDING_S: Final = 30.0
"""How long a probe's claim counts as a probe still in flight: a request's default timeout
(``DATAVERSE_TIMEOUT_S``, 30 s; the enrichment API's is 10 s). A claim older than this (its
prober gone without a word, or a probe slower than this) holds requests back for the rest of
its opening, as any opening does."""


@dataclass(frozen=True, slots=True)
class CircuitPolicy:
    """When a circuit opens and for how long."""

    threshold: int = 8
    open_s: float = 5.0
    max_open_s: float = 300.0

    def __post_init__(self) -> None:
        if self.threshold < 1 or self.open_s <= 0 or self.max_open_s < self.open_s:
            raise ValueError(f"impossible circuit policy {self}")

    def open_for_s(self, trips: int, rand: float) -> float:
        """How long opening number ``trips`` (1-based) lasts: 3/4 to 5/4 of a doubling step."""
        step_s = min(self.max_open_s, self.open_s * 2.0 ** (max(1, trips) - 1))
        return min(self.max_open_s, step_s * (0.75 + rand / 2))


@dataclass(frozen=True, slots=True)
class CircuitView:
    """A circuit's state as the cluster shares it."""

    open_until_s: float = 0.0
    trips: int = 0
    reason: str = ""
    generation: int = 0
    """The version of the shared row that holds this state (0: never shared); each change
    written takes the next number."""
    claimed_s: float = 0.0
    """When a half-open probe claimed this opening and its answer is not in yet (wall clock);
    0 when no probe is pending."""


class Circuit:
    """One dependency's breaker in this process."""

    __slots__ = ("_claimed_s", "_clock", "_failures", "_generation", "_open_until_s", "_policy",
                 "_probing", "_rand", "_reason", "_trips", "lock", "service")

    def __init__(self, service: str, policy: CircuitPolicy, *, clock: Clock = SYSTEM_CLOCK,
                 rand: Callable[[], float] = random.random) -> None:
        self.service = service
        self._policy, self._clock, self._rand = policy, clock, rand
        self._failures = self._trips = self._generation = 0
        self._open_until_s = self._claimed_s = 0.0
        self._reason = ""
        self._probing = False
        self.lock = asyncio.Lock()
        """Held while this process exchanges the circuit's state with the cluster's row, so its
        own changes reach the row in the order they were made."""

    def __repr__(self) -> str:
        return (f"Circuit({self.service!r}, state={self.state!r}, failures={self._failures}, "
                f"trips={self._trips}, open_for_s={self.open_for_s():.1f}, "
                f"generation={self._generation})")

    @property
    def state(self) -> State:
        if self._trips == 0:
            return "closed"
        return "open" if self.open_for_s() > 0 else "half-open"

    @property
    def view(self) -> CircuitView:
        return CircuitView(self._open_until_s, self._trips, self._reason, self._generation,
                           self._claimed_s)

    @property
    def generation(self) -> int:
        """The generation of the shared state this process last saw or wrote."""
        return self._generation

    def open_for_s(self) -> float:
        """Seconds until the circuit lets a probe through; 0 when closed or half-open."""
        return max(0.0, self._open_until_s - self._clock.wall_s())

    def admit(self, *, probe: bool = True) -> bool:
        """Let a request go, or raise CircuitOpen; answers whether it is the half-open probe.
        In half-open one request at a time may probe, and only one that can prove the service
        back (``probe``); the others (reads) go without being one."""
        state = self.state
        if state == "open":
            raise self.refusal()
        if state == "closed" or not probe:
            return False
        if self._probing:
            raise self.refusal()
        self._probing = True
        return True

    def probe_pending(self) -> bool:
        """Whether a probe claimed the current opening and its answer is still to come."""
        return (self.open_for_s() > 0 and self._claimed_s > 0
                and self._clock.wall_s() - self._claimed_s < PROBE_PENDING_S)

    def holds_for_s(self) -> float:
        """How long a request held back now waits before it asks again: a probe's wait while
        one is pending, else the time left of the opening; 0 when nothing holds it back."""
        if self.probe_pending():
            return PROBE_WAIT_S
        return self.open_for_s()

    def refusal(self) -> CircuitOpen:
        """What a request the circuit holds back is told: ``holds_for_s``, at least a probe's
        wait."""
        return CircuitOpen(self.service, max(PROBE_WAIT_S, self.holds_for_s()), self._reason)

    def next_opening(self) -> CircuitView:
        """The opening a half-open probe claims before it goes: the next, longer one from now
        (what a failed probe would open), so the cluster waits it out while the probe is sent."""
        trips = self._trips + 1
        now_s = self._clock.wall_s()
        until_s = now_s + self._policy.open_for_s(trips, self._rand())
        return CircuitView(until_s, trips, self._reason, self._generation, claimed_s=now_s)

    def succeeded(self) -> bool:
        """A request answered: the count starts again; a successful probe (or any answer while
        open) closes the circuit. Answers whether it closed the circuit."""
        self._failures = 0
        self._probing = False
        if not self._trips:
            return False
        self._trips, self._open_until_s, self._claimed_s, self._reason = 0, 0.0, 0.0, ""
        return True

    def answered(self) -> None:
        """A read answered: the count of consecutive faults starts again; nothing closes (a read
        answers while every write is refused)."""
        self._failures = 0

    def failed(self, fault: ServiceFault, *, probe: bool = False) -> bool:
        """A service fault (``probe``: the half-open probe's, whatever its kind); answers
        whether the circuit opened, or stays open for longer: a change to publish."""
        self._failures += 1
        if probe:
            self._probing = False
            self._claimed_s = 0.0  # answered: no longer pending
            if self.open_for_s() > 0:  # the probe claimed its opening: it stands
                self._reason = _reason(fault)
            else:
                self._open(fault)
            return True
        if self.state == "open":
            return False
        if isinstance(fault, ConfigFault) or self._failures >= self._policy.threshold:
            self._open(fault)
            return True
        return False

    def released(self) -> None:
        """A probe did not go (a claim another instance won): another may go once the circuit
        lets one."""
        self._probing = False

    def unanswered(self) -> None:
        """This process's probe went and ended without an answer (a throttle, a cancel): its
        claimed opening stands, and this process no longer waits for the answer."""
        self._probing = False
        self._claimed_s = 0.0

    def adopt(self, shared: CircuitView) -> bool:
        """Take the cluster's state when it is newer than what this process last saw or wrote
        (its generation is higher); answers whether it did."""
        if shared.generation <= self._generation:
            return False
        self._generation = shared.generation
        self._trips = shared.trips
        self._open_until_s, self._reason, self._claimed_s = (
            (shared.open_until_s, shared.reason, shared.claimed_s) if shared.trips
            else (0.0, "", 0.0))
        return True

    def synced(self, generation: int) -> None:
        """This process's state is now the shared row's, as ``generation``."""
        self._generation = generation

    def _open(self, fault: ServiceFault) -> None:
        self._trips += 1
        self._open_until_s = self._clock.wall_s() + self._policy.open_for_s(self._trips,
                                                                           self._rand())
        self._claimed_s = 0.0
        self._reason = _reason(fault)


def _reason(fault: ServiceFault) -> str:
    hint = fault.hint if isinstance(fault, ConfigFault) and fault.hint else ""
    return f"{fault.detail}" + (f"; {hint}" if hint else "")
