"""Reading collections: $select, $filter, paging with $skiptoken, change tracking with delta
links (only what changed since the token, deleted rows as ``$deletedEntity``)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlencode

from sync.local.emulators.webapi.odata import ODataError, parse_filter, parse_select
from sync.local.emulators.webapi.ops import API, Answer, World, decode_token, encode_token
from sync.local.emulators.webapi.store import Table

_REJECTED_WITH_TRACKING: Final = ("$filter", "$orderby", "$expand", "$top")


@dataclass(frozen=True, slots=True)
class Prefer:
    """What the client's Prefer header asks for."""

    max_page_size: int | None = None
    track_changes: bool = False
    continue_on_error: bool = False

    @classmethod
    def parse(cls, header: str) -> Prefer:
        size, track, keep_going = None, False, False
        for item in (part.strip() for part in header.split(",")):
            if item.startswith("odata.maxpagesize="):
                size = int(item.split("=", 1)[1]) if item.split("=", 1)[1].isdigit() else None
            track = track or item == "odata.track-changes"
            keep_going = keep_going or item == "odata.continue-on-error"
        return cls(size, track, keep_going)


def read_collection(world: World, entity_set: str, query: Mapping[str, str],
                    prefer: Prefer) -> Answer:
    """GET a collection: a page of rows, a next link, a delta link at the end of tracking."""
    table = world.table(entity_set)
    select = parse_select(query.get("$select"), table.columns, table.logical_name)
    page_size = min(prefer.max_page_size or world.config.max_page_size,
                    world.config.max_page_size)
    if "$deltatoken" in query:
        return _delta(world, table, query, select, page_size)
    if prefer.track_changes:
        for option in _REJECTED_WITH_TRACKING:
            if option in query:
                raise ODataError(400, "0x80060888",
                                 f"The query parameter {option} is not supported with change "
                                 "tracking.")
    predicate = parse_filter(query["$filter"], table.columns, table.logical_name) \
        if query.get("$filter") else None
    state = decode_token(query["$skiptoken"]) if "$skiptoken" in query else {"v": table.version}
    rows, last = [], None
    ids = table.ids_after(_after(state))
    for index, record_id in enumerate(ids):
        row = table.rows[record_id]
        if predicate is None or predicate(row):
            rows.append(_shape(row, select))
            last = record_id
            if len(rows) == page_size:
                more = index + 1 < len(ids)
                break
    else:
        more = False
    body: dict[str, Any] = {"@odata.context": _context(world, table), "value": rows}
    headers = {"Preference-Applied": _applied(prefer, page_size)}
    if more:
        body["@odata.nextLink"] = _link(world, table, query, "$skiptoken",
                                        encode_token({**state, "after": last}))
    elif prefer.track_changes and table.tracked:
        body["@odata.deltaLink"] = _delta_link(world, table, query, int(state["v"]))
    return Answer(200, body, headers, cost_ms=world.config.read_page_ms)


def _delta(world: World, table: Table, query: Mapping[str, str],
           select: tuple[str, ...] | None, page_size: int) -> Answer:
    token = query["$deltatoken"]
    since = _valid_token(world, token)
    state = decode_token(query["$skiptoken"]) if "$skiptoken" in query else {"v": table.version}
    changed = sorted([(record_id, False) for record_id, row in table.rows.items()
                      if int(row["versionnumber"]) > since] +
                     [(record_id, True) for version, record_id in table.deleted
                      if version > since and record_id not in table.rows])
    after = _after(state)
    pending = [item for item in changed if after is None or item[0] > after]
    page = pending[:page_size]
    values = [_deleted(world, table, record_id) if gone else _shape(table.rows[record_id], select)
              for record_id, gone in page]
    body: dict[str, Any] = {"@odata.context": _context(world, table), "value": values}
    if len(pending) > page_size:
        body["@odata.nextLink"] = _link(world, table, query, "$skiptoken",
                                        encode_token({**state, "after": page[-1][0]}))
    else:
        body["@odata.deltaLink"] = _delta_link(world, table, query, int(state["v"]))
    return Answer(200, body, {"Preference-Applied": "odata.track-changes"},
                  cost_ms=world.config.read_page_ms)


def _after(state: Mapping[str, Any]) -> str | None:
    after = state.get("after")
    return after if isinstance(after, str) else None


def _valid_token(world: World, token: str) -> int:
    issued_s = world.tokens.get(int(token)) if token.isdigit() else None
    if issued_s is None or time.time() - issued_s > world.config.change_token_ttl_s:
        raise ODataError(400, "0x80044352", "The change tracking token is expired or not "
                                            "valid. Start again with a full synchronization.")
    return int(token)


def _deleted(world: World, table: Table, record_id: str) -> dict[str, Any]:
    return {"@odata.context": f"{world.base_url}{API}$metadata#{table.entity_set}/"
                              "$deletedEntity", "id": record_id, "reason": "deleted"}


def _shape(row: Mapping[str, Any], select: tuple[str, ...] | None) -> dict[str, Any]:
    return dict(row) if select is None else {name: row.get(name) for name in select}


def _context(world: World, table: Table) -> str:
    return f"{world.base_url}{API}$metadata#{table.entity_set}"


def _applied(prefer: Prefer, page_size: int) -> str:
    applied = [f"odata.maxpagesize={page_size}"] if prefer.max_page_size else []
    return ",".join(["odata.track-changes", *applied] if prefer.track_changes else applied)


def _link(world: World, table: Table, query: Mapping[str, str], name: str, value: str) -> str:
    kept = {k: v for k, v in query.items() if k != "$skiptoken"}
    kept[name] = value
    return f"{world.base_url}{API}{table.entity_set}?{urlencode(kept, safe='$,')}"


def _delta_link(world: World, table: Table, query: Mapping[str, str], version: int) -> str:
    world.tokens[version] = time.time()
    kept = {k: v for k, v in query.items() if k == "$select"}
    kept["$deltatoken"] = str(version)
    return f"{world.base_url}{API}{table.entity_set}?{urlencode(kept, safe='$,')}"
