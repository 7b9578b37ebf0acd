"""The producer contract: the JSON Schema agrees with the worker, the helper and the CLI send."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import uuid
from pathlib import Path

import jsonschema
import pytest
from azure.storage.queue.aio import QueueClient

from sync.config.settings import StorageSettings
from sync.config.storage_names import BATCH_QUEUE
from sync.failures.errors import ContractError
from sync.local.azurite import StorageAccount
from sync.message.contract import (
    MAX_QUEUE_MESSAGE_BYTES,
    Message,
    RecordRef,
    decode_message,
    encoded_size_bytes,
)
from sync.message.producer import messages_for, read_jsonl

ROOT = Path(__file__).parents[1]
SCHEMA = json.loads((ROOT / "schemas" / "batch-message.v4.json").read_text())
SCHEMA_V3 = json.loads((ROOT / "schemas" / "batch-message.v3.json").read_text())
SCHEMA_V2 = json.loads((ROOT / "schemas" / "batch-message.v2.json").read_text())
SCHEMA_V1 = json.loads((ROOT / "schemas" / "batch-message.v1.json").read_text())
GUID = "5b1c2a3e-0000-4000-8000-000000000001"
RECORD = {"id": GUID, "input": "https://www.contoso.com"}
SAMPLES = [
    ({"version": 1, "batch_id": "b-1", "records": [RECORD]}, True),
    ({"version": 1, "batch_id": "b-1", "attempt": 3, "records": [RECORD]}, True),
    ({"version": 2, "batch_id": "b-1", "records": [RECORD]}, True),
    ({"version": 2, "batch_id": "b-1", "attempt": 4, "records": [
        {**RECORD, "history": {"strikes": 1, "attempts": 5, "first_seen": "2026-12-01T02:00:00Z",
                               "last_seen": "2026-12-01T02:05:00Z", "last_fault": "503"}}]},
     True),
    ({"version": 2, "batch_id": "b-1", "records": [{**RECORD, "history": {"strikes": -1}}]},
     False),
    ({"version": 2, "batch_id": "b-1", "records": [{**RECORD, "history": {"why": "x"}}]},
     False),
    ({"version": 1, "batch_id": "b-1", "records": [{**RECORD, "history": {}}]}, False),
    ({"version": 3, "batch_id": "b-1", "records": [RECORD]}, True),
    ({"version": 3, "batch_id": "b-1", "definition": "contacts-eu", "records": [
        {**RECORD, "etag": 'W/"1234"', "current": {"numberofemployees": 12, "name": "Contoso",
                                                  "revenue": 1.5, "donotemail": False,
                                                  "address1_country": None}}]}, True),
    ({"version": 3, "batch_id": "b-1", "definition": "Contacts", "records": [RECORD]}, False),
    ({"version": 3, "batch_id": "b-1", "definition": "", "records": [RECORD]}, False),
    ({"version": 2, "batch_id": "b-1", "definition": "default", "records": [RECORD]}, False),
    ({"version": 2, "batch_id": "b-1", "records": [{**RECORD, "etag": 'W/"1"'}]}, False),
    ({"version": 3, "batch_id": "b-1", "records": [{**RECORD, "etag": ""}]}, False),
    ({"version": 3, "batch_id": "b-1", "records": [{**RECORD, "etag": 'W/"' + "9" * 200}]},
     False),
    ({"version": 3, "batch_id": "b-1", "records": [{**RECORD, "current": []}]}, False),
    ({"version": 3, "batch_id": "b-1", "records": [{**RECORD, "current": {"a b": 1}}]}, False),
    ({"version": 3, "batch_id": "b-1", "records": [{**RECORD, "current": {"x": {"y": 1}}}]},
     False),
    ({"version": 3, "batch_id": "b-1", "records": [{**RECORD, "current": {"x": "y" * 4001}}]},
     False),
    ({"version": 3, "batch_id": "b-1", "records": [
        {**RECORD, "current": {f"c{n}": n for n in range(51)}}]}, False),
    ({"version": 5, "batch_id": "b-1", "records": [RECORD]}, False),
    ({"version": 4, "batch_id": "b-1", "records": [RECORD]}, True),
    ({"version": 4, "batch_id": "b-1", "definition": "accounts",
      "lane": {"environment": "prod", "identity": "sync-1"}, "records": [RECORD]}, True),
    ({"version": 4, "batch_id": "b-1", "lane": {"environment": "prod"}, "records": [RECORD]},
     False),
    ({"version": 4, "batch_id": "b-1", "lane": {"environment": "Prod", "identity": "a"},
      "records": [RECORD]}, False),
    ({"version": 3, "batch_id": "b-1", "lane": {"environment": "prod", "identity": "a"},
      "records": [RECORD]}, False),
    ({"version": 4, "batch_id": "b-1", "records": [
        {**RECORD, "enriched": {"numberofemployees": 120, "description": None},
         "history": {"errors": 2}}]}, True),
    ({"version": 4, "batch_id": "b-1", "records": [{**RECORD, "enriched": {"x": [1]}}]}, False),
    ({"version": 4, "batch_id": "b-1", "records": [{**RECORD, "history": {"errors": -1}}]},
     False),
    ({"version": 3, "batch_id": "b-1", "records": [{**RECORD, "enriched": {"x": 1}}]}, False),
    ({"batch_id": "b-1", "records": [RECORD]}, False),
    ({"version": 1, "batch_id": "b/1", "records": [RECORD]}, False),
    ({"version": 1, "batch_id": "b-1", "records": []}, False),
    ({"version": 1, "batch_id": "b-1", "records": [{"id": "x", "input": "a.com"}]}, False),
    ({"version": 1, "batch_id": "b-1", "records": [{**RECORD, "more": 1}]}, False),
    ({"version": 1, "batch_id": "b-1", "records": [RECORD], "extra": True}, False),
    ({"version": 1, "batch_id": "b-1", "attempt": -1, "records": [RECORD]}, False),
    ({"version": 1, "batch_id": "b-1", "records": [{"id": GUID, "input": ""}]}, False),
]


@pytest.mark.parametrize(("message", "valid"), SAMPLES)
def test_schema_and_worker_agree(message: dict[str, object], valid: bool) -> None:
    version = message.get("version")
    schemas = {1: SCHEMA_V1, 2: SCHEMA_V2, 3: SCHEMA_V3}
    schema = schemas.get(version, SCHEMA) if isinstance(version, int) else SCHEMA
    schema_ok = jsonschema.Draft202012Validator(schema).is_valid(message)
    try:
        decode_message(json.dumps(message).encode())
        worker_ok = True
    except ContractError:
        worker_ok = False
    assert schema_ok == worker_ok == valid


def test_schema_is_a_valid_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    jsonschema.Draft202012Validator.check_schema(SCHEMA_V1)
    jsonschema.Draft202012Validator.check_schema(SCHEMA_V2)


def test_what_the_planner_read_survives_the_wire() -> None:
    record = RecordRef(GUID, "https://www.contoso.com", etag='W/"77"',
                       current={"numberofemployees": 5, "address1_country": None})
    message = Message("b-1", (record,), definition="accounts-nightly")
    decoded = decode_message(message.to_json().encode())
    assert decoded == message
    assert decoded.records[0].current == {"numberofemployees": 5, "address1_country": None}


def test_older_messages_mean_the_default_definition_and_carry_no_read() -> None:
    decoded = decode_message(json.dumps({"version": 2, "batch_id": "b-1",
                                       "records": [RECORD]}).encode())
    assert decoded.definition == "default"
    assert decoded.records[0].etag is None
    assert decoded.records[0].current is None


def test_jsonl_errors_name_their_line() -> None:
    lines = [json.dumps(RECORD), "", "{oops", json.dumps({"id": "nope", "input": "a.com"})]
    records, errors = read_jsonl(lines)
    assert records == [RecordRef(GUID, "https://www.contoso.com")]
    assert [(e.line, e.reason) for e in errors] == [
        (3, "not JSON: Expecting property name enclosed in double quotes"),
        (4, "line 4.id must be a GUID")]


def test_messages_are_chunked_with_sequential_ids() -> None:
    records = [RecordRef(str(uuid.uuid4()), "a.com") for _ in range(250)]
    messages = messages_for(records, "migration", 100)
    assert [m.batch_id for m in messages] == ["migration-000001", "migration-000002",
                                              "migration-000003"]
    assert [len(m.records) for m in messages] == [100, 100, 50]


def test_long_inputs_make_more_messages_that_all_fit() -> None:
    big = [RecordRef(str(uuid.uuid4()), "https://" + "x" * 2000 + ".com") for _ in range(100)]
    messages = messages_for(big, "p", 100)
    assert len(messages) > 1
    assert sum(len(m.records) for m in messages) == 100
    assert all(encoded_size_bytes(m.to_json()) <= MAX_QUEUE_MESSAGE_BYTES for m in messages)


def test_repeated_ids_are_refused() -> None:
    same = [RecordRef(GUID, "a.com"), RecordRef(GUID, "b.com")]
    with pytest.raises(ContractError, match="repeat an id"):
        messages_for(same, "p", 10)


def run_enqueue(account: StorageAccount, path: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "AzureWebJobsStorage": account.connection_string}
    return subprocess.run([sys.executable, "-m", "sync", "enqueue", "--file", str(path),
                           "--batch-size", "2"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60, check=False)


async def test_cli_sends_base64_json_the_worker_accepts(storage: StorageSettings,
                                                        account: StorageAccount,
                                                        tmp_path: Path) -> None:
    path = tmp_path / "updates.jsonl"
    rows = [{"id": str(uuid.uuid4()), "input": f"https://www.c{n}.example"} for n in range(5)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    result = run_enqueue(account, path)
    assert result.returncode == 0, result.stderr
    assert "sent 5 records in 3 messages" in result.stdout
    async with QueueClient.from_connection_string(str(storage.connection_string),
                                                  BATCH_QUEUE) as queue:
        raw = [m.content for m in await queue.peek_messages(max_messages=10)]
    decoded = [decode_message(base64.b64decode(text)) for text in raw]
    assert sorted(m.batch_id for m in decoded) == ["updates-000001", "updates-000002",
                                                   "updates-000003"]
    assert sorted(r.id for m in decoded for r in m.records) == sorted(r["id"] for r in rows)
    assert all(isinstance(m, Message) for m in decoded)


async def test_cli_sends_nothing_when_a_line_is_bad(storage: StorageSettings,
                                                    account: StorageAccount,
                                                    tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(RECORD) + "\n" + '{"id": 1}\n')
    result = run_enqueue(account, path)
    assert result.returncode == 2
    assert "bad.jsonl:2: line 2.id must be a GUID" in result.stderr
    assert "nothing was sent" in result.stderr
    async with QueueClient.from_connection_string(str(storage.connection_string),
                                                  BATCH_QUEUE) as queue:
        assert await queue.peek_messages(max_messages=10) == []
