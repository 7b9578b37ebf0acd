"""``python -m sync rollback RUN [--dry-run]``: give a run's written records their previous values
back, except where someone changed them since (``sync.safety.restore``).

Storage as every operator command finds it (``--account NAME``, ``--local``, or the
environment: ``sync.ops.target``). Dataverse with the app's own settings: ``DATAVERSE_URL``, and
the identity (``DATAVERSE_CLIENT_ID`` names a managed identity; unset, ``DefaultAzureCredential``:
``az login``) or, for the local stack, ``DATAVERSE_STATIC_TOKEN`` (loopback only); ``--local``
takes both from the running local stack.

The environment is the one the run's definition writes to, as the deployment's hosts
published it (``sync.state.deployment``), through the definition's first identity;
``--environment`` names another. The command says what it will write and asks first
(``--yes`` answers); ``--dry-run`` writes nothing and asks nothing.

Exit codes: 0 every record restored or left for a reason (already restored, changed since, not
restorable, missing); 1 no such run, or some record failed (running the command again is safe:
a record already restored holds its previous values, not the run's, so it is left alone and
counted already restored); 2 nothing done (images expired, settings or storage unusable); 3 not
confirmed; 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Final, TypeVar
from urllib.parse import urlsplit

from azure.core.exceptions import AzureError

from sync.clients.auth import TokenSource, url_token_source
from sync.clients.http import new_session
from sync.clients.record_client import RecordClient
from sync.config.lanes import DEFAULT, identity_token, parse_environments
from sync.config.settings import StorageSettings, is_loopback_url
from sync.config.storage_names import BEFORE_IMAGE_TABLE, LEDGER_TABLE, STATE_TABLE
from sync.failures.errors import ConfigError
from sync.ops.confirm import add_yes_argument, confirm
from sync.ops.known import PUBLISHED, Known, check_definition_name, known_definitions
from sync.ops.outcome import CommandError, NotFound
from sync.ops.progress import ProgressLine
from sync.ops.target import (
    TABLE_ROLE,
    TargetError,
    add_target_arguments,
    app_settings,
    explain,
    local_dataverse,
    storage_for,
)
from sync.safety.restore import DEFAULT_CONCURRENCY, RollbackError, RollbackReport, roll_back
from sync.state import runs
from sync.state.storage import storage_credential, table_client

T = TypeVar("T")
DEFAULT_TIMEOUT_S: Final = 30.0
_LINES: Final = (
    ("restored", "restored", "their previous values are back"),
    ("already_restored", "already restored", "held their previous values already (an earlier "
                                             "rollback): left alone"),
    ("changed_since", "changed since", "someone changed them after the run: kept as they are"),
    ("not_restorable", "not restorable", "written without a read: no previous values"),
    ("missing", "missing", "the record no longer exists"),
    ("failed", "failed", "see the warnings above; run the command again"),
)


@dataclass(frozen=True, slots=True)
class DataverseAccess:
    """Where Dataverse is and how to get a token, from the app's settings."""

    url: str
    static_token: str | None
    client_id: str | None
    timeout_s: float

    def tokens(self) -> TokenSource:
        return url_token_source(self.url, self.static_token, self.client_id)


def dataverse_access(environ: Mapping[str, str],
                     environment: str | None = None) -> DataverseAccess:
    """The Dataverse settings the app uses (``environment``: that one of SYNC_ENVIRONMENTS,
    through its first identity); ``TargetError`` naming what is wrong."""
    lanes = (environ.get("SYNC_ENVIRONMENTS") or "").strip()
    if environment is not None or (lanes and not (environ.get("DATAVERSE_URL") or "").strip()):
        environ = _environment_settings(environ, lanes, environment)
    url = (environ.get("DATAVERSE_URL") or "").strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetError("set DATAVERSE_URL to the environment's URL, e.g. "
                          "https://contoso.crm.dynamics.com (or use --local)")
    token = (environ.get("DATAVERSE_STATIC_TOKEN") or "").strip() or None
    if token and not is_loopback_url(url):
        raise TargetError("DATAVERSE_STATIC_TOKEN is only accepted for a loopback DATAVERSE_URL "
                          "(the local emulators); sign in with `az login` instead")
    try:
        timeout_s = float(environ.get("DATAVERSE_TIMEOUT_S") or DEFAULT_TIMEOUT_S)
    except ValueError:
        raise TargetError("DATAVERSE_TIMEOUT_S must be a number of seconds") from None
    return DataverseAccess(url, token, (environ.get("DATAVERSE_CLIENT_ID") or "").strip() or None,
                           timeout_s)


def _environment_settings(environ: Mapping[str, str], lanes: str,
                          name: str | None) -> dict[str, str]:
    """DATAVERSE_URL, DATAVERSE_CLIENT_ID and the static token of one environment of
    SYNC_ENVIRONMENTS, as its first identity uses them."""
    try:
        environments = parse_environments(lanes) if lanes else ()
    except ConfigError as error:
        raise TargetError(str(error)) from None
    names = ", ".join(e.name for e in environments) or "none"
    if name is None and len(environments) != 1:
        raise TargetError(f"SYNC_ENVIRONMENTS names several environments ({names}): say which "
                          "with --environment NAME")
    found = environments[0] if name is None else next(
        (e for e in environments if e.name == name), None)
    if found is None:
        raise TargetError(f"no environment {name!r} in SYNC_ENVIRONMENTS ({names})")
    identity = found.identities[0]
    settings = {**environ, "DATAVERSE_URL": found.url,
                "DATAVERSE_CLIENT_ID": identity.client_id or ""}
    token = (environ.get("DATAVERSE_STATIC_TOKEN") or "").strip()
    if token:
        settings["DATAVERSE_STATIC_TOKEN"] = identity_token(token, identity.name)
    return settings


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m sync rollback``."""
    parser.add_argument("run", metavar="RUN", help="the run id (as `sync status` shows it)")
    parser.add_argument("--dry-run", action="store_true",
                        help="read and judge every record, write nothing")
    parser.add_argument("--environment", metavar="NAME", default=None,
                        help="restore in this environment of SYNC_ENVIRONMENTS (its first "
                             "identity) instead of the one the run's definition writes to")
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY, metavar="N",
                        help=f"records restored at once ({DEFAULT_CONCURRENCY})")
    add_target_arguments(parser)
    add_yes_argument(parser)


def main(args: argparse.Namespace) -> int:
    """Roll the run back; see the module's exit codes."""
    if args.concurrency < 1:
        raise CommandError("--concurrency must be at least 1")
    if args.environment is not None:
        check_definition_name(args.environment, "--environment")
    storage = storage_for(args)
    environ = local_dataverse() if args.local else app_settings()
    try:
        return asyncio.run(_main(storage, environ, args))
    except RollbackError as error:
        raise CommandError(str(error)) from None


