"""The bench's report: a Markdown table (stdout and a file), the JSON, the chart
(``bench/chart.py``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

from bench.callcost import Floor
from bench.chart import save_chart
from bench.figures import Result
from bench.scaling import scaling_lines, scaling_points
from bench.targets import Verdict, report_fails

HEADER: Final = ("| row | records/s | % of ceiling | ceiling/s | steady window s (samples) | "
                 "written | lost/failed | unfinished | 429s by facet | CPU ms/record | "
                 "peak RSS MiB | emulators+Azurite CPU s | planner s | note |")
RULE: Final = "|---|---:|---:|---:|---|---:|---:|---:|---|---:|---:|---:|---:|---|"
NO_STEADY_RATE: Final = "- (no whole window after the first)"
"""A row that ran out of records, or stopped, before its second window ended has no steady
rate."""
BESIDE_ROLES: Final = {"launcher": "launcher", "dataverse-emulator": "Dataverse emulator",
                       "enrichment-emulator": "enrichment emulator", "azurite": "Azurite"}
"""The processes beside the hosts whose peak RSS a growth row shows (``bench.proctree``
roles), in column order."""
GROWTH_HEADER: Final = ("| growth row | records | time ms/record | CPU ms/record | "
                        "peak RSS MiB | planner s | planner us/record | " +
                        " | ".join(f"{name} peak RSS MiB" for name in BESIDE_ROLES.values()) +
                        " |")
GROWTH_RULE: Final = "|---|" + "---:|" * (6 + len(BESIDE_ROLES))


def table_line(result: Result) -> str:
    """One Markdown table line; a row that could not run says why."""
    if result.status:
        return (f"| {result.name} | - | - | {result.ceiling_per_s:.0f} | - | - | - | - | - | - | "
                f"- | - | - | {result.status} |")
    facets = ", ".join(f"{name} {count}" for name, count in result.facets.items()) or "0"
    beside = sum(result.beside_cpu_s.values())
    planner = f"{result.planner_s:.1f}" if result.planner_s is not None else "-"
    span = result.steady_span
    rate, share, window = ((f"{result.steady_rate_per_s:.1f}", f"{result.share_of_ceiling:.0%}",
                            f"{span.start_s:.1f}..{span.end_s:.1f} ({span.samples})")
                           if span else (NO_STEADY_RATE, "-", "-"))
    return (f"| {result.name} | {rate} | {share} | {result.span_ceiling_per_s:.0f} | {window} | "
            f"{result.written} | {result.lost}/{result.failed} | {result.unfinished} | {facets} | "
            f"{result.cpu_ms_per_record:.3f} | {result.peak_rss_mib:.0f} | "
            f"{beside:.1f} | {planner} | {result.note} |")


def growth_line(result: Result) -> str:
    """Cost per record as the data grows: time, CPU, the hosts' memory, the planner; and the
    peak memory of what runs beside them: the launcher (``python -m sync local``, which
    watches and verifies), the Dataverse emulator (it holds the records), the enrichment
    emulator and Azurite."""
    planner = result.planner_us_per_record
    beside = result.beside_peak_rss_mib
    memory = " | ".join(f"{beside[role]:.0f}" if role in beside else "-"
                        for role in BESIDE_ROLES)
    return (f"| {result.name} | {result.written:,} | {result.time_ms_per_record:.3f} | "
            f"{result.cpu_ms_per_record:.3f} | {result.peak_rss_mib:.0f} | "
            f"{result.planner_s if result.planner_s is not None else '-'} | "
            f"{f'{planner:.1f}' if planner is not None else '-'} | {memory} |")


def markdown(results: list[Result], verdicts: list[Verdict], machine: str,
             ceilings: dict[str, dict[str, Any]], floor: Floor | None = None) -> str:
    """The whole report as Markdown: machine, ceilings, table, the HTTP client floor (when
    measured), targets."""
    failed = report_fails(verdicts)
    verdict = [f"**This report fails**: {failed.detail} (a ceiling that is not a bound makes "
               "every share in it wrong).", ""] if failed else []
    lines = [*verdict, f"Machine: {machine}", "", "Ceilings (records/s over any whole window; "
             "a row's own ceiling adds the enrichment API's burst over its steady window):"]
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


def write_plot(results: list[Result], path: Path, machine: str) -> None:
    """The chart of the rows (``bench/chart.py``) as a PNG at ``path``."""
    save_chart(results, path, machine)
