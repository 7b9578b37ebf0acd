"""``sync pause|resume|cancel|approve``: stop, go on with, or cancel a definition's or a run's
work across the whole cluster, and approve a run's canary.

- ``pause [--definition NAME | --run ID]``: workers take none of its records (they go back on
  the queue, invisible for ``SYNC_PAUSE_DELAY_S``); a message being written finishes its
  requests in flight and sends the rest back. The planner starts no run of a paused definition.
- ``resume``: clears the flag; ``resume --run ID`` also approves the run's canary.
- ``cancel``: the records still to do are counted cancelled, so the run completes (asks first).
- ``approve RUN``: the run's canary lets the rest of the run go.

Names are checked against the definitions the deployment's hosts published
(``sync.ops.known``); without ``--definition``, the deployment's only definition. After setting
a flag the command waits (``--wait``) until a host has read it and says which, or that none
has yet. Exit codes: ``sync --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Final, TypeVar

from azure.core.exceptions import AzureError
from azure.data.tables.aio import TableClient

from sync.config.settings import StorageSettings
from sync.config.storage_names import LEDGER_TABLE, STATE_TABLE
from sync.ops.confirm import add_yes_argument, confirm
from sync.ops.known import Known, known_definitions
from sync.ops.outcome import CommandError, NotFound
from sync.ops.target import (
    TABLE_ROLE,
    TargetError,
    add_target_arguments,
    app_settings,
    explain,
    local_dataverse,
    storage_for,
)
from sync.safety import canary, flags
from sync.safety.flags import CONTROL_CACHE_S
from sync.state import runs
from sync.state.storage import storage_credential, table_client

T = TypeVar("T")
STATE_OF: Final[dict[str, flags.State]] = {
    "pause": "paused", "resume": "running", "cancel": "cancelled"}
WHAT_NEXT: Final = {
    "pause": f"workers stop taking its records within {CONTROL_CACHE_S:g} s; messages being "
             "written finish their requests and send the rest back to the queue",
    "resume": "workers take its records again as the held messages come back",
    "cancel": "its records still to do are counted cancelled as workers meet them",
}
WAIT_S: Final = 3 * CONTROL_CACHE_S
"""How long the command waits for a host to read the flag: every host reads them all each
``CONTROL_CACHE_S``."""
POLL_S: Final = 0.5


class Unknown(NotFound):
    """No such definition or run; the message says which exist or how they look."""


@dataclass(frozen=True, slots=True)
class Request:
    """What the operator asked for."""

    action: str
    definition: str | None = None
    run_id: str | None = None
    reason: str = ""
    yes: bool = False
    wait_s: float = 0.0


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``pause``, ``resume`` and ``cancel``."""
    add_target_arguments(parser)
    parser.add_argument("--definition", default=None, metavar="NAME",
                        help="the sync definition (default: the deployment's only one)")
    parser.add_argument("--run", metavar="ID", default=None,
                        help="only this run (its id, as `sync status` shows it)")
    parser.add_argument("--reason", default="", help="why, shown by `sync status`")
    parser.add_argument("--wait", type=float, default=WAIT_S, metavar="SECONDS",
                        help=f"wait up to SECONDS ({WAIT_S:g}) for a worker to read the flag "
                             "(0: do not wait)")
    add_yes_argument(parser)


def configure_approve(parser: argparse.ArgumentParser) -> None:
    """Options of ``approve``."""
    add_target_arguments(parser)
    parser.add_argument("run", metavar="RUN", help="the run whose canary is approved")


def main(args: argparse.Namespace) -> int:
    """Set the flag (or approve) and print what happens now."""
    request = Request(args.action, args.definition, args.run, args.reason, args.yes,
                      max(0.0, args.wait))
    return _run(args, request)


def approve_main(args: argparse.Namespace) -> int:
    """``sync approve RUN``."""
    return _run(args, Request("approve", run_id=args.run))


def _run(args: argparse.Namespace, request: Request) -> int:
    storage = storage_for(args)
    print(asyncio.run(carry_out(storage, request, command_settings(args), now_s=time.time())))
    return 0


def command_settings(args: argparse.Namespace) -> dict[str, str]:
    """The settings names fall back to: the local stack's with ``--local``, else the
    shell's (``app_settings``)."""
    if not args.local:
        return app_settings()
    try:
        return local_dataverse()
    except TargetError:
        return {}


