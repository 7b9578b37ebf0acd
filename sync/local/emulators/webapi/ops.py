"""The Web API's operations on the tables, without HTTP: one function per verb, each answering
the status, the headers, the body and the server time it cost."""

from __future__ import annotations

import base64
import dataclasses
import json
import random
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final

from sync.local.emulators.webapi.config import EmulatorConfig
from sync.local.emulators.webapi.odata import (
    ODataError,
    parse_segment,
    parse_select,
    unknown_column,
)
from sync.local.emulators.webapi.store import READ_ONLY, Row, Table, iso_now

API: Final = "/api/data/v9.2/"


@dataclass
class Answer:
    """What one operation answers."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    cost_ms: float = 0.0

    def payload(self) -> bytes:
        return b"" if self.body is None else json.dumps(self.body).encode()


@dataclass
class Counters:
    """Records created, updated, deleted."""

    created: int = 0
    updated: int = 0
    deleted: int = 0


@dataclass
class World:
    """The emulator's data and the clock-free state the operations need."""

    config: EmulatorConfig
    tables: dict[str, Table]
    base_url: str = ""
    counters: Counters = field(default_factory=Counters)
    rng: random.Random = field(default_factory=random.Random)
    tokens: dict[str, tuple[int, float]] = field(default_factory=dict)
    """Delta token -> the table version it stands for and when it was issued (epoch s)."""

    def table(self, entity_set: str) -> Table:
        found = self.tables.get(entity_set)
        if found is None:
            raise ODataError(404, "0x80060888",
                             f"Resource not found for the segment '{entity_set}'.")
        return found

    def write_cost_ms(self) -> float:
        return self.rng.uniform(self.config.write_ms_min, self.config.write_ms_max)


@contextmanager
def atomic(world: World) -> Iterator[None]:
    """All writes inside succeed together, or an ODataError puts every table and counter back
    as it was (an undo journal: O(writes), never a copy of the tables)."""
    marks = {name: table.begin() for name, table in world.tables.items()}
    counters = dataclasses.replace(world.counters)
    try:
        yield
    except ODataError:
        for name, mark in marks.items():
            world.tables[name].rollback(mark)
        world.counters = counters
        raise
    finally:
        for table in world.tables.values():
            table.end()


def _record_id(table: Table, key: tuple[str, str]) -> str | None:
    """The id a key segment names (None: an alternate key no record has)."""
    name, value = key
    if not name or name == table.key:
        return _guid(value)
    if name != table.alternate_key:
        raise ODataError(400, "0x80060888", f"'{name}' is not an alternate key of "
                                            f"{table.logical_name}.")
    return table.id_by_alternate(value)


def _guid(text: str) -> str:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise ODataError(400, "0x80060888", f"Unrecognized 'Edm.Guid' literal '{text}'.") \
            from None


def _values(table: Table, body: Mapping[str, Any]) -> Row:
    """The columns a write sets: annotations dropped, unknown or read-only columns refused."""
    values: Row = {}
    for name, value in body.items():
        if name.startswith("@odata."):
            continue
        if name not in table.columns or name in READ_ONLY:
            raise unknown_column(name, table.logical_name)
        values[name] = value
    return values


def _not_found(table: Table, record_id: str) -> ODataError:
    return ODataError(404, "0x80040217",
                      f"{table.logical_name} With Id = {record_id} Does Not Exist")


def etag(row: Mapping[str, Any]) -> str:
    return f'W/"{row["versionnumber"]}"'


def _preconditions(table: Table, existing: Row | None, missing: str,
                   headers: Mapping[str, str]) -> None:
    """``If-Match`` (``*`` or an ETag) needs the record; ``If-None-Match: *`` needs none."""
    if_match = headers.get("If-Match")
    if if_match is not None and existing is None:
        raise _not_found(table, missing)
    if if_match not in (None, "*") and existing is not None and if_match != etag(existing):
        raise ODataError(412, "0x80060882", "The version of the existing record doesn't "
                                            "match the RowVersion property provided.")
    if headers.get("If-None-Match") == "*" and existing is not None:
        raise ODataError(412, "0x80060882", "A record with matching key values already exists.")


def _check_alternate(table: Table, record_id: str, row: Mapping[str, Any]) -> None:
    value = row.get(table.alternate_key)
    holder = table.id_by_alternate(str(value)) if value is not None else None
    if holder is not None and holder != record_id:
        raise ODataError(412, "0x80060892", f"A record that has the attribute values "
                                            f"{table.alternate_key} '{value}' already exists. "
                                            "The entity key requires that this set of "
                                            "attributes contains unique values.")


