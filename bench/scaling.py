"""The lanes scaling row: the product with N identities in one environment bound by each user's
request facet, its steady records/s against N times one identity's, each lane's 429s, and the
machine's CPU headroom while it ran. Pure: the figures come from the rows' ``Result``s."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from bench.figures import Result

LANE_ROUNDS: Final = 5
"""A lanes row seeds this many windows' budget over every lane: a client at the request facet
writes a window's budget in a burst, then waits for the window to free it, so the rate is
measured over whole rounds (the four after the first)."""
SHARE_OF_N: Final = 0.90
"""Issue 13's target: N identities reach >= 0.9 x N x one identity's throughput."""
HEADER: Final = ("| identities | records/s (rounds after the first) | N x one identity | ratio | "
                 "429s by lane and facet | CPU headroom |")
RULE: Final = "|---:|---:|---:|---:|---|---:|"


@dataclass(frozen=True, slots=True)
class ScalingPoint:
    """One N of the scaling row."""

    identities: int
    rate_per_s: float
    expected_per_s: float
    """N times the one-identity row's rate (0.0 when that row has no steady rate)."""
    throttled_by_lane: dict[str, dict[str, int]]
    cpu_headroom: float | None

    @property
    def ratio(self) -> float | None:
        """Rate over N x one identity's; None without a one-identity rate."""
        return self.rate_per_s / self.expected_per_s if self.expected_per_s > 0 else None


def lane_throttles(result: Result) -> dict[str, dict[str, int]]:
    """Each lane's 429s by facet (``environment/identity``); one lane: the row's own."""
    if not result.lanes:
        return {"default/default": result.facets}
    return {f"{lane['environment']}/{lane['identity']}":
            {str(k): int(v) for k, v in dict(lane.get("throttled_by_facet", {})).items()}
            for lane in result.lanes}


def rounds_rate_per_s(timeline: list[tuple[float, int]], first_round: int,
                      total: int) -> float:
    """Records/s over the whole rounds after the first: from the first sample by which the
    first round (``first_round`` records: one window's budget of every lane) was written to the
    first by which all ``total`` were; 0.0 when that span is empty. Bursts one window apart
    make any shorter or misaligned span over- or understate the rate."""
    start = next(((t, n) for t, n in timeline if n >= first_round), None)
    end = next(((t, n) for t, n in timeline if n >= total), None)
    if start is None or end is None or end[0] <= start[0]:
        return 0.0
    return (end[1] - start[1]) / (end[0] - start[0])


def row_rate_per_s(result: Result) -> float:
    """A lanes row's rate over its whole rounds after the first."""
    first_round = round(result.ceiling_per_s * result.window_s)
    return rounds_rate_per_s(result.timeline, first_round, result.written)


def scaling_points(results: list[Result]) -> list[ScalingPoint]:
    """The lanes rows that have a rate over whole rounds, by identities, each against N x one
    identity's."""
    rows = sorted((r for r in results if r.kind == "lanes" and not r.status
                   and row_rate_per_s(r) > 0), key=lambda r: r.identities)
    one = next((row_rate_per_s(r) for r in rows if r.identities == 1), 0.0)
    return [ScalingPoint(r.identities, row_rate_per_s(r), r.identities * one,
                         lane_throttles(r), r.cpu_headroom) for r in rows]


def scaling_line(point: ScalingPoint) -> str:
    """One Markdown table line."""
    ratio = f"{point.ratio:.2f}" if point.ratio is not None else "-"
    throttles = "; ".join(
        f"{lane} " + (", ".join(f"{facet} {n}" for facet, n in sorted(facets.items())) or "0")
        for lane, facets in sorted(point.throttled_by_lane.items()))
    headroom = f"{point.cpu_headroom:.0%}" if point.cpu_headroom is not None else "-"
    return (f"| {point.identities} | {point.rate_per_s:.1f} | {point.expected_per_s:.1f} | "
            f"{ratio} | {throttles} | {headroom} |")


def scaling_lines(points: list[ScalingPoint]) -> list[str]:
    """The scaling table, or nothing when no lanes row ran."""
    if not points:
        return []
    return ["Lanes scaling (user-bound: N identities in one environment, single writes):", "",
            HEADER, RULE, *(scaling_line(p) for p in points)]


def scaling_met(points: list[ScalingPoint]) -> tuple[bool | None, str]:
    """Whether every N > 1 reached ``SHARE_OF_N`` of N x one identity (None: not measured),
    and the figures that say so."""
    measured = [p for p in points if p.identities > 1 and p.ratio is not None]
    if not measured:
        return None, "not run (make bench ARGS=--lanes)"
    detail = ", ".join(f"x{p.identities} {p.rate_per_s:.1f}/s = {p.ratio:.2f} of "
                       f"{p.expected_per_s:.1f}/s" for p in measured)
    return all(p.ratio is not None and p.ratio >= SHARE_OF_N for p in measured), detail
