"""Before-images: what each written record held in the columns a run changed, for a rollback.

After a message's writes, the worker keeps one row per written record in
``sync.names.BEFORE_IMAGE_TABLE``: partition ``<run id>``, row ``<record id>``, with the entity
set, the values read before (``Before``, from the planner's read: ``sync.changes.before_values``)
and the values written (``After``: only the columns that changed), so ``sync rollback`` can tell
whether a person changed them since. A record written without a read (a producer's record: no
``current``) gets a row marked not restorable. Each row expires ``SYNC_ROLLBACK_RETENTION_DAYS``
after the write (``ExpiresAt``, epoch seconds): expired rows are never restored.

Rows go in Table Storage transactions (one partition, at most ``MAX_TRANSACTION_ENTITIES``
entities and ``MAX_TRANSACTION_BYTES``), a handful per message, after its writes: the write path
waits for them once per message, not once per record. Losing them (storage down) never undoes
or repeats a write: the loss is logged (``before_images_lost``) and the records are written.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from azure.data.tables import TransactionOperation, UpdateMode
from azure.data.tables.aio import TableClient

from sync.changes import before_values, changed_columns
from sync.contract import RecordRef, Scalar
from sync.deadletter import run_id_of
from sync.messagerun import MessageRun

logger = logging.getLogger(__name__)

DAY_S: Final = 86_400
MAX_TRANSACTION_ENTITIES: Final = 100
"""Table Storage's limit on the operations of one transaction (entity group transaction)."""
MAX_TRANSACTION_BYTES: Final = 3_500_000
"""Below the 4 MiB a transaction's payload may have, with room for the envelope."""
EXPIRED_ROW: Final = "~expired"
"""The row a sweep leaves in a run's partition once it deleted the run's expired images
(``sync.imagesweep``); sorts after every record id (GUIDs, alternate keys)."""
PART_CHARS: Final = 30_000
"""A string property holds at most 64 KiB (32 K UTF-16 characters): longer JSON is split over
``Before``, ``Before1``, ``Before2``..."""


@dataclass(frozen=True, slots=True)
class Image:
    """One record's before-image as the table holds it."""

    run_id: str
    record_id: str
    entity_set: str
    before: dict[str, Scalar] | None
    """None: nothing was read before the write (not restorable)."""
    after: dict[str, Any]
    expires_at_s: float

    @property
    def restorable(self) -> bool:
        return self.before is not None

    def expired(self, now_s: float) -> bool:
        return now_s >= self.expires_at_s


def image_for(run_id: str, entity_set: str, record: RecordRef, new: Mapping[str, Any],
              expires_at_s: float) -> Image | None:
    """The image of one written record; None when the write changed nothing (no image
    needed: restoring it would write the values it holds)."""
    changes = changed_columns(record.current, new)
    if not changes:
        return None
    return Image(run_id, record.id, entity_set, before_values(record.current, changes),
                 changes, expires_at_s)


def split(text: str, name: str, part_chars: int = PART_CHARS) -> dict[str, str]:
    """``text`` over properties ``name``, ``name1``, ``name2``... of at most ``part_chars``."""
    parts = [text[i:i + part_chars] for i in range(0, len(text), part_chars)] or [""]
    return {(name if n == 0 else f"{name}{n}"): part for n, part in enumerate(parts)}


def joined(entity: Mapping[str, Any], name: str) -> str:
    """The text ``split`` spread over properties."""
    text, number = str(entity.get(name, "")), 1
    while f"{name}{number}" in entity:
        text += str(entity[f"{name}{number}"])
        number += 1
    return text


def entity_of(image: Image) -> dict[str, Any]:
    """The table row of an image."""
    return {"PartitionKey": image.run_id, "RowKey": image.record_id,
            "EntitySet": image.entity_set, "Restorable": image.restorable,
            "ExpiresAt": float(image.expires_at_s),
            **split(json.dumps(image.before), "Before"), **split(json.dumps(image.after), "After")}


def image_from(entity: Mapping[str, Any]) -> Image:
    """The image a table row holds."""
    before = json.loads(joined(entity, "Before") or "null")
    return Image(run_id=str(entity["PartitionKey"]), record_id=str(entity["RowKey"]),
                 entity_set=str(entity["EntitySet"]),
                 before=before if isinstance(before, dict) else None,
                 after=dict(json.loads(joined(entity, "After") or "{}")),
                 expires_at_s=float(entity["ExpiresAt"]))


def size_of(entity: Mapping[str, Any]) -> int:
    """An upper bound of an entity's bytes in a transaction (JSON, UTF-16 worst case)."""
    return 2 * len(json.dumps(entity)) + 256


def transaction_groups(entities: Sequence[dict[str, Any]],
                       max_entities: int = MAX_TRANSACTION_ENTITIES,
                       max_bytes: int = MAX_TRANSACTION_BYTES) -> Iterator[list[dict[str, Any]]]:
    """Consecutive groups within both limits of one transaction (entities of one partition)."""
    group: list[dict[str, Any]] = []
    group_bytes = 0
    for entity in entities:
        size = size_of(entity)
        if group and (len(group) == max_entities or group_bytes + size > max_bytes):
            yield group
            group, group_bytes = [], 0
        group.append(entity)
        group_bytes += size
    if group:
        yield group


def images_of(run: MessageRun, items: Iterable[tuple[RecordRef, Mapping[str, Any]]],
              entity_set: str, expires_at_s: float) -> list[Image]:
    """The images of the records this message wrote."""
    written = set(run.written_ids)
    run_id = run_id_of(run.message.batch_id)
    images = (image_for(run_id, entity_set, record, new, expires_at_s)
              for record, new in items if record.id in written)
    return [image for image in images if image is not None]


async def put(table: TableClient, images: Sequence[Image]) -> None:
    """Store images (one run's) in as few transactions as the limits allow."""
    entities = [entity_of(image) for image in images]
    for group in transaction_groups(entities):
        operations: list[tuple[TransactionOperation, dict[str, Any], dict[str, Any]]] = [
            (TransactionOperation.UPSERT, entity, {"mode": UpdateMode.REPLACE})
            for entity in group]
        await table.submit_transaction(operations)


async def keep(table: TableClient, run: MessageRun,
               items: Sequence[tuple[RecordRef, Mapping[str, Any]]], *, retention_days: int,
               entity_set: str, now_s: float) -> int:
    """Keep the images of the records the message wrote; answer how many were kept."""
    images = images_of(run, items, entity_set, now_s + retention_days * DAY_S)
    if not images:
        return 0
    try:
        await put(table, images)
    except Exception:
        logger.exception("before-images of %d written records not kept; a rollback of run %s "
                         "will not find them", len(images), images[0].run_id,
                         extra={"event": "before_images_lost", "run_id": images[0].run_id,
                                "records": len(images)})
        return 0
    return len(images)


async def read_images(table: TableClient, run_id: str) -> tuple[list[Image], bool]:
    """Every image of a run (one partition query), and whether a sweep deleted expired ones."""
    rows = table.query_entities(f"PartitionKey eq '{run_id.replace(chr(39), chr(39) * 2)}'")
    entities = [entity async for entity in rows]
    images = [image_from(entity) for entity in entities if entity["RowKey"] != EXPIRED_ROW]
    return images, len(images) < len(entities)
