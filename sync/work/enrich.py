"""The enrichment phase of a message: each record's input checked, then its columns asked of
the enrichment API through the governed call; a record that fails is dead-lettered for a fault
of its own or waits on the queue for the service."""

from __future__ import annotations

from sync.clients.enrichment import domain_of
from sync.failures.errors import AmbiguousFault, Deferred, RecordFault, ServiceFault
from sync.message.contract import RecordRef
from sync.work.context import Work
from sync.work.filing import dead_letter
from sync.work.message_run import MessageRun
from sync.work.settle import judge_alone, service_delay_s
from sync.work.write_requests import Enriched


async def enrich(work: Work, run: MessageRun, record: RecordRef) -> Enriched | None:
    """The record with its enriched columns; None when it is dead-lettered or waits."""
    dependency = work.enrichment_dep
    if run.stopped(dependency.name):
        return None
    try:
        domain_of(record.input)
    except RecordFault as fault:
        await dead_letter(work, run, record, fault)
        return None
    first_failure_s = dependency.clock.monotonic_s()
    mapping = work.definition.mapping
    try:
        columns = await dependency.call(
            lambda: work.enrichment.columns_for(record.input, mapping), run)
    except Deferred as error:
        run.deferred(error)
    except RecordFault as fault:
        await dead_letter(work, run, record, fault)
    except AmbiguousFault as fault:
        await judge_alone(run, record, fault, first_failure_s=first_failure_s,
                          dependency=dependency, probes=work.settings.record_probes,
                          policy=work.circuit_policy,
                          dead_letter=lambda r, f: dead_letter(work, run, r, f))
    except ServiceFault as fault:
        run.failed(record, fault, reason="service_fault")
        run.wait(service_delay_s(run, work.circuit_policy))
    else:
        return record, columns
    return None
