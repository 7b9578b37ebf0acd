"""Reading collections: $select, $filter, $top, paging with $skiptoken, change tracking with
delta links (only what changed since the token, deleted rows as ``$deletedEntity``, in the
order of the changes: a page of a delta reads the change log from where the last page ended)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from itertools import islice
from typing import Any, Final
from urllib.parse import urlencode

from sync.local.emulators.webapi.odata import ODataError, parse_filter, parse_select
from sync.local.emulators.webapi.ops import API, Answer, World, decode_token, encode_token, shape
from sync.local.emulators.webapi.store import Row, Table

_REJECTED_WITH_TRACKING: Final = ("$filter", "$orderby", "$expand", "$top")
_SUPPORTED: Final = frozenset({"$select", "$filter", "$top", "$skiptoken", "$deltatoken"})


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
            name, _, value = (half.strip() for half in item.partition("="))
            if name == "odata.maxpagesize" and value.isdigit() and int(value) > 0:
                size = int(value)
            track = track or name == "odata.track-changes"
            keep_going = keep_going or name == "odata.continue-on-error"
        return cls(size, track, keep_going)


def read_collection(world: World, entity_set: str, query: Mapping[str, str],
                    prefer: Prefer) -> Answer:
    """GET a collection: a page of rows, a next link, a delta link at the end of tracking."""
    table = world.table(entity_set)
    _check_options(query, tracking=prefer.track_changes or "$deltatoken" in query)
    select = parse_select(query.get("$select"), table.columns, table.logical_name)
    page_size = min(prefer.max_page_size or world.config.max_page_size,
                    world.config.max_page_size)
    if "$deltatoken" in query:
        return _delta(world, table, query, select, page_size)
    predicate = parse_filter(query["$filter"], table.columns, table.logical_name,
                             table.key) if query.get("$filter") else None
    state = _state(query, {"v": table.version, "left": _top(query)})
    left = state.get("left")
    wanted = page_size if not isinstance(left, int) else min(page_size, left)
    rows: list[Row] = []
    candidates = _candidates(table, predicate.keys if predicate else None, _after(state))
    remaining = True
    while len(rows) < wanted:
        record_id = next(candidates, None)
        if record_id is None:
            remaining = False
            break
        row = table.rows[record_id]
        if predicate is None or predicate(row):
            rows.append(row)
    remaining = remaining and next(candidates, None) is not None
    body: dict[str, Any] = {"@odata.context": _context(world, table),
                            "value": [shape(table, row, select) for row in rows]}
    if isinstance(left, int):
        state = {**state, "left": left - len(rows)}
    more = remaining and state.get("left") != 0
    if more and rows:
        body["@odata.nextLink"] = _link(world, table, query, "$skiptoken", encode_token(
            {**state, "after": rows[-1][table.key]}))
    elif prefer.track_changes and table.tracked:
        body["@odata.deltaLink"] = _delta_link(world, table, query, int(state["v"]))
    return Answer(200, body, {"Preference-Applied": _applied(prefer, page_size)},
                  cost_ms=world.config.read_page_ms)


def _candidates(table: Table, keys: frozenset[str] | None, after: str | None) -> Iterator[str]:
    """The ids a page may hold, in key order after ``after``: every id, or only the filter's
    keys that exist (a lookup, not a scan)."""
    if keys is not None:
        yield from sorted(k for k in keys if k in table.rows and (after is None or k > after))
        return
    for index in range(table.index_after(after), len(table.sorted_ids)):
        yield table.sorted_ids[index]


def _check_options(query: Mapping[str, str], *, tracking: bool) -> None:
    for option in query:
        if tracking and option in _REJECTED_WITH_TRACKING:
            raise ODataError(400, "0x80060888", f"The query parameter {option} is not "
                                                "supported with change tracking.")
        if option == "$skip":
            raise ODataError(400, "0x80060888", "The query parameter $skip is not supported.")
        if option.startswith("$") and option not in _SUPPORTED:
            raise ODataError(501, "0x8006088a", f"The emulator does not implement {option}.")


def _top(query: Mapping[str, str]) -> int | None:
    text = query.get("$top")
    if text is None:
        return None
    if not text.isdigit():
        raise ODataError(400, "0x80060888", f"Invalid value '{text}' for $top.")
    return int(text)


def _delta(world: World, table: Table, query: Mapping[str, str],
           select: tuple[str, ...] | None, page_size: int) -> Answer:
    since = _valid_token(world, query["$deltatoken"])
    state = _state(query, {"v": table.version})
    after_v = state.get("after_v", since)
    pending = table.changed_since(max(since, after_v), int(state["v"]))
    page = list(islice(pending, page_size + 1))
    values = [_deleted(world, table, record_id) if gone else
              shape(table, table.rows[record_id], select) for _, record_id, gone in
              page[:page_size]]
    body: dict[str, Any] = {"@odata.context": _context(world, table), "value": values}
    if len(page) > page_size:
        body["@odata.nextLink"] = _link(world, table, query, "$skiptoken", encode_token(
            {**state, "after_v": page[page_size - 1][0]}))
    else:
        body["@odata.deltaLink"] = _delta_link(world, table, query, int(state["v"]))
    return Answer(200, body, {"Preference-Applied": "odata.track-changes"},
                  cost_ms=world.config.read_page_ms)


def _state(query: Mapping[str, str], first: dict[str, Any]) -> dict[str, Any]:
    """Where paging stands: ``first`` on the first page, else what the $skiptoken carries."""
    if "$skiptoken" not in query:
        return first
    state = decode_token(query["$skiptoken"])
    if not (isinstance(state.get("v"), int) and isinstance(state.get("after", ""), str)
            and isinstance(state.get("left", 0), int | None)
            and isinstance(state.get("after_v", 0), int)):
        raise ODataError(400, "0x80060888", "The $skiptoken is not valid.")
    return state


def _after(state: Mapping[str, Any]) -> str | None:
    after = state.get("after")
    return after if isinstance(after, str) else None


def _valid_token(world: World, token: str) -> int:
    """The table version a delta token stands for, if it is known and not expired."""
    version, issued_s = world.tokens.get(token, (0, None))
    if issued_s is None or time.time() - issued_s > world.config.change_token_ttl_s:
        raise ODataError(400, "0x80044352", "The change tracking token is expired or not "
                                            "valid. Start again with a full synchronization.")
    return version


def _deleted(world: World, table: Table, record_id: str) -> dict[str, Any]:
    return {"@odata.context": f"{world.base_url}{API}$metadata#{table.entity_set}/"
                              "$deletedEntity", "id": record_id, "reason": "deleted"}


def _context(world: World, table: Table) -> str:
    return f"{world.base_url}{API}$metadata#{table.entity_set}"


def _applied(prefer: Prefer, page_size: int) -> str:
    applied = [f"odata.maxpagesize={page_size}"] if prefer.max_page_size else []
    return ",".join(["odata.track-changes", *applied] if prefer.track_changes else applied)


def _link(world: World, table: Table, query: Mapping[str, str], name: str, value: str) -> str:
    kept = {k: v for k, v in query.items() if k not in ("$skiptoken", "$top")}
    kept[name] = value
    return f"{world.base_url}{API}{table.entity_set}?{urlencode(kept, safe='$,')}"


def _delta_link(world: World, table: Table, query: Mapping[str, str], version: int) -> str:
    token = f"{version}!{len(world.tokens) + 1}"  # like the service's "version!when"
    world.tokens[token] = (version, time.time())
    kept = {k: v for k, v in query.items() if k == "$select"}
    kept["$deltatoken"] = token
    return f"{world.base_url}{API}{table.entity_set}?{urlencode(kept, safe='$,')}"
