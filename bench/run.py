"""Run the planned rows one after another, each on fresh emulators; print the table and the
targets; write the JSON, the Markdown and the plot."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from bench import machine
from bench.callcost import Floor
from bench.ceiling import Ceiling, ceiling_of, enrichment_ceiling
from bench.figures import Result
from bench.floor import FloorPlan, measure_floor
from bench.report import markdown, table_line, write_json, write_plot
from bench.runbaseline import LOG_DIR, get_json, run_baseline_row, start_emulators
from bench.runpeer import run_peer_row
from bench.runprobe import run_probe_row
from bench.runproduct import run_product_row
from bench.scenarios import RowSpec, Scale, Scenario
from bench.targets import Verdict, evaluate, report_fails
from sync.local.azurite import ROOT
from sync.local.processes import Children

RESULTS: Final = ROOT / "bench" / "results"
QUICK_RESULTS: Final = ROOT / ".local-run" / "bench-quick"
"""``--quick`` writes here, so a trial run never replaces the published results."""
Runner = Callable[[RowSpec, Scale, Ceiling], Result]
RUNNERS: Final[dict[str, Runner]] = {"baseline": run_baseline_row, "product": run_product_row,
                                     "nightly": run_product_row, "growth": run_product_row,
                                     "peer": run_peer_row, "probe": run_probe_row,
                                     "lanes": run_product_row}


@dataclass(frozen=True, slots=True)
class Plan:
    """What one bench run does."""

    rows: list[RowSpec]
    scale: Scale
    out: Path
    publish_plot: bool
    floor: FloorPlan | None = None
    """The HTTP client floor's plan (``bench/floor.py``), measured before the rows; None:
    not measured."""


def run_all(plan: Plan) -> int:
    """Every row, in order; the report at the end (and each row's line as it finishes)."""
    described = machine.describe()
    summary = machine.summary(described)
    print(f"Machine: {summary}; {len(plan.rows)} rows; window {plan.scale.window_s:g} s, "
          f"rows of about {plan.scale.run_s:g} s", flush=True)
    if plan.scale.run_s < plan.scale.window_s * 2:
        print("Rows this short end within the first window or soon after: the figures show "
              "that every row runs, not how fast (run without --quick for that).", flush=True)
    floor = measured_floor(plan.floor)
    ceilings: dict[str, Ceiling] = {}
    results: list[Result] = []
    for number, spec in enumerate(plan.rows, 1):
        scenario = spec.scenario
        if scenario.name not in ceilings:
            ceilings[scenario.name] = measure_ceiling(scenario, plan.scale)
        started_s = time.monotonic()
        results.append(RUNNERS[spec.kind](spec, plan.scale, ceilings[scenario.name]))
        print(f"[{number}/{len(plan.rows)} {time.monotonic() - started_s:.0f} s] "
              f"{table_line(results[-1])}", flush=True)
    verdicts = evaluate(results, floor)
    ceiling_data = {name: c.as_dict() for name, c in ceilings.items()}
    report = markdown(results, verdicts, summary, ceiling_data, floor)
    print(f"\n{report}")
    meta = {"machine": described, "scale": asdict(plan.scale), "ceilings": ceiling_data,
            "floor": floor.as_dict() if floor else None}
    _write(plan, results, report, meta, verdicts, summary)
    failing = report_fails(verdicts)
    if failing is not None:
        print(f"The report fails: {failing.detail}", flush=True)
        return 1
    return 0


def measured_floor(plan: FloorPlan | None) -> Floor | None:
    """The HTTP client floor, printed; None when not planned or when it could not run (the
    bench goes on without it and says why)."""
    if plan is None:
        return None
    started_s = time.monotonic()
    try:
        floor = measure_floor(plan, LOG_DIR)
    except (RuntimeError, OSError, subprocess.SubprocessError) as error:
        print(f"[floor] not measured: {error}", flush=True)
        return None
    print(f"[floor {time.monotonic() - started_s:.0f} s] {floor.line()}", flush=True)
    return floor


def _write(plan: Plan, results: list[Result], report: str, meta: dict[str, Any],
           verdicts: list[Verdict], summary: str) -> None:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    plan.out.mkdir(parents=True, exist_ok=True)
    base = plan.out / f"bench-{stamp}"
    write_json(base.with_suffix(".json"), results, verdicts, meta)
    base.with_suffix(".md").write_text(report)
    write_plot(results, base.with_suffix(".png"), summary)
    if plan.publish_plot:
        shutil.copyfile(base.with_suffix(".png"), plan.out / "bench.png")
    print(f"Report: {base}.md, {base}.json, {base}.png")


def measure_ceiling(scenario: Scenario, scale: Scale) -> Ceiling:
    """The scenario's ceiling, read from its emulators started with its settings."""
    children = Children(LOG_DIR)
    try:
        spec = RowSpec("ceiling", scenario, "bulk")
        emulators = start_emulators(children, spec, scale, records=0)
        stats = asyncio.run(get_json(f"{emulators.dataverse_url}/_emulator/stats"))
        enrichment = asyncio.run(get_json(f"{emulators.enrichment_url}/_emulator/stats"))
    finally:
        children.stop_all()
    return ceiling_of(stats, enrichment_ceiling(enrichment))

