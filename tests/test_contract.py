"""The message contract: what is accepted, what is refused and why (a bad record alone, or the
whole message), and the size limit, property-based over records of every size up to the
limits."""

from __future__ import annotations

import dataclasses
import json
import re
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync.failures.errors import ContractError
from sync.message.contract import (
    MAX_CURRENT_COLUMNS,
    MAX_CURRENT_TEXT_CHARS,
    MAX_ETAG_CHARS,
    MAX_FAULT_CHARS,
    MAX_INPUT_CHARS,
    MAX_QUEUE_MESSAGE_BYTES,
    MAX_RECORDS_PER_MESSAGE,
    RECORDS_BUDGET_BYTES,
    Message,
    RecordHistory,
    RecordRef,
    decode_message,
    encoded_size_bytes,
    fitting_groups,
    read_message,
    record_size_bytes,
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


READ_AT = 1_796_400_000.123


@pytest.mark.parametrize("input_chars", [20, 200, MAX_INPUT_CHARS])
def test_the_largest_allowed_batch_fits_a_queue_message(input_chars: int) -> None:
    """1,000 records (the most SYNC_BATCH_SIZE allows) of the longest inputs, the longest
    batch id, a six-digit attempt, a read time: every message the grouping makes fits after
    base64."""
    records = [RecordRef(str(uuid.uuid4()), "x" * input_chars) for _ in range(1000)]
    groups = list(fitting_groups(records, MAX_RECORDS_PER_MESSAGE))
    assert [r for g in groups for r in g] == records
    for group in groups:
        text = Message("b" * 128, group, 999_999, read_at=READ_AT).to_json()
        assert encoded_size_bytes(text) <= MAX_QUEUE_MESSAGE_BYTES
    first, rest = groups[0], records[len(groups[0]):]
    if rest:  # the first group took as many as fit: one more would not
        fuller = Message("b" * 128, (*first, rest[0]), 999_999, read_at=READ_AT).to_json()
        assert encoded_size_bytes(fuller) > MAX_QUEUE_MESSAGE_BYTES - 4 * 256 // 3


@pytest.mark.parametrize(("text", "size"), [("", 0), ("a", 4), ("abc", 4), ("abcd", 8),
                                            ("é", 4)])
def test_encoded_size_is_base64_length(text: str, size: int) -> None:
    assert encoded_size_bytes(text) == size


def test_a_record_id_is_kept_in_its_canonical_lowercase_form() -> None:
    message = decode_message(body(records=[{"id": GUID.upper(), "input": "x.com"}]))
    assert message.records[0].id == str(uuid.UUID(GUID.upper())) == GUID


# ---------------------------------------- a record that breaks the contract alone is set apart

OTHER = "5b1c2a3e-0000-4000-8000-000000000002"


@pytest.mark.parametrize(("record", "reason", "named"), [
    ({"id": OTHER, "input": "x" * 2049}, r"records\[1\].input must be a string of 1-2048 "
                                          "characters; it holds 2049", True),
    ({"id": OTHER, "input": "é" * 16_000}, "it holds 16000", True),
    ({"id": OTHER, "input": 42}, r"records\[1\].input must be text, not a number", True),
    ({"id": OTHER}, "input must be text, not null", True),
    ({"id": OTHER, "input": "\udc00"}, "a lone surrogate", True),
    ({"id": OTHER, "input": "x.com", "etag": 7}, r"records\[1\].etag", True),
    ({"id": OTHER, "input": "x.com", "extra": 1}, "unknown fields: extra", True),
    ({"id": "not-a-guid", "input": "x.com"}, r"records\[1\].id must be a GUID", False),
    ("x.com", r"records\[1\] must be an object", False),
], ids=["2,049 characters", "16,000 é", "a number", "no input", "a lone surrogate",
        "a bad etag", "an unknown field", "no GUID", "not an object"])
def test_a_bad_record_is_set_apart_and_its_siblings_kept(record: object, reason: str,
                                                         named: bool) -> None:
    raw = body(version=3, records=[{"id": GUID, "input": "a.com"}, record,
                                   {"id": GUID.replace("1", "3"), "input": "b.com"}])
    message = read_message(raw)
    assert [r.input for r in message.records] == ["a.com", "b.com"]
    (refused,) = message.refused
    assert re.search(reason, refused.reason), refused.reason
    assert refused.where == "records[1]"
    assert refused.id == (OTHER if named else None)
    with pytest.raises(ContractError, match=reason):
        decode_message(raw)  # the strict reading the schema states


def test_a_message_of_bad_records_only_is_read_with_none_to_carry_out() -> None:
    message = read_message(body(records=[{"id": GUID, "input": "x" * 3000}]))
    assert message.records == ()
    assert message.refused[0].input == "x" * 3000


def test_an_id_repeated_by_a_refused_record_still_breaks_the_message() -> None:
    with pytest.raises(ContractError, match="repeat an id"):
        read_message(body(records=[{"id": GUID, "input": "a.com"},
                                   {"id": GUID, "input": 5}]))


TEXT = st.sampled_from(["a", "é", "€", "😀", '"', "\\", "\n", "\x00", "\u2028"])


def texts(low: int, high: int) -> st.SearchStrategy[str]:
    """Text of one repeated character: any length in range, weighted toward the ends."""
    return st.builds(lambda c, n: c * n, TEXT,
                     st.one_of(st.integers(low, high), st.sampled_from([low, high])))


@st.composite
def contract_records(draw: st.DrawFn) -> RecordRef:
    """A record the contract accepts, of any size up to every limit."""
    history = draw(st.one_of(st.none(), st.builds(
        RecordHistory, st.integers(0, 1_000_000), st.integers(0, 1_000_000),
        texts(0, MAX_FAULT_CHARS), texts(0, MAX_FAULT_CHARS), texts(0, MAX_FAULT_CHARS))))
    current = draw(st.one_of(st.none(), st.dictionaries(
        st.sampled_from([f"c{n}" for n in range(MAX_CURRENT_COLUMNS)]),
        st.one_of(st.none(), st.integers(), texts(0, MAX_CURRENT_TEXT_CHARS)), max_size=12)))
    return RecordRef(str(uuid.uuid4()), draw(texts(1, MAX_INPUT_CHARS)), history,
                     draw(st.one_of(st.none(), texts(1, MAX_ETAG_CHARS))), current)


@given(st.lists(contract_records(), min_size=1, max_size=8), st.integers(1, 1000))
@settings(max_examples=80, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_any_records_of_the_contract_go_in_messages_the_queue_takes(
        records: list[RecordRef], max_count: int) -> None:
    """Every record of every size the contract allows travels, in messages that fit 64 KiB
    after base64 and decode whole; only the values read are left behind, when a record cannot
    fit with them."""
    groups = list(fitting_groups(records, max_count))
    assert [r.id for g in groups for r in g] == [r.id for r in records]
    for group in groups:
        assert len(group) <= max_count
        text = Message("b" * 128, group, 999_999, definition="d" * 63,
                       lane=("e" * 32, "i" * 32)).to_json()
        assert encoded_size_bytes(text) <= MAX_QUEUE_MESSAGE_BYTES
        assert decode_message(text.encode()).records == group
    for record, sent in zip(records, (r for g in groups for r in g), strict=True):
        assert sent == (record if record_size_bytes(record) <= RECORDS_BUDGET_BYTES
                        else dataclasses.replace(record, current=None))


@pytest.mark.parametrize(("read_at", "fault"), [
    (1_796_400_000.5, None), (0, None), (-1, "read_at"), (True, "read_at"), ("now", "read_at"),
    (4e10, "read_at")])
def test_the_planners_read_time_travels_with_its_message(read_at: object,
                                                         fault: str | None) -> None:
    raw = body(version=4, read_at=read_at)
    if fault is not None:
        with pytest.raises(ContractError, match=fault):
            decode_message(raw)
        return
    message = decode_message(raw)
    assert message.read_at == read_at
    assert decode_message(message.to_json().encode()).read_at == read_at
