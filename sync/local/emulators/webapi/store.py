"""The emulator's tables: rows by id, an alternate key index, versions for change tracking."""

from __future__ import annotations

import bisect
import random
import time
import uuid
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


def iso_now() -> str:
    """Now as Dataverse writes datetimes."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def seeded_id(index: int, seed: int) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{seed}:account:{index}"))


def seeded_account(index: int, seed: int, rng: random.Random) -> dict[str, Any]:
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


@dataclass
class Table:
    """One entity set."""

    entity_set: str
    logical_name: str
    key: str
    alternate_key: str
    columns: frozenset[str]
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    sorted_ids: list[str] = field(default_factory=list)
    by_alternate: dict[str, str] = field(default_factory=dict)
    deleted: list[tuple[int, str]] = field(default_factory=list)
    version: int = 0
    tracked: bool = True

    def get(self, record_id: str) -> dict[str, Any] | None:
        return self.rows.get(record_id)

    def id_by_alternate(self, value: str) -> str | None:
        return self.by_alternate.get(value)

    def put(self, row: dict[str, Any], user: str) -> None:
        """Insert or replace a row, stamping its version and who changed it."""
        record_id = row[self.key]
        old = self.rows.get(record_id)
        if old is None:
            bisect.insort(self.sorted_ids, record_id)
        elif old.get(self.alternate_key) is not None:
            self.by_alternate.pop(str(old[self.alternate_key]), None)
        self.version += 1
        row.update(versionnumber=self.version, modifiedon=iso_now(), _modifiedby_value=user)
        self.rows[record_id] = row
        if row.get(self.alternate_key) is not None:
            self.by_alternate[str(row[self.alternate_key])] = record_id

    def delete(self, record_id: str) -> None:
        self._unlink(record_id)
        self.version += 1
        self.deleted.append((self.version, record_id))

    def ids_after(self, after: str | None) -> list[str]:
        """Ids in key order after ``after`` (a view for paging)."""
        start = bisect.bisect_right(self.sorted_ids, after) if after else 0
        return self.sorted_ids[start:]

    def saved(self) -> tuple[Any, ...]:
        """The table's state, to put back if an atomic changeset fails (costs O(rows))."""
        return ({k: dict(v) for k, v in self.rows.items()}, list(self.sorted_ids),
                dict(self.by_alternate), list(self.deleted), self.version)

    def put_back(self, state: tuple[Any, ...]) -> None:
        self.rows, self.sorted_ids, self.by_alternate, self.deleted, self.version = state

    def remember(self, undo: list[tuple[str, dict[str, Any] | None]], record_id: str) -> None:
        """Note a row's state before an atomic operation changes it."""
        old = self.rows.get(record_id)
        undo.append((record_id, dict(old) if old is not None else None))

    def rollback(self, undo: list[tuple[str, dict[str, Any] | None]]) -> None:
        """Put every remembered row back as it was, newest change first."""
        for record_id, old in reversed(undo):
            if record_id in self.rows:
                self._unlink(record_id)
            if old is not None:
                bisect.insort(self.sorted_ids, record_id)
                self.rows[record_id] = old
                if old.get(self.alternate_key) is not None:
                    self.by_alternate[str(old[self.alternate_key])] = record_id
                self.deleted = [(v, i) for v, i in self.deleted if i != record_id]

    def _unlink(self, record_id: str) -> None:
        row = self.rows.pop(record_id)
        del self.sorted_ids[bisect.bisect_left(self.sorted_ids, record_id)]
        if row.get(self.alternate_key) is not None:
            self.by_alternate.pop(str(row[self.alternate_key]), None)


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
