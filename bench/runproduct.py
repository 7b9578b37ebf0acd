"""A row of ours: ``python -m sync local --json-out`` in one write mode with K host instances,
the emulators and Azurite sampled beside it."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from bench import machine
from bench.ceiling import Ceiling
from bench.figures import Result, from_first_write
from bench.proctree import TreeSampler
from bench.scaling import LANE_ROUNDS
from bench.scenarios import (
    DEFINITION_OVERRIDES,
    ENRICHED_SHARE,
    NO_HEADERS,
    RowSpec,
    Scale,
    shape_of,
)
from sync.config.settings import SETTINGS
from sync.local.azurite import ROOT

PLANNER_LOG: Final = ROOT / ".local-run" / "host-0.log"
"""The host that fires the timer, so runs the planner (``python -m sync local`` writes it)."""
_STAMP: Final = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")
PLAN_DONE: Final = "sync.plan.planner: plan "
BESIDE: Final = ("dataverse-emulator", "enrichment-emulator", "azurite")
BESIDE_MEMORY: Final = ("launcher", *BESIDE)
"""Roles whose peak RSS a product row reports: ``python -m sync local`` itself (it watches
and verifies), the emulators and Azurite."""


def planner_seconds(lines: list[str]) -> float | None:
    """Wall seconds from the planning host's first log line to the planner's "plan ... records
    in ... batches" line; None when the log does not show both."""
    stamps = [(m.group(1), line) for line in lines if (m := _STAMP.match(line))]
    done = [stamp for stamp, line in stamps if PLAN_DONE in line and " records in " in line]
    if not stamps or not done:
        return None
    return (_parse(done[-1]) - _parse(stamps[0][0])).total_seconds()


def _parse(stamp: str) -> datetime:
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f")


def held_records(processes: int) -> int:
    """The records the product's hosts hold at once: host.json's ``batchSize`` messages of
    ``SYNC_BATCH_SIZE`` records (its default) per host. Once fewer than these are left a run
    drains, and its steady span ends (``bench.figures.supplied_until_s``)."""
    queues = json.loads((ROOT / "host.json").read_text())["extensions"]["queues"]
    batch_size = next(int(spec.default or 0) for spec in SETTINGS
                      if spec.name == "SYNC_BATCH_SIZE")
    return int(queues["batchSize"]) * batch_size * processes


def drain_records(processes: int, rate_per_s: float, window_s: float) -> int:
    """The records left when a row starts to drain: what its hosts hold at once, or one
    window's worth at its ceiling when that is fewer. A slow mode (single writes at 40/s) holds
    minutes of work in its hosts' messages, and a message sends all its records under the
    governor, so a few messages keep every request slot busy: its steady span runs on to the
    last window instead of ending minutes earlier. Ending later can only bring a slower tail
    into the span, never a faster one, so the rate stays a lower bound."""
    return min(held_records(processes), math.ceil(rate_per_s * window_s))


