"""What the bench runs: the environments (scenarios), how long, and the list of rows.

Pure definitions: nothing here starts a process. ``plan_rows`` answers the rows of one bench run
in the order they run; ``--only`` filters them by name.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Final

from sync.local.emulators.webapi.config import DOCUMENTED_WINDOW_S, EmulatorConfig

MODES: Final = ("single", "batch", "bulk")
TIMEOUT_RATE_PER_S: Final = 500.0
"""The most records/s a product row's time limit counts on (the growth scenario's ceiling is far
above what two cores write)."""
UNIT_RECORDS: Final = {"single": 1, "batch": 10, "bulk": 100}
"""Records per write request: one PATCH, a $batch of 10, an UpdateMultiple of 100."""
PATTERNS: Final = ("sequential", "fixed-52", "recommended-x1", "recommended-x3")
"""The loops users write today (see bench/baselines.py); each runs in every write mode."""
BULK_GUIDANCE: Final = {"sequential": "bulk at 1 (Microsoft's bulk guidance)",
                        "recommended-x1": "bulk at the DOP hint (Microsoft's bulk guidance)"}
"""In bulk mode two loops are exactly what Microsoft's bulk guidance suggests; the row says so
instead of running the same loop twice."""
RECORDS_MARGIN: Final = 1.1
"""A row's records cover this much more than ``run_s`` and the first window at the ceiling (a
probe may exceed the ceiling by 5%, see bench/targets.py)."""
PROBES: Final = ("greedy", "oracle")
"""The emulator's own probe clients (sync/local/emulators/webapi/probes.py): greedy (everything
in flight, hints and Retry-After ignored) and oracle (paces each server at the binding limit)."""
PROBE_MODES: Final = ("single", "bulk")
ENRICHMENT_CALLS: Final = "calls"
"""The mode of the probes against the enrichment API (one call, one record): they prove the
enrichment-bound scenario's ceiling (sync/local/emulators/enrichment/probes.py)."""
PROBE_RECORDS: Final = 1000
KINDS: Final = ("baseline", "product", "probe", "nightly", "growth")
OPT_IN_KINDS: Final = ("lanes", "peer")
"""Rows only a bench option adds (``--lanes``, ``--peer``)."""
LANE_IDENTITIES: Final = (1, 2, 4)
"""The scaling row: the product with this many identities in one environment."""


@dataclass(frozen=True, slots=True)
class Scenario:
    """One environment: the Dataverse emulator's servers and costs, the enrichment API's limit.
    Limits are the documented ones on the run's time scale (``EmulatorConfig.time_scaled``)."""

    name: str
    servers: int
    dop_hint: int
    enrichment_rate_per_s: float
    write_ms: tuple[float, float] = (100.0, 200.0)
    batch_op_ms: float = 100.0
    bulk_target_ms: float = 10.0
    max_requests_per_s: float | None = None
    """Requests per second each user may send to each server (the request facet on the run's
    time scale: ``max_requests`` = this times the window); None: the documented rate."""
    max_concurrent: int | None = None
    """Requests in flight per user per server; None: the documented 52."""

    def limit_overrides(self, time_scale: float) -> dict[str, int]:
        """The limits this scenario sets instead of the documented ones."""
        found: dict[str, int] = {}
        if self.max_requests_per_s is not None:
            window_s = DOCUMENTED_WINDOW_S / time_scale
            found["max_requests"] = max(1, round(self.max_requests_per_s * window_s))
        if self.max_concurrent is not None:
            found["max_concurrent"] = self.max_concurrent
        return found

    def emulator_config(self, time_scale: float, records: int = 0) -> EmulatorConfig:
        """The emulator's settings: the documented limits ``time_scale`` times faster (every
        per-second rate the documented one, Retry-After in whole seconds), this scenario's
        servers and costs."""
        return EmulatorConfig.time_scaled(
            time_scale, servers=self.servers, dop_hint=self.dop_hint, records=records,
            write_ms_min=self.write_ms[0], write_ms_max=self.write_ms[1],
            batch_op_ms=self.batch_op_ms, bulk_target_ms=self.bulk_target_ms,
            **self.limit_overrides(time_scale))

    def emulator_args(self, time_scale: float) -> list[str]:
        """Options of ``python -m sync emulator dataverse`` (records aside) that make
        ``emulator_config(time_scale)``: given only the window, the emulator scales by
        ``300 s / window`` (``EmulatorConfig.scaled``)."""
        window_s = DOCUMENTED_WINDOW_S / time_scale
        return ["--servers", str(self.servers), "--window-s", repr(window_s),
                "--dop-hint", str(self.dop_hint),
                "--write-ms-min", f"{self.write_ms[0]:g}",
                "--write-ms-max", f"{self.write_ms[1]:g}",
                "--batch-op-ms", f"{self.batch_op_ms:g}",
                "--bulk-target-ms", f"{self.bulk_target_ms:g}",
                *(arg for name, value in self.limit_overrides(time_scale).items()
                  for arg in (f"--{name.replace('_', '-')}", str(value)))]

    @property
    def enrichment_burst(self) -> int:
        """The enrichment API's bucket: one second of its rate."""
        return max(1, int(self.enrichment_rate_per_s))

    def enrichment_args(self) -> list[str]:
        """Options of ``python -m sync emulator enrichment``: a one-second bucket."""
        return ["--rate-per-s", f"{self.enrichment_rate_per_s:g}",
                "--burst", str(self.enrichment_burst)]


