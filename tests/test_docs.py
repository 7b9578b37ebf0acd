"""The README and docs/ cannot drift from the code.

- Every command they show (`python -m sync ...`, `.venv/bin/python -m sync ...`, `sync ...`,
  `python -m bench ...`, `make ...`), in a code block or inline, goes through the real argument
  parser without running; an unknown command or option fails. A synopsis (`status [--json]`,
  `list|show`) is held to its command words and options.
- Every setting, queue, table, metric, span, event and attribute they name exists in the code
  (sync/config/settings.py, sync/config/storage_names.py, sync/telemetry/names.py), and each of
  those is named in them.
- Every path they name exists, and every link (to a file or a heading) leads somewhere.
- `python -m sync --help` gives each command one line; docs/architecture.md lists each wing of
  sync/ with the first line of its docstring.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib
import io
import re
import shlex
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Final, NoReturn
from unittest import mock

import pytest

from bench import cli as bench_cli
from bench import floor as bench_floor
from sync.cli import build_parser
from sync.config import storage_names
from sync.config.host_settings import HOST_SETTING_NAMES
from sync.config.settings import SETTING_NAMES
from sync.telemetry import names

ROOT: Final = Path(__file__).resolve().parent.parent
DOCS: Final = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
PARSERS: Final[dict[str, Callable[[], argparse.ArgumentParser]]] = {
    "sync": build_parser,
    "bench": bench_cli._parser,
    "bench.floor": bench_floor._parser,
}
"""Modules the docs run with ``python -m`` whose parser can be built alone; any other module of
sync/ or bench/ is parsed by its ``main`` (``parsed_by_main``)."""

SHELL_BREAKS: Final = frozenset({"|", "||", "&&", ";", "&", ">", ">>", "2>&1"})
SYNOPSIS: Final = re.compile(r"\[|\\\||\|(?! )|\.\.\.")
"""A synopsis, not a command line: optional parts, alternatives, an ellipsis."""

OTHER_SETTING_NAMES: Final = {"SYNC_LOCAL_RUN_DIR": "sync/ops/target.py",
                               "SYNC_LOCAL_CLOCK_OFFSET_S": "sync/local/host_knobs.py",
                               "SYNC_LOCAL_MESSAGE_LEASE_S": "sync/local/host_knobs.py"}
"""Environment variables the docs mention beside the app settings, and where each is read."""
UNSET_PLATFORM_SETTINGS: Final = frozenset({"PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY"})
"""Platform settings the docs say the app leaves unset: the Bicep sets only the app's and the
host's settings (tests/infra/test_app_settings.py), so these must be neither."""
EXAMPLE_KEY_SETTING: Final = re.compile(r"^ENRICHMENT_API_KEY_[A-Z0-9_]{1,64}$")
"""A definition's ``enrichment_key_setting`` (sync/config/definitions.py): an example name."""
SETTING_LIKE: Final = re.compile(
    r"\b(?:AzureWebJobsStorage(?:__[A-Za-z]+)?|"
    r"(?:PYTHON_)?(?:SYNC|DATAVERSE|ENRICHMENT|APPLICATIONINSIGHTS)_[A-Z0-9_]*[A-Z0-9])\b")
QUEUE_LIKE: Final = re.compile(r"(?<![\w-])sync-[a-z]+(?:-[a-z]+)*\b(?!-)")
TABLE_LIKE: Final = re.compile(r"\bSync[A-Z][A-Za-z]+\b")
TABLE_LIKE_CODE_NAMES: Final = frozenset({"SyncDefinition", "SyncError"})
"""Class names of sync/ that look like table names; the test checks they exist."""
PATH_LIKE: Final = re.compile(r"(?<![\w./-])(?:sync|tests|bench|infra|schemas|docs)/[\w./-]*")
EVENT_CONTEXT: Final = re.compile(r"(?:emits?|emitted|logs|logged|event)\W{0,3}$")


@dataclass(frozen=True, slots=True)
class Shown:
    """Something a doc shows: where, and the text."""

    doc: Path
    line: int
    text: str
    inline: bool

    def __str__(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}: {self.text}"


@cache
def text_of(doc: Path) -> str:
    return doc.read_text(encoding="utf-8")


def blocks(doc: Path) -> Iterator[Shown]:
    """Each line of each fenced code block (continuation lines joined)."""
    inside, pending, start = False, "", 0
    for number, line in enumerate(text_of(doc).splitlines(), 1):
        if line.lstrip().startswith("```"):
            inside, pending = not inside, ""
            continue
        if not inside:
            continue
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        yield Shown(doc, start, pending + line, inline=False)
        pending = ""


