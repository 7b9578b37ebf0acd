"""``python -m bench``: every row (``--quick``: tiny sizes and windows, ``--only``: some rows);
``python -m bench baseline PATTERN MODE ...``: one baseline loop process (the bench runs it)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import aiohttp

from bench.baselines import Record, Tally, Target, run_baseline
from bench.floor import DEFAULT_FLOOR, QUICK_FLOOR
from bench.run import QUICK_RESULTS, RESULTS, Plan, run_all
from bench.scenarios import (
    DEFAULT_SCALE,
    FLOOR,
    MODES,
    PATTERNS,
    QUICK_SCALE,
    plan_rows,
    select,
    selected,
)
from sync.clients.enrichment import domain_of

FLOOR_NOTE = "the HTTP client's CPU per call, bare aiohttp and the product's (runs first)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "baseline":
        _write(args.json_out, asyncio.run(_baseline(args)))
        return 0
    scale = QUICK_SCALE if args.quick else DEFAULT_SCALE
    scale = dataclasses.replace(scale, time_scale=args.time_scale or scale.time_scale,
                                run_s=args.run_s or scale.run_s)
    rows = select(plan_rows(scale, million=args.million, lanes=args.lanes,
                            shapes=args.shapes, peer=args.peer), args.only)
    floor = (QUICK_FLOOR if args.quick else DEFAULT_FLOOR) if selected(FLOOR, args.only) \
        else None
    if args.list:
        listed = [f"{FLOOR}  {FLOOR_NOTE}"] if floor else []
        print("\n".join([*listed, *(f"{row.name}  {row.note}".rstrip() for row in rows)]))
        return 0
    if not rows and floor is None:
        parser.error(f"--only {args.only!r} matches no row (see --list)")
    out = args.out or (QUICK_RESULTS if args.quick else RESULTS)
    return run_all(Plan(rows, scale, out, publish_plot=not args.quick and not args.only,
                        floor=floor))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help=f"a {QUICK_SCALE.window_s:g} s window, {QUICK_SCALE.run_s:g} s "
                             "rows and a few hundred records: checks that every row runs "
                             f"(writes to {QUICK_RESULTS.relative_to(RESULTS.parents[1])})")
    parser.add_argument("--only", default="",
                        help="comma-separated row names or shell patterns (a name without * "
                             "matches as a substring), e.g. 'product,nightly' or "
                             "'dataverse-bound/*/bulk'")
    parser.add_argument("--million", action="store_true",
                        help="add the 1,000,000-record growth row (opt-in: long)")
    parser.add_argument("--lanes", action="store_true",
                        help="add the lanes scaling row: 1, 2 and 4 identities in the "
                             "user-bound scenario (opt-in: about three minutes)")
    parser.add_argument("--shapes", action="store_true",
                        help="add a product row per shipped enrichment shape (examples/"
                             "enrichment: People Data Labs, its bulk endpoint, Clearbit-like, "
                             "an Entra-protected in-house API) in the enrichment-bound scenario")
    parser.add_argument("--peer", action="store_true",
                        help="add the external peer's row: Microsoft's Python client against "
                             "the emulator over https (opt-in: about three minutes)")
    parser.add_argument("--list", action="store_true", help="print the row names and stop")
    parser.add_argument("--time-scale", type=float, default=None,
                        help="how many times faster the emulator's time runs (at least 1; "
                             f"{DEFAULT_SCALE.time_scale:g}: a {DEFAULT_SCALE.window_s:g} s "
                             "window, every per-second rate the documented one)")
    parser.add_argument("--run-s", type=float, default=None,
                        help=f"about how long each row runs ({DEFAULT_SCALE.run_s:g} s)")
    parser.add_argument("--out", type=Path, default=None,
                        help="where the report goes (bench/results; --quick: .local-run/)")
    commands = parser.add_subparsers(dest="command")
    one = commands.add_parser("baseline", help="run one baseline loop process")
    one.add_argument("pattern", choices=PATTERNS)
    one.add_argument("mode", choices=MODES)
    for option in ("--dataverse-url", "--enrichment-url", "--token", "--api-key",
                   "--json-out"):
        one.add_argument(option, required=True)
    one.add_argument("--seconds", type=float, required=True)
    one.add_argument("--grace-s", type=float, default=DEFAULT_SCALE.grace_s)
    one.add_argument("--share", default="0/1", help="N/K: this process takes every K-th "
                                                    "record from the N-th (0/1)")
    one.add_argument("--mapping", required=True, help="JSON column -> enrichment field")
    return parser


async def _baseline(args: argparse.Namespace) -> Tally:
    target = Target(args.dataverse_url, args.enrichment_url, args.token, args.api_key,
                    json.loads(args.mapping))
    async with aiohttp.ClientSession() as session, session.get(
            f"{args.dataverse_url}/_emulator/records", params={"entityset": "accounts"}) as got:
        data = await got.json()
    rows = data["value"] if isinstance(data, dict) else data
    records: list[Record] = [(str(r["accountid"]), domain_of(str(r["websiteurl"])))
                             for r in rows]
    number, count = (int(part) for part in args.share.split("/"))
    return await run_baseline(args.pattern, args.mode, target, records[number::count],
                              args.seconds, args.grace_s)


def _write(path: str, tally: Tally) -> None:
    data = {**asdict(tally), "throttled_by_code": dict(tally.throttled_by_code)}
    Path(path).write_text(json.dumps(data))
