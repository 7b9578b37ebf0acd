"""A baseline row: fresh emulators, the loop in 1 or 3 processes (each its own share of the
records), their tallies added up. The loops run as ``python -m bench baseline`` so each process's
CPU and memory are its own."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bench.ceiling import Ceiling
from bench.figures import Result
from bench.proctree import TreeSampler
from bench.scenarios import RowSpec, Scale
from sync.config.table_definition import DEFAULT_DEFINITION
from sync.local.azurite import ROOT
from sync.local.emulators.enrichment import EnrichmentConfig
from sync.local.processes import Children
from sync.local.stack import local_token

LOG_DIR = ROOT / ".local-run" / "bench"
URL_WAIT_S = 60.0
WAIT_POLL_S = 0.2


@dataclass(frozen=True, slots=True)
class Emulators:
    """The two emulators a row runs against."""

    dataverse_url: str
    enrichment_url: str
    dataverse_log: Path


def start_emulators(children: Children, spec: RowSpec, scale: Scale, records: int,
                    extra_dataverse_args: tuple[str, ...] = ()) -> Emulators:
    scenario = spec.scenario
    dataverse_child, dataverse = children.start(
        f"{spec.kind}-dataverse", ["emulator", "dataverse", "--records", str(records),
                                   *scenario.emulator_args(scale.time_scale),
                                   *extra_dataverse_args], wait_for_url_s=URL_WAIT_S)
    _, enrichment = children.start(f"{spec.kind}-enrichment",
                                   ["emulator", "enrichment", *scenario.enrichment_args()],
                                   wait_for_url_s=URL_WAIT_S)
    return Emulators(dataverse, enrichment, dataverse_child.log_path)


async def get_json(url: str) -> Any:
    """A local emulator's admin answer (its certificate, if any, is not checked)."""
    async with aiohttp.ClientSession() as session, session.get(url, ssl=False) as answer:
        return await answer.json()


def wait_bounded(process: subprocess.Popen[bytes], timeout_s: float) -> tuple[float, float]:
    """Wait for ``process`` (killed after ``timeout_s``); answers its CPU s and peak RSS MiB."""
    deadline_s = time.monotonic() + timeout_s
    while True:
        pid, _, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            process.returncode = 0
            return usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024
        if time.monotonic() > deadline_s:
            process.kill()
        time.sleep(WAIT_POLL_S)


def merge_timelines(timelines: list[list[tuple[float, int]]]) -> list[tuple[float, int]]:
    """(seconds, done) samples of processes run side by side, added up: at each sample time,
    each process's latest count at or before it."""
    times = sorted({t for timeline in timelines for t, _ in timeline})
    merged = []
    for t in times:
        merged.append((t, sum(_at(timeline, t) for timeline in timelines)))
    return merged


def _at(timeline: list[tuple[float, int]], t: float) -> int:
    done = 0
    for sample_t, sample_done in timeline:
        if sample_t > t:
            break
        done = sample_done
    return done


def run_baseline_row(spec: RowSpec, scale: Scale, ceiling: Ceiling) -> Result:
    records = spec.records or scale.records_for(ceiling.mode_per_s(spec.mode))
    children = Children(LOG_DIR)
    try:
        emulators = start_emulators(children, spec, scale, records)
        with TreeSampler(os.getpid()) as sampler:
            tallies, cpu_s, rss_mib, elapsed_s = _processes(spec, scale, emulators)
        stats = asyncio.run(get_json(f"{emulators.dataverse_url}/_emulator/stats"))
    finally:
        children.stop_all()
    result = baseline_result(spec, scale, ceiling, records, tallies, stats, cpu_s, rss_mib,
                             elapsed_s)
    result.beside_cpu_s = emulator_cpu_s(sampler)
    return result


def emulator_cpu_s(sampler: TreeSampler) -> dict[str, float]:
    """The emulators' CPU while the row ran (their start-up included)."""
    return {role: cpu_s for role, cpu_s in sampler.cpu_by_role().items()
            if role.endswith("-emulator")}


def baseline_result(spec: RowSpec, scale: Scale, ceiling: Ceiling, records: int,
                    tallies: list[dict[str, Any]], stats: dict[str, Any], cpu_s: float,
                    rss_mib: float, elapsed_s: float) -> Result:
    throttled: dict[str, int] = {}
    for tally in tallies:
        for code, count in tally.get("throttled_by_code", {}).items():
            throttled[code] = throttled.get(code, 0) + int(count)
    written = sum(int(t.get("written", 0)) for t in tallies)
    failed = sum(int(t.get("failed", 0)) for t in tallies)
    timeline = merge_timelines([[(float(a), int(b)) for a, b in t.get("timeline", [])]
                                for t in tallies])
    return Result(name=spec.name, kind=spec.kind, scenario=spec.scenario.name, mode=spec.mode,
                  note=spec.note, seeded=records, written=written, failed=failed,
                  lost=int(stats.get("records", {}).get("created", 0)),
                  unfinished=max(0, records - written - failed),
                  elapsed_s=timeline[-1][0] if timeline else elapsed_s,
                  window_s=scale.window_s, timeline=timeline, throttled_by_code=throttled,
                  cpu_s=cpu_s, peak_rss_mib=rss_mib, ceiling_per_s=ceiling.mode_per_s(spec.mode),
                  overall_ceiling_per_s=ceiling.overall_per_s,
                  status="" if len(tallies) == spec.processes else "a loop process failed")


def _processes(spec: RowSpec, scale: Scale, emulators: Emulators
               ) -> tuple[list[dict[str, Any]], float, float, float]:
    """Run the loop's processes side by side; their tallies, CPU s, largest peak RSS, wall s."""
    with tempfile.TemporaryDirectory() as folder:
        outs = [Path(folder) / f"tally-{n}.json" for n in range(spec.processes)]
        started_s = time.monotonic()
        token = local_token()  # one application user for every process, as in a deployment
        running = [subprocess.Popen(_loop_args(spec, scale, emulators, n, out, token), cwd=ROOT)
                   for n, out in enumerate(outs)]
        cpu_s, rss_mib, tallies = 0.0, 0.0, []
        for process, out in zip(running, outs, strict=True):
            _, status, usage = os.wait4(process.pid, 0)
            cpu_s += usage.ru_utime + usage.ru_stime
            rss_mib = max(rss_mib, usage.ru_maxrss / 1024)
            if status == 0 and out.exists():
                tallies.append(json.loads(out.read_text()))
        return tallies, cpu_s, rss_mib, time.monotonic() - started_s


def _loop_args(spec: RowSpec, scale: Scale, emulators: Emulators, number: int,
               out: Path, token: str) -> list[str]:
    return [sys.executable, "-m", "bench", "baseline", spec.pattern, spec.mode,
            "--dataverse-url", emulators.dataverse_url,
            "--enrichment-url", emulators.enrichment_url, "--token", token,
            "--api-key", EnrichmentConfig().api_key, "--json-out", str(out),
            "--seconds", f"{scale.timed_run_s:g}", "--grace-s", f"{scale.grace_s:g}",
            "--share", f"{number}/{spec.processes}",
            "--mapping", json.dumps(DEFAULT_DEFINITION["mapping"])]
