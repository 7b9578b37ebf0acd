"""A definition's systematic-fault circuit, shared by the cluster: one row in the state table,
``circuit/definition:<name>``, beside the services' circuits (so ``sync status`` and the local
stack's watch show it as one of them: open until, openings, the reason).

It also holds the cluster's count of each refusal within the window (``Counts``: by a digest
of the refusal's signature, at most ``MAX_SIGNATURES`` of them), so at most
``SYNC_SYSTEMATIC_RECORDS`` records of one definition are dead-lettered for one refusal however
many instances meet it. Every write is conditional on the row's ETag (read again and retried on
a conflict), so no count is lost and no opening is overwritten by an older state.

Owner and lifetime: one row per definition that ever met a refusal, rewritten in place; the
worker closes it (``Trips`` 0, counts cleared) once the definition writes again after its back-off
without meeting the refusal; a definition removed leaves one row (a few hundred bytes).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient

PARTITION: Final = "circuit"
"""The shared circuits' partition (``sync.budget.cluster.CIRCUIT_PARTITION``)."""
PREFIX: Final = "definition:"
WRITE_ATTEMPTS: Final = 5
MAX_SIGNATURES: Final = 20
MAX_REASON_CHARS: Final = 1000


def row_key(definition: str) -> str:
    return f"{PREFIX}{definition}"


def digest(signature: str) -> str:
    return hashlib.sha256(signature.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class SystematicView:
    """What the row holds."""

    open_until_s: float = 0.0
    trips: int = 0
    reason: str = ""
    signature: str = ""
    """The digest of the refusal that opened the circuit ("" while closed)."""
    window_start_s: float = 0.0
    counts: Mapping[str, int] = field(default_factory=dict)
    generation: int = 0
    etag: str = ""

    def open_for_s(self, now_s: float) -> float:
        return max(0.0, self.open_until_s - now_s)


def view_from(row: Mapping[str, Any] | None) -> SystematicView:
    if row is None:
        return SystematicView()
    return SystematicView(float(row.get("OpenUntil", 0.0)), int(row.get("Trips", 0)),
                          str(row.get("Reason", "")), str(row.get("Signature", "")),
                          float(row.get("WindowStart", 0.0)),
                          json.loads(str(row.get("Counts") or "{}")),
                          int(row.get("Generation", 0)),
                          getattr(row, "metadata", {}).get("etag") or "")


class SystematicRow:
    """One definition's row, as this process reads and writes it."""

    __slots__ = ("_definition", "_table")

    def __init__(self, table: TableClient, definition: str) -> None:
        self._table, self._definition = table, definition

    def __repr__(self) -> str:
        return f"SystematicRow({self._definition!r})"

    async def read(self) -> SystematicView:
        try:
            return view_from(await self._table.get_entity(PARTITION,
                                                          row_key(self._definition)))
        except ResourceNotFoundError:
            return SystematicView()

    async def count(self, signature: str, now_s: float, window_s: float) -> int:
        """Count one more refusal of ``signature`` in the window (a new window when the last
        is over); answer the cluster's count of it."""
        key = digest(signature)
        for _ in range(WRITE_ATTEMPTS):
            view = await self.read()
            fresh = now_s - view.window_start_s > window_s
            counts = {} if fresh else dict(view.counts)
            counts[key] = counts.get(key, 0) + 1
            kept = dict(sorted(counts.items(), key=lambda item: -item[1])[:MAX_SIGNATURES])
            if await self._write(view, WindowStart=now_s if fresh else view.window_start_s,
                                 Counts=json.dumps(kept)):
                return counts[key]
        return 0  # the row kept moving: counted by the others; this refusal is not decided here

    async def trip(self, signature: str, reason: str, open_until_s: float) -> SystematicView:
        """Open the circuit (one more opening) for ``signature``, unless another instance
        opened it later; answer the row as it then is."""
        for _ in range(WRITE_ATTEMPTS):
            view = await self.read()
            if view.open_until_s >= open_until_s and view.signature == digest(signature):
                return view
            if await self._write(view, OpenUntil=open_until_s, Trips=view.trips + 1,
                                 Reason=reason[:MAX_REASON_CHARS], Signature=digest(signature)):
                break
        return await self.read()

    async def close(self, seen: SystematicView) -> None:
        """Close the circuit the row held as ``seen`` (unchanged since): the definition wrote
        again without meeting its refusal."""
        await self._write(seen, OpenUntil=0.0, Trips=0, Reason="", Signature="", Counts="{}")

    async def _write(self, view: SystematicView, **columns: Any) -> bool:
        """Merge ``columns`` where the row still is ``view``; False when another write came
        first."""
        entity = {"PartitionKey": PARTITION, "RowKey": row_key(self._definition),
                  "Generation": view.generation + 1, **columns}
        try:
            if not view.etag:
                await self._table.create_entity(entity)
            else:
                await self._table.update_entity(entity, mode=UpdateMode.MERGE, etag=view.etag,
                                                match_condition=MatchConditions.IfNotModified)
        except (ResourceExistsError, ResourceModifiedError):
            return False
        return True
