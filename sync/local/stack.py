"""``python -m sync local``: Azurite, the emulators and K host instances, one full sync, a summary.

Every process it starts is stopped on the way out, on errors and on SIGINT or SIGTERM too
(exit 130 or 143, within ``STOP_TIMEOUT_S``); a second signal (not a copy of the first within a
second) kills them all at once. Either way ``storage.json``, which holds the stack's keys, and
Azurite's folder are removed.

Exit codes: 0 every record written, unchanged, dead-lettered for a fault of its own, or
cancelled (``sync cancel``); 1 not so (blocked, not finished in time, records unaccounted for
or dead-lettered for the service's fault); 2 bad options or settings, nothing started; 130 or
143 stopped by SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import aiohttp

from sync.config.settings import Settings, StorageSettings
from sync.config.storage_names import (
    BATCH_QUEUE,
    DEAD_LETTER_QUEUE,
    LEDGER_TABLE,
    POISON_QUEUE,
    REPORT_TABLE,
    STATE_TABLE,
)
from sync.config.table_definition import parse_definition
from sync.failures.errors import ConfigError
from sync.local.azurite import Azurite, start_azurite
from sync.local.dryrunlocal import latest_report
from sync.local.emulators.enrichment import SHAPES, EnrichmentConfig
from sync.local.enrichment_shapes import (
    cache_rows,
    identity_endpoint,
    read_cache_file,
    restore_cache,
    shape_setup,
    write_cache_file,
)
from sync.local.environments import (
    URL_WAIT_S,
    Checked,
    base_definition,
    check_environments,
    combined,
    host_environment,
    local_token,
    start_dataverse,
)
from sync.local.hosts import HostWatch
from sync.local.lanes import (
    Layout,
    users_of_identities,
)
from sync.local.processes import (
    Children,
    Interrupted,
    ResourceUsage,
    resource_usage,
    stop_on_signals,
    stopping,
)
from sync.local.progress import STALL_S, ProgressPrinter, watch
from sync.local.summary import Outcome, report, write_json
from sync.local.verify import (
    dead_lettered_ids,
    poisoned_records,
    updated_count,
    with_cancelled,
)
from sync.ops.queuescan import raw_queue
from sync.ops.run_status import read_queue_counts
from sync.ops.target import LOCAL_RUN_DIR, forget_local_target, save_local_target
from sync.state.storage import ensure_resources, queue_client, table_client

__all__ = ["LocalOptions", "configure_parser", "local_token", "main", "run"]

LOG_DIR: Final = LOCAL_RUN_DIR


@dataclass(frozen=True, slots=True)
class LocalOptions:
    """What ``python -m sync local`` was asked to do."""

    records: int
    instances: int
    dataverse_url: str | None
    timeout_s: float
    emulator_args: tuple[str, ...] = ()
    enrichment_args: tuple[str, ...] = ()
    json_out: Path | None = None
    keep: bool = False
    dry_run: bool = False
    environments: int = 1
    """Dataverse environments, each its own emulator (``env1..envM``; 1: ``default``)."""
    identities: int = 1
    """Identities syncing each environment (``id1..idN``; 1 with 1 environment: ``default``)."""
    enrichment_shape: str = "today"
    """The enrichment API's shape and its definition (``sync.local.enrichment_shapes``)."""
    enrichment_cache: Path | None = None
    """Where the enrichment cache is kept between runs; None: each run starts without one."""
    stall_s: float = STALL_S
    """No progress for this long with a circuit open, and its back-off then come round
    without progress: blocked (``sync.local.blocked``)."""

    @property
    def layout(self) -> Layout:
        return Layout(self.environments, self.identities)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m sync local``."""
    parser.add_argument("--records", type=int, default=10_000,
                        help="accounts the Dataverse emulator seeds (10000)")
    parser.add_argument("--instances", type=int, default=1,
                        help="host instances, each a separate process (1)")
    parser.add_argument("--dataverse-url", default=None,
                        help="use this running Dataverse-compatible endpoint instead of "
                             "starting the emulator (no seeding, no emulator check)")
    parser.add_argument("--timeout-s", type=float, default=1800.0,
                        help="give up when the sync has not finished after this long (1800)")
    parser.add_argument("--emulator-arg", action="append", default=[], metavar="ARG",
                        help="extra option for the Dataverse emulator, e.g. "
                             "--emulator-arg=--servers=3 (repeatable)")
    parser.add_argument("--enrichment-arg", action="append", default=[], metavar="ARG",
                        help="extra option for the enrichment emulator, e.g. "
                             "--enrichment-arg=--rate-per-s=200 (repeatable)")
    parser.add_argument("--json-out", type=Path, default=None,
                        help="also write the run's figures as JSON to this file")
    parser.add_argument("--keep", action="store_true",
                        help="after the run and its checks, keep everything running (query it "
                             "with `python -m sync status --local`) until Ctrl-C or SIGTERM")
    parser.add_argument("--dry-run", action="store_true",
                        help="plan, read, enrich and compare, write nothing; print what would "
                             "change (the definition's dry_run)")
    parser.add_argument("--environments", type=int, default=1, metavar="M",
                        help="Dataverse environments env1..envM, an emulator each seeded with "
                             "--records, a sync definition each (1: today's single environment)")
    parser.add_argument("--enrichment-shape", default="today", choices=sorted(SHAPES),
                        help="the enrichment API's shape: the emulator speaks it and the hosts "
                             "use its definition, examples/enrichment/NAME.json (today)")
    parser.add_argument("--enrichment-cache", type=Path, default=None, metavar="FILE",
                        help="load the enrichment cache from FILE before the run and save it "
                             "after, as one storage account keeps it between nights (none)")
    parser.add_argument("--identities", type=int, default=1, metavar="N",
                        help="identities id1..idN syncing every environment, each its own user "
                             "with its own limits (1)")
    parser.add_argument("--blocked-after-s", type=float, default=STALL_S, metavar="S",
                        help="call the run blocked when no record was done for this long "
                             "with a circuit open, and the circuit's back-off then came round "
                             f"without progress ({STALL_S:g})")


def main(args: argparse.Namespace) -> int:
    """Run the local stack once; exit 0 only when every record is accounted for."""
    if args.records < 0 or min(args.instances, args.environments, args.identities) < 1:
        print("--records must be >= 0; --instances, --environments and --identities >= 1",
              file=sys.stderr)
        return 2
    if args.blocked_after_s < 0:
        print("--blocked-after-s must be >= 0", file=sys.stderr)
        return 2
    if args.dataverse_url is not None and args.environments > 1:
        print("--dataverse-url is one environment: use it without --environments",
              file=sys.stderr)
        return 2
    problems = setting_problems(os.environ)
    if problems:
        print("The environment's settings are not usable; nothing was started:", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 2
    options = LocalOptions(records=args.records, instances=args.instances,
                           dataverse_url=args.dataverse_url, timeout_s=args.timeout_s,
                           emulator_args=tuple(args.emulator_arg),
                           enrichment_args=tuple(args.enrichment_arg), json_out=args.json_out,
                           keep=args.keep, dry_run=args.dry_run,
                           environments=args.environments, identities=args.identities,
                           enrichment_shape=args.enrichment_shape,
                           enrichment_cache=args.enrichment_cache,
                           stall_s=args.blocked_after_s)
    return run(options)


def run(options: LocalOptions) -> int:
    """Start everything, sync, verify, stop everything (on SIGINT and SIGTERM too). With
    ``keep``, everything stays up after the summary until a stop signal, and the exit code is
    the run's."""
    children = Children(LOG_DIR)
    azurite: Azurite | None = None
    restore_signals = stop_on_signals(children)
    code: int | None = None
    try:
        print(f"Starting Azurite, the emulators and {options.instances} host instance(s); "
              f"logs in {LOG_DIR}", flush=True)
        azurite = start_azurite(children=children)
        children.cleanups.append(forget_local_target)  # it holds the keys: gone at any stop
        save_local_target(azurite.accounts[0].connection_string)
        env, urls = _start_services(children, azurite, options)
        save_local_target(azurite.accounts[0].connection_string,
                          dataverse=_saved_dataverse(env, urls), environments=urls)
        started_s = time.monotonic()
        for number in range(options.instances):
            args = ["host", *(["--fire-timer"] if number == 0 else [])]
            children.start(f"host-{number}", args, env, stop_first=True)
        hosts = [c for c in children.started if c.name.startswith("host-")]
        printer = ProgressPrinter()
        host_watch = HostWatch(hosts, printer.say)
        outcome = asyncio.run(_watch_and_verify(env, urls, options, printer, host_watch))
        elapsed_s = time.monotonic() - started_s
        usage = [resource_usage(h.process.pid) for h in hosts]
        if options.keep:
            code = _conclude(options, outcome, elapsed_s, usage)
            _wait_for_stop()
    except Interrupted as signalled:
        if code is not None:
            _say(f"\n{signalled}: stopping everything this run started.")
            _stop_everything(children, azurite, _say)
            return code
        _say(f"\nInterrupted by {signalled}: stopping everything this run started "
             "(send the signal again to stop at once).")
        _stop_everything(children, azurite, _say)
        return signalled.exit_code
    finally:
        _stop_everything(children, azurite)
        restore_signals()
    return _conclude(options, outcome, elapsed_s, usage)


