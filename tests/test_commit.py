"""A delivery commits by creating its ledger row, which keeps the remainder it sends
(``sync.state.ledger``, ``sync.work.worker.commit``): of two deliveries of one message, the first
to commit counts the records and sends the remainder, the other counts and sends nothing; a
delivery that finds the row sends the parts it keeps unsent. Against Azurite and the emulators.
"""

from __future__ import annotations

import pytest

from sync.config.storage_names import BATCH_QUEUE
from sync.message.contract import Message
from sync.message.counts import MessageCounts
from sync.message.ids import REMAINDER, part_id
from sync.message.outgoing import Outgoing
from sync.state import ledger
from sync.state.ledger_rows import (
    PARTS_CHUNK_CHARS,
    parts_fields,
    parts_fit,
    unsent_parts,
)
from sync.work import worker
from tests.test_repair import bodies
from tests.test_worker import FAST, Make, refs, rows

MESSAGE_ID = "run-c-p000000-001"


def remainder_of(message: Message, start: int) -> Outgoing:
    """The part a delivery of ``message`` sends back with its records from ``start`` on."""
    records = message.records[start:]
    return Outgoing(Message(part_id(message.batch_id, 0, REMAINDER, (r.id for r in records)),
                            records, attempt=1).to_json(), 0)


def test_the_parts_a_row_keeps_read_back_the_same_in_chunks() -> None:
    parts = tuple(Outgoing("x" * 25_000 + str(n), n) for n in range(3))
    row = parts_fields(parts)
    assert sum(key.startswith("Parts") and key != "PartsSent" for key in row) == 3
    assert all(len(value) <= PARTS_CHUNK_CHARS for key, value in row.items()
               if key != "PartsSent")
    assert unsent_parts(row) == parts
    assert unsent_parts({**row, "PartsSent": True}) == ()
    assert unsent_parts({"Written": 4}) == ()  # a row from before rows kept parts
    assert parts_fields(()) == {"PartsSent": True}
    assert parts_fit(parts)
    assert not parts_fit(tuple(Outgoing("x" * 60_000, 1) for _ in range(7)))


@pytest.mark.emulator(records=20, **FAST)
async def test_a_delivery_that_finds_its_row_sends_the_kept_parts_and_takes_nothing(
        make_services: Make) -> None:
    """The delivery that committed died (or its lease ran out) before it sent its remainder:
    the next delivery sends the parts the row keeps, once, and writes nothing."""
    services = await make_services()
    message = Message(MESSAGE_ID, tuple(await refs(services, 4)))
    part = remainder_of(message, 2)
    table = services.storage.ledger
    assert await ledger.commit_message(table, MESSAGE_ID, 0,
                                       MessageCounts(written=2, reenqueued=2), (part,)) is None
    before = await rows(services)
    for _ in range(2):
        counts = await worker.process_message(services, message.to_json().encode())
        assert (counts.written, counts.unchanged, counts.reenqueued) == (0, 0, 0)
    assert await bodies(services.settings.storage, BATCH_QUEUE) == [part.body]
    row = await ledger.message_row(table, MESSAGE_ID, 0)
    assert row is not None
    assert unsent_parts(row) == ()
    assert await rows(services) == before  # no record taken again
    totals = await ledger.message_totals(table)
    assert (totals.written, totals.reenqueued) == (2, 2)


@pytest.mark.emulator(records=20, **FAST)
async def test_of_two_deliveries_the_later_commit_drops_its_counts_and_its_remainder(
        make_services: Make) -> None:
    """Two deliveries of one message at once (the first's lease ran out while storage stood
    still): the one that commits first counts the records; the other, whose writes had left
    two records for later, commits after it and sends nothing, so the two records are not
    taken and counted a second time."""
    services = await make_services()
    message = Message(MESSAGE_ID, tuple(await refs(services, 4)))
    first = await worker.process_message(services, message.to_json().encode())
    assert first.written == 4
    late = await worker.commit(services.first_work(), message,
                               MessageCounts(written=2, reenqueued=2),
                               (remainder_of(message, 2),))
    assert (late.written, late.reenqueued) == (0, 0)
    assert await bodies(services.settings.storage, BATCH_QUEUE) == []
    totals = await ledger.message_totals(services.storage.ledger)
    assert (totals.written, totals.unchanged, totals.reenqueued) == (4, 0, 0)
