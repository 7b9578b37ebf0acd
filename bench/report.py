"""The bench's report: a Markdown table (stdout and a file), the JSON, a plot of records/s."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

import matplotlib as mpl

from bench.callcost import Floor
from bench.figures import Result
from bench.scaling import scaling_lines, scaling_points
from bench.targets import Verdict

mpl.use("Agg")
import matplotlib.pyplot as plt

HEADER: Final = ("| row | records/s | % of ceiling | ceiling/s | written | lost/failed | "
                 "unfinished | 429s by facet | CPU ms/record | peak RSS MiB | "
                 "emulators+Azurite CPU s | planner s | note |")
RULE: Final = "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---|"
NO_STEADY_RATE: Final = "- (no whole window after the first)"
"""A row that ran out of records, or stopped, before its second window ended has no steady
rate."""
GROWTH_HEADER: Final = ("| growth row | records | time ms/record | CPU ms/record | "
                        "peak RSS MiB | planner s | planner us/record |")
GROWTH_RULE: Final = "|---|---:|---:|---:|---:|---:|---:|"


def table_line(result: Result) -> str:
    """One Markdown table line; a row that could not run says why."""
    if result.status:
        return (f"| {result.name} | - | - | {result.ceiling_per_s:.0f} | - | - | - | - | - | - | "
                f"- | - | {result.status} |")
    facets = ", ".join(f"{name} {count}" for name, count in result.facets.items()) or "0"
    beside = sum(result.beside_cpu_s.values())
    planner = f"{result.planner_s:.1f}" if result.planner_s is not None else "-"
    rate, share = ((f"{result.steady_rate_per_s:.1f}", f"{result.share_of_ceiling:.0%}")
                   if result.steady_windows else (NO_STEADY_RATE, "-"))
    return (f"| {result.name} | {rate} | {share} | {result.ceiling_per_s:.0f} | {result.written} | "
            f"{result.lost}/{result.failed} | {result.unfinished} | {facets} | "
            f"{result.cpu_ms_per_record:.3f} | {result.peak_rss_mib:.0f} | "
            f"{beside:.1f} | {planner} | {result.note} |")


def growth_line(result: Result) -> str:
    """Cost per record as the data grows: time, CPU, memory, the planner."""
    planner = result.planner_us_per_record
    return (f"| {result.name} | {result.written:,} | {result.time_ms_per_record:.3f} | "
            f"{result.cpu_ms_per_record:.3f} | {result.peak_rss_mib:.0f} | "
            f"{result.planner_s if result.planner_s is not None else '-'} | "
            f"{f'{planner:.1f}' if planner is not None else '-'} |")


def markdown(results: list[Result], verdicts: list[Verdict], machine: str,
             ceilings: dict[str, dict[str, Any]], floor: Floor | None = None) -> str:
    """The whole report as Markdown: machine, ceilings, table, the HTTP client floor (when
    measured), targets."""
    lines = [f"Machine: {machine}", "", "Ceilings (records/s, steady state after the first "
             "window):"]
    for scenario, ceiling in ceilings.items():
        modes = ", ".join(f"{mode} {rate:.0f}" for mode, rate in ceiling["mode_per_s"].items())
        lines.append(f"- {scenario}: {modes}; enrichment API {ceiling['enrichment_per_s']:.0f}"
                     f"; best {ceiling['overall_per_s']:.0f}")
    lines += ["", HEADER, RULE, *(table_line(r) for r in results)]
    growth = [r for r in results if r.kind == "growth" and not r.status]
    if growth:
        lines += ["", GROWTH_HEADER, GROWTH_RULE, *(growth_line(r) for r in growth)]
    scaling = scaling_lines(scaling_points(results))
    if scaling:
        lines += ["", *scaling]
    if floor is not None:
        lines += ["", f"{floor.line()} (`python -m bench.floor`)."]
    lines += ["", "Targets:", ""]
    lines += [f"- {verdict.line()}" for verdict in verdicts]
    return "\n".join(lines) + "\n"


def write_json(path: Path, results: list[Result], verdicts: list[Verdict],
               meta: dict[str, Any]) -> None:
    data = {**meta, "rows": [r.as_dict() for r in results],
            "targets": [{"target": v.target, "passed": v.passed, "detail": v.detail}
                        for v in verdicts]}
    path.write_text(json.dumps(data, indent=1))


def rate_series(timeline: list[tuple[float, int]], step: int = 4) -> list[tuple[float, float]]:
    """Records/s between every ``step``-th sample, for the plot."""
    return [(t1, (d1 - d0) / (t1 - t0)) for (t0, d0), (t1, d1) in
            zip(timeline[::step], timeline[step::step], strict=False) if t1 > t0]


def write_plot(results: list[Result], path: Path, machine: str) -> None:
    """Records/s over time per row, one panel per scenario, its best ceiling drawn."""
    scenarios = sorted({r.scenario for r in results if not r.status})
    figure, panels = plt.subplots(len(scenarios) or 1, 1, squeeze=False,
                                  figsize=(11, 4.5 * max(1, len(scenarios))))
    for axes, scenario in zip(panels[:, 0], scenarios, strict=False):
        rows = [r for r in results if r.scenario == scenario and not r.status]
        for row in rows:
            points = rate_series(row.timeline)
            if points:
                style = "-" if row.kind != "baseline" else ":"
                axes.plot([t for t, _ in points], [v for _, v in points], style,
                          label=row.name.split("/", 1)[-1])
        axes.axhline(max(r.overall_ceiling_per_s for r in rows), color="black",
                     linestyle="--", label="ceiling")
        axes.set_title(f"{scenario}: records enriched and written per second")
        axes.set_xlabel("seconds")
        axes.set_ylabel("records/s")
        axes.legend(loc="upper right", fontsize="x-small", ncol=2)
    figure.suptitle(machine, fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
