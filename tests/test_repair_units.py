"""The pure parts of the repair commands: filters as OData, replay batch ids, index rows."""

from __future__ import annotations

import argparse
import json
from types import SimpleNamespace

import pytest
from azure.core.exceptions import HttpResponseError

from sync.failures.errors import RecordFault
from sync.message.contract import RecordHistory, RecordRef, decode_message
from sync.message.ids import compact_run_id, replay_batch_id, run_id_of
from sync.ops.deadletters import DeadLetters
from sync.ops.poison import Poison, why_it_stays
from sync.ops.queuescan import Found, body_text
from sync.ops.repaircli import explain_storage_error
from sync.ops.selection import (
    Selection,
    SelectionError,
    add_selection_arguments,
    parse_since,
    selection_from,
)
from sync.state.dead_letters import Origin, message_envelope, record_envelope
from sync.state.letter_index import (
    BODY_CHUNK_CHARS,
    body_key,
    body_of,
    body_parts,
    dead_letter_entity,
    poison_entity,
)


@pytest.mark.parametrize(("selection", "odata"), [
    pytest.param(Selection(), "", id="no filter selects everything"),
    pytest.param(Selection(reasons=("conflict",)), "Reason eq 'conflict'",
                 id="one reason"),
    pytest.param(Selection(runs=("run-a", "run-b")),
                 "(PartitionKey eq 'run-a' or PartitionKey eq 'run-b')",
                 id="several runs are alternatives"),
    pytest.param(Selection(reasons=("refused",), ids=("x",), since="2026-11-30T00:00:00Z"),
                 "Reason eq 'refused' and RowKey eq 'x' and At ge '2026-11-30T00:00:00Z'",
                 id="different filters must all hold"),
    pytest.param(Selection(runs=("o'brien",)), "PartitionKey eq 'o''brien'",
                 id="a quote is doubled"),
])
def test_a_selection_is_one_odata_query(selection: Selection, odata: str) -> None:
    assert selection.odata() == odata


@pytest.mark.parametrize(("text", "iso"), [
    ("2026-11-30", "2026-11-30T00:00:00Z"),
    ("2026-11-30T02:30", "2026-11-30T02:30:00Z"),
    ("2026-11-30T02:30:00+01:00", "2026-11-30T01:30:00Z"),
    ("2026-11-30T02:30:00Z", "2026-11-30T02:30:00Z"),
])
def test_since_is_read_as_utc(text: str, iso: str) -> None:
    assert parse_since(text) == iso


@pytest.mark.parametrize("argv", [["--since", "last night"], ["--id", "a#b"], ["--run", " "]])
def test_unusable_filters_are_refused(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    add_selection_arguments(parser, "id")
    with pytest.raises(SelectionError):
        selection_from(parser.parse_args(argv))


@pytest.mark.parametrize("run_id", ["run-2026-11-30T02-00-00Z-ab12", "producer-batch-7",
                                    "x" * 128])
def test_a_replay_batch_belongs_to_the_run_it_replays(run_id: str) -> None:
    batch_id = replay_batch_id(run_id, "0a1b2c3d")
    assert len(batch_id) <= 128
    assert run_id_of(batch_id) == compact_run_id(run_id)  # the run's ledger partition
    if len(run_id) < 100:
        assert run_id_of(batch_id) == run_id


def test_a_long_body_is_split_and_joined_again() -> None:
    body = "é" * (2 * BODY_CHUNK_CHARS + 5)
    parts = body_parts(body)
    assert parts["BodyParts"] == 3
    assert all(len(parts[f"Body{n}"]) <= BODY_CHUNK_CHARS for n in range(3))
    assert body_of(parts) == body


def test_the_same_body_is_the_same_row() -> None:
    assert body_key("{}") == body_key("{}") != body_key("{ }")


def test_a_worker_envelope_and_a_raw_message_are_told_apart() -> None:
    raw = '{"version": 2, "batch_id": "run-z-p0-1", "records": []}'
    envelope = message_envelope(raw.encode(), "records must be a non-empty list", "t")
    kind = Poison()
    from_worker = kind.entity_for(Found("1", "p", envelope, "t0"), 1.0)
    from_host = kind.entity_for(Found("2", "p", raw, "t0"), 1.0)
    assert from_worker is not None
    assert from_host is not None
    assert (from_worker["Source"], from_host["Source"]) == ("worker", "host")
    assert from_worker["RowKey"] == from_host["RowKey"], "one message, one row"
    assert from_worker["PartitionKey"] == "run-z"
    assert "non-empty" in why_it_stays(from_worker)


def test_a_truncated_echo_is_never_replayed() -> None:
    row = poison_entity(json.dumps({"version": 2}), reason="too big", source="worker",
                        message_id="m", at="t", expires_at_s=1.0, truncated=True)
    assert "never kept" in why_it_stays(row)


@pytest.mark.parametrize(("content", "body"), [
    ("eyJhIjogMX0=", '{"a": 1}'),
    ("this is not base64!", "this is not base64!"),
])
def test_a_queue_body_loses_its_base64_where_it_has_one(content: str, body: str) -> None:
    assert body_text(content) == body


@pytest.mark.parametrize(("url", "says"), [
    ("https://a.table.core.windows.net/SyncPoison()", "'Storage Table Data Contributor'"),
    ("https://a.queue.core.windows.net/sync-batches-poison/messages",
     "'Storage Queue Data Contributor'"),
])
def test_a_403_names_the_role_of_the_resource_it_came_from(url: str, says: str) -> None:
    response = SimpleNamespace(status_code=403, reason="Forbidden", headers={},
                               request=SimpleNamespace(url=url), text=lambda: "")
    sentence = str(explain_storage_error(HttpResponseError(response=response), Poison()))
    assert says in sentence
    assert sentence.startswith("this identity may not use")


def test_a_dead_letter_is_replayed_under_its_definition() -> None:
    origin = Origin("contacts", "run-1", "run-1-p000000-000", "contacts-nightly")
    record = RecordRef("5b1c2a3e-0000-4000-8000-000000000001", "https://www.contoso.com")
    envelope = json.loads(record_envelope(origin, record, RecordFault(
        "dataverse", 404, "0x80040217", "missing", reason="record_missing"), RecordHistory(),
        "2026-12-01T02:00:00Z"))
    assert envelope["definition"] == "contacts-nightly"
    row = dead_letter_entity(envelope, "m-1", 0.0)
    assert row["Definition"] == "contacts-nightly"
    replayed = decode_message(DeadLetters().message_text([row], "run-1:replay-x").encode())
    assert replayed.definition == "contacts-nightly"
    assert replayed.lane is None  # the worker picks the open lane of that definition


def test_a_dead_letter_keeps_the_other_columns_its_enrichment_reads_for_the_replay() -> None:
    origin = Origin("accounts", "run-1", "run-1-p000000-000")
    record = RecordRef("5b1c2a3e-0000-4000-8000-000000000002", "Contoso",
                       current={"name": "Contoso", "address1_city": "Lyon", "revenue": 5})
    envelope = json.loads(record_envelope(origin, record, RecordFault(
        "enrichment", 404, "", "no match", reason="not_enrichable"), RecordHistory(),
        "2026-12-01T02:00:00Z", inputs={"address1_city": "Lyon"}))
    row = dead_letter_entity(envelope, "m-2", 0.0)
    replayed = decode_message(DeadLetters().message_text([row], "run-1:replay-y").encode())
    assert replayed.records[0].current == {"address1_city": "Lyon"}  # the read values stay out
