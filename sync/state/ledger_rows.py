"""The run ledger's rows: partitions and keys, and the columns that hold counts and request
usage (the layout sync.state.ledger, sync.state.tallies and sync.state.manifests
share)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from typing import Any, Final

from sync.message.counts import EnrichmentUsage, MessageCounts, RequestUsage
from sync.message.ids import run_id_of
from sync.message.outgoing import Outgoing

RUN_PREFIX: Final = "run:"


RUN_ROW: Final = "run"


MESSAGE_PREFIX: Final = "msg:"


MESSAGE_END: Final = "msg;"
"""The first key after every ``msg:`` key (``;`` follows ``:``)."""


PLAN_KIND: Final = "plan"


MESSAGE_KIND: Final = "message"


def usage_fields(usage: RequestUsage) -> dict[str, int]:
    """A ledger row's request-usage columns."""
    return {"RequestsRead": usage.reads, "RequestsWritten": usage.writes,
            "RequestsRetried": usage.retries}


def usage_from(entity: Mapping[str, Any]) -> RequestUsage:
    return RequestUsage(reads=int(entity.get("RequestsRead", 0)),
                        writes=int(entity.get("RequestsWritten", 0)),
                        retries=int(entity.get("RequestsRetried", 0)))


def enrichment_fields(usage: EnrichmentUsage) -> dict[str, int]:
    """A ledger row's enrichment columns."""
    return {"EnrichmentCalls": usage.calls, "EnrichmentInputs": usage.inputs,
            "EnrichmentCacheHits": usage.cache_hits,
            "EnrichmentCacheMisses": usage.cache_misses, "EnrichmentLaters": usage.laters,
            "EnrichmentCarried": usage.carried}


def enrichment_from(entity: Mapping[str, Any]) -> EnrichmentUsage:
    return EnrichmentUsage(calls=int(entity.get("EnrichmentCalls", 0)),
                           inputs=int(entity.get("EnrichmentInputs", 0)),
                           cache_hits=int(entity.get("EnrichmentCacheHits", 0)),
                           cache_misses=int(entity.get("EnrichmentCacheMisses", 0)),
                           laters=int(entity.get("EnrichmentLaters", 0)),
                           carried=int(entity.get("EnrichmentCarried", 0)))


def run_partition(run_id: str) -> str:
    """The partition that holds a run's row and its messages' rows."""
    return f"{RUN_PREFIX}{run_id}"


def is_message_row(entity: Mapping[str, Any]) -> bool:
    return str(entity["RowKey"]).startswith(MESSAGE_PREFIX)


def message_key(batch_id: str, attempt: int) -> tuple[str, str]:
    """(PartitionKey, RowKey) of one delivery's ledger row: its run's partition."""
    return run_partition(run_id_of(batch_id)), f"{MESSAGE_PREFIX}{batch_id}|{attempt:04d}"


def message_entity(batch_id: str, attempt: int, counts: MessageCounts,
                   parts: tuple[Outgoing, ...] = ()) -> dict[str, Any]:
    """The ledger row of one processed message, in its run's partition; with the remainder
    ``parts`` it sends after the row, kept until they are sent (``parts_fields``)."""
    partition, row = message_key(batch_id, attempt)
    return {"PartitionKey": partition, "RowKey": row, **counts_fields(counts),
            **parts_fields(parts)}


PARTS_CHUNK_CHARS: Final = 30_000
"""Characters a row's column holds of the parts' text (a table string holds 32 K)."""
PARTS_MAX_CHUNKS: Final = 12
"""Columns the parts may fill (360,000 characters: a row stays well within a table entity's
1 MiB); parts that need more are sent before their row (``parts_fit``)."""
PARTS_SENT: Final = "PartsSent"


def parts_fit(parts: tuple[Outgoing, ...]) -> bool:
    """Whether the parts' text fits a row."""
    return len(_parts_text(parts)) <= PARTS_CHUNK_CHARS * PARTS_MAX_CHUNKS


def parts_fields(parts: tuple[Outgoing, ...]) -> dict[str, Any]:
    """The columns that keep the parts a row's delivery still has to send (``Parts0`` ...),
    and whether they are sent (no parts: nothing to send)."""
    if not parts:
        return {PARTS_SENT: True}
    text = _parts_text(parts)
    chunks = [text[at:at + PARTS_CHUNK_CHARS] for at in range(0, len(text), PARTS_CHUNK_CHARS)]
    return {PARTS_SENT: False, **{f"Parts{index}": chunk for index, chunk in enumerate(chunks)}}


def unsent_parts(entity: Mapping[str, Any]) -> tuple[Outgoing, ...]:
    """The parts a row keeps that were not marked sent (a row from before parts were kept,
    without the column, has none)."""
    if entity.get(PARTS_SENT, True):
        return ()
    chunks, index = [], 0
    while f"Parts{index}" in entity:
        chunks.append(str(entity[f"Parts{index}"]))
        index += 1
    return tuple(Outgoing(body=str(body), visibility_s=int(visibility_s))
                 for body, visibility_s in json.loads("".join(chunks) or "[]"))


def _parts_text(parts: tuple[Outgoing, ...]) -> str:
    return json.dumps([[part.body, part.visibility_s] for part in parts], separators=(",", ":"))


def counts_fields(counts: MessageCounts) -> dict[str, Any]:
    """The columns that hold counts (a message's row, a process's tally of a run)."""
    return {"Written": counts.written, "DeadLettered": counts.dead_lettered,
            "Unchanged": counts.unchanged, **usage_fields(counts.requests),
            **enrichment_fields(counts.enrichment),
            "Reenqueued": counts.reenqueued, "Cancelled": counts.cancelled,
            "RejectedMessages": counts.rejected_messages,
            "TransientRetries": counts.transient_retries, "Previewed": counts.previewed,
            "Poisoned": counts.poisoned,
            "RequeueDelayS": float(counts.requeue_delay_s),
            "ThrottledByCode": json.dumps(dict(counts.throttled_by_code)),
            "DeadLetteredByReason": json.dumps(dict(counts.dead_lettered_by_reason)),
            "ReenqueuedByReason": json.dumps(dict(counts.reenqueued_by_reason))}


def counts_from(entity: Mapping[str, Any]) -> MessageCounts:
    """The counts a ledger row holds."""
    return MessageCounts(written=int(entity.get("Written", 0)),
                       dead_lettered=int(entity.get("DeadLettered", 0)),
                       unchanged=int(entity.get("Unchanged", 0)),
                       requests=usage_from(entity), enrichment=enrichment_from(entity),
                       reenqueued=int(entity.get("Reenqueued", 0)),
                       cancelled=int(entity.get("Cancelled", 0)),
                       rejected_messages=int(entity.get("RejectedMessages", 0)),
                       transient_retries=int(entity.get("TransientRetries", 0)),
                       previewed=int(entity.get("Previewed", 0)),
                       poisoned=int(entity.get("Poisoned", 0)),
                       requeue_delay_s=float(entity.get("RequeueDelayS", 0.0)),
                       throttled_by_code=_counter(entity, "ThrottledByCode"),
                       dead_lettered_by_reason=_counter(entity, "DeadLetteredByReason"),
                       reenqueued_by_reason=_counter(entity, "ReenqueuedByReason"))


def _counter(entity: Mapping[str, Any], name: str) -> Counter[str]:
    return Counter(json.loads(entity.get(name) or "{}"))
