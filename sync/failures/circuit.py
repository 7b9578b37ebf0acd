"""A circuit breaker per dependency, on the one clock, shared by the cluster through Table Storage.

- closed: requests go; each service fault counts, each success resets the count;
- open: after ``threshold`` consecutive service faults, or at once on a configuration fault,
  nothing is sent until ``open_until``; callers get CircuitOpen with the time left and defer
  their work to the queue. Each opening lasts longer than the last (exponential, jittered, up to
  ``max_open_s``);
- half-open: once the time has passed, one request at a time goes as a probe; a success closes
  the circuit, a failure opens it again for longer.

Times are wall-clock seconds (``clock.wall_s``) so that instances can share them. ``failed``
answers whether it opened the circuit and ``succeeded`` whether it closed it: the caller
(``sync.budget.dependency``) logs and publishes each change for the cluster (see
``sync.budget.cluster``).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from sync.clock import SYSTEM_CLOCK, Clock
from sync.failures.errors import CircuitOpen, ConfigFault, ServiceFault

State = Literal["closed", "open", "half-open"]
PROBE_WAIT_S: Final = 1.0
"""What a caller that finds a probe already under way is told to wait."""


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


class Circuit:
    """One dependency's breaker in this process."""

    __slots__ = ("_clock", "_failures", "_open_until_s", "_policy", "_probing", "_rand",
                 "_reason", "_trips", "service")

    def __init__(self, service: str, policy: CircuitPolicy, *, clock: Clock = SYSTEM_CLOCK,
                 rand: Callable[[], float] = random.random) -> None:
        self.service = service
        self._policy, self._clock, self._rand = policy, clock, rand
        self._failures = self._trips = 0
        self._open_until_s = 0.0
        self._reason = ""
        self._probing = False

    def __repr__(self) -> str:
        return (f"Circuit({self.service!r}, state={self.state!r}, failures={self._failures}, "
                f"trips={self._trips}, open_for_s={self.open_for_s():.1f})")

    @property
    def state(self) -> State:
        if self._trips == 0:
            return "closed"
        return "open" if self.open_for_s() > 0 else "half-open"

    @property
    def view(self) -> CircuitView:
        return CircuitView(self._open_until_s, self._trips, self._reason)

    def open_for_s(self) -> float:
        """Seconds until the circuit lets a probe through; 0 when closed or half-open."""
        return max(0.0, self._open_until_s - self._clock.wall_s())

    def admit(self) -> None:
        """Let a request go, or raise CircuitOpen; in half-open, one probe at a time."""
        state = self.state
        if state == "open":
            raise CircuitOpen(self.service, self.open_for_s(), self._reason)
        if state == "half-open":
            if self._probing:
                raise CircuitOpen(self.service, PROBE_WAIT_S, self._reason)
            self._probing = True

    def succeeded(self) -> bool:
        """A request answered: the count starts again; a successful probe closes the circuit.
        Answers whether it closed the circuit."""
        self._failures = 0
        self._probing = False
        if not self._trips:
            return False
        self._trips, self._open_until_s, self._reason = 0, 0.0, ""
        return True

    def failed(self, fault: ServiceFault) -> bool:
        """A service fault; answers whether the circuit opened because of it."""
        self._failures += 1
        probe_failed = self._probing
        self._probing = False
        if self.state == "open":
            return False
        if isinstance(fault, ConfigFault) or probe_failed or \
                self._failures >= self._policy.threshold:
            self._open(fault)
            return True
        return False

    def released(self) -> None:
        """A probe ended without an answer (e.g. a throttle): another may go."""
        self._probing = False

    def apply(self, shared: CircuitView) -> None:
        """What the cluster says: a later opening elsewhere wins; a closing elsewhere closes."""
        if shared.open_until_s > self._open_until_s:
            self._open_until_s, self._reason = shared.open_until_s, shared.reason
            self._trips = max(self._trips, shared.trips, 1)
        elif shared.trips == 0 and self._trips and self.state == "half-open":
            self._trips, self._open_until_s, self._reason = 0, 0.0, ""

    def _open(self, fault: ServiceFault) -> None:
        self._trips += 1
        self._open_until_s = self._clock.wall_s() + self._policy.open_for_s(self._trips,
                                                                           self._rand())
        self._reason = _reason(fault)


def _reason(fault: ServiceFault) -> str:
    hint = fault.hint if isinstance(fault, ConfigFault) and fault.hint else ""
    return f"{fault.detail}" + (f"; {hint}" if hint else "")