async def _main(storage: StorageSettings, environ: Mapping[str, str],
                args: argparse.Namespace) -> int:
    target = await find_target(storage, args.run, environ, args.environment)
    if not args.dry_run:
        confirm(rollback_plan(args.run, target), yes=args.yes)
    line = ProgressLine("rolling back: records")
    try:
        report = await run(storage, target.access, args.run, dry_run=args.dry_run,
                           concurrency=args.concurrency,
                           on_progress=line.count)
    finally:
        line.close()
    print(render(report))
    return 1 if report.failed else 0


@dataclass(frozen=True, slots=True)
class Target:
    """Where a run is rolled back: its definition, the environment and how to reach it."""

    definition: str
    environment: str
    access: DataverseAccess


async def find_target(storage: StorageSettings, run_id: str, environ: Mapping[str, str],
                      environment: str | None = None) -> Target:
    """The run's definition (from the ledger) and the environment it writes to (as the hosts
    published it); ``--environment`` names another one of SYNC_ENVIRONMENTS."""
    credential = storage_credential(storage)
    try:
        async with (table_client(storage, LEDGER_TABLE, credential) as ledger,
                    table_client(storage, STATE_TABLE, credential) as state):
            totals = await _guard(runs.read_run(ledger, run_id))
            if totals is None:
                raise NotFound(f"no run {run_id!r} in the ledger (run ids look like "
                               "run-20261122T020000Z-1a2b3c, or a producer's batch id)")
            definition = totals.run.definition
            if environment is not None:
                return Target(definition, environment, dataverse_access(environ, environment))
            known = await _guard(known_definitions(state, environ))
    finally:
        if credential is not None:
            await credential.close()
    return _published_target(known, definition, environ)


def _published_target(known: Known, definition: str, environ: Mapping[str, str]) -> Target:
    """The published definition's environment; the shell's settings when none is published."""
    if known.source != PUBLISHED:
        return Target(definition, "", dataverse_access(environ))
    found = known.get(definition)
    identity = found.lanes[0].partition("/")[2] if found.lanes else DEFAULT
    settings = {**environ, "DATAVERSE_URL": found.environment_url, "SYNC_ENVIRONMENTS": ""}
    token = (environ.get("DATAVERSE_STATIC_TOKEN") or "").strip()
    if token:
        settings["DATAVERSE_STATIC_TOKEN"] = identity_token(token, identity)
    return Target(definition, found.environment, dataverse_access(settings))


def rollback_plan(run_id: str, target: Target) -> str:
    """What ``rollback`` will write, said before it asks."""
    where = f"environment {target.environment} " if target.environment else ""
    return (f"This writes to Dataverse, {where}at {target.access.url}: every record run "
            f"{run_id} (definition {target.definition}) changed gets its previous values "
            "back, except those someone changed since. `--dry-run` counts them first.")


async def run(storage: StorageSettings, access: DataverseAccess, run_id: str, *,
              dry_run: bool, concurrency: int = DEFAULT_CONCURRENCY,
              on_progress: Callable[[int, int], None] | None = None) -> RollbackReport:
    """Roll ``run_id`` back with the storage and Dataverse given."""
    credential = storage_credential(storage)
    tokens = access.tokens()
    try:
        async with (table_client(storage, BEFORE_IMAGE_TABLE, credential) as images,
                    table_client(storage, LEDGER_TABLE, credential) as ledger,
                    new_session(concurrency) as session):
            client = RecordClient(session, access.url, tokens, access.timeout_s)
            return await _guard(roll_back(client, images, ledger, run_id, dry_run=dry_run,
                                          concurrency=concurrency, on_progress=on_progress))
    finally:
        await tokens.close()
        if credential is not None:
            await credential.close()


async def _guard(step: Awaitable[T]) -> T:
    try:
        return await step
    except AzureError as error:
        raise explain(error, f"table {BEFORE_IMAGE_TABLE}, {LEDGER_TABLE} or {STATE_TABLE}",
                      TABLE_ROLE) from None


def render(report: RollbackReport) -> str:
    """The counts, one line each."""
    data = report.to_dict()
    head = (f"Rollback of run {report.run_id}"
            + (" (dry run: nothing written; 'restored' counts what would be)"
               if report.dry_run else ""))
    lines = [head] + [f"  {label:<16} {data[key]:>8,}  {meaning}"
                      for key, label, meaning in _LINES]
    if report.expired:
        lines.append(f"  {'expired':<16} {report.expired:>8,}  past "
                     "SYNC_ROLLBACK_RETENTION_DAYS: left alone")
    return "\n".join(lines)
