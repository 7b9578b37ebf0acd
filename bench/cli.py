"""``python -m bench``: run every strategy; ``python -m bench baseline NAME``: run one loop."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import aiohttp

from bench.baselines import Tally, Target, run_baseline
from bench.run import BenchConfig, run_all
from sync.enrichment import domain_of


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    one = commands.add_parser("baseline", help="run one baseline loop (the bench does this)")
    one.add_argument("name", choices=["sequential", "fixed-parallel", "dop-hint"])
    for option in ("--dataverse-url", "--enrichment-url", "--token", "--api-key",
                   "--json-out"):
        one.add_argument(option, required=True)
    one.add_argument("--seconds", type=float, required=True)
    one.add_argument("--mapping", required=True, help="JSON column -> enrichment field")
    defaults = BenchConfig()
    parser.add_argument("--window-s", type=float, default=defaults.window_s,
                        help=f"the emulator's scaled window ({defaults.window_s:g} s)")
    parser.add_argument("--run-s", type=float, default=defaults.run_s,
                        help=f"about how long each strategy runs ({defaults.run_s:g} s)")
    parser.add_argument("--out", type=Path, default=defaults.out,
                        help=f"where the JSON and the plot go ({defaults.out})")
    parser.add_argument("--only", default="",
                        help="comma-separated strategy names to run (all)")
    args = parser.parse_args(argv)
    if args.command == "baseline":
        _write(args.json_out, asyncio.run(_baseline(args)))
        return 0
    config = BenchConfig(window_s=args.window_s, run_s=args.run_s, out=args.out,
                         only=tuple(filter(None, args.only.split(","))))
    return run_all(config)


async def _baseline(args: argparse.Namespace) -> Tally:
    target = Target(args.dataverse_url, args.enrichment_url, args.token, args.api_key,
                    json.loads(args.mapping))
    async with aiohttp.ClientSession() as session, session.get(
            f"{args.dataverse_url}/_emulator/records", params={"entityset": "accounts"}) as got:
        data = await got.json()
    rows = data["value"] if isinstance(data, dict) else data
    records = [(str(r["accountid"]), domain_of(str(r["websiteurl"]))) for r in rows]
    return await run_baseline(args.name, target, records, args.seconds)


def _write(path: str, tally: Tally) -> None:
    data = {**asdict(tally), "throttled_by_code": dict(tally.throttled_by_code)}
    Path(path).write_text(json.dumps(data))