def patch(world: World, user: str, segment: str, headers: Mapping[str, str],
          body: Mapping[str, Any]) -> Answer:
    """Update (or, without If-Match, upsert) one record."""
    entity_set, key = parse_segment(segment)
    table = world.table(entity_set)
    if key is None:
        raise ODataError(405, "0x8006088a", "PATCH needs a record: accounts(<id>).")
    values = _values(table, body)
    record_id = _record_id(table, key)
    existing = table.get(record_id) if record_id else None
    _preconditions(table, existing, record_id or key[1], headers)
    new_id = str(existing[table.key]) if existing else (record_id or str(uuid.uuid4()))
    given = values.pop(table.key, None)
    if given is not None and _guid(str(given)) != new_id:
        raise ODataError(400, "0x80060888", f"The {table.key} in the body does not match the "
                                            "record the URL names.")
    if existing is None:
        row = _new_row(table, new_id, user, values, key)
        _check_alternate(table, new_id, row)
        table.put(row, user)
        world.counters.created += 1
    else:
        row = {**existing, **values}
        _check_alternate(table, new_id, row)
        table.put(row, user)
        world.counters.updated += 1
    return Answer(204, headers=_entity_id(world, table, new_id), cost_ms=world.write_cost_ms())


def _new_row(table: Table, record_id: str, user: str, values: Mapping[str, Any],
             key: tuple[str, str] | None) -> Row:
    row: Row = dict.fromkeys(table.columns)
    row.update(values)
    row[table.key] = record_id
    if key and key[0] == table.alternate_key:
        row[table.alternate_key] = key[1]
    row["createdon"] = iso_now()
    row["_createdby_value"] = user
    return row


def _entity_id(world: World, table: Table, record_id: str) -> dict[str, str]:
    url = f"{world.base_url}{API}{table.entity_set}({record_id})"
    return {"OData-EntityId": url, "Location": url}


def create(world: World, user: str, entity_set: str, body: Mapping[str, Any]) -> Answer:
    """POST a new record."""
    table = world.table(entity_set)
    values = _values(table, body)
    given = values.pop(table.key, None)
    record_id = _guid(str(given)) if given is not None else str(uuid.uuid4())
    if table.get(record_id) is not None:
        raise ODataError(412, "0x80040237", "Cannot insert duplicate key.")
    row = _new_row(table, record_id, user, values, None)
    _check_alternate(table, record_id, row)
    table.put(row, user)
    world.counters.created += 1
    return Answer(204, headers=_entity_id(world, table, record_id),
                  cost_ms=world.write_cost_ms())


def delete(world: World, segment: str, headers: Mapping[str, str]) -> Answer:
    """DELETE one record."""
    entity_set, key = parse_segment(segment)
    table = world.table(entity_set)
    if key is None:
        raise ODataError(405, "0x8006088a", "DELETE needs a record.")
    record_id = _record_id(table, key)
    existing = table.get(record_id) if record_id else None
    if existing is None or record_id is None:
        raise _not_found(table, key[1])
    _preconditions(table, existing, record_id, headers)
    table.delete(record_id)
    world.counters.deleted += 1
    return Answer(204, cost_ms=world.write_cost_ms())


def get_one(world: World, segment: str, query: Mapping[str, str]) -> Answer:
    """GET one record by id or alternate key."""
    entity_set, key = parse_segment(segment)
    table = world.table(entity_set)
    if key is None:
        raise ODataError(400, "0x80060888", f"'{segment}' does not name a record.")
    record_id = _record_id(table, key)
    row = table.get(record_id) if record_id else None
    if row is None:
        raise _not_found(table, key[1])
    select = parse_select(query.get("$select"), table.columns, table.logical_name)
    return Answer(200, {"@odata.context": f"{world.base_url}{API}$metadata#"
                                          f"{table.entity_set}/$entity",
                        **shape(table, row, select)},
                  cost_ms=world.config.read_page_ms / 10)


def shape(table: Table, row: Mapping[str, Any], select: tuple[str, ...] | None) -> Row:
    """A row as the Web API answers it: its ETag, the selected columns, always its id."""
    if select is None:
        return {"@odata.etag": etag(row), **row}
    return {"@odata.etag": etag(row), **{name: row.get(name) for name in select},
            table.key: row[table.key]}


def encode_token(data: Mapping[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def decode_token(text: str) -> dict[str, Any]:
    try:
        data = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, UnicodeDecodeError):
        raise ODataError(400, "0x80060888", "The $skiptoken is not valid.") from None
    if not isinstance(data, dict):
        raise ODataError(400, "0x80060888", "The $skiptoken is not valid.")
    return data
