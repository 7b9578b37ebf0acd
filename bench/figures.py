"""One row's figures and the arithmetic on them: rates, share of the ceiling, 429s by facet,
CPU per record. Pure: the runners fill a ``Result``, the report prints it."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Final

FACETS: Final = {"0x80072322": "requests", "0x80072321": "exec-time",
                 "0x80072326": "concurrency", "enrichment-429": "enrichment"}
"""Dataverse's service protection error codes (shared/dataverse-facts.md) and the enrichment
API's own 429, by the limit they report."""


def by_facet(throttled_by_code: Mapping[str, int]) -> dict[str, int]:
    """429 counts by facet name; a code the table does not know keeps its code."""
    facets: Counter[str] = Counter()
    for code, count in throttled_by_code.items():
        facets[FACETS.get(code, code)] += count
    return dict(sorted(facets.items()))


def steady_rate_per_s(timeline: list[tuple[float, int]], window_s: float) -> float:
    """Records/s after the first window (which lets any client burst), from (seconds, done)
    samples; over the whole timeline when it ends within the first window."""
    if len(timeline) < 2:
        return 0.0
    after = [(t, done) for t, done in timeline if t >= window_s]
    start, end = (after[0], after[-1]) if len(after) >= 2 and after[-1][0] > after[0][0] \
        else (timeline[0], timeline[-1])
    return (end[1] - start[1]) / (end[0] - start[0]) if end[0] > start[0] else 0.0


def whole_windows_rate_per_s(timeline: list[tuple[float, int]], window_s: float) -> float:
    """Records/s over the whole windows after the first, from (seconds, done) samples: what was
    done between the last sample before the first window ends and the last sample before the
    last whole window ends, over those windows' length. A client that pushes into every limit
    gets a burst each time the sliding window frees its budget, once per window, starting as a
    window ends: whole windows, each holding one such burst, measure its steady rate (samples
    apart by other than whole windows would not). Like ``steady_rate_per_s`` when the timeline
    holds less than two windows."""
    windows = math.floor(timeline[-1][0] / window_s) if timeline and window_s > 0 else 0
    if windows < 2:
        return steady_rate_per_s(timeline, window_s)
    start = _last_before(timeline, window_s)
    end = _last_before(timeline, windows * window_s)
    return (end[1] - start[1]) / ((windows - 1) * window_s)


def _last_before(timeline: list[tuple[float, int]], t_s: float) -> tuple[float, int]:
    return [sample for sample in timeline if sample[0] < t_s][-1]


@dataclass
class Result:
    """What one row did."""

    name: str
    kind: str
    scenario: str
    mode: str
    note: str = ""
    seeded: int = 0
    written: int = 0
    failed: int = 0
    """Given up: a baseline's records after their last retry, the product's dead letters."""
    lost: int = 0
    """Neither written nor failed when the run ended by itself, or created by a write."""
    unfinished: int = 0
    """Not reached within the row's time (baselines stop at their time limit)."""
    elapsed_s: float = 0.0
    window_s: float = 0.0
    timeline: list[tuple[float, int]] = field(default_factory=list)
    throttled_by_code: dict[str, int] = field(default_factory=dict)
    cpu_s: float = 0.0
    """CPU of the client's own processes: the product's hosts and planner, a baseline's loop."""
    peak_rss_mib: float = 0.0
    beside_cpu_s: dict[str, float] = field(default_factory=dict)
    """CPU of the emulators and Azurite during the row: reported, not counted."""
    ceiling_per_s: float = 0.0
    """The row's mode's ceiling within the enrichment API's limit."""
    overall_ceiling_per_s: float = 0.0
    """The best mode's ceiling in the row's scenario."""
    planner_s: float | None = None
    bound_records: float = 0.0
    """A probe's: the most records a run as long as its own can have had accepted (the
    emulator's ``run.bound_records``, the first window's burst included); 0 for other rows."""
    status: str = ""
    """Empty when the row ran; else why it has no figures."""
    unchanged: int = 0
    """The product's records that already held their values: compared, not written."""
    requests: int = 0
    """The product's Dataverse requests (reads, writes, retries), from its run's ledger."""

    @property
    def done(self) -> int:
        """Records finished: written, or found unchanged (not failed)."""
        return self.written + self.unchanged

    @property
    def rate_per_s(self) -> float:
        """Records/s over the whole run, the first window's burst included."""
        return self.done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def steady_rate_per_s(self) -> float:
        """Records/s after the first window (a probe's: over whole windows)."""
        if not self.timeline:
            return self.rate_per_s
        if self.kind == "probe":
            return whole_windows_rate_per_s(self.timeline, self.window_s)
        return steady_rate_per_s(self.timeline, self.window_s)

    @property
    def share_of_ceiling(self) -> float:
        return self.steady_rate_per_s / self.ceiling_per_s if self.ceiling_per_s > 0 else 0.0

    @property
    def share_of_bound(self) -> float:
        """Records accepted over the run's bound (a probe's second check)."""
        return self.written / self.bound_records if self.bound_records > 0 else 0.0

    @property
    def cpu_ms_per_record(self) -> float:
        return 1000 * self.cpu_s / self.done if self.done else 0.0

    @property
    def time_ms_per_record(self) -> float:
        return 1000 * self.elapsed_s / self.done if self.done else 0.0

    @property
    def planner_us_per_record(self) -> float | None:
        """The planner's wall time per record written (its cost must stay flat as data grows)."""
        if self.planner_s is None or not self.written:
            return None
        return 1e6 * self.planner_s / self.written

    @property
    def facets(self) -> dict[str, int]:
        return by_facet(self.throttled_by_code)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rate_per_s": self.rate_per_s,
                "steady_rate_per_s": self.steady_rate_per_s,
                "share_of_ceiling": self.share_of_ceiling,
                "cpu_ms_per_record": self.cpu_ms_per_record,
                "time_ms_per_record": self.time_ms_per_record,
                "planner_us_per_record": self.planner_us_per_record, "facets": self.facets}
