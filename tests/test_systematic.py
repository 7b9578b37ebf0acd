"""Systematic record faults stop the line: the same refusal on most of a definition's records
opens its circuit with the reason after at most SYNC_SYSTEMATIC_RECORDS dead letters (pure
rules, then the worker against Azurite and the Dataverse emulator)."""

from __future__ import annotations

import pytest

from sync.failures.errors import RecordFault
from sync.failures.systematic import SystematicPolicy, Window, is_systematic, signature_of
from sync.message.contract import Message, RecordRef, decode_message
from sync.ops.run_status import read_cluster
from sync.ops.status_view import cluster_dict
from sync.state.systematic_row import SystematicRow, row_key
from sync.work import worker
from tests.hosting import sent_back
from tests.test_worker import FAST, Make, emulator, rows

TYPE_REFUSAL = {"kind": "error", "preset": "400-type", "hits": "writes"}


def refusal(status: int, message: str, code: str = "0x80048d19") -> RecordFault:
    return RecordFault("dataverse", status, code, message)


@pytest.mark.parametrize(("one", "other", "same"), [
    (refusal(400, "Cannot convert the literal 'Contoso' to 'Edm.Int32'"),
     refusal(400, "Cannot convert the literal 'Fabrikam' to 'Edm.Int32'"), True),
    (refusal(400, "record 5b1c2a3e-0000-4000-8000-000000000001 refused: 120 too large"),
     refusal(400, "record 5b1c2a3e-0000-4000-8000-000000000002 refused: 7 too large"), True),
    (refusal(400, "Cannot convert the literal 'a' to 'Edm.Int32'"),
     refusal(400, "Cannot convert the literal 'a' to 'Edm.Int32'", code="0x80040203"), False),
], ids=["values quoted differ", "ids and numbers differ", "another code"])
def test_the_same_refusal_is_the_code_and_message_without_the_values(
        one: RecordFault, other: RecordFault, same: bool) -> None:
    assert (signature_of(one) == signature_of(other)) is same


@pytest.mark.parametrize("status", [404, 412, 429, 500])
def test_a_record_gone_changed_throttled_or_a_server_error_is_never_systematic(
        status: int) -> None:
    assert signature_of(refusal(status, "x")) is None


def test_the_share_is_of_the_records_tried_in_the_window() -> None:
    window = Window(window_s=60.0)
    window.written(0.0, 70)
    for _ in range(30):
        window.refused(10.0, "400 x")
    assert window.share(20.0, "400 x") == pytest.approx(0.3)
    assert window.share(20.0, "400 x", written_now=50) == pytest.approx(0.2)
    assert window.share(65.0, "400 x") == 1.0  # what was written left the window


@pytest.mark.parametrize(("count", "share", "systematic"), [
    (25, 1.0, False), (26, 1.0, True), (26, 0.19, False), (1000, 0.2, True)],
    ids=["the threshold's worth", "one past it, every record", "past it, a few records",
         "many, a fifth"])
def test_when_a_refusal_is_the_definitions(count: int, share: float, systematic: bool) -> None:
    assert is_systematic(count, share, SystematicPolicy(records=25, share=0.2)) is systematic


async def refs(services: object, count: int) -> list[RecordRef]:
    return [RecordRef(str(r["accountid"]), str(r["websiteurl"]))
            for r in (await rows(services))[:count]]  # type: ignore[arg-type]


