"""``python -m bench.enrichprobe KIND ...``: one of the enrichment API's probe clients (greedy or
oracle, sync/local/emulators/enrichment/probes.py) against a running enrichment emulator, in its
own process (the bench runs it for the enrichment-bound scenario).

The greedy client keeps ``GREEDY_WORKERS`` calls in flight, ignoring 429 and Retry-After; the
oracle knows the scenario's rate and burst, spends the burst and then paces at 95% of the rate.
The calls served over time are the emulator's own count (``served`` in its
``/_emulator/stats``, which is never limited nor counted), sampled every ``SAMPLE_EVERY_S``:
more often than the Dataverse probes, because a steady flow read over a window is off by what
a sample's lateness holds (a tenth of a second of a 3 s window is 3%).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import aiohttp

from bench.probe import sampled
from bench.scenarios import PROBES, SCENARIOS, Scenario
from sync.local.emulators.enrichment.probes import EnrichmentProbe, greedy, oracle
from sync.local.emulators.webapi.probes import Seen

SAMPLE_EVERY_S: Final = 0.1
GREEDY_WORKERS: Final = 16
"""Calls the greedy client keeps in flight: at 5 ms a call and 20 ms after a 429, several
times any scenario's rate."""


async def served(session: aiohttp.ClientSession, url: str) -> int:
    """Calls the emulator has served (answered 200) so far."""
    async with session.get(f"{url}/_emulator/stats") as answer:
        return int((await answer.json())["served"])


async def _client(kind: str, probe: EnrichmentProbe, scenario: Scenario) -> Seen:
    if kind == "greedy":
        return await greedy(probe, GREEDY_WORKERS)
    if kind == "oracle":
        return await oracle(probe, scenario.enrichment_rate_per_s, scenario.enrichment_burst)
    raise ValueError(f"unknown probe {kind!r}")


async def run_enrichment_probe(kind: str, probe: EnrichmentProbe,
                               scenario: Scenario) -> dict[str, Any]:
    """The client's tally and the (seconds, calls served) timeline as JSON."""
    return await sampled(_client(kind, probe, scenario),
                         lambda admin: served(admin, probe.url), SAMPLE_EVERY_S)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.enrichprobe", description=__doc__)
    parser.add_argument("kind", choices=PROBES)
    parser.add_argument("--scenario", required=True, choices=[s.name for s in SCENARIOS])
    for option in ("--enrichment-url", "--json-out"):
        parser.add_argument(option, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--max-sends", type=int, required=True)
    args = parser.parse_args(argv)
    scenario = next(s for s in SCENARIOS if s.name == args.scenario)
    probe = EnrichmentProbe(args.enrichment_url, run_s=args.seconds, max_sends=args.max_sends)
    tally = asyncio.run(run_enrichment_probe(args.kind, probe, scenario))
    Path(args.json_out).write_text(json.dumps(tally))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
