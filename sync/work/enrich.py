"""The enrichment phase of a message: each record's request checked, answered from the cache or
asked of the enrichment API through the governed call (one call a record, or bulk calls of the
spec's size); a record that fails is dead-lettered for a fault of its own or waits on the queue
for the service; one the API will answer later waits for the spec's delay and is asked again,
at most ``max_laters`` times, then is dead-lettered as ``never_ready``.

Each call is counted with the records it carried (``EnrichmentUsage``: what the provider
bills), each cache lookup as a hit or a miss.

A paid call is made once (DESIGN invariant 10): a record whose enrichment answered on an
earlier delivery of the run comes back carrying the values (``RecordRef.enriched``, sent by
``sync.work.requeue``) and is settled from them without a call or a cache lookup (counted
``carried``). A record read again with a new input (``enrich_one``) is asked again: what it
carries answered the old input.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sync.clients.enrichment import SERVICE, ItemOutcome, Later, Outcome
from sync.config.table_definition import SyncDefinition
from sync.failures.errors import AmbiguousFault, Deferred, RecordFault, ServiceFault, SyncError
from sync.message.contract import RecordRef
from sync.state.enrichment_cache import Cached, cache_key
from sync.work.context import Work
from sync.work.filing import dead_letter
from sync.work.message_run import MessageRun
from sync.work.settle import judge_alone, service_delay_s, wait_for_service
from sync.work.write_requests import Enriched

NO_MATCH = "not_enrichable"


@dataclass(frozen=True, slots=True)
class Asked:
    """A record about to be asked: what its request reads, and its cache key."""

    record: RecordRef
    columns: dict[str, Any]
    key: str | None


def columns_of_record(table: SyncDefinition, record: RecordRef) -> dict[str, Any]:
    """What the enrichment reads of a record: its input, and the other input columns it
    carries as read (``current``)."""
    carried = record.current or {}
    return {**{column: carried.get(column) for column in table.extra_inputs},
            table.input_column: record.input}


async def enrich_all(work: Work, run: MessageRun, records: Sequence[RecordRef], *,
                     keep: bool = True) -> list[Enriched]:
    """The records with their enriched columns, in order; the others are settled (dead-lettered
    or waiting). With ``keep`` the run keeps what was found (``MessageRun.keep_enriched``),
    even when the phase stops on an error, to send back with any record that goes back."""
    found: dict[str, dict[str, Any]] = {}
    try:
        to_ask = _carried(run, records, found)
        asked = [item for record in to_ask if (item := await _checked(work, run, record))]
        asked = await _from_cache(work, run, asked, found)
        await _ask_all(work, run, asked, found)
    finally:
        if keep:
            run.keep_enriched((record, found[record.id]) for record in records
                              if record.id in found)
    return [(record, found[record.id]) for record in records if record.id in found]


async def _ask_all(work: Work, run: MessageRun, asked: list[Asked],
                   found: dict[str, dict[str, Any]]) -> None:
    """Ask the enrichment API for every record in ``asked``: one call each, or bulk calls.

    Every call runs to its end even when another raises (an unexpected error, a bug: raised
    after all, as a group): a call in flight is paid for, so its answer is kept and cached,
    and goes back with the record, rather than being cancelled and paid again."""
    size = work.enrichment.bulk_size
    if size > 1:
        calls = [_ask_group(work, run, asked[start:start + size], found)
                 for start in range(0, len(asked), size)]
    else:
        calls = [_ask_one(work, run, item, found) for item in asked]
    errors = [outcome for outcome in await asyncio.gather(*calls, return_exceptions=True)
              if isinstance(outcome, BaseException)]
    if errors:
        raise BaseExceptionGroup("enrichment calls that raised", errors)


def _carried(run: MessageRun, records: Sequence[RecordRef],
             found: dict[str, dict[str, Any]]) -> list[RecordRef]:
    """Settle the records that carry their enriched values; answer the others, to ask."""
    rest = []
    for record in records:
        if record.enriched is None:
            rest.append(record)
        else:
            found[record.id] = dict(record.enriched)
    run.counts.enrichment.carried += len(records) - len(rest)
    return rest


async def enrich_one(work: Work, run: MessageRun, record: RecordRef) -> dict[str, Any] | None:
    """One record's enriched columns (a record read again with a new input: what it carries
    answered the old one); None when it was settled otherwise (dead-lettered, waiting, or
    asked later)."""
    found = await enrich_all(work, run, [dataclasses.replace(record, enriched=None)],
                             keep=False)
    return found[0][1] if found else None


async def _checked(work: Work, run: MessageRun, record: RecordRef) -> Asked | None:
    """The record's request checked (before the governor is asked); a record that cannot be
    asked is dead-lettered for it."""
    columns = columns_of_record(work.definition, record)
    try:
        inputs = work.enrichment.inputs(columns)
    except RecordFault as fault:
        await dead_letter(work, run, record, fault)
        return None
    cache = work.enricher.cache
    key = (cache_key(work.enrichment.spec.fingerprint, work.definition.mapping, inputs)
           if cache is not None else None)
    return Asked(record, columns, key)


async def _from_cache(work: Work, run: MessageRun, asked: list[Asked],
                      found: dict[str, dict[str, Any]]) -> list[Asked]:
    """Settle the records the cache answers; the others (misses) are still to ask."""
    cache = work.enricher.cache
    if cache is None or not asked:
        return asked
    hits = await cache.get_many([str(item.key) for item in asked],
                                work.enrichment_dep.clock.wall_s())
    misses = []
    for item, hit in zip(asked, hits, strict=True):
        if hit is None:
            misses.append(item)
        elif hit.columns is None:
            await dead_letter(work, run, item.record, RecordFault(
                SERVICE, 404, "NoMatch", "no match (cached answer)", reason=NO_MATCH))
        else:
            found[item.record.id] = hit.columns
    run.counts.enrichment.cache_hits += len(asked) - len(misses)
    run.counts.enrichment.cache_misses += len(misses)
    return misses


async def _ask_one(work: Work, run: MessageRun, item: Asked,
                   found: dict[str, dict[str, Any]]) -> None:
    dependency = work.enrichment_dep
    if run.stopped(dependency.name):
        return
    first_failure_s = dependency.clock.monotonic_s()

    async def send() -> Outcome:
        _count_call(run, 1)
        return await work.enrichment.ask(item.columns)

    try:
        outcome = await dependency.call(send, run)
    except Deferred as error:
        run.deferred(error)
    except RecordFault as fault:
        await _record_fault(work, run, item, fault)
    except AmbiguousFault as fault:
        await judge_alone(run, item.record, fault, first_failure_s=first_failure_s,
                          dependency=dependency, probes=work.settings.record_probes,
                          policy=work.circuit_policy,
                          dead_letter=lambda r, f: dead_letter(work, run, r, f))
    except ServiceFault as fault:
        run.failed(item.record, fault, reason="service_fault")
        run.wait(service_delay_s(run, work.circuit_policy))
    else:
        await _answered(work, run, item, outcome, found)


async def _ask_group(work: Work, run: MessageRun, group: list[Asked],
                     found: dict[str, dict[str, Any]]) -> None:
    """One bulk call for ``group``; a refusal of the whole call is the service's (nothing is
    dead-lettered for it), each record's own outcome is settled as a single call's."""
    dependency = work.enrichment_dep
    if run.stopped(dependency.name):
        return

    async def send() -> list[ItemOutcome]:
        _count_call(run, len(group))
        return await work.enrichment.ask_many([item.columns for item in group])

    try:
        outcomes = await dependency.call(send, run)
    except Deferred as error:
        run.deferred(error)
        return
    except (RecordFault, ServiceFault) as fault:
        wait_for_service(run, [item.record for item in group],
                         fault if isinstance(fault, ServiceFault)
                         else ServiceFault(SERVICE, str(fault)), work.circuit_policy)
        return
    for item, outcome in zip(group, outcomes, strict=True):
        await _item_outcome(work, run, item, outcome, found)


async def _item_outcome(work: Work, run: MessageRun, item: Asked, outcome: ItemOutcome,
                        found: dict[str, dict[str, Any]]) -> None:
    if isinstance(outcome, RecordFault):
        await _record_fault(work, run, item, outcome)
    elif isinstance(outcome, SyncError):
        run.failed(item.record, outcome, reason="service_fault")
        run.wait(service_delay_s(run, work.circuit_policy))
    else:
        await _answered(work, run, item, outcome, found)


async def _answered(work: Work, run: MessageRun, item: Asked, outcome: Outcome,
                    found: dict[str, dict[str, Any]]) -> None:
    """Columns (kept, and cached) or Later (the record waits, up to ``max_laters`` times)."""
    if isinstance(outcome, Later):
        await _later(work, run, item.record, outcome)
        return
    found[item.record.id] = outcome
    await _cache(work, item, Cached(outcome))


async def _later(work: Work, run: MessageRun, record: RecordRef, later: Later) -> None:
    most = work.enrichment.spec.later.max_laters
    if run.history_of(record).laters + 1 > most:
        await dead_letter(work, run, record, RecordFault(
            SERVICE, later.status, "NeverReady",
            f"the enrichment API answered {later.status} (later) {most} times; no answer came",
            reason="never_ready"))
        return
    run.later(record, later.retry_after_s)


async def _record_fault(work: Work, run: MessageRun, item: Asked, fault: RecordFault) -> None:
    """The record's own fault: dead-lettered; a no match is cached, so it is not paid twice."""
    if fault.reason == NO_MATCH:
        await _cache(work, item, Cached(None))
    await dead_letter(work, run, item.record, fault)


async def _cache(work: Work, item: Asked, cached: Cached) -> None:
    cache = work.enricher.cache
    if cache is not None and item.key is not None:
        await cache.put(item.key, cached, work.enrichment_dep.clock.wall_s())


def _count_call(run: MessageRun, inputs: int) -> None:
    run.counts.enrichment.calls += 1
    run.counts.enrichment.inputs += inputs