def prose(doc: Path) -> Iterator[tuple[int, str]]:
    """The lines outside code blocks."""
    inside = False
    for number, line in enumerate(text_of(doc).splitlines(), 1):
        if line.lstrip().startswith("```"):
            inside = not inside
        elif not inside:
            yield number, line


def paragraphs(doc: Path) -> Iterator[tuple[int, str]]:
    """The prose as paragraphs (their lines joined, so a span may cross a line), with the first
    line's number; a table row is a paragraph of its own."""
    lines: list[str] = []
    start = 0
    for number, line in [*prose(doc), (0, "")]:
        if line.strip() and not line.lstrip().startswith("|"):
            start = start or number
            lines.append(line.strip())
            continue
        if lines:
            yield start, " ".join(lines)
            lines, start = [], 0
        if line.strip():
            yield number, line


def spans(doc: Path) -> Iterator[Shown]:
    """Each inline code span."""
    for number, text in paragraphs(doc):
        for found in re.finditer(r"`([^`]+)`", text):
            yield Shown(doc, number, found.group(1), inline=True)


def everything_shown() -> Iterator[Shown]:
    for doc in DOCS:
        yield from blocks(doc)
        yield from spans(doc)


# (a) Command lines through the real parsers.

@dataclass(frozen=True, slots=True)
class Command:
    """A command line as a doc shows it: the program and its arguments."""

    shown: Shown
    program: str
    """``sync``, ``bench``, ``bench.floor`` (a ``python -m`` module) or ``make``."""
    args: tuple[str, ...]


def command_of(shown: Shown) -> Command | None:
    """The command a line or span shows, if it is one of ours."""
    text = shown.text.strip().removeprefix("$ ")
    try:
        words = shlex.split(SYNOPSIS.sub(" ", text) if SYNOPSIS.search(text) else text,
                            comments=True)
    except ValueError:
        return None
    while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
        words = words[1:]
    cut = next((i for i, word in enumerate(words) if word in SHELL_BREAKS), len(words))
    words = words[:cut]
    if len(words) >= 3 and words[0] in ("python", ".venv/bin/python") and words[1] == "-m":
        module = words[2]
        if module.split(".")[0] in ("sync", "bench"):
            return Command(shown, module, tuple(words[3:]))
        return None
    if words[:1] == ["sync"] and shown.inline and len(words) > 1:
        return Command(shown, "sync", tuple(words[1:]))
    if words[:1] == ["make"] and len(words) > 1:
        return Command(shown, "make", tuple(words[1:]))
    return None


def commands() -> list[Command]:
    return [command for shown in everything_shown() if (command := command_of(shown))]


PLACEHOLDER: Final = re.compile(r"invalid \w+ value: '(?:[A-Z][A-Z_]*|<[^>]+>)'")
"""argparse refusing a placeholder (``--identities N``) as a value: the option exists, and the
reader puts a value there."""


def parse(parser: argparse.ArgumentParser, args: list[str]) -> str | None:
    """None when ``args`` parse (``--help`` included), else what argparse said."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            parser.parse_args(args)
        except SystemExit as stopped:
            said = err.getvalue().strip().splitlines()[-1] if stopped.code else ""
            return None if not said or PLACEHOLDER.search(said) else said
    return None


def command_words(parser: argparse.ArgumentParser, args: tuple[str, ...]) -> bool:
    """Are ``args`` only command words (``rollback``, ``deadletters list``): a command named
    in prose, not a command line?"""
    for word in args:
        choices = subparsers(parser)
        if word not in choices:
            return False
        parser = choices[word]
    return bool(args)


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    found = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(found[0].choices) if found else {}


def synopsis_problems(parser: argparse.ArgumentParser, text: str) -> list[str]:
    """A synopsis holds when its command words are commands (each alternative of ``a|b``)
    and every option it names is one of the last command's."""
    words = [w for w in re.split(r"[\s\[\]]+", text.replace("\\|", "|")) if w]
    problems: list[str] = []
    for word in words:
        choices = subparsers(parser)
        if not choices or word.startswith("-"):
            break
        alternatives = word.split("|")
        problems += [f"no command {alt!r}" for alt in alternatives if alt not in choices]
        if alternatives[0] not in choices:
            return problems
        parser = choices[alternatives[0]]
    known = set(parser._option_string_actions)
    options = re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", text)
    return problems + [f"no option {option}" for option in options if option not in known]


@cache
def make_targets() -> frozenset[str]:
    makefile = (ROOT / "Makefile").read_text()
    return frozenset(re.findall(r"^([A-Za-z][\w.-]*):", makefile, re.MULTILINE))


