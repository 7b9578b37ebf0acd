"""OData pieces: $filter (eq ne gt ge lt le, and, or, parentheses, null), $select, key segments,
and the error bodies the Web API answers with."""

from __future__ import annotations

import operator
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

Row = dict[str, Any]
Predicate = Callable[[Row], bool]

_TOKEN: Final = re.compile(r"""\s*(?:
    (?P<string>'(?:[^']|'')*')
  | (?P<guid>[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\b)
  | (?P<date>\d{4}-\d{2}-\d{2}(?:T[\d:.]+(?:Z|[+-]\d{2}:\d{2})?)?)
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<paren>[()])
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
)""", re.VERBOSE)
_COMPARE: Final = {"eq", "ne", "gt", "ge", "lt", "le"}
_RESERVED: Final = _COMPARE | {"and", "or", "not", "null", "true", "false"}
_ORDER: Final[dict[str, Callable[[Any, Any], Any]]] = {
    "gt": operator.gt, "ge": operator.ge, "lt": operator.lt, "le": operator.le}
_KEY: Final = re.compile(
    r"^(?P<set>[A-Za-z_][A-Za-z0-9_]*)(?:\((?P<key>(?:[^)']|'(?:[^']|'')*')*)\))?$")


class ODataError(Exception):
    """A request the Web API refuses: HTTP status, hex code, message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


def unknown_column(name: str, logical_name: str) -> ODataError:
    return ODataError(400, "0x80060888", f"Could not find a property named '{name}' on type "
                                         f"'Microsoft.Dynamics.CRM.{logical_name}'.")


def bad_filter(detail: str) -> ODataError:
    return ODataError(400, "0x80060888", f"Syntax error in $filter: {detail}")


def tokens(text: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    position = 0
    while position < len(text.rstrip()):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise bad_filter(f"unexpected text at position {position}")
        kind = match.lastgroup or ""
        found.append((kind, match.group(kind)))
        position = match.end()
    return found


@dataclass(frozen=True, slots=True)
class Filter:
    """A parsed ``$filter``: the predicate, and the only keys it can match when it names them
    (``accountid eq <id> or accountid eq <id> ...``, as a read of some records by id is
    written), so such a read looks those records up, as the service's index does, instead of
    testing every row."""

    matches: Predicate
    keys: frozenset[str] | None = None
    """The keys (lower case) outside which no row matches; None: any row may."""

    def __call__(self, row: Row) -> bool:
        return self.matches(row)


def parse_filter(text: str, columns: frozenset[str], logical_name: str,
                 key: str | None = None) -> Filter:
    """The filter for rows of a table keyed by ``key``, or ODataError for a malformed filter or
    an unknown column."""
    parser = _Parser(tokens(text), columns, logical_name, key)
    found = parser.expression()
    if parser.position != len(parser.items):
        raise bad_filter(f"unexpected {parser.items[parser.position][1]!r}")
    return found


class _Parser:
    def __init__(self, items: list[tuple[str, str]], columns: frozenset[str],
                 logical_name: str, key: str | None) -> None:
        self.items, self.columns, self.logical_name = items, columns, logical_name
        self.key = key
        self.position = 0

    def peek(self) -> tuple[str, str] | None:
        return self.items[self.position] if self.position < len(self.items) else None

    def take(self) -> tuple[str, str]:
        item = self.peek()
        if item is None:
            raise bad_filter("the expression ends too early")
        self.position += 1
        return item

    def expression(self) -> Filter:
        terms = [self.conjunction()]
        while self.peek() == ("word", "or"):
            self.take()
            terms.append(self.conjunction())
        return _any(terms)

    def conjunction(self) -> Filter:
        terms = [self.atom()]
        while self.peek() == ("word", "and"):
            self.take()
            terms.append(self.atom())
        return _all(terms)

    def atom(self) -> Filter:
        kind, value = self.take()
        if (kind, value) == ("paren", "("):
            inner = self.expression()
            if self.take() != ("paren", ")"):
                raise bad_filter("a parenthesis is not closed")
            return inner
        if kind != "word" or value in _RESERVED:
            raise bad_filter(f"expected a column name, got {value!r}")
        if value not in self.columns:
            raise unknown_column(value, self.logical_name)
        comparison = self.take()[1]
        if comparison not in _COMPARE:
            raise bad_filter(f"unknown operator {comparison!r}")
        wanted = literal(self.take())
        keyed = value == self.key and comparison == "eq" and isinstance(wanted, str)
        return Filter(_compare(value, comparison, wanted),
                      frozenset({str(wanted).casefold()}) if keyed else None)


def _any(terms: list[Filter]) -> Filter:
    """``or``: a row matches when one term does; keyed when every term is."""
    if len(terms) == 1:
        return terms[0]
    tests = tuple(term.matches for term in terms)
    keys = None if any(term.keys is None for term in terms) else \
        frozenset().union(*(term.keys for term in terms if term.keys is not None))
    return Filter(lambda row: any(test(row) for test in tests), keys)


def _all(terms: list[Filter]) -> Filter:
    """``and``: a row matches when every term does; keyed when any term is."""
    if len(terms) == 1:
        return terms[0]
    tests = tuple(term.matches for term in terms)
    keyed = [term.keys for term in terms if term.keys is not None]
    keys = frozenset.intersection(*keyed) if keyed else None
    return Filter(lambda row: all(test(row) for test in tests), keys)


def literal(item: tuple[str, str]) -> Any:
    """A literal's value: str, int, float, bool, None, or an aware datetime for a date."""
    kind, value = item
    if kind == "string":
        return value[1:-1].replace("''", "'")
    if kind == "guid":
        return value.lower()
    if kind == "number":
        return float(value) if "." in value else int(value)
    if kind == "date":
        moment = as_datetime(value)
        if moment is None:
            raise bad_filter(f"{value!r} is not a valid date")
        return moment
    if item == ("word", "null"):
        return None
    if kind == "word" and value in ("true", "false"):
        return value == "true"
    raise bad_filter(f"expected a value, got {value!r}")


