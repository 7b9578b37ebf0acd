"""CreateMultiple, UpdateMultiple, UpsertMultiple: all targets or none (standard tables)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from sync.local.emulators.webapi.odata import ODataError, parse_segment
from sync.local.emulators.webapi.ops import Answer, World, create, patch
from sync.local.emulators.webapi.store import Table

MESSAGES: Final = ("CreateMultiple", "UpdateMultiple", "UpsertMultiple")


def bulk(world: World, user: str, entity_set: str, message: str,
         body: Mapping[str, Any]) -> Answer:
    """Run a bulk message; any failing target rolls the whole request back."""
    table = world.table(entity_set)
    targets = body.get("Targets")
    if not isinstance(targets, list) or not targets:
        raise ODataError(400, "0x80040203", "Targets must be a non-empty collection.")
    if len(targets) > world.config.max_batch_operations:
        raise ODataError(400, "0x8004800d", f"The number of targets exceeds the maximum of "
                                            f"{world.config.max_batch_operations}. A maximum "
                                            f"number of '{world.config.max_batch_operations}' "
                                            "operations are allowed.")
    undo: list[tuple[str, dict[str, Any] | None]] = []
    counters = (world.counters.created, world.counters.updated)
    try:
        ids = _apply(world, user, table, message, targets, undo=undo)
    except ODataError:
        table.rollback(undo)
        world.counters.created, world.counters.updated = counters
        raise
    cost_ms = world.config.request_overhead_ms + len(targets) * world.config.bulk_target_ms
    if message == "CreateMultiple":
        return Answer(200, {"Ids": ids}, cost_ms=cost_ms)
    return Answer(204, cost_ms=cost_ms)


def _apply(world: World, user: str, table: Table, message: str, targets: list[Any], *,
           undo: list[tuple[str, dict[str, Any] | None]]) -> list[str]:
    seen: set[str] = set()
    ids: list[str] = []
    for target in targets:
        if not isinstance(target, dict):
            raise ODataError(400, "0x80040203", "Each target must be an entity object.")
        values = {k: v for k, v in target.items() if k not in ("@odata.type", "@odata.id")}
        if message == "CreateMultiple":
            answer = create(world, user, table.entity_set, values)
            new_id = answer.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")
            undo.append((new_id, None))
            ids.append(new_id)
            continue
        segment = _segment(table, target, message)
        if segment in seen:
            if message == "UpsertMultiple":
                raise ODataError(400, "0x80040237", f"Duplicate target {segment} in "
                                                    "UpsertMultiple.")
            continue  # UpdateMultiple applies the first of duplicate targets
        seen.add(segment)
        _, key = parse_segment(segment)
        existing = (table.id_by_alternate(key[1]) if key and key[0] else
                    (key[1].lower() if key else None))
        was_there = existing is not None and table.get(existing) is not None
        if was_there and existing is not None:
            table.remember(undo, existing)
        headers = {"If-Match": "*"} if message == "UpdateMultiple" else {}
        values.pop(table.key, None)
        answer = patch(world, user, segment, headers, values)
        if not was_there:
            undo.append((answer.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")"), None))
    return ids


def _segment(table: Table, target: Mapping[str, Any], message: str) -> str:
    if message == "UpsertMultiple" and isinstance(target.get("@odata.id"), str):
        return str(target["@odata.id"])
    if target.get(table.key):
        return f"{table.entity_set}({target[table.key]})"
    raise ODataError(400, "0x80040203", f"A target of {message} needs its {table.key}"
                                        + (" or @odata.id." if message == "UpsertMultiple"
                                           else "."))