def make_problems(command: Command) -> list[str]:
    """``make TARGET [VAR=value ...]``: the target exists; ``ARGS`` of ``run`` and ``bench``
    parse as the options of ``sync local`` and ``bench``."""
    targets = [word for word in command.args if "=" not in word]
    assignments = dict(word.split("=", 1) for word in command.args if "=" in word)
    problems = [f"no make target {target!r}" for target in targets
                if target not in make_targets()]
    extra = shlex.split(assignments.get("ARGS", ""))
    if "run" in targets:
        problems.append(parse(build_parser(), ["local", *extra]) or "")
    if "bench" in targets:
        problems.append(parse(bench_cli._parser(), extra) or "")
    return [problem for problem in problems if problem]


class _Parsed(Exception):
    """Raised right after a ``main`` parsed its arguments, so nothing runs."""


def parsed_by_main(module: str) -> Callable[[], argparse.ArgumentParser] | None:
    """For a module whose ``main(argv)`` builds its parser inline: a factory of a parser whose
    ``parse_args`` goes through that ``main`` and stops as soon as it parsed."""
    try:
        main = importlib.import_module(module).main
    except (ImportError, AttributeError):
        return None

    class ThroughMain(argparse.ArgumentParser):
        def parse_args(self, args: Sequence[str] | None = None,
                       namespace: Any = None) -> NoReturn:
            original = argparse.ArgumentParser.parse_args

            def stop(parser: argparse.ArgumentParser, given: Any = None,
                     space: Any = None) -> NoReturn:
                original(parser, given, space)
                raise _Parsed

            with mock.patch.object(argparse.ArgumentParser, "parse_args", stop), \
                    contextlib.suppress(_Parsed):
                main(list(args or []))
            raise SystemExit(0)

    return ThroughMain


def command_problems(command: Command) -> list[str]:
    if command.program == "make":
        return make_problems(command)
    factory = PARSERS.get(command.program) or parsed_by_main(command.program)
    if factory is None:
        return [f"python -m {command.program}: not a module the docs may run"]
    text = command.shown.text
    if SYNOPSIS.search(text):
        start = text.find(" ".join(command.args[:1])) if command.args else len(text)
        return synopsis_problems(factory(), text[start:])
    if command.shown.inline and (not command.args or command_words(factory(), command.args)):
        return []  # the program or a command named in prose: "`python -m sync`", "`rollback`"
    problem = parse(factory(), list(command.args))
    return [problem] if problem else []


def test_the_docs_show_commands_of_every_kind() -> None:
    programs = {command.program for command in commands()}
    assert {"sync", "bench", "make"} <= programs, programs
    assert len(commands()) > 100


@pytest.mark.parametrize("command", commands(), ids=lambda command: str(command.shown))
def test_every_command_shown_parses(command: Command) -> None:
    assert command_problems(command) == [], str(command.shown)


@pytest.mark.parametrize(("text", "says"), [
    ("python -m sync statuss --local", "invalid choice"),
    (".venv/bin/python -m sync status --colour", "unrecognized arguments"),
    ("make runn", "no make target"),
    ("make run ARGS=--recordz", "unrecognized arguments"),
    ("python -m bench --quik", "unrecognized arguments"),
    ("python -m bench.chart only-one-argument", "the following arguments are required"),
    ("python -m bench.nothing", "not a module the docs may run"),
    ("sync deadletters list|shw --run X", "no command 'shw'"),
    ("sync status [--jsn]", "no option --jsn"),
])
def test_a_wrong_command_is_caught(text: str, says: str) -> None:
    command = command_of(Shown(ROOT / "README.md", 1, text, inline=True))
    assert command is not None
    assert says in " ".join(command_problems(command))


def test_the_commands_table_lists_every_command() -> None:
    doc = text_of(ROOT / "docs" / "operations.md")
    table = doc.split("\n## The commands\n", 1)[1].split("\n## ", 1)[0]
    listed = {row.split()[0] for row in re.findall(r"^\| `([^`]+)` \|", table, re.MULTILINE)}
    assert listed == set(subparsers(build_parser())), listed
    for row in re.findall(r"^\| `([^`]+)` \|", table, re.MULTILINE):
        assert synopsis_problems(build_parser(), row) == [], row


EXTERNAL_TOOLS: Final = frozenset({"az", "azd", "func", "pac", "pip", "pytest", "mypy", "uv",
                                    "checkov", "curl", "npm", "npx"})
