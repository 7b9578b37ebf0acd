"""Requests in flight against the DOP hint in force, measured at every admission.

The service recommends ``x-ms-dop-hint`` requests in flight; the product promises that its
instances together stay within it (DESIGN invariant 3). The emulator measures that from its own
side: each admitted request finds some requests in flight (itself included) on its web server
and of its user over every server, and the hint in force is what the emulator's answers carry
at that moment (``EmulatorConfig.dop_hint_header``, which ``PATCH /_emulator/config`` may
change at run time).

A hint lowered at run time cannot bind the requests already in flight, nor the clients that
have not yet seen an answer carrying it. So besides the peak, each scope keeps the admissions
that found more in flight than the hint (``over``), the longest time after the last change at
which one did (``latest_over_s``), and those that found more than the hint before that change
too (``over_before``: never excused). A client that follows the hint shows ``over_before`` 0
and ``latest_over_s`` within the time it takes to see and share the new hint.

Pure bookkeeping on a passed-in ``now_s``; ``/_emulator/stats`` shows it as
``in_flight_vs_hint``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Scope:
    """One web server's, or one user's over every server, admissions against the hint."""

    admissions: int = 0
    peak: int = 0
    """The most requests in flight an admission found (itself included)."""
    peak_hint: int = 0
    """The hint in force at that peak."""
    over: int = 0
    over_before: int = 0
    latest_over_s: float = 0.0

    def admitted(self, in_flight: int, watch: HintWatch, now_s: float) -> None:
        self.admissions += 1
        if in_flight > self.peak:
            self.peak, self.peak_hint = in_flight, watch.hint
        if in_flight <= watch.hint:
            return
        self.over += 1
        self.latest_over_s = max(self.latest_over_s, now_s - watch.changed_s)
        self.over_before += in_flight > max(watch.hint, watch.before)

    def as_json(self) -> dict[str, Any]:
        return {"admissions": self.admissions, "peak": self.peak, "peak_hint": self.peak_hint,
                "over": self.over, "over_before": self.over_before,
                "latest_over_s": round(self.latest_over_s, 3)}


@dataclass(slots=True)
class HintWatch:
    """The hint in force, when it last changed and what it was before, and every scope."""

    hint: int = 0
    changed_s: float = 0.0
    before: int = 0
    changes: int = 0
    """Changes since the first hint (lowered or raised)."""
    lowest: int = 0
    scopes: dict[str, Scope] = field(default_factory=dict)

    def observe(self, hint: int, now_s: float) -> None:
        """The hint in force at ``now_s``; a different one than before is a change."""
        if hint == self.hint:
            return
        if self.hint:
            self.changes += 1
        self.before, self.hint, self.changed_s = self.hint or hint, hint, now_s
        self.lowest = min(self.lowest or hint, hint)

    def admitted(self, hint: int, now_s: float, in_flight: dict[str, int]) -> None:
        """A request admitted at ``now_s`` under ``hint`` found ``in_flight`` by scope."""
        self.observe(hint, now_s)
        for name, count in in_flight.items():
            self.scopes.setdefault(name, Scope()).admitted(count, self, now_s)

    def fresh(self) -> HintWatch:
        """Fresh counts that still know the hint in force (a reset of the stats)."""
        return HintWatch(self.hint, self.changed_s, self.before, lowest=self.hint)

    def as_json(self) -> dict[str, Any]:
        return {"hint": self.hint, "before": self.before, "changes": self.changes,
                "lowest": self.lowest,
                "scopes": {name: scope.as_json() for name, scope in sorted(self.scopes.items())}}
