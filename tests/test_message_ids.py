"""Message ids: every message the product makes has a ledger row of its own, within the
contract's 128 characters, and maps back to its run (pure, then through Azurite's queue)."""

from __future__ import annotations

import dataclasses
import itertools
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from sync.failures.errors import ServiceFault, Throttled
from sync.message.contract import Message, RecordRef, decode_message
from sync.message.counts import MessageCounts
from sync.message.ids import (
    HELD,
    MAX_BATCH_ID_CHARS,
    REMAINDER,
    is_planned,
    part_id,
    replay_batch_id,
    run_id_of,
)
from sync.services import Services
from sync.state import ledger, runs
from sync.work.message_run import MessageRun
from sync.work.requeue import remainder, send_parts
from tests.hosting import SentBack

Make = Callable[..., Any]
PLANNED = "run-20261122T020000Z-1a2b3c-p000003-007"
LONG = "m" * MAX_BATCH_ID_CHARS
IDS = [f"{n:08x}-0000-4000-8000-000000000000" for n in range(6)]


@pytest.mark.parametrize(("batch_id", "run_id"), [
    (PLANNED, "run-20261122T020000Z-1a2b3c"),
    ("import-000001", "import-000001"),
    ("import-000001.1.2", "import-000001"),
    (replay_batch_id("run-20261122T020000Z-1a2b3c", "ab12"), "run-20261122T020000Z-1a2b3c"),
    ("x" * 120 + ":replay-ab12", run_id_of("x" * 120)),
    (LONG, run_id_of(LONG)),
], ids=["a planner's", "a producer's", "a producer's split before parts", "a replay",
        "a replay of a long run", "a producer's of 128 characters"])
def test_every_part_maps_back_to_its_run_within_the_limit(batch_id: str, run_id: str) -> None:
    """Ten generations of parts, each of both kinds: every id fits and names the same run."""
    current = batch_id
    for generation in range(10):
        for kind in (REMAINDER, HELD):
            part = part_id(current, generation, kind, IDS[:2])
            assert len(part) <= MAX_BATCH_ID_CHARS, part
            assert run_id_of(part) == run_id
            assert is_planned(part) == is_planned(batch_id)
            decode_message(Message(part, (RecordRef(IDS[0], "x"),)).to_json().encode())
        current = part_id(current, generation, REMAINDER, IDS[:2])
    assert len(run_id_of(LONG)) < MAX_BATCH_ID_CHARS


def test_parts_differ_unless_they_are_the_same_part() -> None:
    parts = [part_id(parent, attempt, kind, records)
             for parent, attempt, kind, records in itertools.product(
                 (PLANNED, LONG), (0, 1), (REMAINDER, HELD), (IDS[:2], IDS[2:4], IDS[:3]))]
    assert len(set(parts)) == len(parts)
    # a delivery made twice makes the same parts (their ledger rows overwrite, never add)
    assert part_id(PLANNED, 1, REMAINDER, IDS[:2]) == part_id(PLANNED, 1, REMAINDER,
                                                              reversed(IDS[:2]))


def big_records(count: int) -> tuple[RecordRef, ...]:
    """Records whose message must be split to fit the queue's 64 KiB."""
    return tuple(RecordRef(str(uuid.UUID(int=n + 1)), "https://" + "w" * 1990 + ".example")
                 for n in range(count))


async def sent_back(services: Services, message: Message) -> list[Message]:
    """Put every record of ``message`` back on the queue (a long throttle), as the worker does;
    answer the messages it sent."""
    work = services.first_work()
    queue = SentBack(work.storage.batches)
    work = dataclasses.replace(work, storage=dataclasses.replace(work.storage, batches=queue))
    run = MessageRun(message)
    fault = ServiceFault("dataverse", "503 " + "u" * (40 + 250 * message.attempt))
    for record in message.records:  # each record's history grows the remainder
        run.failed(record, fault)
    run.deferred(Throttled("dataverse", 30.0, "0x80072322"))
    await send_parts(work, remainder(work, run))
    return [decode_message(text.encode()) for text in queue.texts]


async def test_remainders_split_twice_keep_a_ledger_row_each(make_services: Make) -> None:
    """A 128-character id whose remainder is split, twice over: the old ``<id>.1`` cut to 128
    characters was the message's own id, and ``<id>.1`` came back from both parents; so one
    row overwrote another and the run's counts came up short."""
    services = await make_services()
    first = Message(LONG, big_records(30))
    generation = await sent_back(services, first)
    assert len(generation) == 2
    again = [m for parent in generation for m in await sent_back(services, parent)]
    assert len(again) >= 3
    keys = [(m.batch_id, m.attempt) for m in again]
    assert len(set(keys)) == len(keys)
    assert {run_id_of(m.batch_id) for m in [*generation, *again]} == {run_id_of(LONG)}
    await runs.start_message_run(services.storage.ledger, run_id_of(LONG), 30, 1.0)
    for message in again:
        await ledger.record_message(services.storage.ledger, message.batch_id, message.attempt,
                                    MessageCounts(written=len(message.records)))
    totals = await runs.read_run(services.storage.ledger, run_id_of(LONG))
    assert totals is not None
    assert totals.counts.written == 30
    assert await runs.complete_if_done(services.storage.ledger, run_id_of(LONG), 2.0)
