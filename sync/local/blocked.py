"""When a local run is blocked: the circuits say so, not the time alone.

A circuit backs off longer at each opening (``SYNC_CIRCUIT_OPEN_S`` doubling up to
``SYNC_CIRCUIT_MAX_OPEN_S``), and no record moves while it is open: a stall shorter than the
back-off says nothing about the fault. So a run is blocked only when

1. no record was done for ``stall_s``, and a circuit is open (the cluster's shared rows,
   ``sync.budget.cluster.read_circuits``, show it with trips);
2. the back-off in force at that moment has then come round, and its probe failed: the circuit
   opened again (more trips, open until later), still without progress.

The fault named is the one the circuit holds at that moment: the probe's, current. An outage
that clears before the probe lets the probe through, records move, and the run goes on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sync.failures.circuit import CircuitView


@dataclass(frozen=True, slots=True)
class Armed:
    """The back-off that must come round: each open circuit's trips and the latest time one
    is open until, when the stall was reached."""

    trips: Mapping[str, int]
    open_until_s: float

    def opened_again(self, open_now: Mapping[str, CircuitView]) -> str:
        """The circuits whose probe failed since (more trips, open until later), with the
        fault each holds now; "" while none has."""
        return "; ".join(f"{name}: {view.reason}" for name, view in sorted(open_now.items())
                         if view.trips > self.trips.get(name, 0)
                         and view.open_until_s > self.open_until_s)


class BlockedJudge:
    """Watches a run's progress and circuits; ``observe`` answers why it is blocked, or "".

    Pure: the caller passes the time (``now_s`` monotonic for the stall, the circuits' own
    wall-clock times stay as they are compared with each other only)."""

    __slots__ = ("_armed", "_done", "_since_s", "_stall_s")

    def __init__(self, stall_s: float, now_s: float) -> None:
        if stall_s < 0:
            raise ValueError("stall_s must be >= 0")
        self._stall_s = stall_s
        self._done = -1
        self._since_s = now_s
        self._armed: Armed | None = None

    def __repr__(self) -> str:
        return (f"BlockedJudge(stall_s={self._stall_s}, done={self._done}, "
                f"armed={self._armed})")

    def observe(self, done: int, circuits: Mapping[str, CircuitView], now_s: float) -> str:
        """The run at ``now_s``: records done and the shared circuits. Answers the blocking
        fault (``dependency: reason``) once blocked, else ""."""
        if done != self._done:
            self._done, self._since_s, self._armed = done, now_s, None
            return ""
        open_now = {name: view for name, view in circuits.items() if view.trips}
        if not open_now:
            self._armed = None
            return ""
        if now_s - self._since_s < self._stall_s:
            return ""
        if self._armed is None:
            self._armed = Armed({name: view.trips for name, view in open_now.items()},
                                max(view.open_until_s for view in open_now.values()))
            return ""
        return self._armed.opened_again(open_now)
