"""The emulator's tables: rows by id, an alternate key index, a log of versions for change
tracking, and an undo journal for the operations that must succeed or fail together."""

from __future__ import annotations

import bisect
import functools
import heapq
import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

SYSTEM_USER: Final = "00000000-0000-4000-8000-00000000c0de"
_NAMESPACE: Final = uuid.UUID("9b7d6a3e-4c7e-4d8e-9a51-1f0c2b3d4e5f")
_WORDS: Final = ("alpine", "blue", "cedar", "delta", "ember", "fjord", "granite", "harbor",
                 "iris", "juniper", "kestrel", "lumen", "meadow", "nimbus", "orchid", "pioneer")
ACCOUNT_COLUMNS: Final = frozenset({
    "accountid", "name", "accountnumber", "websiteurl", "numberofemployees", "address1_country",
    "description", "revenue", "statecode", "createdon", "modifiedon", "versionnumber",
    "_modifiedby_value", "_createdby_value"})
READ_ONLY: Final = frozenset({"createdon", "modifiedon", "versionnumber", "_modifiedby_value",
                              "_createdby_value"})

Row = dict[str, Any]


def iso_now(now_s: float | None = None) -> str:
    """Now (or ``now_s``) as Dataverse writes datetimes: the same string all through a second,
    so the rows seeded or written in it share one (a million rows hold a few hundred, not two
    million)."""
    return _stamp(int(time.time() if now_s is None else now_s))


@functools.lru_cache(maxsize=1)
def _stamp(second: int) -> str:
    """The text of one second: cached, so a second's rows share the string."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second))


def seeded_id(index: int, seed: int) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{seed}:account:{index}"))


def seeded_account(index: int, seed: int, rng: random.Random) -> Row:
    """Account ``index``: a distinct, real-looking domain; the enrichable columns null."""
    word = _WORDS[rng.randrange(len(_WORDS))]
    now = iso_now()
    return {"accountid": seeded_id(index, seed), "name": f"{word.capitalize()} {index} Ltd",
            "accountnumber": f"ACC-{index:07d}",
            "websiteurl": f"https://www.{word}{index}.example",
            "numberofemployees": None, "address1_country": None, "description": None,
            "revenue": round(rng.uniform(1e5, 1e8), 2), "statecode": 0, "createdon": now,
            "modifiedon": now, "versionnumber": 0, "_modifiedby_value": SYSTEM_USER,
            "_createdby_value": SYSTEM_USER}


@dataclass(frozen=True, slots=True)
class Mark:
    """Where a table's logs stood when an atomic operation began."""

    journal: int
    changes: int
    deleted: int