EXTERNAL_OPTIONS: Final = {
    "--dist": "pytest-xdist", "--durations": "pytest", "--strict": "mypy",
    "--require-hashes": "pip", "--upgrade": "uv pip compile (LOCK_ARGS)",
    "--skip-download": "checkov", "--parameters": "az deployment group create",
    "--expires": "az keyvault secret set",
}
"""Options the prose names alone that belong to another tool, with the tool."""


def every_option(parser: argparse.ArgumentParser) -> set[str]:
    options = set(parser._option_string_actions)
    for sub in subparsers(parser).values():
        options |= every_option(sub)
    return options


def test_every_option_named_alone_is_one_of_ours() -> None:
    ours = set().union(*(every_option(factory()) for factory in PARSERS.values()))
    unknown = []
    for shown in everything_shown():
        words = shown.text.split()
        if not shown.inline or command_of(shown) or words[0] in EXTERNAL_TOOLS:
            continue
        unknown += [f"{shown}  [{option}]" for option in
                    re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", shown.text)
                    if option not in ours and option not in EXTERNAL_OPTIONS]
    assert unknown == []


# (b) Names: the docs against the code, both ways.

@cache
def all_text() -> str:
    return "\n".join(text_of(doc) for doc in DOCS)


def names_in_docs(pattern: re.Pattern[str]) -> dict[str, str]:
    """Every name ``pattern`` finds, with the first place it was shown."""
    found: dict[str, str] = {}
    for shown in everything_shown():
        for name in pattern.findall(shown.text):
            found.setdefault(name, str(shown))
    return found


def code_has(name: str, where: str) -> bool:
    return name in (ROOT / where).read_text(encoding="utf-8")


def test_every_setting_named_exists() -> None:
    known = set(SETTING_NAMES) | set(HOST_SETTING_NAMES)
    assert not UNSET_PLATFORM_SETTINGS & known
    unknown = {name: at for name, at in names_in_docs(SETTING_LIKE).items()
               if name not in known | UNSET_PLATFORM_SETTINGS
               and not EXAMPLE_KEY_SETTING.match(name)
               and not (name in OTHER_SETTING_NAMES and code_has(name, OTHER_SETTING_NAMES[name]))}
    assert unknown == {}


def test_every_setting_is_named() -> None:
    named = names_in_docs(SETTING_LIKE)
    assert sorted({*SETTING_NAMES, *HOST_SETTING_NAMES} - set(named)) == []


def test_every_queue_and_table_named_exists_and_each_is_named() -> None:
    queues = names_in_docs(QUEUE_LIKE)
    tables = {name: at for name, at in names_in_docs(TABLE_LIKE).items()
              if name not in TABLE_LIKE_CODE_NAMES}
    assert {n: at for n, at in queues.items() if n not in storage_names.QUEUES} == {}
    assert {n: at for n, at in tables.items() if n not in storage_names.TABLES} == {}
    assert sorted(set(storage_names.QUEUES) - set(queues)) == []
    assert sorted(set(storage_names.TABLES) - set(tables)) == []


def test_the_class_names_that_look_like_tables_are_classes() -> None:
    sources = "\n".join(p.read_text() for p in (ROOT / "sync").rglob("*.py"))
    for name in TABLE_LIKE_CODE_NAMES:
        assert f"class {name}" in sources, name


def telemetry_names() -> dict[str, str]:
    """Every name of the telemetry contract, by its constant."""
    return {constant: value for constant, value in vars(names).items()
            if constant.isupper() and isinstance(value, str)
            and constant not in ("DEFAULT_DEFINITION", "MESSAGE_DEFINITION")}


@cache
def log_events() -> frozenset[str]:
    """The ``event`` of every structured log record of sync/."""
    sources = "\n".join(p.read_text() for p in (ROOT / "sync").rglob("*.py"))
    return frozenset(re.findall(r'"event": "([a-z_]+)"', sources))


