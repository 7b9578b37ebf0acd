"""Systematic record faults: a refusal most of a definition's records meet is the definition's
fault (a mapping whose type a column refuses, a column removed from the table), not each
record's. Pure arithmetic on a passed-in time; the shared count and the circuit's row are
``sync.state.systematic_row``, the worker's use of them ``sync.work.systematic``.

- ``signature_of``: what "the same refusal" is: the status, the code, and the message with what
  differs from record to record taken out (ids, numbers, quoted values). A 404 (the record is
  gone), a 412 (it changed) and a 429 are each record's or the service's own, never systematic.
- ``Window``: one process's recent write outcomes of one definition: records written, records
  refused by signature, over ``window_s``.
- ``is_systematic``: more than ``records`` refusals of one signature across the cluster within
  the window, and at least ``share`` of the records this process tried there.
"""

from __future__ import annotations

import re
from collections import Counter, deque
from dataclasses import dataclass
from typing import Final

from sync.failures.errors import RecordFault

NEVER_SYSTEMATIC: Final = frozenset({404, 409, 412, 429})
_VARIABLE: Final = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|'[^']*'|\"[^\"]*\"|\b\d+(?:\.\d+)?\b")
"""What differs between the messages of one refusal: GUIDs, quoted values, numbers."""
MAX_SIGNATURE_CHARS: Final = 300


@dataclass(frozen=True, slots=True)
class SystematicPolicy:
    """When a refusal is the definition's (``SYNC_SYSTEMATIC_RECORDS``, ``_SHARE``,
    ``_WINDOW_S``)."""

    records: int = 25
    share: float = 0.2
    window_s: float = 600.0

    def __post_init__(self) -> None:
        if self.records < 1 or not 0 < self.share <= 1 or self.window_s <= 0:
            raise ValueError(f"impossible systematic policy {self}")


def signature_of(fault: RecordFault) -> str | None:
    """The refusal ``fault`` is one of, as one line; None for a fault never systematic."""
    if not 400 <= fault.status < 500 or fault.status in NEVER_SYSTEMATIC:
        return None
    message = " ".join(_VARIABLE.sub("_", fault.message).split())
    return f"{fault.status} {fault.code}: {message}"[:MAX_SIGNATURE_CHARS]


def is_systematic(cluster_count: int, share: float, policy: SystematicPolicy) -> bool:
    """Whether a refusal met ``cluster_count`` times in the window, ``share`` of this process's
    records tried there, is the definition's fault."""
    return cluster_count > policy.records and share >= policy.share


class Window:
    """One process's write outcomes of one definition over the last ``window_s``."""

    __slots__ = ("_events", "_window_s")

    def __init__(self, window_s: float) -> None:
        self._window_s = window_s
        self._events: deque[tuple[float, str, int]] = deque()
        """(time, signature or "" for records written, how many)."""

    def __repr__(self) -> str:
        return f"Window(window_s={self._window_s}, events={len(self._events)})"

    def written(self, now_s: float, records: int) -> None:
        if records:
            self._add(now_s, "", records)

    def refused(self, now_s: float, signature: str) -> None:
        self._add(now_s, signature, 1)

    def share(self, now_s: float, signature: str, written_now: int = 0) -> float:
        """The share of the records tried in the window that ``signature`` refused;
        ``written_now``: records written by a message still running (not yet counted)."""
        self._forget(now_s)
        totals: Counter[str] = Counter()
        for _, kind, count in self._events:
            totals[kind] += count
        tried = sum(totals.values()) + written_now
        return totals[signature] / tried if tried else 0.0

    def count(self, now_s: float, signature: str) -> int:
        """The records ``signature`` refused in the window."""
        self._forget(now_s)
        return sum(count for _, kind, count in self._events if kind == signature)

    def _add(self, now_s: float, kind: str, count: int) -> None:
        self._forget(now_s)
        self._events.append((now_s, kind, count))

    def _forget(self, now_s: float) -> None:
        while self._events and self._events[0][0] < now_s - self._window_s:
            self._events.popleft()
