"""``python -m sync local``: Azurite, the emulators and K host instances, one full sync, a summary.

Every process it starts is stopped on the way out, on errors and on SIGINT or SIGTERM too
(exit 130 or 143); a second signal kills them all at once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

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
from sync.local.dryrunlocal import latest_report, writes_seen
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
    check_line,
    combined,
    host_environment,
    local_token,
    start_dataverse,
)
from sync.local.lanes import (
    EnvironmentFigures,
    Layout,
    lane_figures,
    lane_lines,
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
from sync.local.progress import ProgressPrinter, Snapshot, watch
from sync.local.verify import Verification, dead_lettered_ids, updated_count
from sync.message.counts import MessageCounts
from sync.ops.queuescan import raw_queue
from sync.ops.run_status import read_queue_counts
from sync.ops.status_view import dry_run_lines
from sync.ops.target import LOCAL_RUN_DIR, forget_local_target, save_local_target
from sync.state.dead_letters import RECORD_REASONS
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


def main(args: argparse.Namespace) -> int:
    """Run the local stack once; exit 0 only when every record is accounted for."""
    if args.records < 0 or min(args.instances, args.environments, args.identities) < 1:
        print("--records must be >= 0; --instances, --environments and --identities >= 1",
              file=sys.stderr)
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
                           enrichment_cache=args.enrichment_cache)
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
        save_local_target(azurite.accounts[0].connection_string)
        env, urls = _start_services(children, azurite, options)
        save_local_target(azurite.accounts[0].connection_string,
                          dataverse=_saved_dataverse(env, urls), environments=urls)
        started_s = time.monotonic()
        for number in range(options.instances):
            args = ["host", *(["--fire-timer"] if number == 0 else [])]
            children.start(f"host-{number}", args, env, stop_first=True)
        hosts = [c for c in children.started if c.name.startswith("host-")]
        outcome = asyncio.run(_watch_and_verify(env, urls, options,
                                                lambda: all(h.alive for h in hosts)))
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
    """Hosts first, then the emulators and Azurite; a stop signal from here on stops hard."""
    stopping()
    children.stop_all(say)
    if azurite is not None:
        forget_local_target()
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


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the watch and the checks found."""

    snapshot: Snapshot
    verification: Verification | None
    poisoned: int
    dead_letter_ids: frozenset[str]
    timeline: list[tuple[float, int]]
    emulator_stats: dict[str, Any] | None
    dry_run: dict[str, Any] | None = None
    """The run's dry-run report (``sync status --json``'s ``dry_run``); None when it wrote."""
    environments: list[Checked] = field(default_factory=list)
    """Each environment's emulator stats and verification (none with --dataverse-url)."""
    users: dict[str, str] = field(default_factory=dict)
    """The emulators' user id of each identity's token -> the identity; empty for one lane."""
    service_timeline: list[tuple[float, int]] = field(default_factory=list)
    """(seconds, records the emulators saw written plus those found unchanged) at each poll:
    writes as they land, where ``timeline`` moves only as whole messages finish. Empty with
    --dataverse-url (no emulator to ask)."""

    def lanes(self, elapsed_s: float) -> list[EnvironmentFigures]:
        """Per environment, each lane's figures from its emulator (none for one lane)."""
        if not self.users:
            return []
        return [lane_figures(c.environment, c.stats, self.users, elapsed_s)
                for c in self.environments]


async def _watch_and_verify(env: dict[str, str], urls: dict[str, str], options: LocalOptions,
                            healthy: Callable[[], bool]) -> Outcome:
    storage = StorageSettings(connection_string=env["AzureWebJobsStorage"])
    layout = options.layout
    timeline: list[tuple[float, int]] = []
    service_timeline: list[tuple[float, int]] = []
    async with (aiohttp.ClientSession() as admin,
                table_client(storage, LEDGER_TABLE, None) as table,
                table_client(storage, STATE_TABLE, None) as state,
                table_client(storage, REPORT_TABLE, None) as reports,
                queue_client(storage, BATCH_QUEUE, None) as batches,
                raw_queue(storage, DEAD_LETTER_QUEUE, None) as dead):
        printer = ProgressPrinter()
        final = await watch(table, batches, options.timeout_s, printer, healthy,
                            timeline=timeline, state=state,
                            expected_runs=layout.environments,
                            service_written=None if options.dataverse_url else _written_by(
                                admin, list(urls.values())),
                            service_timeline=service_timeline)
        printer.close()
        dead_ids = await dead_lettered_ids(dead)
        poisoned = (await read_queue_counts(storage))[POISON_QUEUE]
        report = await latest_report(table, reports) if options.dry_run else None
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
    return Outcome(final, combined(checks), poisoned, frozenset(dead_ids), timeline,
                   checks[0].stats if checks else None, report, checks, users,
                   service_timeline)


def _written_by(admin: aiohttp.ClientSession, urls: list[str]) -> Callable[[], Awaitable[int]]:
    """Records every environment's emulator has updated so far, added up."""
    async def written() -> int:
        return sum([await updated_count(admin, url) for url in urls])
    return written


