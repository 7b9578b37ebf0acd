"""CreateMultiple, UpdateMultiple, UpsertMultiple: all targets or none (standard tables).

Every target must say its type, ``"@odata.type": "Microsoft.Dynamics.CRM.<logical name>"`` of
the entity set the message is bound to: the service refuses a target without one (the action's
``Targets`` is a collection of the base entity type, so OData cannot tell the type) and a
target of another table. A failed message costs the server time of the targets it ran before
it failed (then it rolls back); a payload refused before any target ran costs nothing more
than the request's overhead."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from sync.local.emulators.webapi.odata import ODataError, parse_segment
from sync.local.emulators.webapi.ops import API, Answer, World, atomic, create, patch
from sync.local.emulators.webapi.store import Table

MESSAGES: Final = ("CreateMultiple", "UpdateMultiple", "UpsertMultiple")
TYPE_PREFIX: Final = "Microsoft.Dynamics.CRM."


class PartialFailure(ODataError):
    """A bulk message that failed after running some targets: the error, and their cost."""

    def __init__(self, error: ODataError, cost_ms: float) -> None:
        super().__init__(error.status, error.code, error.message)
        self.cost_ms = cost_ms


def error_cost_ms(error: ODataError) -> float:
    """The server time a refused request spent before it failed (beyond its overhead)."""
    return error.cost_ms if isinstance(error, PartialFailure) else 0.0


def check_types(table: Table, targets: list[Any]) -> None:
    """Every target is an object whose ``@odata.type`` names the table the message is for."""
    expected = TYPE_PREFIX + table.logical_name
    for index, target in enumerate(targets):
        if not isinstance(target, dict):
            raise ODataError(400, "0x80040203", "Each target must be an entity object.")
        found = target.get("@odata.type")
        if found is None:
            raise ODataError(400, "0x80048d19", "An error occurred while validating input "
                             "parameters: Microsoft.OData.ODataException: A resource without "
                             "a type name was found, but no expected type was specified. To "
                             "allow entries without type information, the expected type must "
                             "also be specified when the model is specified.")
        if str(found).lstrip("#") != expected:
            raise ODataError(400, "0x80040203", f"Targets[{index}] has @odata.type '{found}'; "
                             f"{table.entity_set} takes '{expected}'.")


def bulk(world: World, user: str, entity_set: str, message: str,
         body: Mapping[str, Any]) -> Answer:
    """Run a bulk message; any failing target rolls the whole request back. Its cost is one
    ``bulk_target_ms`` per target (the request's overhead is added by the caller)."""
    table = world.table(entity_set)
    targets = body.get("Targets")
    if not isinstance(targets, list) or not targets:
        raise ODataError(400, "0x80040203", "Targets must be a non-empty collection.")
    limit = world.config.operations_limit(world.config.bulk_target_ms)
    if len(targets) > limit:
        raise ODataError(400, "0x8004800d", f"The number of targets exceeds the maximum of "
                                            f"{limit}. A maximum number of '{limit}' "
                                            "operations are allowed.")
    check_types(table, targets)
    ran: list[int] = [0]
    try:
        with atomic(world):
            ids = _apply(world, user, table, message, targets, ran=ran)
    except ODataError as error:
        raise PartialFailure(error, ran[0] * world.config.bulk_target_ms) from None
    cost_ms = len(targets) * world.config.bulk_target_ms
    if message == "CreateMultiple":
        return Answer(200, {"@odata.context": f"{world.base_url}{API}$metadata#"
                                              "Microsoft.Dynamics.CRM.CreateMultipleResponse",
                            "Ids": ids}, cost_ms=cost_ms)
    return Answer(204, cost_ms=cost_ms)


def _apply(world: World, user: str, table: Table, message: str, targets: list[Any], *,
           ran: list[int]) -> list[str]:
    """Apply every target in order; ``ran[0]`` counts those started (the failing one too)."""
    seen: set[str] = set()
    ids: list[str] = []
    for target in targets:
        ran[0] += 1
        values = {k: v for k, v in target.items() if k not in ("@odata.type", "@odata.id")}
        if message == "CreateMultiple":
            answer = create(world, user, table.entity_set, values)
            ids.append(answer.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")"))
            continue
        segment = _segment(table, target, message)
        identity = _identity(table, segment)
        if identity in seen:
            if message == "UpsertMultiple":
                raise ODataError(400, "0x80040237", f"Duplicate target {segment} in "
                                                    "UpsertMultiple.")
            continue  # UpdateMultiple applies the first of duplicate targets
        seen.add(identity)
        headers = {"If-Match": "*"} if message == "UpdateMultiple" else {}
        patch(world, user, segment, headers, values)
    return ids


def _segment(table: Table, target: Mapping[str, Any], message: str) -> str:
    """The record a target names: ``@odata.id`` (UpsertMultiple only) or its primary key."""
    reference = target.get("@odata.id")
    if message == "UpsertMultiple" and isinstance(reference, str):
        return reference.split(API, 1)[-1]
    if target.get(table.key):
        return f"{table.entity_set}({target[table.key]})"
    raise ODataError(400, "0x80040203", f"A target of {message} needs its {table.key}"
                                        + (" or @odata.id." if message == "UpsertMultiple"
                                           else "."))


def _identity(table: Table, segment: str) -> str:
    """The same record however a target names it: its id if it has one, else its key."""
    _, key = parse_segment(segment)
    if key is None:
        raise ODataError(400, "0x80040203", f"'{segment}' does not name a record.")
    name, value = key
    if name == table.alternate_key:
        return table.id_by_alternate(value) or f"{name}={value}"
    return value
