"""Before-images: what each written record held in the columns a run changed, for a rollback.

After a message's writes, the worker keeps the images of the records it wrote in
``sync.config.storage_names.BEFORE_IMAGE_TABLE``, partition ``<run id>``: for each record its
id, the values read before (``before``, from the planner's read:
``sync.message.changes.before_values``) and the values written (``after``: only the columns that
changed), so ``sync rollback`` can tell whether a person changed them since. A record written
without a read (a producer's record: no ``current``) gets an image marked not restorable. Images
expire ``SYNC_ROLLBACK_RETENTION_DAYS`` after the write (``ExpiresAt``, epoch seconds): expired
ones are never restored.

A message's images go in one row (a **pack**, ``pack:<batch id>|<attempt>|<n>``: a message
processed twice replaces its own pack), or a few when they exceed ``MAX_PACK_CHARS``: one
write per message, not one per record. (A row per record, in Table Storage transactions, cost
half of a host's CPU in the SDK's multipart encoding.) Rows of one image each
(``RowKey`` = the record id), written before packs, are still read. Losing them (storage down)
never undoes or repeats a write: the loss is logged (``before_images_lost``) and the records
are written.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient

from sync.message.changes import before_values, changed_columns
from sync.message.contract import Message, RecordRef, Scalar
from sync.message.ids import run_id_of

logger = logging.getLogger(__name__)

DAY_S: Final = 86_400
MAX_TRANSACTION_ENTITIES: Final = 100
"""Table Storage's limit on the operations of one transaction (entity group transaction)."""
MAX_TRANSACTION_BYTES: Final = 3_500_000
"""Below the 4 MiB a transaction's payload may have, with room for the envelope."""
EXPIRED_ROW: Final = "~expired"
"""The row a sweep leaves in a run's partition once it deleted the run's expired images
(``sync.safety.image_sweep``); sorts after every record id (GUIDs, alternate keys)."""
PACK_PREFIX: Final = "pack:"
MAX_PACK_CHARS: Final = 240_000
"""A pack's JSON at most (split over ``PART_CHARS`` properties): 480 KB as the service counts
(UTF-16), under its 1 MiB per entity."""
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
    """The row of one image alone (the form written before packs; still read)."""
    return {"PartitionKey": image.run_id, "RowKey": image.record_id,
            "EntitySet": image.entity_set, "Restorable": image.restorable,
            "ExpiresAt": float(image.expires_at_s),
            **split(json.dumps(image.before), "Before"), **split(json.dumps(image.after), "After")}


def image_from(entity: Mapping[str, Any]) -> Image:
    """The image a row of one image holds."""
    before = json.loads(joined(entity, "Before") or "null")
    return Image(run_id=str(entity["PartitionKey"]), record_id=str(entity["RowKey"]),
                 entity_set=str(entity["EntitySet"]),
                 before=before if isinstance(before, dict) else None,
                 after=dict(json.loads(joined(entity, "After") or "{}")),
                 expires_at_s=float(entity["ExpiresAt"]))


def pack_entities(run_id: str, pack_key: str, images: Sequence[Image],
                  max_chars: int = MAX_PACK_CHARS) -> list[dict[str, Any]]:
    """The rows of one message's images (one run's, one entity set, one expiry): as few packs
    as ``max_chars`` allows, keyed ``pack:<pack_key>|<n>``."""
    rows: list[dict[str, Any]] = []
    first = images[0]
    for number, group in enumerate(_pack_groups([_packed(i) for i in images], max_chars)):
        rows.append({"PartitionKey": run_id, "RowKey": f"{PACK_PREFIX}{pack_key}|{number:03d}",
                     "EntitySet": first.entity_set, "ExpiresAt": float(first.expires_at_s),
                     "Records": len(group), **split(f"[{','.join(group)}]", "Images")})
    return rows


def _packed(image: Image) -> str:
    return json.dumps([image.record_id, image.before, image.after])


def _pack_groups(texts: Sequence[str], max_chars: int) -> Iterator[list[str]]:
    group: list[str] = []
    size = 0
    for text in texts:
        if group and size + len(text) + 1 > max_chars:
            yield group
            group, size = [], 0
        group.append(text)
        size += len(text) + 1
    if group:
        yield group


def images_from(entity: Mapping[str, Any]) -> list[Image]:
    """The images a row holds: a pack's, or the one of a row of one image."""
    if not str(entity["RowKey"]).startswith(PACK_PREFIX):
        return [image_from(entity)]
    run_id, entity_set = str(entity["PartitionKey"]), str(entity["EntitySet"])
    expires_at_s = float(entity["ExpiresAt"])
    return [Image(run_id, str(record_id), entity_set,
                  before if isinstance(before, dict) else None, dict(after), expires_at_s)
            for record_id, before, after in json.loads(joined(entity, "Images") or "[]")]


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


def images_of(message: Message, written_ids: Iterable[str],
              items: Iterable[tuple[RecordRef, Mapping[str, Any]]],
              entity_set: str, expires_at_s: float) -> list[Image]:
    """The images of the records this message wrote."""
    written = set(written_ids)
    run_id = run_id_of(message.batch_id)
    images = (image_for(run_id, entity_set, record, new, expires_at_s)
              for record, new in items if record.id in written)
    return [image for image in images if image is not None]


async def put(table: TableClient, message: Message, images: Sequence[Image]) -> None:
    """Store one message's images (one run's) in its packs."""
    pack_key = f"{message.batch_id}|{message.attempt:04d}"
    for entity in pack_entities(images[0].run_id, pack_key, images):
        await table.upsert_entity(entity, mode=UpdateMode.REPLACE)


async def keep(table: TableClient, message: Message, written_ids: Sequence[str],
               items: Sequence[tuple[RecordRef, Mapping[str, Any]]], *, retention_days: int,
               entity_set: str, now_s: float) -> int:
    """Keep the images of the records the message wrote; answer how many were kept."""
    images = images_of(message, written_ids, items, entity_set,
                       now_s + retention_days * DAY_S)
    if not images:
        return 0
    try:
        await put(table, message, images)
    except Exception:
        logger.exception("before-images of %d written records not kept; a rollback of run %s "
                         "will not find them", len(images), images[0].run_id,
                         extra={"event": "before_images_lost", "run_id": images[0].run_id,
                                "records": len(images)})
        return 0
    return len(images)


async def read_images(table: TableClient, run_id: str) -> tuple[list[Image], bool]:
    """Every image of a run (one partition query), and whether a sweep deleted expired ones.
    A record written twice in the run (its message processed again) has its latest image."""
    rows = table.query_entities(f"PartitionKey eq '{run_id.replace(chr(39), chr(39) * 2)}'")
    latest: dict[str, Image] = {}
    swept = False
    async for entity in rows:
        if entity["RowKey"] == EXPIRED_ROW:
            swept = True
            continue
        for image in images_from(entity):
            known = latest.get(image.record_id)
            if known is None or image.expires_at_s >= known.expires_at_s:
                latest[image.record_id] = image
    return sorted(latest.values(), key=lambda image: image.record_id), swept
