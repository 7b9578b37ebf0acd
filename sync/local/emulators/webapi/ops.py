"""The Web API's operations on the tables, without HTTP: one function per verb, each answering
the status, the headers, the body and the server time it cost."""

from __future__ import annotations

import base64
import json
import random
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from sync.local.emulators.webapi.config import EmulatorConfig
from sync.local.emulators.webapi.odata import (
    ODataError,
    parse_segment,
    parse_select,
    unknown_column,
)
from sync.local.emulators.webapi.store import READ_ONLY, Table

API: Final = "/api/data/v9.2/"
DELETED_CONTEXT: Final = "$metadata#{}/$deletedEntity"


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
    tokens: dict[int, float] = field(default_factory=dict)
    """Delta token (a table version) -> when it was issued (epoch seconds)."""

    def table(self, entity_set: str) -> Table:
        found = self.tables.get(entity_set)
        if found is None:
            raise ODataError(404, "0x80060888",
                             f"Resource not found for the segment '{entity_set}'.")
        return found

    def write_cost_ms(self) -> float:
        return self.rng.uniform(self.config.write_ms_min, self.config.write_ms_max)


def _record_id(world: World, table: Table, key: tuple[str, str]) -> str | None:
    name, value = key
    if not name or name == table.key:
        return value.lower() if _is_guid(value) else value
    if name != table.alternate_key:
        raise ODataError(400, "0x80060888", f"'{name}' is not an alternate key of "
                                            f"{table.logical_name}.")
    return table.id_by_alternate(value)


def _is_guid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _check_columns(table: Table, body: Mapping[str, Any]) -> None:
    for name in body:
        if name.startswith("@odata.") or name == table.key:
            continue
        if name not in table.columns or name in READ_ONLY:
            raise unknown_column(name, table.logical_name)


def _not_found(table: Table, record_id: str) -> ODataError:
    return ODataError(404, "0x80040217",
                      f"{table.logical_name} With Id = {record_id} Does Not Exist")


def patch(world: World, user: str, segment: str, headers: Mapping[str, str],
          body: Mapping[str, Any]) -> Answer:
    """Update (or, without If-Match, upsert) one record."""
    entity_set, key = parse_segment(segment)
    table = world.table(entity_set)
    if key is None:
        raise ODataError(405, "0x8006088a", "PATCH needs a record: accounts(<id>).")
    _check_columns(table, body)
    record_id = _record_id(world, table, key)
    existing = table.get(record_id) if record_id else None
    if headers.get("If-Match") == "*" and existing is None:
        raise _not_found(table, record_id or key[1])
    if headers.get("If-None-Match") == "*" and existing is not None:
        raise ODataError(412, "0x80060882", "A record with matching key values already exists.")
    values = {k: v for k, v in body.items() if not k.startswith("@odata.")}
    if existing is None:
        new_id = record_id or str(uuid.uuid4())
        row = _new_row(table, new_id, user, values, key)
        table.put(row, user)
        world.counters.created += 1
    else:
        table.put({**existing, **values}, user)
        world.counters.updated += 1
        new_id = str(existing[table.key])
    return Answer(204, headers=_entity_id(world, table, new_id), cost_ms=world.write_cost_ms())


def _new_row(table: Table, record_id: str, user: str, values: Mapping[str, Any],
             key: tuple[str, str] | None) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(table.columns)
    row.update(values)
    row[table.key] = record_id
    if key and key[0] == table.alternate_key:
        row[table.alternate_key] = key[1]
    row["createdon"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    row["_createdby_value"] = user
    return row


def _entity_id(world: World, table: Table, record_id: str) -> dict[str, str]:
    return {"OData-EntityId": f"{world.base_url}{API}{table.entity_set}({record_id})"}


def create(world: World, user: str, entity_set: str, body: Mapping[str, Any]) -> Answer:
    """POST a new record."""
    table = world.table(entity_set)
    _check_columns(table, body)
    record_id = str(body.get(table.key) or uuid.uuid4())
    if table.get(record_id) is not None:
        raise ODataError(412, "0x80040237", "Cannot insert duplicate key.")
    values = {k: v for k, v in body.items() if not k.startswith("@odata.")}
    table.put(_new_row(table, record_id, user, values, None), user)
    world.counters.created += 1
    return Answer(204, headers=_entity_id(world, table, record_id),
                  cost_ms=world.write_cost_ms())


def delete(world: World, segment: str) -> Answer:
    """DELETE one record."""
    entity_set, key = parse_segment(segment)
    table = world.table(entity_set)
    if key is None:
        raise ODataError(405, "0x8006088a", "DELETE needs a record.")
    record_id = _record_id(world, table, key)
    if record_id is None or table.get(record_id) is None:
        raise _not_found(table, key[1])
    table.delete(record_id)
    world.counters.deleted += 1
    return Answer(204, cost_ms=world.write_cost_ms())


def get_one(world: World, segment: str, query: Mapping[str, str]) -> Answer:
    """GET one record by id or alternate key."""
    entity_set, key = parse_segment(segment)
    table = world.table(entity_set)
    assert key is not None  # noqa: S101 (callers route collections elsewhere)
    record_id = _record_id(world, table, key)
    row = table.get(record_id) if record_id else None
    if row is None:
        raise _not_found(table, key[1])
    select = parse_select(query.get("$select"), table.columns, table.logical_name)
    return Answer(200, _shape(row, select), cost_ms=world.config.read_page_ms / 10)


def _shape(row: Mapping[str, Any], select: tuple[str, ...] | None) -> dict[str, Any]:
    return dict(row) if select is None else {name: row.get(name) for name in select}


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