def as_datetime(text: Any) -> datetime | None:
    """An ISO 8601 date or datetime as an aware datetime (UTC when no offset), else None."""
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _comparable(current: Any, value: Any) -> Any:
    """The row's value in the literal's terms: dates as datetimes, strings without case (the
    service compares with a case-insensitive collation)."""
    if isinstance(value, datetime):
        return as_datetime(current)
    if isinstance(value, str) and isinstance(current, str):
        return current.casefold()
    return current


def _compare(column: str, comparison: str, value: Any) -> Predicate:
    wanted = value.casefold() if isinstance(value, str) else value

    def check(row: Row) -> bool:
        current = _comparable(row.get(column), value)
        if comparison in ("eq", "ne"):
            return bool(current == wanted) == (comparison == "eq")
        if current is None or wanted is None:
            return False
        try:
            return bool(_ORDER[comparison](current, wanted))
        except TypeError:
            return False

    return check


def parse_select(text: str | None, columns: frozenset[str],
                 logical_name: str) -> tuple[str, ...] | None:
    """The selected columns (None: all), or ODataError for an unknown one."""
    if not text:
        return None
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    for name in names:
        if name not in columns:
            raise unknown_column(name, logical_name)
    return names


def parse_segment(segment: str) -> tuple[str, tuple[str, str] | None]:
    """``accounts`` -> (accounts, None); ``accounts(<guid>)`` -> (accounts, ("", guid));
    ``accounts(accountnumber='X')`` -> (accounts, ("accountnumber", "X"))."""
    match = _KEY.match(segment)
    if match is None:
        raise ODataError(404, "0x80060888", f"Resource not found for the segment '{segment}'.")
    key = match.group("key")
    if key is None:
        return match.group("set"), None
    name, _, value = key.partition("=") if "=" in key.split("'", 1)[0] else ("", "", key)
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return match.group("set"), (name.strip(), value[1:-1].replace("''", "'"))
    try:
        return match.group("set"), (name.strip(), str(uuid.UUID(value)))
    except ValueError:
        raise ODataError(400, "0x80060888", f"Unrecognized 'Edm.Guid' literal '{value}'.") \
            from None
