"""``python -m sync pause|resume|cancel|approve``: stop, go on with, or cancel a definition's
or a run's work across the whole cluster, and approve a run's canary.

- ``pause [--definition NAME | --run ID]``: workers take none of its records (they go back on
  the queue, invisible for ``SYNC_PAUSE_DELAY_S``); a message being written finishes its
  requests in flight and sends the rest back. The planner starts no run of a paused definition.
- ``resume``: clears the flag; ``resume --run ID`` also approves the run's canary.
- ``cancel``: the records still to do are counted cancelled, so the run completes.
- ``approve RUN``: the run's canary lets the rest of the run go.

Exit codes: 0 done; 1 no such definition or run; 2 the storage cannot be used (the message
names what to do, the role needed included).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from collections.abc import Awaitable
from typing import Final, TypeVar

from azure.core.exceptions import AzureError
from azure.data.tables.aio import TableClient

from sync.config.definitions import definitions_from
from sync.config.settings import StorageSettings
from sync.config.storage_names import LEDGER_TABLE, STATE_TABLE
from sync.message.contract import DEFAULT_DEFINITION
from sync.ops.target import TABLE_ROLE, TargetError, add_target_arguments, explain, storage_for
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


class Unknown(Exception):
    """No such definition or run; the message says which exist or how they look."""


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``pause``, ``resume`` and ``cancel``."""
    add_target_arguments(parser)
    parser.add_argument("--definition", default=DEFAULT_DEFINITION, metavar="NAME",
                        help=f"the sync definition ({DEFAULT_DEFINITION})")
    parser.add_argument("--run", metavar="ID", default=None,
                        help="only this run (its id, as `sync status` shows it)")
    parser.add_argument("--reason", default="", help="why, shown by `sync status`")


def configure_approve(parser: argparse.ArgumentParser) -> None:
    """Options of ``approve``."""
    add_target_arguments(parser)
    parser.add_argument("run", metavar="RUN", help="the run whose canary is approved")


def main(args: argparse.Namespace) -> int:
    """Set the flag (or approve); see the module's exit codes."""
    return _run(args, args.action)


def approve_main(args: argparse.Namespace) -> int:
    """``sync approve RUN``."""
    return _run(args, "approve")


def _run(args: argparse.Namespace, action: str) -> int:
    logging.getLogger("azure").setLevel(logging.CRITICAL)
    definition = getattr(args, "definition", DEFAULT_DEFINITION)
    try:
        check_definition(definition)
        storage = storage_for(args)
        print(asyncio.run(apply(storage, action, definition, args.run,
                                reason=getattr(args, "reason", ""), now_s=time.time())))
    except Unknown as error:
        print(f"sync {action}: {error}", file=sys.stderr)
        return 1
    except (TargetError, flags.ControlConflict) as error:
        print(f"sync {action}: {error}", file=sys.stderr)
        return 2
    return 0


async def apply(storage: StorageSettings, action: str, definition: str, run_id: str | None, *,
                reason: str, now_s: float) -> str:
    """Carry out ``action`` (pause, resume, cancel, approve); the sentence to print."""
    check_definition(definition)
    credential = storage_credential(storage)
    try:
        async with (table_client(storage, LEDGER_TABLE, credential) as ledger,
                    table_client(storage, STATE_TABLE, credential) as state):
            if run_id is not None:
                await _guard(_check_run(ledger, run_id), f"table {LEDGER_TABLE}")
            return await _guard(_apply(state, action, definition, run_id,
                                       reason=reason, now_s=now_s),
                                f"table {STATE_TABLE}")
    finally:
        if credential is not None:
            await credential.close()


async def _apply(state: TableClient, action: str, definition: str, run_id: str | None, *,
                 reason: str, now_s: float) -> str:
    if action == "approve" and run_id is not None:
        await canary.approve(state, run_id)
        return f"run {run_id}: canary approved; the rest of the run goes on"
    scope = flags.run_scope(run_id) if run_id else flags.definition_scope(definition)
    await flags.set_flag(state, scope, STATE_OF[action], reason, now_s)
    what = f"run {run_id}" if run_id else f"definition {definition}"
    if action == "resume" and run_id is not None:
        await canary.approve(state, run_id)
        return f"{what} resumed (its canary, if any, approved): {WHAT_NEXT[action]}"
    return f"{what} {STATE_OF[action]}: {WHAT_NEXT[action]}"


def check_definition(definition: str) -> None:
    """``Unknown`` unless the deployment has this definition."""
    names = definitions_from(os.environ).names  # as the deployment's settings here say
    if definition not in names:
        raise Unknown(f"no definition {definition!r}; this deployment defines: "
                      f"{', '.join(names)} (SYNC_DEFINITIONS)")


async def _check_run(ledger: TableClient, run_id: str) -> None:
    if await runs.read_run(ledger, run_id) is None:
        raise Unknown(f"no run {run_id!r} in the ledger (run ids look like "
                      "run-20261122T020000Z-1a2b3c, or a producer's batch id; "
                      "`sync status` shows the latest)")


async def _guard(step: Awaitable[T], resource: str) -> T:
    try:
        return await step
    except AzureError as error:
        raise explain(error, resource, TABLE_ROLE) from None
