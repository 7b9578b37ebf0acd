"""``python -m bench.probe KIND MODE ...``: one of the emulator's probe clients (greedy or
oracle, sync/local/emulators/webapi/probes.py) against a running emulator, in its own process
(the bench runs it).

The greedy client keeps twice as many requests in flight as the servers take, ignoring every
hint and Retry-After; the oracle knows the scenario's configuration and paces each server at the
binding facet. Both send the bench's unit of work (a PATCH, or an UpdateMultiple of 100 typed
targets); the oracle is told requests hold 100 targets, so it paces for what it sends. The
records over time are the emulator's own count (``/_emulator/stats``, which is never throttled
nor counted), sampled every ``SAMPLE_EVERY_S``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Final

import aiohttp

from bench.scenarios import PROBE_MODES, PROBES, SCENARIOS, UNIT_RECORDS
from sync.local.emulators.webapi.config import EmulatorConfig
from sync.local.emulators.webapi.probes import Probe, Seen, greedy, oracle
from sync.local.verify import updated_count

SAMPLE_EVERY_S: Final = 0.5
GREEDY_OVERSUBSCRIBE: Final = 2
"""The greedy client keeps this many times the servers' concurrency limit in flight."""


def probe_config(config: EmulatorConfig, mode: str) -> EmulatorConfig:
    """What the oracle knows: the emulator's configuration, its bulk requests the bench's
    unit (``request_shape`` counts a bulk request at ``max_batch_operations`` targets)."""
    return config.replace(max_batch_operations=UNIT_RECORDS[mode]) if mode == "bulk" else config


async def _client(kind: str, probe: Probe, config: EmulatorConfig) -> Seen:
    if kind == "greedy":
        return await greedy(probe, GREEDY_OVERSUBSCRIBE * config.max_concurrent * config.servers)
    if kind == "oracle":
        return await oracle(probe, probe_config(config, probe.mode))
    raise ValueError(f"unknown probe {kind!r}")


async def run_probe(kind: str, probe: Probe, config: EmulatorConfig) -> dict[str, Any]:
    """Run the probe, the emulator's count of records sampled; the client's tally and the
    (seconds, records) timeline as JSON."""
    return await sampled(_client(kind, probe, config),
                         lambda admin: updated_count(admin, probe.url), SAMPLE_EVERY_S)


async def sampled(client: Coroutine[Any, Any, Seen],
                  count: Callable[[aiohttp.ClientSession], Awaitable[int]],
                  every_s: float) -> dict[str, Any]:
    """Run ``client`` while sampling the emulator's ``count`` every ``every_s``; the client's
    tally and the (seconds, count) timeline, its last sample taken once the client is done."""
    timeline: list[tuple[float, int]] = []
    async with aiohttp.ClientSession() as admin:
        started_s = time.monotonic()

        async def sample() -> None:
            while True:
                done = await count(admin)  # stamped when the count is in hand
                timeline.append((round(time.monotonic() - started_s, 2), done))
                await asyncio.sleep(every_s)

        sampler = asyncio.create_task(sample())
        try:
            seen = await client
        finally:
            sampler.cancel()
        done = await count(admin)
        timeline.append((round(time.monotonic() - started_s, 2), done))
    return {**asdict(seen), "timeline": timeline}


async def _ids(url: str) -> list[str]:
    async with aiohttp.ClientSession() as session, session.get(
            f"{url}/_emulator/records", params={"entityset": "accounts"}) as answer:
        return [str(row["accountid"]) for row in (await answer.json())["value"]]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.probe", description=__doc__)
    parser.add_argument("kind", choices=PROBES)
    parser.add_argument("mode", choices=PROBE_MODES)
    parser.add_argument("--scenario", required=True, choices=[s.name for s in SCENARIOS])
    parser.add_argument("--time-scale", type=float, required=True)
    for option in ("--dataverse-url", "--token", "--json-out"):
        parser.add_argument(option, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--max-sends", type=int, required=True)
    args = parser.parse_args(argv)
    scenario = next(s for s in SCENARIOS if s.name == args.scenario)
    config = scenario.emulator_config(args.time_scale)
    ids = asyncio.run(_ids(args.dataverse_url))
    probe = Probe(args.dataverse_url, args.token, ids, mode=args.mode,
                  targets=UNIT_RECORDS[args.mode], run_s=args.seconds, max_sends=args.max_sends)
    Path(args.json_out).write_text(json.dumps(asyncio.run(run_probe(args.kind, probe, config))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
