"""A probe row: the greedy or the oracle client (bench/probe.py, in its own process) against a
fresh Dataverse emulator of the scenario. The figures are the emulator's: records updated, the
run's length from its first request to its last and the most a run that long can have had
accepted (``run.bound_records``, the first window's burst included), 429s by code.

In the enrichment-bound scenario (mode ``calls``) the probe is bench/enrichprobe.py against a
fresh enrichment emulator: calls served, its run from the first call to the last admitted one,
and its bound ``burst + rate x T`` (``run.bound_calls``), against the enrichment API's ceiling.

The row holds the emulator's ceiling to its word: neither client may exceed the steady ceiling,
nor the run's bound, by more than 5% (bench/targets.py reports it)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Final

from bench.ceiling import Ceiling
from bench.figures import Result
from bench.runbaseline import LOG_DIR, URL_WAIT_S, get_json, wait_bounded
from bench.scenarios import ENRICHMENT_CALLS, RowSpec, Scale
from sync.local.azurite import ROOT
from sync.local.processes import Children
from sync.local.stack import local_token

TIMEOUT_MARGIN_S: Final = 30.0


def run_probe_row(spec: RowSpec, scale: Scale, ceiling: Ceiling) -> Result:
    if spec.mode == ENRICHMENT_CALLS:
        return run_enrichment_probe_row(spec, scale, ceiling)
    children = Children(LOG_DIR)
    try:
        _, url = children.start(
            "probe-dataverse", ["emulator", "dataverse", "--records", str(spec.records),
                                *spec.scenario.emulator_args(scale.time_scale)],
            wait_for_url_s=URL_WAIT_S)
        tally = _run(spec, scale, url)
        stats = asyncio.run(get_json(f"{url}/_emulator/stats"))
    finally:
        children.stop_all()
    return probe_result(spec, scale, ceiling, tally, stats)


def _run(spec: RowSpec, scale: Scale, url: str) -> dict[str, Any]:
    return _run_client(scale, ["bench.probe", spec.pattern, spec.mode, "--scenario",
                               spec.scenario.name, "--time-scale", repr(scale.time_scale),
                               "--dataverse-url", url, "--token", local_token()])


def _run_client(scale: Scale, module_args: list[str]) -> dict[str, Any]:
    """``python -m <module_args>`` with the probe's bounds and a JSON file to fill; its tally
    with its CPU and peak RSS."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "probe.json"
        args = [sys.executable, "-m", *module_args, "--json-out", str(out),
                "--seconds", f"{scale.probe_run_s:g}", "--max-sends", str(scale.probe_max_sends)]
        process = subprocess.Popen(args, cwd=ROOT, env=dict(os.environ))
        cpu_s, rss_mib = wait_bounded(process, scale.probe_run_s + TIMEOUT_MARGIN_S)
        tally: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    return {**tally, "cpu_s": cpu_s, "peak_rss_mib": rss_mib}


def probe_result(spec: RowSpec, scale: Scale, ceiling: Ceiling, tally: dict[str, Any],
                 stats: dict[str, Any]) -> Result:
    """The row from the emulator's stats and the probe's timeline; its ceiling is Dataverse's
    alone (a probe does not call the enrichment API)."""
    result = Result(name=spec.name, kind=spec.kind, scenario=spec.scenario.name,
                    mode=spec.mode, note=spec.note, seeded=spec.records,
                    window_s=scale.window_s, ceiling_per_s=ceiling.dataverse_per_s[spec.mode],
                    overall_ceiling_per_s=ceiling.overall_per_s)
    if "timeline" not in tally:
        result.status = "the probe wrote no figures"
        return result
    result.written = int(stats["records"]["updated"])
    result.timeline = [(float(t), int(n)) for t, n in tally["timeline"]]
    result.elapsed_s = float(stats["run"]["elapsed_s"])
    result.bound_records = float(stats["run"]["bound_records"][spec.mode])
    result.throttled_by_code = {k: int(v) for k, v in stats["throttled_by_code"].items()}
    result.cpu_s, result.peak_rss_mib = float(tally["cpu_s"]), float(tally["peak_rss_mib"])
    result.note = (f"{result.note}; {result.written} accepted in {result.elapsed_s:.1f} s, "
                   f"{result.share_of_bound:.0%} of the run's bound "
                   f"{result.bound_records:.0f}")
    return result


def run_enrichment_probe_row(spec: RowSpec, scale: Scale, ceiling: Ceiling) -> Result:
    """The probe against a fresh enrichment emulator of the scenario."""
    children = Children(LOG_DIR)
    try:
        _, url = children.start("probe-enrichment",
                                ["emulator", "enrichment", *spec.scenario.enrichment_args()],
                                wait_for_url_s=URL_WAIT_S)
        tally = _run_client(scale, ["bench.enrichprobe", spec.pattern, "--scenario",
                                    spec.scenario.name, "--enrichment-url", url])
        stats = asyncio.run(get_json(f"{url}/_emulator/stats"))
    finally:
        children.stop_all()
    return enrichment_probe_result(spec, scale, ceiling, tally, stats)


def enrichment_probe_result(spec: RowSpec, scale: Scale, ceiling: Ceiling,
                            tally: dict[str, Any], stats: dict[str, Any]) -> Result:
    """The row from the enrichment emulator's stats and the probe's timeline: a call served is
    a record; its ceiling is the enrichment API's rate."""
    result = Result(name=spec.name, kind=spec.kind, scenario=spec.scenario.name,
                    mode=spec.mode, note=spec.note, window_s=scale.window_s,
                    ceiling_per_s=ceiling.enrichment_per_s,
                    overall_ceiling_per_s=ceiling.overall_per_s)
    if "timeline" not in tally:
        result.status = "the probe wrote no figures"
        return result
    result.written = int(stats["served"])
    result.timeline = [(float(t), int(n)) for t, n in tally["timeline"]]
    result.elapsed_s = float(stats["run"]["elapsed_s"])
    result.bound_records = float(stats["run"]["bound_calls"])
    throttled = int(stats.get("429", 0))
    result.throttled_by_code = {"enrichment-429": throttled} if throttled else {}
    result.cpu_s, result.peak_rss_mib = float(tally["cpu_s"]), float(tally["peak_rss_mib"])
    result.note = (f"{result.note}; {result.written} served in {result.elapsed_s:.1f} s, "
                   f"{result.share_of_bound:.0%} of the run's bound "
                   f"{result.bound_records:.0f} (burst + rate x T)")
    return result
