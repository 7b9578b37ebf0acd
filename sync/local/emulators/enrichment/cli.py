"""``python -m sync emulator enrichment``: serve the enrichment API emulator until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio

from sync.local.emulators import add_serving_options, until_signalled
from sync.local.emulators.enrichment.app import EnrichmentConfig, start_enrichment
from sync.local.emulators.enrichment.faults import ENRICHMENT
from sync.local.emulators.enrichment.shapes import SHAPES
from sync.local.emulators.webapi.fault_parsing import fault_rule_of

fault_rule = fault_rule_of(ENRICHMENT)
"""A ``--fault`` value: one rule as JSON."""


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m sync emulator enrichment``."""
    defaults = EnrichmentConfig()
    add_serving_options(parser, fault_rule=fault_rule,
                        fault_example='{"preset": "down", "window_s": 120}')
    parser.add_argument("--rate-per-s", type=float, default=defaults.rate_per_s,
                        help=f"requests per second before 429 ({defaults.rate_per_s:g})")
    parser.add_argument("--burst", type=int, default=defaults.burst,
                        help=f"token bucket size ({defaults.burst})")
    parser.add_argument("--latency-ms", type=float, default=defaults.latency_ms,
                        help=f"time to answer one call ({defaults.latency_ms:g} ms)")
    parser.add_argument("--api-key", default=defaults.api_key,
                        help="key clients must send in x-api-key")
    parser.add_argument("--seed", type=int, default=defaults.seed,
                        help=f"seed of the fault rules' rates ({defaults.seed})")
    parser.add_argument("--shape", choices=sorted(SHAPES), default=defaults.shape,
                        help="how the API is asked and answers (sync/local/emulators/"
                             f"enrichment/shapes.py; {defaults.shape})")
    parser.add_argument("--out-of-credits-after", type=int, default=None, metavar="N",
                        help="answer 402 to every call once N companies were asked (never)")
    parser.add_argument("--identity-header", default=None,
                        help="what callers of its managed identity endpoint (/msi/token) send "
                             "in X-IDENTITY-HEADER (random)")


def config_from(args: argparse.Namespace) -> EnrichmentConfig:
    """The emulator's settings from its parsed options."""
    identity = {"identity_header": args.identity_header} if args.identity_header else {}
    return EnrichmentConfig(api_key=args.api_key, rate_per_s=args.rate_per_s,
                            burst=args.burst, latency_ms=args.latency_ms, seed=args.seed,
                            fault_rules=tuple(args.fault_rules), shape=args.shape,
                            out_of_credits_after=args.out_of_credits_after, **identity)


def main(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM."""
    asyncio.run(_serve(config_from(args), args.host, args.port))
    return 0


async def _serve(config: EnrichmentConfig, host: str, port: int) -> None:
    runner, url = await start_enrichment(config, host, port)
    print(f"Enrichment API emulator listening on {url} (shape {config.shape}, "
          f"{len(config.fault_rules)} fault rules)", flush=True)
    await until_signalled()
    await runner.cleanup()
