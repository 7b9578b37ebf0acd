"""``python -m sync emulator dataverse``: serve the Dataverse Web API emulator until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import fields
from typing import Any, Final

from sync.local.emulators import add_serving_options, until_signalled
from sync.local.emulators.webapi import EmulatorConfig, start_emulator
from sync.local.emulators.webapi.fault_parsing import fault_rule_of
from sync.local.emulators.webapi.faults import DATAVERSE

_HELP: Final = {
    "enriched_share": "share of the seeded accounts that already hold their enriched values "
                      "(0; 0.9 is a nightly re-run where 90%% did not change)",
    "bypass_privilege": "the callers hold prvBypassCustomBusinessLogic (off: a write with "
                        "MSCRM.BypassBusinessLogicExecution answers 403, as the service does)",
    "servers": "simulated web servers behind the endpoint (2; most environments have several)",
    "window_s": "sliding window in seconds (300, documented); a shorter one scales "
                "--max-requests and --max-exec-ms in proportion unless they are given",
    "max_requests": "requests per user per server per window (6000, documented)",
    "max_exec_ms": "combined execution ms per user per server per window (1,200,000, "
                   "documented)",
    "max_concurrent": "concurrent requests per user per server (52, documented)",
    "dop_hint": "recommended parallelism per web server; x-ms-dop-hint is this times "
                "--servers (10, an assumption)",
    "records": "accounts to seed (0)",
    "seed": "seed of the data, the costs and the faults (1)",
    "write_ms_min": "least server time of one write (100 ms, an assumption)",
    "write_ms_max": "most server time of one write (200 ms, an assumption)",
    "read_page_ms": "server time of one page read (50 ms, an assumption)",
    "batch_op_ms": "server time of one operation inside $batch (100 ms, an assumption)",
    "bulk_target_ms": "server time of one target of a bulk message (10 ms, an assumption)",
    "request_overhead_ms": "server time every request adds (5 ms, an assumption)",
    "concurrency_retry_after_s": "Retry-After of the concurrency error (1 s, an assumption)",
    "penalty_s": "Retry-After added each time a throttled client sends again (2 s, an "
                 "assumption)",
    "retry_after_resolution_s": "Retry-After is rounded up to this step (1 s)",
    "ratelimit_headers": "1 sends the x-ms-ratelimit-* headers on every answer, 0 leaves "
                         "them out (1)",
    "exec_in_flight_share": "share of the in-flight requests' remaining server time counted "
                            "as used at admission (1: all, stricter; an assumption)",
    "change_token_ttl_s": "lifetime of a change tracking token (7 days, documented)",
    "max_batch_operations": "operations per $batch and targets per bulk message (1000, "
                            "documented)",
    "max_page_size": "largest odata.maxpagesize (5000, documented)",
    "fault_500_rate": "share of requests answered 500 (0)",
    "fault_503_rate": "share of requests answered 503 (0)",
    "reset_rate": "share of connections reset (0)",
    "slow_rate": "share of requests made slow (0)",
    "slow_ms": "extra time of a slow request (2000 ms)",
}


fault_rule = fault_rule_of(DATAVERSE)
"""A ``--fault`` value: one rule as JSON."""


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """One option per EmulatorConfig field, plus where to listen."""
    add_serving_options(parser, fault_rule=fault_rule,
                        fault_example='{"preset": "403-privilege", "hits": "writes", '
                                      '"window_s": 15}')
    parser.add_argument("--https", action="store_true",
                        help="serve https with a throwaway certificate authority made now; "
                             "clients trust it through REQUESTS_CA_BUNDLE (its path is printed)")
    for item in fields(EmulatorConfig):
        if item.name == "fault_rules":
            continue
        if item.type in ("bool", bool):
            parser.add_argument(f"--{item.name.replace('_', '-')}", action="store_true",
                                default=None, dest=item.name,
                                help=_HELP.get(item.name, item.name))
            continue
        kind = int if item.type in ("int", int) else float
        parser.add_argument(f"--{item.name.replace('_', '-')}", type=kind, default=None,
                            dest=item.name, help=_HELP.get(item.name, item.name))


def config_from(args: argparse.Namespace) -> EmulatorConfig:
    """The configuration the options ask for, scaled when only the window is given."""
    given: dict[str, Any] = {item.name: getattr(args, item.name) for item in fields(
        EmulatorConfig) if getattr(args, item.name, None) is not None}
    if "fault_rules" in given:
        given["fault_rules"] = tuple(given["fault_rules"])
    window_s = given.pop("window_s", None)
    if window_s is not None:
        return EmulatorConfig.scaled(window_s, **given)
    return EmulatorConfig(**given)


def main(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM."""
    asyncio.run(_serve(config_from(args), args.host, args.port, https=args.https))
    return 0


async def _serve(config: EmulatorConfig, host: str, port: int, *, https: bool) -> None:
    running = await start_emulator(config, host, port, https=https)
    print(f"Dataverse Web API emulator listening on {running.url} "
          f"({config.servers} servers, window {config.window_s:g} s, "
          f"{config.max_requests} requests, {config.max_exec_ms:,.0f} ms, "
          f"{config.max_concurrent} concurrent, {config.records} accounts, "
          f"{len(config.fault_rules)} fault rules)", flush=True)
    if running.ca_path is not None:
        print(f"Trust its certificate: REQUESTS_CA_BUNDLE={running.ca_path}", flush=True)
    await until_signalled()
    await running.close()
