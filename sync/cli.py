"""The Dataverse enrichment sync's command line: run it on this machine, operate a deployment.

On this machine: local (what `make run` runs), host, emulator, enqueue.
On a deployment: status, init-storage, deadletters, poison, rollback, pause,
resume, cancel, approve. They reach Azure with --account NAME, a stack left
running by `local --keep` with --local, or else the AzureWebJobsStorage setting.
Every command has its own --help.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Final

from sync.ops.outcome import CommandError, error_line, exit_codes_text, reported

Main = Callable[[argparse.Namespace], int]
Configure = Callable[[argparse.ArgumentParser], None]
DISTRIBUTION: Final = "dataverse-enrichment-sync"


@dataclass(frozen=True, slots=True)
class Command:
    """One command: its name, its one-line help, and how to load it. Its module is imported
    only when the command is the one run (``sync --help`` imports none of them)."""

    name: str
    help: str
    load: Callable[[], Configure]
    operator: bool = True
    """Talks to storage as an operator: the Azure SDK stays quiet unless ``--debug``."""


def _with(configure: Configure, main: Main, **defaults: str) -> Configure:
    def setup(parser: argparse.ArgumentParser) -> None:
        configure(parser)
        parser.set_defaults(main=reported(main), **defaults)
    return setup


def _local() -> Configure:
    from sync.local import stack
    return _with(stack.configure_parser, stack.main)


def _host() -> Configure:
    from sync.local import host
    return _with(host.configure_parser, host.main)


def _enqueue() -> Configure:
    from sync.local import enqueue
    return _with(enqueue.configure_parser, enqueue.main)


def _status() -> Configure:
    from sync.ops import status
    return _with(status.configure_parser, status.main)


def _init_storage() -> Configure:
    from sync.ops import initstorage
    return _with(initstorage.configure_parser, initstorage.main)


def _deadletters() -> Configure:
    from sync.ops import deadletters
    return _with(deadletters.configure_parser, deadletters.main)


def _poison() -> Configure:
    from sync.ops import poison
    return _with(poison.configure_parser, poison.main)


def _rollback() -> Configure:
    from sync.ops import rollback
    return _with(rollback.configure_parser, rollback.main)


def _control(action: str) -> Callable[[], Configure]:
    def load() -> Configure:
        from sync.ops import control
        return _with(control.configure_parser, control.main, action=action)
    return load


def _approve() -> Configure:
    from sync.ops import control
    return _with(control.configure_approve, control.approve_main)


def _emulator() -> Configure:
    def setup(parser: argparse.ArgumentParser) -> None:
        from sync.local.emulators import enrichment
        from sync.local.emulators.webapi import cli as dataverse_cli
        kinds = parser.add_subparsers(dest="kind", required=True)
        for name, text, configure, main in (
                ("dataverse", "the Dataverse Web API emulator", dataverse_cli.configure_parser,
                 dataverse_cli.main),
                ("enrichment", "the enrichment API emulator", enrichment.configure_parser,
                 enrichment.main)):
            _with(configure, main)(kinds.add_parser(name, help=text, description=text))
    return setup


COMMANDS: Final = (
    Command("local", "one full sync on Azurite and the emulators, checked", _local,
            operator=False),
    Command("host", "function_app.py as one local Functions host", _host,
            operator=False),
    Command("enqueue", "validate a JSONL file of records and queue them",
            _enqueue),
    Command("status", "how the current or last run is going, or ended", _status),
    Command("init-storage", "create the app's queues and tables where missing", _init_storage),
    Command("deadletters", "list, show, replay or purge dead-lettered records", _deadletters),
    Command("poison", "list, show, replay or purge poison messages", _poison),
    Command("rollback", "restore what a run wrote, except where edited since", _rollback),
    Command("pause", "pause a definition or a run across the cluster", _control("pause")),
    Command("resume", "resume a definition or run (approves its canary)",
            _control("resume")),
    Command("cancel", "cancel a definition's or a run's remaining records", _control("cancel")),
    Command("approve", "approve a run's canary: the rest of the run goes on", _approve),
    Command("emulator", "serve the dataverse or enrichment emulator", _emulator, operator=False),
)


def version() -> str:
    """The installed distribution's version, else the checkout's ``pyproject.toml``."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        try:
            project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml")
                                    .read_text(encoding="utf-8"))
            return str(project["project"]["version"])
        except (OSError, ValueError, KeyError):
            return "unknown"


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The command line. With ``argv``, only the command it names is loaded (every other
    command is listed by name and help alone); without, every command is."""
    parser = argparse.ArgumentParser(
        prog="sync", description=__doc__, epilog=exit_codes_text(),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    parser.add_argument("--debug", action="store_true",
                        help="log the Azure SDK's requests and the app's events on stderr "
                             "(secrets redacted)")
    commands = parser.add_subparsers(dest="command", required=True)
    wanted = None if argv is None else command_in(argv)
    for command in COMMANDS:
        sub = commands.add_parser(command.name, help=command.help, description=command.help,
                                  epilog=exit_codes_text(),
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        if wanted is None or wanted == command.name:
            command.load()(sub)
    return parser


def command_in(argv: Sequence[str]) -> str:
    """The command ``argv`` runs: its first word that is not an option (the options before it
    take no value); empty when there is none."""
    return next((word for word in argv if not word.startswith("-")), "")


def _logging(debug: bool, name: str) -> None:
    operator = next((c.operator for c in COMMANDS if c.name == name), False)
    if not (debug or operator):
        return
    from sync.ops import debug as debugging
    if not debug:
        debugging.quiet_sdk()
        return
    from sync.ops.target import app_settings, saved_secrets
    debugging.enable_debug({**app_settings(), **saved_secrets()})


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, load the one command named, run it; errors as ``sync: error: ...``."""
    words = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(words).parse_args(words)
    try:
        _logging(args.debug, args.command)
    except CommandError as error:
        print(error_line(error), file=sys.stderr)
        return error.exit_code
    command: Main = args.main
    return command(args)