@pytest.mark.emulator(records=60, **FAST)
async def test_a_mapping_the_table_refuses_opens_the_definitions_circuit_after_the_threshold(
        make_services: Make) -> None:
    """Every write refused (400 0x80048d19): 10 records dead-lettered, then the circuit of the
    definition opens with the refusal; the message's other records wait on the queue, and the
    next delivery while it is open writes nothing and asks nothing."""
    services = await make_services(SYNC_SYSTEMATIC_RECORDS="10", SYNC_WRITE_MODE="single",
                                   SYNC_CIRCUIT_OPEN_S="60", SYNC_CIRCUIT_MAX_OPEN_S="120")
    recorder = sent_back(services)
    await emulator(services, "faults", "POST", TYPE_REFUSAL)
    records = await refs(services, 50)
    counts = await worker.process_message(services, Message("upstream-map", tuple(records))
                                          .to_json().encode())
    assert counts.dead_lettered <= 10
    assert counts.written == 0
    assert counts.dead_lettered + counts.reenqueued == 50
    assert counts.reenqueued_by_reason["systematic_fault"] >= 1
    cluster = cluster_dict(await read_cluster(services.storage.state, 0.0), 0.0)
    circuit = cluster["circuits"][row_key("default")]
    assert circuit["trips"] == 1
    assert "0x80048d19" in circuit["reason"]
    assert "Edm.Int32" in circuit["reason"]
    refused = (await emulator(services, "stats"))["faults"]["400-type"]
    (back,) = recorder.taken()
    again = await worker.process_message(services, back.encode())
    assert again.dead_lettered == 0
    assert again.enrichment.calls == 0
    assert dict(again.reenqueued_by_reason) == {"circuit_open": counts.reenqueued}
    assert (await emulator(services, "stats"))["faults"]["400-type"] == refused  # no write
    assert len(decode_message(recorder.taken()[0].encode()).records) == counts.reenqueued


@pytest.mark.emulator(records=60, **FAST)
async def test_a_refusal_of_a_few_records_dead_letters_each_of_them(make_services: Make) -> None:
    """Past the count but under the share (5 of the 45 records tried): each record's own."""
    services = await make_services(SYNC_SYSTEMATIC_RECORDS="4", SYNC_WRITE_MODE="single")
    records = await refs(services, 45)
    await emulator(services, "faults", "POST", {**TYPE_REFUSAL,
                                                "record_ids": [r.id for r in records[-5:]]})
    first = await worker.process_message(services, Message("upstream-good", tuple(records[:35]))
                                         .to_json().encode())
    counts = await worker.process_message(services, Message("upstream-few", tuple(records[35:]))
                                          .to_json().encode())
    assert first.written == 35
    assert (counts.written, counts.dead_lettered, counts.reenqueued) == (5, 5, 0)
    cluster = await read_cluster(services.storage.state, 0.0)
    assert cluster.circuits[row_key("default")].trips == 0


async def _row_kept_moving(*_: object) -> int:
    """What ``SystematicRow.count`` answers when every write of it lost a race to others."""
    return 0


@pytest.mark.emulator(records=60, **FAST)
async def test_a_refusal_whose_count_loses_every_race_waits_once_another_opened_the_circuit(
        make_services: Make, monkeypatch: pytest.MonkeyPatch) -> None:
    """Instance ``late`` last read the row closed; ``first`` then opens the circuit. The count
    of ``late``'s next refusal loses every race on the moving row: it reads the row again and
    its record waits, so no more than the threshold are dead-lettered across the cluster."""
    settings = {"SYNC_SYSTEMATIC_RECORDS": "10", "SYNC_WRITE_MODE": "single",
                "SYNC_CIRCUIT_OPEN_S": "60", "SYNC_CIRCUIT_MAX_OPEN_S": "120",
                "SYNC_STATE_REFRESH_S": "60", "SYNC_LEASE_S": "150"}
    late = await make_services(**settings)
    first = await make_services(**settings)
    await emulator(first, "faults", "POST", TYPE_REFUSAL)
    records = await refs(first, 52)
    before = await worker.process_message(late, Message("upstream-b1", (records[0],))
                                          .to_json().encode())
    opened = await worker.process_message(first, Message("upstream-a", tuple(records[1:51]))
                                          .to_json().encode())
    assert before.dead_lettered + opened.dead_lettered == 10
    monkeypatch.setattr(SystematicRow, "count", _row_kept_moving)
    counts = await worker.process_message(late, Message("upstream-b2", (records[51],))
                                          .to_json().encode())
    assert (counts.dead_lettered, counts.reenqueued) == (0, 1)
