"""Table metadata (``EntityDefinitions``), the part clients read before their first call.

Microsoft's Python client resolves a table's entity set and primary key with
``EntityDefinitions?$select=LogicalName,EntitySetName,PrimaryIdAttribute&$filter=LogicalName eq
'account'`` and, before writing string values, asks for the table's choice columns
(``EntityDefinitions(LogicalName='account')/Attributes/Microsoft.Dynamics.CRM.PicklistAttribute
Metadata``). Served: the collection filtered by ``LogicalName`` (or ``SchemaName``) ``eq``, one
definition by ``LogicalName='…'`` or by its ``MetadataId``, and its attributes (the emulated
tables have no choice columns, so that cast answers an empty list). Any other filter or path
answers 501, as the rest of the emulator does for what it does not implement.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any, Final

from sync.local.emulators.webapi.odata import ODataError
from sync.local.emulators.webapi.ops import API, Answer, World
from sync.local.emulators.webapi.store import Table

ROOT: Final = "EntityDefinitions"
PICKLISTS: Final = "Microsoft.Dynamics.CRM.PicklistAttributeMetadata"
_NAMESPACE: Final = uuid.UUID("5f0e3c4a-8d2b-4f6e-9c1a-2b3d4e5f6a7b")
_FILTER: Final = re.compile(r"(LogicalName|SchemaName) eq '((?:[^']|'')*)'")
_KEY: Final = re.compile(r"\((?:LogicalName='((?:[^']|'')*)'|([0-9a-fA-F-]{36}))\)")
COST_MS: Final = 1.0


def definition(table: Table) -> dict[str, Any]:
    """What the service says about a table (the properties clients read)."""
    return {"MetadataId": str(uuid.uuid5(_NAMESPACE, table.logical_name)),
            "LogicalName": table.logical_name, "SchemaName": table.logical_name.capitalize(),
            "EntitySetName": table.entity_set, "LogicalCollectionName": table.entity_set,
            "PrimaryIdAttribute": table.key, "PrimaryNameAttribute": table.primary_name,
            "ChangeTrackingEnabled": table.tracked, "IsCustomEntity": False}


def _selected(row: dict[str, Any], query: Mapping[str, str]) -> dict[str, Any]:
    select = query.get("$select")
    if not select:
        return row
    names = {name.strip() for name in select.split(",")} | {"MetadataId"}
    unknown = sorted(names - set(row))
    if unknown:
        raise ODataError(400, "0x80060888", f"Could not find a property named '{unknown[0]}' "
                                            "on type 'Microsoft.Dynamics.CRM.EntityMetadata'.")
    return {name: value for name, value in row.items() if name in names}


def _matching(world: World, query: Mapping[str, str]) -> list[Table]:
    text = query.get("$filter")
    if text is None:
        return list(world.tables.values())
    found = _FILTER.fullmatch(text.strip())
    if found is None:
        raise ODataError(501, "0x8006088a", f"The emulator filters EntityDefinitions by "
                                            f"LogicalName or SchemaName eq only, not '{text}'.")
    field, value = found.group(1), found.group(2).replace("''", "'")
    return [table for table in world.tables.values()
            if definition(table)[field].lower() == value.lower()]


def _one(world: World, key: str) -> Table:
    found = _KEY.fullmatch(key)
    for table in world.tables.values():
        if found and (found.group(1) == table.logical_name
                      or found.group(2) == definition(table)["MetadataId"]):
            return table
    raise ODataError(404, "0x80040217", f"Could not find an entity with key {key}.")


def entity_definitions(world: World, path: str, query: Mapping[str, str]) -> Answer:
    """Answer a GET under ``EntityDefinitions``."""
    context = f"{world.base_url}{API}$metadata#EntityDefinitions"
    rest = path.removeprefix(ROOT)
    if not rest:
        rows = [_selected(definition(t), query) for t in _matching(world, query)]
        return Answer(200, {"@odata.context": context, "value": rows}, cost_ms=COST_MS)
    key, _, tail = rest.partition("/")
    table = _one(world, key)
    if not tail:
        return Answer(200, {"@odata.context": context + "/$entity",
                            **_selected(definition(table), query)}, cost_ms=COST_MS)
    if tail in ("Attributes", f"Attributes/{PICKLISTS}"):
        columns = [] if tail.endswith(PICKLISTS) else sorted(table.columns)
        return Answer(200, {"@odata.context": f"{context}({key})/Attributes",
                            "value": [{"LogicalName": name} for name in columns]},
                      cost_ms=COST_MS)
    raise ODataError(501, "0x8006088a", f"The emulator does not serve {ROOT}{rest}.")