def _conclude(options: LocalOptions, outcome: Outcome, elapsed_s: float,
              usage: list[ResourceUsage]) -> int:
    if options.json_out is not None:
        write_json(options.json_out, outcome, elapsed_s, usage)
    return report(outcome, elapsed_s)


def _wait_for_stop() -> None:
    """Everything stays up for operator commands until a stop signal (``Interrupted``)."""
    print("\nKept running (--keep): Azurite, the emulators and the hosts stay up.\n"
          "  python -m sync status --local          how the run went\n"
          "  python -m sync status --local --watch  refreshed in place\n"
          "Ctrl-C (or SIGTERM) stops everything.", flush=True)
    while True:
        signal.pause()


def setting_problems(environ: Mapping[str, str]) -> tuple[str, ...]:
    """What is wrong with the settings a user set, before anything starts (the stack sets the
    storage connection, the endpoints and the key itself)."""
    probe = {**environ, "AzureWebJobsStorage": "UseDevelopmentStorage=true",
             "DATAVERSE_URL": "http://127.0.0.1:1", "ENRICHMENT_URL": "http://127.0.0.1:1",
             "ENRICHMENT_API_KEY": "probe"}
    try:
        Settings.from_env(probe)
    except ConfigError as error:
        return error.problems
    return ()


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _stop_everything(children: Children, azurite: Azurite | None,
                     say: Callable[[str], None] | None = None) -> None:
    """Hosts first, then the emulators and Azurite, then what holds the stack's keys and data;
    a stop signal from here on (but a copy of the first) stops hard."""
    stopping()
    children.stop_all(say)
    children.run_cleanups()
    if azurite is not None:
        azurite.stop()
    if say is not None:
        say("Stopped: no process this run started is left.")