DATAVERSE_BOUND: Final = Scenario("dataverse-bound", servers=2, dop_hint=10,
                                  enrichment_rate_per_s=5000.0)
"""The documented limits on 2 web servers, the emulator's default costs; an enrichment API far
faster than any write mode, so Dataverse's limits decide."""
ENRICHMENT_BOUND: Final = Scenario("enrichment-bound", servers=8, dop_hint=10,
                                   enrichment_rate_per_s=100.0, write_ms=(20.0, 40.0),
                                   batch_op_ms=20.0, bulk_target_ms=2.0)
"""A fast Dataverse (8 web servers, cheap operations: even single writes allow 160/s) behind an
enrichment API limited to 100 calls/s, so the enrichment API decides for every mode."""
GROWTH: Final = Scenario("growth", servers=8, dop_hint=10, enrichment_rate_per_s=20000.0,
                         write_ms=(20.0, 40.0), batch_op_ms=20.0, bulk_target_ms=1.0)
"""Everything fast, so the product's own cost per record shows."""
USER_BOUND: Final = Scenario("user-bound", servers=1, dop_hint=64,
                              enrichment_rate_per_s=5000.0, write_ms=(20.0, 40.0),
                              batch_op_ms=20.0, bulk_target_ms=2.0, max_requests_per_s=40.0,
                              max_concurrent=256)
"""Bound by each user's request facet (40 requests/s per user per server, single writes), not
by the DOP hint (64, with 256 requests in flight allowed per user: the hint never binds) nor
the enrichment API (5,000 calls/s): N identities are N budgets. One server, so the product's
at most 4 x 40 records/s stay far from what two cores do."""
SCENARIOS: Final = (DATAVERSE_BOUND, ENRICHMENT_BOUND)


@dataclass(frozen=True, slots=True)
class Scale:
    """How long and how big: the default bench, or ``--quick``."""

    time_scale: float = 30.0
    """How much faster the emulator's time runs (``EmulatorConfig.time_scaled``): the window,
    the execution-time budget and Retry-After divided by it, the requests per window with them.
    At least 1; Retry-After stays whole seconds (at least 1 s) on any scale."""
    run_s: float = 20.0
    """How long a baseline runs, and the target duration of a product row."""
    grace_s: float = 2.0
    """After ``run_s`` a baseline's requests still asleep in a Retry-After get this long."""
    min_records: int = 300
    max_records: int = 40_000
    nightly_records: int = 50_000
    growth_records: tuple[int, ...] = (10_000, 100_000)
    peer_timeout_s: float = 120.0

    def __post_init__(self) -> None:
        if not self.time_scale >= 1.0:
            raise ValueError(f"Scale.time_scale must be at least 1, got {self.time_scale}")

    @property
    def window_s(self) -> float:
        """The emulator's window on this scale (the documented 300 s divided by it)."""
        return DOCUMENTED_WINDOW_S / self.time_scale

    @property
    def timed_run_s(self) -> float:
        """How long a row bounded by time (a baseline, a probe) sends: at least two windows and
        a second, so its steady rate is measured over at least one whole window after the
        first."""
        return max(self.run_s, 2 * self.window_s) + 1.0

    @property
    def probe_run_s(self) -> float:
        """How long a probe sends (``timed_run_s``)."""
        return self.timed_run_s

    @property
    def probe_max_sends(self) -> int:
        """A probe's request count bound (its time bound is ``probe_run_s``)."""
        return int(5000 * self.probe_run_s)

    def records_for(self, rate_per_s: float) -> int:
        """Seeded accounts for a row whose ceiling is ``rate_per_s``: enough that a client at
        the ceiling is still busy after ``timed_run_s``, the first window's burst (one window's
        worth) and a margin included, so the row's steady rate covers whole windows."""
        worth_s = (self.timed_run_s + self.window_s) * RECORDS_MARGIN
        return max(self.min_records, min(self.max_records, int(rate_per_s * worth_s)))

    def product_timeout_s(self, records: int, rate_per_s: float) -> float:
        """A product row gives up after four times its expected duration (at least 60 s),
        expecting at most ``TIMEOUT_RATE_PER_S`` whatever the ceiling."""
        return max(60.0, 4 * records / max(1.0, min(rate_per_s, TIMEOUT_RATE_PER_S)) + 30.0)


