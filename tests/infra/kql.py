"""The telemetry contract as the alert and workbook queries may use it, and a reader of KQL text.

The contract is sync/telemetry/names.py, parsed (not imported): its constants grouped by the
section comment above them (``# Attributes.``, ``# Metrics...``, ``# Spans.``, ``# Events...``).
The reader finds, in a query, the event or metric names it filters on (``name == "..."``,
``name in (...)``), the attributes it reads (``customDimensions["..."]``), every string literal,
and the numbers outside string literals. Besides the contract's two tables, a query may be allowed
the Functions host's own (``requests``: an invocation and its ``success``; ``exceptions``).
"""

from __future__ import annotations

import ast
import functools
import re
from dataclasses import dataclass
from pathlib import Path

from sync.config.storage_names import QUEUES

NAMES = Path(__file__).resolve().parents[2] / "sync" / "telemetry" / "names.py"

SECTIONS = {"Attributes": "attributes", "Metrics": "metrics", "Spans": "spans",
            "Events": "events"}
# Constants of names.py that are values an attribute takes, not names.
VALUES = {"DEFAULT_DEFINITION"}
TABLES = {"customMetrics": "metrics", "customEvents": "events"}

STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')
NAME_EQUALS = re.compile(r'\bname\s*==\s*"([^"]*)"')
NAME_IN = re.compile(r'\bname\s+in\s*\(([^)]*)\)')
DIMENSION = re.compile(r'customDimensions\[\s*"([^"]*)"\s*\]')
PLACEHOLDER = re.compile(r"\{\d+\}")
NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?[a-z]*\b")
# Literals shaped like a telemetry name: dotted (sync.records.written) or snake (run_planned).
NAME_SHAPED = re.compile(r"^[a-z][a-z0-9_]*(?:\.[a-z0-9_]+)+$|^[a-z]+(?:_[a-z0-9]+)+$")
# What the Functions host itself writes: one row per invocation, one per exception.
HOST_TABLES = frozenset({"requests", "exceptions"})
# Every table of an Application Insights component but the two the contract lands in.
OTHER_TABLES = ("requests", "dependencies", "traces", "exceptions", "pageViews",
                "availabilityResults", "browserTimings", "performanceCounters", "AppMetrics",
                "AppEvents", "AppTraces", "AppRequests", "AppDependencies")


@dataclass(frozen=True)
class Contract:
    attributes: frozenset[str]
    metrics: frozenset[str]
    spans: frozenset[str]
    events: frozenset[str]

    def names(self) -> frozenset[str]:
        return self.attributes | self.metrics | self.spans | self.events


@functools.cache
def contract() -> Contract:
    """The constants of sync/telemetry/names.py, by section."""
    source = NAMES.read_text(encoding="utf-8")
    section_at = {}
    for number, line in enumerate(source.splitlines(), 1):
        header = re.match(r"^# (\w+)", line)
        if header and header[1] in SECTIONS:
            section_at[number] = SECTIONS[header[1]]
    found: dict[str, set[str]] = {section: set() for section in SECTIONS.values()}
    for node in ast.parse(source).body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.value, ast.Constant)):
            continue
        if isinstance(node.target, ast.Name) and node.target.id in VALUES:
            continue
        above = [line for line in section_at if line < node.lineno]
        if above and isinstance(node.value.value, str):
            found[section_at[max(above)]].add(node.value.value)
    return Contract(**{section: frozenset(values) for section, values in found.items()})


def literals(query: str) -> list[str]:
    """Every double-quoted string literal of a query."""
    return STRING.findall(query)


def filtered_names(query: str) -> set[str]:
    """The names a query filters ``name`` on."""
    names = set(NAME_EQUALS.findall(query))
    for group in NAME_IN.findall(query):
        names.update(literals(group))
    return names


def dimensions(query: str) -> set[str]:
    """The attributes a query reads from customDimensions."""
    return set(DIMENSION.findall(query))


def tables(query: str) -> set[str]:
    """The contract's tables a query reads."""
    return {table for table in TABLES if re.search(rf"\b{table}\b", query)}


def reads_table(query: str, table: str) -> bool:
    """Whether a query reads a table: its name alone before a pipe or at a line's end."""
    return re.search(rf"(^|[\s(=]){table}\s*(\||$)", query, re.MULTILINE) is not None


def numbers(query: str) -> list[str]:
    """Numeric literals outside string literals and ``{0}`` placeholders (``6h``, ``2``)."""
    code = PLACEHOLDER.sub("", STRING.sub('""', query))
    return NUMBER.findall(code)


def problems(query: str, host_tables: frozenset[str] = frozenset()) -> list[str]:
    """What in a query is not the contract: unknown names, attributes, tables. ``host_tables``
    are the tables of HOST_TABLES this query may read instead of the contract's."""
    assert host_tables <= HOST_TABLES, host_tables
    known = contract()
    found = []
    for name in sorted(filtered_names(query)):
        section = "metrics" if name in known.metrics else "events" if name in known.events else None
        if section is None:
            found.append(f"filters on {name!r}, not a metric or event of names.py")
        elif not any(TABLES[table] == section for table in tables(query)):
            found.append(f"{name!r} is one of the {section} but the query does not read its table")
    found += [f"reads attribute {attribute!r}, not in names.py"
              for attribute in sorted(dimensions(query) - known.attributes)]
    found += [f"literal {literal!r} looks like a telemetry name but is not one"
              for literal in literals(query)
              if NAME_SHAPED.match(literal) and literal not in known.names()]
    found += [f"literal {literal!r} looks like a queue but is not one of "
              "sync/config/storage_names.py"
              for literal in literals(query)
              if literal.startswith("sync-") and literal not in QUEUES]
    found += [f"reads table {table}" for table in OTHER_TABLES
              if table not in host_tables and reads_table(query, table)]
    if not tables(query) and not any(reads_table(query, table) for table in host_tables):
        found.append("reads neither customMetrics nor customEvents")
    return found
