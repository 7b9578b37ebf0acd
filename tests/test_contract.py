"""The message contract: what is accepted, what is refused and why, and the size limit."""

from __future__ import annotations

import json
import uuid

import pytest

from sync.failures.errors import ContractError
from sync.message.contract import (
    MAX_INPUT_CHARS,
    MAX_QUEUE_MESSAGE_BYTES,
    MAX_RECORDS_PER_MESSAGE,
    Message,
    RecordRef,
    decode_message,
    encoded_size_bytes,
    fitting_groups,
)

GUID = "5b1c2a3e-0000-4000-8000-000000000001"


def body(**fields: object) -> bytes:
    message = {"version": 1, "batch_id": "run-1-000001", "attempt": 0,
               "records": [{"id": GUID, "input": "https://www.contoso.com"}], **fields}
    return json.dumps(message).encode()


def test_round_trip() -> None:
    message = Message("run-1-000001", (RecordRef(GUID, "https://www.contoso.com"),), 2)
    assert decode_message(message.to_json().encode()) == message


@pytest.mark.parametrize(("raw", "reason"), [
    (b"\xff\xfe", "not UTF-8"),
    (b"{not json", "not JSON"),
    (b"[1, 2]", "JSON object"),
    (body(version=5), "unknown contract version 5"),
    (body(version="1"), "unknown contract version"),
    (body(batch_id=""), "batch_id"),
    (body(batch_id="a/b"), "batch_id"),
    (body(attempt=-1), "attempt"),
    (body(attempt=True), "attempt"),
    (body(records=[]), "non-empty list"),
    (body(records="x"), "non-empty list"),
    (body(records=[{"id": "not-a-guid", "input": "x.com"}]), r"records\[0\].id must be a GUID"),
    (body(records=[{"id": "5b1c2a3e00004000-8000-0000-0000-0001", "input": "x.com"}]),
     r"records\[0\].id must be a GUID"),
    (body(records=[{"id": GUID}]), r"records\[0\].input"),
    (body(records=[{"id": GUID, "input": "x.com", "extra": 1}]), "unknown fields: extra"),
    (body(records=[{"id": GUID, "input": "a.com"}, {"id": GUID, "input": "b.com"}]),
     "repeat an id"),
    (body(surprise=True), "unknown fields: surprise"),
])
def test_violations_say_why(raw: bytes, reason: str) -> None:
    with pytest.raises(ContractError, match=reason):
        decode_message(raw)


def test_too_many_records_is_refused() -> None:
    records = [{"id": str(uuid.uuid4()), "input": "a.com"}
               for _ in range(MAX_RECORDS_PER_MESSAGE + 1)]
    with pytest.raises(ContractError, match="at most 1000"):
        decode_message(body(records=records))


@pytest.mark.parametrize("input_chars", [20, 200, MAX_INPUT_CHARS])
def test_the_largest_allowed_batch_fits_a_queue_message(input_chars: int) -> None:
    """1,000 records (the most SYNC_BATCH_SIZE allows) of the longest inputs, the longest
    batch id, a six-digit attempt: every message the grouping makes fits after base64."""
    records = [RecordRef(str(uuid.uuid4()), "x" * input_chars) for _ in range(1000)]
    groups = list(fitting_groups(records, MAX_RECORDS_PER_MESSAGE))
    assert [r for g in groups for r in g] == records
    for group in groups:
        text = Message("b" * 128, group, 999_999).to_json()
        assert encoded_size_bytes(text) <= MAX_QUEUE_MESSAGE_BYTES
    first, rest = groups[0], records[len(groups[0]):]
    if rest:  # the first group took as many as fit: one more would not
        fuller = Message("b" * 128, (*first, rest[0]), 999_999).to_json()
        assert encoded_size_bytes(fuller) > MAX_QUEUE_MESSAGE_BYTES - 4 * 256 // 3


@pytest.mark.parametrize(("text", "size"), [("", 0), ("a", 4), ("abc", 4), ("abcd", 8),
                                            ("é", 4)])
def test_encoded_size_is_base64_length(text: str, size: int) -> None:
    assert encoded_size_bytes(text) == size


def test_a_record_id_is_kept_in_its_canonical_lowercase_form() -> None:
    message = decode_message(body(records=[{"id": GUID.upper(), "input": "x.com"}]))
    assert message.records[0].id == str(uuid.UUID(GUID.upper())) == GUID