DEFAULT_SCALE: Final = Scale()
QUICK_SCALE: Final = Scale(time_scale=100.0, run_s=5.0, grace_s=1.0, min_records=200,
                           max_records=600, nightly_records=600, growth_records=(300, 1000),
                           peer_timeout_s=60.0)
MILLION: Final = 1_000_000


@dataclass(frozen=True, slots=True)
class RowSpec:
    """One row of the table: who runs, in which environment, in which write mode."""

    kind: str
    scenario: Scenario
    mode: str
    pattern: str = ""
    processes: int = 1
    """Baseline processes or product host instances."""
    records: int = 0
    """0: sized from the row's ceiling by ``Scale.records_for``."""
    identities: int = 1
    """The product's identities in its one environment (``--identities``): the lanes row."""

    @property
    def name(self) -> str:
        where = self.scenario.name
        if self.kind == "baseline":
            return f"{where}/{self.pattern}/{self.mode}"
        if self.kind == "product":
            suffix = f"-{self.pattern}" if self.pattern else ""
            return f"{where}/product-x{self.processes}{suffix}/{self.mode}"
        if self.kind == "probe":
            return f"{where}/{self.pattern}-probe/{self.mode}"
        if self.kind == "lanes":
            return f"{where}/product-lanes-x{self.identities}/{self.mode}"
        return f"{self.kind}/{self.mode}" + (f"/{self.records}" if self.kind == "growth" else "")

    @property
    def note(self) -> str:
        if self.kind == "baseline" and self.mode == "bulk":
            return BULK_GUIDANCE.get(self.pattern, "")
        if self.kind == "probe":
            notes = ENRICHMENT_PROBE_NOTES if self.mode == ENRICHMENT_CALLS else PROBE_NOTES
            return notes[self.pattern]
        if self.kind == "product" and self.pattern:
            return product_note(self.pattern)
        return {"peer": "Microsoft's Python client 1.1.0, 8 threads, no retry",
                "lanes": f"{self.identities} identities, each its own user and budget",
                "nightly": "the blog's nightly job", "growth": "bulk, everything fast"}.get(
                    self.kind, "")


def product_note(pattern: str) -> str:
    """What a product row's pattern changes."""
    shape = shape_of(pattern)
    if shape is not None:
        return f"the enrichment API in the {shape} shape (its example definition)"
    return {NO_HEADERS: "the emulator sends no x-ms-ratelimit-* headers: the governor "
                        "without them",
            UNCHANGED_90: "90% of the records already hold their values (a re-run): not "
                          "written",
            NO_ETAG_CHECK: "bulk without the pre-write ETag check"}.get(pattern, "")


UNCHANGED_90: Final = "unchanged-90"
"""A product row where 90% of the seeded records already hold their enriched values (a nightly
re-run): those are read, compared and not written."""
NO_ETAG_CHECK: Final = "no-etag-check"
"""A bulk product row without the pre-write ETag check (``bulk_etag_check: false``): the
check's cost is the difference with the plain bulk row."""
ENRICHMENT_SHAPES: Final = ("pdl", "pdl-bulk", "clearbit", "inhouse")
"""The enrichment API's shapes a product row runs against besides today's (``python -m sync
local --enrichment-shape``): each shipped example definition, in the enrichment-bound
scenario, where the enrichment API decides the pace."""
SHAPE_PREFIX: Final = "shape-"