def is_code_path(dotted: str) -> bool:
    """A module of sync/ (or a name in one): ``sync.work.holds``, ``sync.entry.process_message``,
    ``sync.work.worker.process_queue_message``."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        base = ROOT.joinpath(*parts[:cut])
        module = base.with_suffix(".py") if base.with_suffix(".py").exists() else \
            base / "__init__.py"
        if module.exists():
            return cut == len(parts) or _defines(module, parts[cut:])
    return False


def _defines(module: Path, names_left: list[str]) -> bool:
    """Does ``module`` define ``names_left[0]`` (a class, function or assignment), and the
    class that name, its method ``names_left[1]``?"""
    tree = ast.parse(module.read_text())
    for node in ast.walk(tree):
        name = getattr(node, "name", None) or next(
            (t.id for t in getattr(node, "targets", []) if isinstance(t, ast.Name)), None) or (
            node.target.id if isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name) else None)
        if name == names_left[0]:
            return len(names_left) == 1 or any(
                getattr(child, "name", None) == names_left[1] for child in ast.walk(node))
    return False


def test_every_dotted_sync_name_is_telemetry_or_code() -> None:
    contract = set(telemetry_names().values())
    unknown = [str(shown) for shown in everything_shown() if shown.inline
               and re.fullmatch(r"sync(?:\.[A-Za-z_][\w]*)+", shown.text)
               and shown.text not in contract and not is_code_path(shown.text)]
    assert unknown == []


def named_events() -> dict[str, str]:
    """Snake-case names the prose calls an event: emitted, logged, or followed by "event"."""
    found: dict[str, str] = {}
    for doc in DOCS:
        for number, text in paragraphs(doc):
            for match in re.finditer(r"`([a-z]+(?:_[a-z]+)+)`", text):
                before, after = text[:match.start()], text[match.end():]
                if EVENT_CONTEXT.search(before) or after.startswith((" event", " events")):
                    found.setdefault(match.group(1), f"{doc.relative_to(ROOT)}:{number}")
    return found


def test_every_event_named_is_emitted_or_logged() -> None:
    known = set(telemetry_names().values()) | log_events()
    events = named_events()
    assert len(events) >= 5, events
    assert {name: at for name, at in events.items() if name not in known} == {}


def test_every_telemetry_name_is_in_the_docs() -> None:
    text = all_text()
    assert sorted(v for v in telemetry_names().values() if f"`{v}`" not in text) == []


# (d) Paths and links.

def test_every_path_named_exists() -> None:
    missing = []
    for shown in everything_shown():
        for found in PATH_LIKE.finditer(shown.text):
            if shown.text[found.end():found.end() + 1] in ("<", "{", "*"):
                continue  # a pattern (bench/results/bench-<time>.md, sync/local/*)
            path = found.group(0).rstrip(".,:;")
            if not (ROOT / path).exists():
                missing.append(f"{shown}  [{path}]")
    assert missing == []


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


@cache
def anchors(doc: Path) -> frozenset[str]:
    return frozenset(slug(line.lstrip("#")) for _, line in prose(doc)
                     if re.match(r"^#{1,6} ", line))


def test_every_link_leads_somewhere() -> None:
    broken = []
    for doc in DOCS:
        for number, line in prose(doc):
            for target in re.findall(r"\]\(([^)\s]+)\)", line):
                if target.startswith(("http://", "https://", "mailto:")):
                    continue
                path, _, anchor = target.partition("#")
                goal = (doc.parent / path).resolve() if path else doc
                if not goal.exists():
                    broken.append(f"{doc.relative_to(ROOT)}:{number}: {target}")
                elif anchor and goal.suffix == ".md" and anchor not in anchors(goal):
                    broken.append(f"{doc.relative_to(ROOT)}:{number}: #{anchor}")
    assert broken == []


# (c) The help, and the layout the architecture describes.

def test_the_help_gives_every_command_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    parser = build_parser()
    text = parser.format_help()
    listing = text.split("positional arguments:\n", 1)[1].split("\n\n", 1)[0].splitlines()[1:]
    rows = {line.split()[0]: line for line in listing if re.match(r"^ {4}\S", line)}
    assert set(rows) == set(subparsers(parser))
    assert [line for line in listing if re.match(r"^ {5,}", line)] == [], "a help that wraps"
    for name, sub in subparsers(parser).items():
        assert rows[name].split(None, 1)[1] == _help_of(parser, name), name
        assert sub is not None
    assert "exit codes:" in text
    assert "``" not in text, "reST quotes in the help"


def _help_of(parser: argparse.ArgumentParser, name: str) -> str:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return next(str(choice.help) for choice in action._choices_actions if choice.dest == name)


def first_docstring_line(path: Path) -> str:
    return (ast.get_docstring(ast.parse(path.read_text())) or "").split("\n")[0].strip()


def test_the_architecture_lists_every_wing_with_its_purpose() -> None:
    doc = text_of(ROOT / "docs" / "architecture.md")
    layout = doc.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    listed = dict(re.findall(r"^\| `sync/(\w+)/` \| (.+) \|$", layout, re.MULTILINE))
    wings = {p.parent.name: first_docstring_line(p)
             for p in sorted((ROOT / "sync").glob("*/__init__.py"))}
    assert listed == wings
    top = {f"sync/{p.name}" for p in (ROOT / "sync").glob("*.py")
           if p.name not in ("__init__.py", "__main__.py")}
    assert top == set(re.findall(r"^\| `(sync/\w+\.py)` \|", layout, re.MULTILINE))