def run_product_row(spec: RowSpec, scale: Scale, ceiling: Ceiling) -> Result:
    rate_per_s = min(ceiling.mode_per_s(spec.mode) * spec.identities, ceiling.enrichment_per_s)
    drain = drain_records(spec.processes, rate_per_s, scale.window_s)
    records = spec.records or (round(rate_per_s * scale.window_s) * LANE_ROUNDS
                               if spec.kind == "lanes" else scale.records_for(rate_per_s) + drain)
    scenario = spec.scenario
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "run.json"
        args = [sys.executable, "-m", "sync", "local", "--records", str(records),
                "--instances", str(spec.processes), "--json-out", str(out),
                *(["--identities", str(spec.identities)] if spec.identities > 1 else []),
                "--timeout-s", f"{scale.product_timeout_s(records, rate_per_s):g}",
                *[f"--emulator-arg={arg}" for arg in scenario.emulator_args(scale.time_scale)],
                *[f"--enrichment-arg={arg}" for arg in scenario.enrichment_args()],
                *(["--emulator-arg=--ratelimit-headers=0"] if spec.pattern == NO_HEADERS
                  else []),
                *([f"--emulator-arg=--enriched-share={ENRICHED_SHARE[spec.pattern]:g}"]
                  if spec.pattern in ENRICHED_SHARE else []),
                *(["--enrichment-shape", shape] if (shape := shape_of(spec.pattern)) else [])]
        env = {**os.environ, "SYNC_WRITE_MODE": spec.mode}
        if spec.pattern in DEFINITION_OVERRIDES:
            env["SYNC_DEFINITION"] = DEFINITION_OVERRIDES[spec.pattern]
        before = machine.cpu_times()
        process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
        with TreeSampler(process.pid) as sampler:
            process.wait()
        headroom = machine.idle_share(before, machine.cpu_times())
        data = json.loads(out.read_text()) if out.exists() else {}
    beside = {role: cpu_s for role, cpu_s in sampler.cpu_by_role().items() if role in BESIDE}
    result = product_result(spec, scale, ceiling, records, data, beside, _planner_s())
    result.cpu_headroom = headroom
    result.beside_peak_rss_mib = {role: mib for role, mib in sampler.peak_rss_by_role().items()
                                  if role in BESIDE_MEMORY}
    result.drain_records = 0 if spec.records or spec.kind == "lanes" else drain
    return result


def _planner_s() -> float | None:
    try:
        return planner_seconds(PLANNER_LOG.read_text().splitlines())
    except OSError:
        return None


def product_result(spec: RowSpec, scale: Scale, ceiling: Ceiling, records: int,
                   data: dict[str, Any], beside_cpu_s: dict[str, float],
                   planner_s: float | None) -> Result:
    """The row from ``--json-out``'s figures: lost is what was neither written nor failed
    (dead-lettered) when the run ended, plus any record a write created."""
    if not data:
        return Result(spec.name, spec.kind, spec.scenario.name, spec.mode, note=spec.note,
                      seeded=records, status="the run wrote no figures (see .local-run/)")
    written, failed = int(data["written"]), int(data["dead_lettered"])
    unchanged = int(data.get("unchanged", 0))
    check = data.get("verification") or {}
    unaccounted = int(check.get("unaccounted_count", len(check.get("unaccounted", []))))
    lost = (unaccounted if data.get("finished")
            else max(0, records - written - unchanged - failed)) + int(check.get("created", 0))
    hosts = data.get("hosts", [])
    return Result(name=spec.name, kind=spec.kind, scenario=spec.scenario.name, mode=spec.mode,
                  note=spec.note, seeded=records, written=written, failed=failed, lost=lost,
                  unchanged=unchanged,
                  requests=int((data.get("requests") or {}).get("total", 0)),
                  elapsed_s=float(data["elapsed_s"]), window_s=scale.window_s,
                  timeline=row_timeline(data),
                  throttled_by_code={k: int(v) for k, v in
                                     data.get("throttled_by_code", {}).items()},
                  cpu_s=sum(float(h["cpu_s"]) for h in hosts),
                  peak_rss_mib=max((float(h["peak_rss_mib"]) for h in hosts), default=0.0),
                  beside_cpu_s=beside_cpu_s,
                  ceiling_per_s=min(ceiling.mode_per_s(spec.mode) * spec.identities,
                                    ceiling.enrichment_per_s),
                  overall_ceiling_per_s=ceiling.overall_per_s, planner_s=planner_s,
                  identities=spec.identities, lanes=list(data.get("lanes", [])))


def row_timeline(data: dict[str, Any]) -> list[tuple[float, int]]:
    """The row's (seconds, records done): the emulators' own count of writes as they land
    (``service_timeline``), from the first write on, when the run has one; else the ledger's,
    which moves only as whole messages finish (a message of 100 records that waits on a slow
    enrichment API moves it by 100 at once)."""
    service = [(float(t), int(n)) for t, n in data.get("service_timeline", [])]
    if service:
        return from_first_write(service)
    return [(float(t), int(n)) for t, n in data.get("timeline", [])]
