"""Run every strategy on fresh emulators with the same limits and data; table, JSON, plot."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import aiohttp

from bench.report import Row, print_table, write_plot
from sync.definition import DEFAULT_DEFINITION
from sync.local.azurite import ROOT
from sync.local.emulators.enrichment import EnrichmentConfig
from sync.local.processes import Children
from sync.local.stack import local_token

BASELINES: Final = ("sequential", "fixed-parallel", "dop-hint")
MODES: Final = ("single", "batch", "bulk")


@dataclass(frozen=True)
class BenchConfig:
    """The environment every strategy faces."""

    window_s: float = 30.0
    run_s: float = 60.0
    servers: int = 2
    dop_hint: int = 10
    enrichment_rate_per_s: float = 400.0
    out: Path = ROOT / "bench" / "results"
    only: tuple[str, ...] = field(default=())

    def emulator_args(self, records: int) -> list[str]:
        return ["--records", str(records), "--servers", str(self.servers),
                "--window-s", f"{self.window_s:g}", "--dop-hint", str(self.dop_hint)]

    def enrichment_args(self) -> list[str]:
        return ["--rate-per-s", f"{self.enrichment_rate_per_s:g}",
                "--burst", str(int(self.enrichment_rate_per_s))]

    def wanted(self, name: str) -> bool:
        return not self.only or name in self.only


def run_all(config: BenchConfig) -> int:
    """Every strategy, one after another, each on fresh emulators."""
    ceiling = _ceiling(config)
    print(f"Emulator ceiling (records/s): {json.dumps(ceiling)}", flush=True)
    rows: list[Row] = []
    for name in BASELINES:
        if config.wanted(name):
            rows.append(_baseline(config, name, ceiling))
            rows[-1].window_s = config.window_s
            print(rows[-1].line(), flush=True)
    for instances in (1, 3):
        for mode in MODES:
            name = f"product-{mode}-x{instances}"
            if config.wanted(name):
                rows.append(_product(config, mode, instances, ceiling))
                rows[-1].window_s = config.window_s
                print(rows[-1].line(), flush=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    config.out.mkdir(parents=True, exist_ok=True)
    (config.out / f"bench-{stamp}.json").write_text(json.dumps(
        {"config": {k: str(v) for k, v in config.__dict__.items()}, "ceiling": ceiling,
         "rows": [row.as_dict() for row in rows]}, indent=1))
    write_plot(rows, ceiling, config.out / "bench.png")
    print_table(rows, ceiling)
    print(f"\nJSON and plot in {config.out}")
    return 0


def _ceiling(config: BenchConfig) -> dict[str, float]:
    children = Children(ROOT / ".local-run" / "bench")
    try:
        _, url = children.start("ceiling", ["emulator", "dataverse",
                                             *config.emulator_args(0)], wait_for_url_s=60)
        stats = asyncio.run(_stats(url))
    finally:
        children.stop_all()
    found = stats["ceiling"]
    ceiling = {mode: float(found[mode]) for mode in MODES}
    ceiling["dataverse"] = max(ceiling.values())
    ceiling["enrichment"] = config.enrichment_rate_per_s
    ceiling["overall"] = max(min(ceiling[mode], config.enrichment_rate_per_s) for mode in MODES)
    return ceiling


async def _stats(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(
            f"{url}/_emulator/stats") as answer:
        stats: dict[str, Any] = await answer.json()
    return stats


def _records_for(config: BenchConfig, rate_per_s: float) -> int:
    return max(200, int(rate_per_s * config.run_s))


def _baseline(config: BenchConfig, name: str, ceiling: dict[str, float]) -> Row:
    records = _records_for(config, min(ceiling["single"], config.enrichment_rate_per_s))
    children = Children(ROOT / ".local-run" / "bench")
    try:
        _, dataverse = children.start(f"{name}-dataverse", ["emulator", "dataverse",
                                                            *config.emulator_args(records)],
                                      wait_for_url_s=60)
        _, enrichment = children.start(f"{name}-enrichment",
                                       ["emulator", "enrichment", *config.enrichment_args()],
                                       wait_for_url_s=60)
        with tempfile.TemporaryDirectory() as folder:
            out = Path(folder) / "tally.json"
            args = [sys.executable, "-m", "bench", "baseline", name, "--dataverse-url", dataverse,
                    "--enrichment-url", enrichment, "--token", local_token(),
                    "--api-key", EnrichmentConfig().api_key, "--json-out", str(out),
                    "--seconds", f"{config.run_s:g}",
                    "--mapping", json.dumps(DEFAULT_DEFINITION["mapping"])]
            started_s = time.monotonic()
            process = subprocess.Popen(args, cwd=ROOT)
            _, status, usage = os.wait4(process.pid, 0)
            elapsed_s = time.monotonic() - started_s
            tally = json.loads(out.read_text()) if status == 0 else {}
        stats = asyncio.run(_stats(dataverse))
    finally:
        children.stop_all()
    return Row.from_baseline(name, tally, stats, elapsed_s, usage.ru_utime + usage.ru_stime,
                             usage.ru_maxrss / 1024, ceiling["single"], ceiling["overall"])


def _product(config: BenchConfig, mode: str, instances: int, ceiling: dict[str, float]) -> Row:
    rate_per_s = min(ceiling[mode], config.enrichment_rate_per_s)
    records = _records_for(config, rate_per_s)
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "run.json"
        args = [sys.executable, "-m", "sync", "local", "--records", str(records),
                "--instances", str(instances), "--json-out", str(out),
                "--timeout-s", f"{config.run_s * 4:g}",
                *[f"--emulator-arg={arg}" for arg in config.emulator_args(records)[2:]],
                *[f"--enrichment-arg={arg}" for arg in config.enrichment_args()]]
        env = {**os.environ, "SYNC_WRITE_MODE": mode}
        subprocess.run(args, cwd=ROOT, env=env, check=False, stdout=subprocess.DEVNULL)
        data = json.loads(out.read_text())
    return Row.from_product(f"product-{mode}-x{instances}", mode, data, ceiling[mode],
                            ceiling["overall"])