def report(outcome: Outcome, elapsed_s: float) -> int:
    """Print the summary; answer the exit code."""
    snap = outcome.snapshot
    counts = snap.counts
    lines = [
        "", "Summary",
        f"  planned          {snap.planned:>10,}",
        f"  written          {counts.written:>10,}",
        f"  unchanged        {counts.unchanged:>10,}  (already held their values)",
        f"  dead-lettered    {counts.dead_lettered:>10,}  "
        f"{_by(counts.dead_lettered_by_reason)}",
        f"  still to do      {max(0, snap.planned - snap.done):>10,}  (on the queue or in flight)",
        f"  re-enqueued      {counts.reenqueued:>10,}  {_by(counts.reenqueued_by_reason)}",
        f"  429 answers      {counts.throttled:>10,}  {dict(counts.throttled_by_code) or ''}",
        f"  service retries  {counts.transient_retries:>10,}",
        f"  requests         {snap.requests.total:>10,}  (Dataverse: reads "
        f"{snap.requests.reads:,}, writes {snap.requests.writes:,}, retries "
        f"{snap.requests.retries:,})",
        f"  enrichment calls {counts.enrichment.calls:>10,}  {enrichment_line(counts)}",
        f"  poisoned msgs    {outcome.poisoned:>10,}",
        f"  elapsed          {elapsed_s:>10.1f} s",
        f"  throughput       {snap.done / max(elapsed_s, 1e-9):>10.1f} records/s",
    ]
    if snap.circuits:
        lines += [f"  circuit open     {snap.blocked_by}"]
    if outcome.dry_run is not None:
        lines += ["", *dry_run_lines(outcome.dry_run)]
    lines += _check_lines(outcome)
    lines += lane_lines(outcome.lanes(elapsed_s))
    print("\n".join(lines))
    return _exit_code(outcome)


def _check_lines(outcome: Outcome) -> list[str]:
    """The emulator check: one line, or one per environment when there are several."""
    check = outcome.verification
    if check is None:
        return []
    if len(outcome.environments) < 2:
        return [f"  emulator check   {check_line(check)}"]
    return [f"  emulator check   {c.environment}: {check_line(c.verification)}"
            for c in outcome.environments if c.verification is not None]


def _exit_code(outcome: Outcome) -> int:
    snap, check = outcome.snapshot, outcome.verification
    problems = []
    if snap.circuits and not snap.finished:
        problems.append(f"blocked: {snap.blocked_by}. {max(0, snap.planned - snap.done):,} "
                        "records stay on the queue and are written once it is fixed")
    elif not snap.finished:
        problems.append("the sync did not finish (timeout or a host stopped; see the logs in "
                        f"{LOG_DIR})")
    wrong = {reason: n for reason, n in snap.counts.dead_lettered_by_reason.items()
             if reason not in RECORD_REASONS}
    if wrong:
        problems.append(f"records dead-lettered for no fault of their own: {wrong}")
    if outcome.dry_run is not None:
        problems += [f"the dry run wrote: {seen}" for c in outcome.environments
                     for seen in writes_seen(c.stats)]
    if check is not None and not check.ok:
        problems.append(f"{len(check.unaccounted)} records unaccounted for, "
                        f"{check.created} created")
    for problem in problems:
        print(f"FAILED: {problem}", file=sys.stderr)
    if not problems and outcome.dry_run is not None:
        print("OK: dry run: every planned record was compared; nothing was written.")
    elif not problems:
        print("OK: every record is written, unchanged or dead-lettered for a fault of its own; "
              "none was created.")
    return 1 if problems else 0


def enrichment_line(counts: MessageCounts) -> str:
    """``(3,000 records; cache hits 2,000, misses 1,000; laters 0)``"""
    usage = counts.enrichment
    return (f"({usage.inputs:,} records; cache hits {usage.cache_hits:,}, misses "
            f"{usage.cache_misses:,}; laters {usage.laters:,})")


def _by(counter: Counter[str]) -> str:
    return ", ".join(f"{reason} {n:,}" for reason, n in counter.most_common()) or ""


def write_json(path: Path, outcome: Outcome, elapsed_s: float,
               usage: list[ResourceUsage]) -> None:
    """The run's figures, for the benchmark."""
    snap, check = outcome.snapshot, outcome.verification
    counts = snap.counts
    data = {"elapsed_s": elapsed_s, "planned": snap.planned, "written": counts.written,
            "unchanged": counts.unchanged,
            "requests": {"total": snap.requests.total, "reads": snap.requests.reads,
                         "writes": snap.requests.writes, "retries": snap.requests.retries},
            "dead_lettered": counts.dead_lettered, "reenqueued": counts.reenqueued,
            "dead_lettered_by_reason": dict(counts.dead_lettered_by_reason),
            "reenqueued_by_reason": dict(counts.reenqueued_by_reason),
            "blocked_by": snap.blocked_by,
            "throttled_by_code": dict(counts.throttled_by_code),
            "transient_retries": counts.transient_retries, "poisoned": outcome.poisoned,
            "requeue_delay_s": counts.requeue_delay_s,
            "finished": snap.finished, "timeline": outcome.timeline,
            "service_timeline": outcome.service_timeline,
            "verification": asdict(check) if check is not None else None,
            "emulator_stats": outcome.emulator_stats,
            "environments": {c.environment: {"stats": c.stats, "verification": asdict(
                c.verification) if c.verification is not None else None}
                for c in outcome.environments},
            "lanes": [lane.as_dict() for found in outcome.lanes(elapsed_s)
                      for lane in found.lanes],
            "previewed": counts.previewed, "dry_run": outcome.dry_run,
            "enrichment": asdict(counts.enrichment),
            "hosts": [asdict(u) for u in usage]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))
