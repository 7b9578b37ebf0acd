"""The issue's targets, evaluated on a run's rows: reported pass/fail, never asserted.

1. In each scenario at 1 and 3 instances, the product's best mode reaches >= 90% of the
   scenario's ceiling and is ahead of the best baseline of the same mode (modes tied for the
   best rate: the one furthest ahead; a tie with a baseline passes only at the ceiling, where
   nobody can be ahead);
2. every run of the product loses nothing and fails nothing;
3. the product's own processes spend <= 0.3 ms of CPU per record (the verdict names the HTTP
   client floor, ``bench/floor.py``: what one enrichment call per record costs at least);
4. their peak RSS stays within 10% from the smallest growth size to the largest;
5. the ceiling is a bound for every row: no row (client, product, baseline or probe) reads
   above its ceiling over its steady window (``Result.span_ceiling_per_s``: the enrichment
   API's burst counted) by more than 5%, nor a probe above the bound for its run's length; a
   row that does fails the report (``report_fails``);
6. the governor reading the service's x-ms-ratelimit-* formats is as fast as without them
   (within 5%, in each mode measured both ways);
7. (issue 13, ``--lanes``) in the user-bound scenario N identities reach >= 0.9 x N x one
   identity's steady rate for N = 2 and 4 (``bench/scaling.py``).

Rates are compared only between rows that have one: a row that ran out of records, or stopped,
before its second window ended has no steady rate (``Result.steady_windows`` 0) and counts as
not run for targets 1, 5 and 6.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from bench.callcost import Floor
from bench.figures import Result
from bench.scaling import SHARE_OF_N, scaling_met, scaling_points
from bench.scenarios import MILLION, NO_HEADERS

SHARE_OF_CEILING: Final = 0.90
CPU_MS_PER_RECORD: Final = 0.3
RSS_GROWTH: Final = 0.10
CEILING_TOLERANCE: Final = 1.05
OURS: Final = ("product", "nightly", "growth", "lanes")


@dataclass(frozen=True, slots=True)
class Verdict:
    """One target: passed, failed, or not measured (``passed`` None) in this run."""

    target: str
    passed: bool | None
    detail: str

    def line(self) -> str:
        mark = {True: "PASS", False: "FAIL", None: "n/a "}[self.passed]
        return f"{mark}  {self.target}: {self.detail}"


def evaluate(results: list[Result], floor: Floor | None = None) -> list[Verdict]:
    """Every target, in the order the issue lists them; target 3 names the HTTP client floor
    when it was measured."""
    ran = [r for r in results if not r.status]
    steady = [r for r in ran if r.steady_windows]
    verdicts = [_best_mode(steady, scenario, instances) for scenario in
                ("dataverse-bound", "enrichment-bound") for instances in (1, 3)]
    return [*verdicts, _nothing_lost(ran), _cpu(ran, floor), _rss(ran), _honest(steady),
            _headers(steady), _lanes(results)]


HONEST: Final = "no row above its ceiling (or a probe above its run's bound) by more than 5%"


def report_fails(verdicts: list[Verdict]) -> Verdict | None:
    """The verdict that fails the whole report: a row above its ceiling means the ceiling, and
    so every share in the report, is not a bound."""
    return next((v for v in verdicts if v.target == HONEST and v.passed is False), None)


def _lanes(results: list[Result]) -> Verdict:
    passed, detail = scaling_met(scaling_points(results))
    return Verdict(f"N identities >= {SHARE_OF_N:g} x N x one identity (user-bound)", passed,
                   detail)


HEADERS_TOLERANCE: Final = 0.95


def _headers(results: list[Result]) -> Verdict:
    target = "the governor with the real rate-limit headers is as fast as without them"
    without = {r.mode: r for r in results if r.name.endswith(f"-{NO_HEADERS}/{r.mode}")}
    pairs = [(r, without[r.mode]) for r in results if r.mode in without
             and r.name == without[r.mode].name.replace(f"-{NO_HEADERS}", "")]
    if not pairs:
        return Verdict(target, None, "not run")
    slow = [f"{w.mode} {r.steady_rate_per_s:.1f}/s with, {w.steady_rate_per_s:.1f}/s without"
            for r, w in pairs if r.steady_rate_per_s < HEADERS_TOLERANCE * w.steady_rate_per_s]
    return Verdict(target, not slow, "; ".join(slow) or ", ".join(
        f"{w.mode} {r.steady_rate_per_s:.1f}/s with, {w.steady_rate_per_s:.1f}/s without"
        for r, w in pairs))


def _best_mode(results: list[Result], scenario: str, instances: int) -> Verdict:
    target = f"{scenario} x{instances}: best mode >= 90% of ceiling, ahead of its best baseline"
    ours = [r for r in results if r.kind == "product" and r.scenario == scenario
            and r.name.endswith(f"product-x{instances}/{r.mode}")]
    if not ours:
        return Verdict(target, None, "not run")
    top = max(r.steady_rate_per_s for r in ours)
    best, rival = max(((r, _best_baseline(results, scenario, r.mode)) for r in ours
                       if r.steady_rate_per_s == top), key=_lead)
    share = best.steady_rate_per_s / best.overall_ceiling_per_s \
        if best.overall_ceiling_per_s > 0 else 0.0
    ahead = rival is None or best.steady_rate_per_s > rival.steady_rate_per_s \
        or _both_at_ceiling(best, rival)
    versus = (f"best baseline {rival.name} {rival.steady_rate_per_s:.1f}/s" if rival
              else "no baseline of that mode ran")
    return Verdict(target, share >= SHARE_OF_CEILING and ahead,
                   f"{best.mode} {best.steady_rate_per_s:.1f}/s = {share:.0%} of "
                   f"{best.overall_ceiling_per_s:.0f}/s; {versus}")


def _best_baseline(results: list[Result], scenario: str, mode: str) -> Result | None:
    rivals = [r for r in results if r.kind == "baseline" and r.scenario == scenario
              and r.mode == mode]
    return max(rivals, key=lambda r: r.steady_rate_per_s, default=None)


def _both_at_ceiling(ours: Result, rival: Result) -> bool:
    """Nobody is ahead of a rival that writes at the ceiling: a tie there passes."""
    ceiling = ours.overall_ceiling_per_s
    return ceiling > 0 and min(ours.steady_rate_per_s, rival.steady_rate_per_s) >= ceiling


def _lead(pair: tuple[Result, Result | None]) -> float:
    """How far a mode of ours is ahead of its best baseline: modes tied for the best rate are
    told apart by it (two modes at the enrichment API's limit are both the best mode)."""
    ours, rival = pair
    return ours.steady_rate_per_s - (rival.steady_rate_per_s if rival else 0.0)


def _nothing_lost(results: list[Result]) -> Verdict:
    ours = [r for r in results if r.kind in OURS]
    bad = [f"{r.name} lost {r.lost} failed {r.failed}" for r in ours if r.lost or r.failed]
    if not ours:
        return Verdict("0 lost, 0 failed in every run of ours", None, "not run")
    return Verdict("0 lost, 0 failed in every run of ours", not bad,
                   "; ".join(bad) or f"{len(ours)} runs, none lost or failed a record")


def _cpu(results: list[Result], floor: Floor | None) -> Verdict:
    target = f"<= {CPU_MS_PER_RECORD} ms CPU per record (hosts and planner)"
    beside = f" ({floor.note()})" if floor else ""
    ours = [r for r in results if r.kind in OURS and r.written]
    if not ours:
        return Verdict(target, None, f"not run{beside}")
    worst = max(ours, key=lambda r: r.cpu_ms_per_record)
    return Verdict(target, worst.cpu_ms_per_record <= CPU_MS_PER_RECORD,
                   f"worst {worst.name} {worst.cpu_ms_per_record:.3f} ms/record{beside}")


def _rss(results: list[Result]) -> Verdict:
    target = f"peak RSS within {RSS_GROWTH:.0%} from 10k to 1M records"
    growth = sorted((r for r in results if r.kind == "growth" and r.peak_rss_mib > 0),
                    key=lambda r: r.seeded)
    if len(growth) < 2:
        return Verdict(target, None, "fewer than two growth sizes ran")
    small, large = growth[0], growth[-1]
    change = large.peak_rss_mib / small.peak_rss_mib - 1
    partial = "" if large.seeded >= MILLION else " (1M not run: --million)"
    return Verdict(target, change <= RSS_GROWTH,
                   f"{small.peak_rss_mib:.0f} MiB at {small.seeded:,} -> "
                   f"{large.peak_rss_mib:.0f} MiB at {large.seeded:,} ({change:+.1%}){partial}")


def _honest(results: list[Result]) -> Verdict:
    """Every row with a steady rate against its ceiling over its steady window; the probes
    also against the bound for their run's length."""
    if not results:
        return Verdict(HONEST, None, "not run")
    over = [f"{r.name} {r.share_of_ceiling:.0%} of its ceiling" for r in results
            if r.share_of_ceiling > CEILING_TOLERANCE]
    over += [f"{r.name} {r.share_of_bound:.0%} of its run's bound" for r in results
             if r.kind == "probe" and r.share_of_bound > CEILING_TOLERANCE]
    highest = max(results, key=lambda r: r.share_of_ceiling)
    return Verdict(HONEST, not over, "; ".join(over) or
                   f"{len(results)} rows; highest {highest.name} "
                   f"{highest.share_of_ceiling:.0%} of its ceiling")