def shape_of(pattern: str) -> str | None:
    """The enrichment shape a product row's pattern names (``shape-pdl``); None for today's."""
    return pattern.removeprefix(SHAPE_PREFIX) if pattern.startswith(SHAPE_PREFIX) else None


ENRICHED_SHARE: Final = {UNCHANGED_90: 0.9}
DEFINITION_OVERRIDES: Final = {NO_ETAG_CHECK: '{"bulk_etag_check": false}'}

NO_HEADERS: Final = "no-ratelimit-headers"
"""A product row against an emulator that leaves the x-ms-ratelimit-* headers out: the
governor's pace with the service's header formats is compared with its pace without them."""

PROBE_NOTES: Final = {"greedy": "probe: all in flight, ignores hints and Retry-After",
                      "oracle": "probe: knows the limits, paces each server"}
ENRICHMENT_PROBE_NOTES: Final = {
    "greedy": "probe of the enrichment API: many calls in flight, ignores Retry-After",
    "oracle": "probe of the enrichment API: knows rate and burst, spends the burst, paces"}


def plan_rows(scale: Scale, *, million: bool = False, lanes: bool = False,
              shapes: bool = False, peer: bool = False) -> list[RowSpec]:
    """Every row of a bench run, in order; ``lanes`` adds the scaling row (1, 2 and 4
    identities in the user-bound scenario: about three minutes, so opt-in), ``shapes`` a
    product row per shipped enrichment shape, ``peer`` the external peer's row (50,000
    records and its two-minute time-out: about three minutes, so opt-in, which keeps the
    default rows within 30 minutes on two cores)."""
    rows: list[RowSpec] = []
    for scenario in SCENARIOS:
        rows += [RowSpec("baseline", scenario, mode, pattern,
                         processes=3 if pattern.endswith("-x3") else 1)
                 for pattern in PATTERNS for mode in MODES]
        rows += [RowSpec("product", scenario, mode, processes=instances)
                 for instances in (1, 3) for mode in MODES]
    rows += [RowSpec("product", DATAVERSE_BOUND, mode, NO_HEADERS) for mode in ("single", "bulk")]
    rows += [RowSpec("product", DATAVERSE_BOUND, mode, UNCHANGED_90) for mode in MODES]
    rows.append(RowSpec("product", DATAVERSE_BOUND, "bulk", NO_ETAG_CHECK))
    rows += [RowSpec("probe", DATAVERSE_BOUND, mode, probe, records=PROBE_RECORDS)
             for probe in PROBES for mode in PROBE_MODES]
    rows += [RowSpec("probe", ENRICHMENT_BOUND, ENRICHMENT_CALLS, probe) for probe in PROBES]
    rows.append(RowSpec("nightly", DATAVERSE_BOUND, "bulk", records=scale.nightly_records))
    if peer:
        rows.append(RowSpec("peer", DATAVERSE_BOUND, "bulk", records=scale.nightly_records))
    sizes = (*scale.growth_records, *((MILLION,) if million else ()))
    rows += [RowSpec("growth", GROWTH, "bulk", records=size) for size in sizes]
    if lanes:
        rows += lane_rows()
    if shapes:
        rows += shape_rows()
    return rows


def shape_rows() -> list[RowSpec]:
    """The product against each shipped enrichment shape (``--shapes``)."""
    return [RowSpec("product", ENRICHMENT_BOUND, "bulk", f"{SHAPE_PREFIX}{shape}")
            for shape in ENRICHMENT_SHAPES]


def lane_rows() -> list[RowSpec]:
    """The scaling row: the product in single mode with 1, 2 and 4 identities."""
    return [RowSpec("lanes", USER_BOUND, "single", identities=n) for n in LANE_IDENTITIES]


FLOOR: Final = "floor"
"""The HTTP client floor (``bench/floor.py``): not a row, a measurement the bench runs first;
``--only floor`` runs it alone."""


def select(rows: list[RowSpec], only: str) -> list[RowSpec]:
    """The rows whose name matches one of the comma-separated shell patterns in ``only``
    (a pattern without ``*`` matches as a substring); all rows when ``only`` is empty."""
    return [row for row in rows if selected(row.name, only)]


def selected(name: str, only: str) -> bool:
    """Whether ``name`` (a row's, or ``FLOOR``) matches ``only`` as ``select`` reads it."""
    patterns = [p if "*" in p else f"*{p}*" for p in only.split(",") if p]
    return not patterns or any(fnmatch.fnmatchcase(name, p) for p in patterns)