async def carry_out(storage: StorageSettings, request: Request, environ: dict[str, str], *,
                    now_s: float) -> str:
    """Check the names, ask where it cancels, set the flag (or approve), wait for a worker to
    read it; the sentences to print."""
    credential = storage_credential(storage)
    try:
        async with (table_client(storage, LEDGER_TABLE, credential) as ledger,
                    table_client(storage, STATE_TABLE, credential) as state):
            known = await _guard(known_definitions(state, environ), STATE_TABLE)
            definition = _definition_of(known, request)
            if request.run_id is not None:
                await _guard(_check_run(ledger, request.run_id), LEDGER_TABLE)
            if request.action == "cancel":
                confirm(cancel_plan(definition, request.run_id), yes=request.yes)
            said, flag = await _guard(apply_to(state, request, definition, now_s), STATE_TABLE)
            if flag is None or request.wait_s <= 0:
                return said
            seen = await _guard(wait_for_ack(state, flag, request.wait_s), STATE_TABLE)
            return f"{said}\n{ack_text(seen, waited_s=request.wait_s, set_at_s=flag.set_at_s)}"
    finally:
        if credential is not None:
            await credential.close()


def _definition_of(known: Known, request: Request) -> str:
    """The definition the request names: checked, or the only one; any when a run is named
    and no definition is."""
    if request.run_id is not None and request.definition is None:
        return ""
    return known.choose(request.definition).name


def cancel_plan(definition: str, run_id: str | None) -> str:
    """What ``cancel`` will do, said before it asks."""
    what = f"run {run_id}" if run_id else f"definition {definition} (every run of it)"
    return (f"This cancels {what}: its records still to do are counted cancelled and never "
            "written; a cancelled run cannot be resumed.")


async def apply(storage: StorageSettings, action: str, definition: str, run_id: str | None, *,
                reason: str, now_s: float) -> str:
    """Carry out ``action`` on a definition the caller checked (tests, tools); the sentence."""
    credential = storage_credential(storage)
    try:
        async with (table_client(storage, LEDGER_TABLE, credential) as ledger,
                    table_client(storage, STATE_TABLE, credential) as state):
            if run_id is not None:
                await _guard(_check_run(ledger, run_id), LEDGER_TABLE)
            request = Request(action, definition, run_id, reason)
            said, _ = await _guard(apply_to(state, request, definition, now_s), STATE_TABLE)
            return said
    finally:
        if credential is not None:
            await credential.close()


async def apply_to(state: TableClient, request: Request, definition: str,
                   now_s: float) -> tuple[str, flags.Flag | None]:
    """Set the flag (or approve); the sentence, and the flag as set (None for approve)."""
    run_id = request.run_id
    if request.action == "approve" and run_id is not None:
        await canary.approve(state, run_id)
        return f"run {run_id}: canary approved; the rest of the run goes on", None
    scope = flags.run_scope(run_id) if run_id else flags.definition_scope(definition)
    flag = await flags.set_flag(state, scope, STATE_OF[request.action], request.reason, now_s)
    what = f"run {run_id}" if run_id else f"definition {definition}"
    if request.action == "resume" and run_id is not None:
        await canary.approve(state, run_id)
        return f"{what} resumed (its canary, if any, approved): {WHAT_NEXT['resume']}", flag
    return f"{what} {STATE_OF[request.action]}: {WHAT_NEXT[request.action]}", flag


async def wait_for_ack(state: TableClient, flag: flags.Flag, wait_s: float) -> flags.Flag:
    """The flag once a host has read the version set (or as it is after ``wait_s``)."""
    deadline_s = time.monotonic() + wait_s
    while True:
        found = await flags.read_flag(state, flag.scope)
        if found.set_at_s != flag.set_at_s or found.acked_by or time.monotonic() >= deadline_s:
            return found
        await asyncio.sleep(POLL_S)


def ack_text(found: flags.Flag, *, waited_s: float, set_at_s: float | None = None) -> str:
    """Who has read the flag since it was set, or that no worker has yet."""
    if set_at_s is not None and found.set_at_s != set_at_s:
        return "the flag was set again meanwhile (by someone else): see `sync status`"
    if not found.acked_by:
        return (f"no worker has read it yet (waited {waited_s:g} s): hosts read the flags "
                f"every {CONTROL_CACHE_S:g} s while they run; an idle app may have no "
                "instance running, and one that starts reads it first")
    after_s = max(0.0, found.first_ack_s - found.set_at_s)
    return (f"acknowledged by {', '.join(found.acked_by)} ({after_s:.1f} s after it was "
            "set)")


async def _check_run(ledger: TableClient, run_id: str) -> None:
    if await runs.read_run(ledger, run_id) is None:
        raise Unknown(f"no run {run_id!r} in the ledger (run ids look like "
                      "run-20261122T020000Z-1a2b3c, or a producer's batch id; "
                      "`sync status` shows the latest)")


async def _guard(step: Awaitable[T], table: str) -> T:
    try:
        return await step
    except AzureError as error:
        raise explain(error, f"table {table}", TABLE_ROLE) from None
    except flags.ControlConflict as error:
        raise CommandError(str(error)) from None