@dataclass
class Table:
    """One entity set. Rows are never changed in place: a write puts a new dict, so the undo
    journal can keep the old one by reference (O(1) per write, never O(rows))."""

    entity_set: str
    logical_name: str
    key: str
    alternate_key: str
    columns: frozenset[str]
    primary_name: str = "name"
    rows: dict[str, Row] = field(default_factory=dict)
    sorted_ids: list[str] = field(default_factory=list)
    by_alternate: dict[str, str] = field(default_factory=dict)
    changes: list[tuple[int, str]] = field(default_factory=list)
    """(version, id) of every write, in version order."""
    deleted: list[tuple[int, str]] = field(default_factory=list)
    """(version, id) of every delete, in version order."""
    version: int = 0
    tracked: bool = True
    journal: list[tuple[str, Row | None]] = field(default_factory=list)
    depth: int = 0
    """Atomic operations under way; the journal is kept only while this is above zero."""

    def get(self, record_id: str) -> Row | None:
        return self.rows.get(record_id)

    def id_by_alternate(self, value: str) -> str | None:
        return self.by_alternate.get(value)

    def put(self, row: Row, user: str) -> None:
        """Insert or replace a row, stamping its version and who changed it."""
        self._remember(row[self.key])
        self.version += 1
        row.update(versionnumber=self.version, modifiedon=iso_now(), _modifiedby_value=user)
        self._link(row)
        self.changes.append((self.version, row[self.key]))

    def delete(self, record_id: str) -> None:
        self._remember(record_id)
        self._unlink(record_id)
        self.version += 1
        self.deleted.append((self.version, record_id))

    def index_after(self, after: str | None) -> int:
        """Where paging resumes in ``sorted_ids``: the first id after ``after``."""
        return bisect.bisect_right(self.sorted_ids, after) if after else 0

    def changed_since(self, since: int, until: int) -> Iterator[tuple[int, str, bool]]:
        """(version, id, deleted) of every record whose last change has a version in
        (since, until], in version order, read lazily: a page of them costs O(the page and
        the older versions of its records), never O(rows) nor a copy of the logs."""
        return heapq.merge(self._written(since, until), self._deleted(since, until))

    def _written(self, since: int, until: int) -> Iterator[tuple[int, str, bool]]:
        for version, record_id in _in_range(self.changes, since, until):
            row = self.rows.get(record_id)
            if row is not None and row["versionnumber"] == version:
                yield version, record_id, False

    def _deleted(self, since: int, until: int) -> Iterator[tuple[int, str, bool]]:
        for version, record_id in _in_range(self.deleted, since, until):
            if record_id not in self.rows:
                yield version, record_id, True

    def begin(self) -> Mark:
        """Start an atomic operation: answers the mark to roll back to."""
        self.depth += 1
        return Mark(len(self.journal), len(self.changes), len(self.deleted))

    def end(self) -> None:
        self.depth -= 1
        if self.depth == 0:
            self.journal.clear()

    def rollback(self, mark: Mark) -> None:
        """Put every row changed since ``mark`` back as it was, newest change first."""
        for record_id, old in reversed(self.journal[mark.journal:]):
            if old is not None:
                self._link(old)
            elif record_id in self.rows:
                self._unlink(record_id)
        del self.journal[mark.journal:], self.changes[mark.changes:], self.deleted[mark.deleted:]

    def _remember(self, record_id: str) -> None:
        if self.depth:
            self.journal.append((record_id, self.rows.get(record_id)))

    def _link(self, row: Row) -> None:
        """Insert or replace ``row`` (the id list moves only for a new id)."""
        record_id = row[self.key]
        old = self.rows.get(record_id)
        if old is None:
            bisect.insort(self.sorted_ids, record_id)
        else:
            self._drop_alternate(old)
        self.rows[record_id] = row
        if row.get(self.alternate_key) is not None:
            self.by_alternate[str(row[self.alternate_key])] = record_id

    def _unlink(self, record_id: str) -> None:
        row = self.rows.pop(record_id)
        del self.sorted_ids[bisect.bisect_left(self.sorted_ids, record_id)]
        self._drop_alternate(row)

    def _drop_alternate(self, row: Row) -> None:
        alternate = row.get(self.alternate_key)
        if alternate is not None and self.by_alternate.get(str(alternate)) == row[self.key]:
            del self.by_alternate[str(alternate)]


def _in_range(log: list[tuple[int, str]], since: int,
              until: int) -> Iterator[tuple[int, str]]:
    """The entries of a version-ordered log with a version in (since, until], by position (the
    log may grow while it is read)."""
    index = bisect.bisect_right(log, (since, "\uffff"))
    while index < len(log) and log[index][0] <= until:
        yield log[index]
        index += 1


def accounts(records: int, seed: int) -> Table:
    """The ``accounts`` table with ``records`` seeded rows."""
    table = Table("accounts", "account", "accountid", "accountnumber", ACCOUNT_COLUMNS)
    rng = random.Random(seed)
    for index in range(records):
        row = seeded_account(index, seed, rng)
        table.rows[row["accountid"]] = row
        table.by_alternate[row["accountnumber"]] = row["accountid"]
    table.sorted_ids = sorted(table.rows)
    return table