def _start_services(children: Children, azurite: Azurite,
                    options: LocalOptions) -> tuple[dict[str, str], dict[str, str]]:
    """Start the emulators; answer the hosts' environment and each Dataverse environment's
    URL by name."""
    enrichment = EnrichmentConfig()
    layout = options.layout
    given = options.dataverse_url
    urls = ({name: given for name in layout.environment_names} if given is not None else
            start_dataverse(children, layout, options.records, options.emulator_args))
    shape_args, shape_env = shape_setup(options.enrichment_shape)
    _, enrichment_url = children.start("enrichment-emulator",
                                       ["emulator", "enrichment", *shape_args,
                                        *options.enrichment_args],
                                       wait_for_url_s=URL_WAIT_S)
    base = {**os.environ, "AzureWebJobsStorage": azurite.accounts[0].connection_string,
            "ENRICHMENT_URL": enrichment_url,
            "ENRICHMENT_API_KEY": enrichment.api_key, "SYNC_SCHEDULE": "0 0 2 * * *",
            "SYNC_QUEUE_METRICS_SCHEDULE": "0 * * * * *", "PYTHONUNBUFFERED": "1",
            # every host here reads this machine's one clock: no skew to allow for, unless asked
            "SYNC_CLOCK_SKEW_S": os.environ.get("SYNC_CLOCK_SKEW_S", "0"),
            **shape_env, **identity_endpoint(shape_env, enrichment_url)}
    env = host_environment(base, layout, urls, options.dry_run)
    storage = StorageSettings(connection_string=env["AzureWebJobsStorage"])
    asyncio.run(ensure_resources(storage))
    if options.enrichment_cache is not None:
        asyncio.run(restore_cache(storage, read_cache_file(options.enrichment_cache)))
    return env, urls


