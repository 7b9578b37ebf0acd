"""One row's figures and the arithmetic on them: rates, share of the ceiling, 429s by facet,
CPU per record. Pure: the runners fill a ``Result``, the report prints it."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Final

from bench.ceiling import RowLimits, row_limits

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


def from_first_write(timeline: list[tuple[float, int]]) -> list[tuple[float, int]]:
    """The timeline from the last sample before its count first moved, that sample at 0 s: a
    product row's first seconds (processes starting, the plan) are not the service's first
    window, whose burst the steady rate leaves out. Unchanged when the count never moves."""
    moved = next((i for i, (_, done) in enumerate(timeline) if done > timeline[0][1]), None)
    if moved is None:
        return list(timeline)
    origin_s = timeline[moved - 1][0]  # the first sample never moved: moved >= 1
    return [(round(t - origin_s, 2), done) for t, done in timeline[moved - 1:]]


def busy_until_s(timeline: list[tuple[float, int]]) -> float:
    """When the row reached its final count: it ran out of records (or stopped) there, so the
    samples after it are idle time, not a rate."""
    final = timeline[-1][1] if timeline else 0
    return next((t for t, done in timeline if done == final), 0.0)


@dataclass(frozen=True, slots=True)
class Span:
    """A row's steady window: from ``start_s`` (its first sample once the first window has
    passed) for ``windows`` whole windows of ``window_s``; ``done`` counts the records of its
    first sample and of its last one within it, ``samples`` how many samples it holds."""

    start_s: float
    window_s: float
    windows: int
    done: tuple[int, int]
    samples: int

    @property
    def end_s(self) -> float:
        return self.start_s + self.windows * self.window_s

    @property
    def length_s(self) -> float:
        return self.windows * self.window_s

    @property
    def rate_per_s(self) -> float:
        """Records/s over the span: what its samples saw, over its whole windows."""
        return (self.done[1] - self.done[0]) / self.length_s


def supplied_until_s(timeline: list[tuple[float, int]], seeded: int,
                     drain_records: int) -> float | None:
    """The last sample at which at least ``drain_records`` records were still to do: after it
    the client drains (its last messages in flight, nothing behind them), a stretch a client
    with records to spare never has; None when no sample had that many left."""
    return next((t for t, done in reversed(timeline) if seeded - done >= drain_records), None)


def steady_span(timeline: list[tuple[float, int]], window_s: float, *,
                ran_out: bool = True, supplied_until: float | None = None) -> Span | None:
    """The whole windows after the first in which the row was busy, from its first sample at
    or after the first window's end; None when not one whole window fits (the row ran out of
    records, or stopped, too early: it has no steady rate).

    The records counted are those between its first sample and its last sample within the
    span (so a rate may read up to one sample interval low, never high), never more than the
    span's whole windows hold: a client that pushes into every limit
    gets a burst each time the sliding window frees its budget, once per window, and a span a
    little longer than whole windows could count two (rows read above a proven ceiling that
    way). A row that did not run out of records (``ran_out`` False: some were left, it stalled
    or its time ended) was busy until its last sample: windows without progress are its rate
    too. ``supplied_until``: where a row that ran out began to drain (``supplied_until_s``);
    the span ends there."""
    first = next((sample for sample in timeline if sample[0] >= window_s), None)
    if window_s <= 0 or first is None:
        return None
    until_s = busy_until_s(timeline) if ran_out else timeline[-1][0]
    if ran_out and supplied_until is not None:
        until_s = min(until_s, supplied_until)
    windows = math.floor((until_s - first[0]) / window_s + 1e-9)
    if windows < 1:
        return None
    inside = [s for s in timeline if first[0] <= s[0] <= first[0] + windows * window_s + 1e-9]
    return Span(first[0], window_s, windows, (first[1], inside[-1][1]), len(inside))


def steady_windows(timeline: list[tuple[float, int]], window_s: float, *,
                   ran_out: bool = True) -> int:
    """How many whole windows the steady span holds (0: no steady rate)."""
    span = steady_span(timeline, window_s, ran_out=ran_out)
    return span.windows if span else 0


def whole_windows_rate_per_s(timeline: list[tuple[float, int]], window_s: float, *,
                             ran_out: bool = True) -> float:
    """Records/s over the steady span (``steady_span``); 0.0 when the row has none."""
    span = steady_span(timeline, window_s, ran_out=ran_out)
    return span.rate_per_s if span else 0.0


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
    beside_peak_rss_mib: dict[str, float] = field(default_factory=dict)
    """Peak RSS by role of what runs beside the client (``bench.proctree`` roles: the
    launcher, the emulators, Azurite): reported, not counted."""
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
    identities: int = 1
    """The product's identities (lanes) in its one environment."""
    lanes: list[dict[str, Any]] = field(default_factory=list)
    """Per lane (environment, identity): records written, 429s by facet, peak concurrency, as
    ``python -m sync local --json-out`` reports them (empty for one lane)."""
    drain_records: int = 0
    """The records the product's hosts hold at once (messages in flight): once fewer are left
    the row drains, and its steady span ends (``supplied_until_s``); 0 for other rows."""
    cpu_headroom: float | None = None
    """The machine's idle share of its CPU time while the row ran (every core, every process
    on it: others' too); None when not measured."""

    @property
    def done(self) -> int:
        """Records finished: written, or found unchanged (not failed)."""
        return self.written + self.unchanged

    @property
    def rate_per_s(self) -> float:
        """Records/s over the whole run, the first window's burst included."""
        return self.done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def ran_out(self) -> bool:
        """Every seeded record was written or failed (a probe reuses its records: always)."""
        return self.kind == "probe" or self.written + self.failed >= self.seeded

    @property
    def steady_span(self) -> Span | None:
        """The row's steady window (``steady_span``): None when it had none."""
        supplied = (supplied_until_s(self.timeline, self.seeded, self.drain_records)
                    if self.drain_records else None)
        return steady_span(self.timeline, self.window_s, ran_out=self.ran_out,
                           supplied_until=supplied)

    @property
    def steady_windows(self) -> int:
        """Whole windows after the first over which ``steady_rate_per_s`` is measured."""
        span = self.steady_span
        return span.windows if span else 0

    @property
    def steady_rate_per_s(self) -> float:
        """Records/s over the whole windows after the first in which the row was busy; 0.0
        when it had none (``steady_windows`` 0: too few records or too short a run)."""
        span = self.steady_span
        return span.rate_per_s if span else 0.0

    @property
    def limits(self) -> RowLimits:
        """What bounds the row's records (``bench.ceiling.row_limits``)."""
        return row_limits(self.scenario, self.ceiling_per_s)

    @property
    def span_ceiling_per_s(self) -> float:
        """The row's ceiling over its steady window: the most records/s any client could have
        written over it (the enrichment API's burst included); its steady ceiling when it had
        no steady window."""
        span = self.steady_span
        return self.limits.per_s(span.length_s if span else math.inf)

    @property
    def share_of_ceiling(self) -> float:
        """The steady rate over the row's ceiling for its steady window."""
        ceiling = self.span_ceiling_per_s
        return self.steady_rate_per_s / ceiling if ceiling > 0 else 0.0

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
        span = self.steady_span
        return {**asdict(self), "rate_per_s": self.rate_per_s,
                "steady_rate_per_s": self.steady_rate_per_s,
                "steady_windows": self.steady_windows,
                "steady_window_s": [span.start_s, span.end_s] if span else None,
                "steady_samples": span.samples if span else 0,
                "span_ceiling_per_s": self.span_ceiling_per_s,
                "share_of_ceiling": self.share_of_ceiling,
                "cpu_ms_per_record": self.cpu_ms_per_record,
                "time_ms_per_record": self.time_ms_per_record,
                "planner_us_per_record": self.planner_us_per_record, "facets": self.facets}
