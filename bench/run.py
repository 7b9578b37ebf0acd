"""Run the planned rows one after another, each on fresh emulators; print the table and the
targets; write the JSON, the Markdown and the plot."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from bench import machine
from bench.ceiling import Ceiling, ceiling_of, enrichment_ceiling
from bench.figures import Result
from bench.report import markdown, table_line, write_json, write_plot
from bench.runbaseline import LOG_DIR, get_json, run_baseline_row, start_emulators
from bench.runpeer import run_peer_row
from bench.runprobe import run_probe_row
from bench.runproduct import run_product_row
from bench.scenarios import RowSpec, Scale, Scenario
from bench.targets import Verdict, evaluate
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


def run_all(plan: Plan) -> int:
    """Every row, in order; the report at the end (and each row's line as it finishes)."""
    described = machine.describe()
    summary = machine.summary(described)
    print(f"Machine: {summary}; {len(plan.rows)} rows; window {plan.scale.window_s:g} s, "
          f"rows of about {plan.scale.run_s:g} s", flush=True)
    if plan.scale.run_s < plan.scale.window_s * 2:
        print("Rows this short end within the first window or soon after: the figures show "
              "that every row runs, not how fast (run without --quick for that).", flush=True)
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
    verdicts = evaluate(results)
    ceiling_data = {name: c.as_dict() for name, c in ceilings.items()}
    report = markdown(results, verdicts, summary, ceiling_data)
    print(f"\n{report}")
    _write(plan, results, report, described, ceiling_data, verdicts, summary)
    return 0


def _write(plan: Plan, results: list[Result], report: str, described: dict[str, str | int],
           ceilings: dict[str, dict[str, Any]], verdicts: list[Verdict], summary: str) -> None:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    plan.out.mkdir(parents=True, exist_ok=True)
    base = plan.out / f"bench-{stamp}"
    meta = {"machine": described, "scale": asdict(plan.scale), "ceilings": ceilings}
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