def _saved_dataverse(env: Mapping[str, str], urls: Mapping[str, str]) -> dict[str, str]:
    """The app settings operator commands use to reach the emulators: ``DATAVERSE_URL`` (the
    first environment's) and the token, and the lane settings when there are lanes."""
    saved = {"DATAVERSE_URL": next(iter(urls.values())),
             "DATAVERSE_STATIC_TOKEN": env["DATAVERSE_STATIC_TOKEN"]}
    saved |= {name: env[name] for name in ("SYNC_ENVIRONMENTS", "SYNC_DEFINITIONS")
              if name in env}
    return saved


async def _watch_and_verify(env: dict[str, str], urls: dict[str, str], options: LocalOptions,
                            printer: ProgressPrinter, hosts: HostWatch) -> Outcome:
    storage = StorageSettings(connection_string=env["AzureWebJobsStorage"])
    layout = options.layout
    timeline: list[tuple[float, int]] = []
    service_timeline: list[tuple[float, int]] = []
    async with (aiohttp.ClientSession() as admin,
                table_client(storage, LEDGER_TABLE, None) as table,
                table_client(storage, STATE_TABLE, None) as state,
                table_client(storage, REPORT_TABLE, None) as reports,
                queue_client(storage, BATCH_QUEUE, None) as batches,
                raw_queue(storage, DEAD_LETTER_QUEUE, None) as dead,
                raw_queue(storage, POISON_QUEUE, None) as poison):
        final = await watch(table, batches, options.timeout_s, printer, hosts.any_alive,
                            timeline=timeline, state=state, stall_s=options.stall_s,
                            expected_runs=layout.environments,
                            service_written=None if options.dataverse_url else _written_by(
                                admin, list(urls.values())),
                            service_timeline=service_timeline)
        printer.close()
        dead_ids = await dead_lettered_ids(dead)
        poisoned = (await read_queue_counts(storage))[POISON_QUEUE]
        in_poison = await poisoned_records(poison)
        dry_report = await latest_report(table, reports) if options.dry_run else None
    if options.enrichment_cache is not None:
        write_cache_file(options.enrichment_cache, await cache_rows(storage))
    checks: list[Checked] = []
    if options.dataverse_url is None:
        definition = parse_definition(json.dumps(base_definition(env, dry_run=False)))
        checks = await check_environments(urls, definition, dead_ids,
                                          verify_records=not options.dry_run,
                                          shape=options.enrichment_shape)
    users = ({} if layout.single else
             users_of_identities(layout, env["DATAVERSE_STATIC_TOKEN"]))
    check = combined(checks)
    if check is not None:
        check = with_cancelled(check, final.counts.cancelled)
    return Outcome(final, check, poisoned, frozenset(dead_ids), timeline,
                   checks[0].stats if checks else None, dry_report, checks, users,
                   service_timeline, in_poison, hosts.summary())


def _written_by(admin: aiohttp.ClientSession, urls: list[str]) -> Callable[[], Awaitable[int]]:
    """Records every environment's emulator has updated so far, added up."""
    async def written() -> int:
        return sum([await updated_count(admin, url) for url in urls])
    return written
