"""The Dataverse enrichment sync's command line: run it on this machine, operate a deployment.

On this machine: local (what `make run` runs), host, emulator, enqueue.
On a deployment: status, init-storage, deadletters, poison, rollback, pause,
resume, cancel, approve. They reach Azure with --account NAME, a stack left
running by `local --keep` with --local, or else the AzureWebJobsStorage setting.
Every command has its own --help.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from sync.local import enqueue, host, stack
from sync.local.emulators import enrichment
from sync.local.emulators.webapi import cli as dataverse_cli
from sync.ops import control, deadletters, initstorage, poison, rollback, status

Main = Callable[[argparse.Namespace], int]

EXIT_CODES = """exit codes:
  0    done
  1    local: a record not accounted for, or the run blocked; rollback: a record not
       restored; status, pause, resume, cancel, approve: no such run or definition
  2    nothing done: bad options, settings, input or storage (one sentence on stderr)
  130  stopped by Ctrl-C (local, status --watch, rollback); 143 by SIGTERM (local)
"""


def build_parser() -> argparse.ArgumentParser:
    """The command line: ``local``, ``host``, ``enqueue``, ``status``, the repair commands,
    ``pause|resume|cancel|approve``, ``emulator dataverse|enrichment``."""
    parser = argparse.ArgumentParser(prog="python -m sync", description=__doc__,
                                     epilog=EXIT_CODES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    _add(commands, "local", "one full sync on Azurite and the emulators, checked",
         stack.configure_parser, stack.main)
    _add(commands, "host", "function_app.py as one local Functions host",
         host.configure_parser, host.main)
    _add(commands, "enqueue", "validate a JSONL file of records and queue them",
         enqueue.configure_parser, enqueue.main)
    _add(commands, "status", "how the current or last run is going, or ended",
         status.configure_parser, status.main)
    _add(commands, "init-storage", "create the app's queues and tables where missing",
         initstorage.configure_parser, initstorage.main)
    _add(commands, "deadletters", "list, show, replay or purge dead-lettered records",
         deadletters.configure_parser, deadletters.main)
    _add(commands, "poison", "list, show, replay or purge poison messages",
         poison.configure_parser, poison.main)
    _add(commands, "rollback", "restore what a run wrote, except where edited since",
         rollback.configure_parser, rollback.main)
    for action, text in (("pause", "pause a definition or a run across the cluster"),
                         ("resume", "resume a definition or run (approves its canary)"),
                         ("cancel", "cancel a definition's or a run's remaining records")):
        _add(commands, action, text, control.configure_parser, control.main)
        commands.choices[action].set_defaults(action=action)
    _add(commands, "approve", "approve a run's canary: the rest of the run goes on",
         control.configure_approve, control.approve_main)
    emulator = commands.add_parser("emulator", help="serve the dataverse or enrichment emulator")
    kinds = emulator.add_subparsers(dest="kind", required=True)
    _add(kinds, "dataverse", "the Dataverse Web API emulator", dataverse_cli.configure_parser,
         dataverse_cli.main)
    _add(kinds, "enrichment", "the enrichment API emulator", enrichment.configure_parser,
         enrichment.main)
    return parser


def _add(commands: argparse._SubParsersAction[argparse.ArgumentParser], name: str, text: str,
         configure: Callable[[argparse.ArgumentParser], None], main: Main) -> None:
    parser = commands.add_parser(name, help=text, description=text)
    configure(parser)
    parser.set_defaults(main=main)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse and dispatch."""
    args = build_parser().parse_args(argv)
    command: Main = args.main
    return command(args)
