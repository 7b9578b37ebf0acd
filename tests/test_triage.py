"""The one triage table: status x error code x dependency x where -> the class of the outcome.

Each row reads as a sentence: what the service answered, to which request, and whose fault the
failure is (the record's, the service's, the configuration's, or a throttle)."""

from __future__ import annotations

import json

import aiohttp
import pytest

from sync.failures.errors import (
    AmbiguousFault,
    ConfigFault,
    RecordFault,
    ServiceFault,
    SyncError,
    Throttled,
)
from sync.failures.triage import (
    classify_answer,
    classify_exception,
    error_code_and_message,
    parse_retry_after_s,
)


def body(code: str = "", message: str = "m") -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


ROWS = [
    # dependency, status, code, message, where, expected class, (reason for a record fault)
    ("dataverse", 204, "", "", "PATCH accounts", None, ""),
    ("dataverse", 429, "0x80072322", "requests", "PATCH accounts", Throttled, ""),
    ("dataverse", 429, "0x80072326", "concurrency", "GET accounts", Throttled, ""),
    ("dataverse", 500, "0x80040216", "An unexpected error occurred.", "PATCH accounts",
     ServiceFault, ""),
    ("dataverse", 503, "", "Service Unavailable", "POST $batch", ServiceFault, ""),
    ("dataverse", 502, "", "", "GET accounts", ServiceFault, ""),
    ("dataverse", 408, "", "", "PATCH accounts", ServiceFault, ""),
    ("dataverse", 500, "0x80040265", "a plug-in threw", "PATCH accounts", AmbiguousFault, ""),
    ("dataverse", 401, "0x80072560", "not a member", "PATCH accounts", ServiceFault, ""),
    ("dataverse", 403, "0x80040220", "Principal user (Id=u, type=8) is missing "
     "prvWriteAccount privilege (Id=p) on OTC=1", "PATCH accounts", ConfigFault, ""),
    ("dataverse", 403, "0x80040220", "Principal user (Id=u, type=8) is missing "
     "prvWriteAccount privilege", "POST accounts/UpdateMultiple", ConfigFault, ""),
    ("dataverse", 403, "0x80040220", "SecLib::AccessCheckEx failed. ObjectID: x, OwnerId: y, "
     "AccessRights: WriteAccess", "PATCH accounts", AmbiguousFault, ""),
    ("dataverse", 403, "0x80040220", "missing privilege", "PATCH accounts", AmbiguousFault, ""),
    ("dataverse", 403, "0x80040220", "Principal user (Id=u, type=8) is missing "
     "prvBypassCustomBusinessLogic privilege", "PATCH accounts", ConfigFault, ""),
    ("dataverse", 403, "0x80040220", "Principal user (Id=u, type=8) is missing "
     "prvBypassCustomBusinessLogic privilege", "POST $batch", ConfigFault, ""),
    ("dataverse", 404, "0x80040217", "account Does Not Exist", "PATCH accounts", RecordFault,
     "record_missing"),
    ("dataverse", 404, "0x80040217", "account With Id = x Does Not Exist",
     "GET accounts(00000000-0000-4000-8000-000000000001)", RecordFault, "record_missing"),
    ("dataverse", 404, "0x80040217", "account With Id = x Does Not Exist", "GET accounts",
     ConfigFault, ""),
    ("dataverse", 412, "0x80060882", "version differs", "PATCH accounts", RecordFault,
     "changed_since_read"),
    ("dataverse", 400, "0x80040203", "Invalid value for column", "POST accounts/UpdateMultiple",
     RecordFault, "value_refused"),
    ("dataverse", 400, "0x80060888", "Could not find a property named 'x' on type account",
     "PATCH accounts", ConfigFault, ""),
    ("dataverse", 404, "0x80060888", "Resource not found for the segment 'acounts'.",
     "PATCH acounts", ConfigFault, ""),
    ("dataverse", 400, "0x80060888", "Syntax error in $filter", "GET accounts", ConfigFault, ""),
    ("dataverse", 400, "0x80044352", "The change tracking token is expired", "GET accounts",
     RecordFault, "change_token_refused"),
    ("enrichment", 200, "", "", "GET /v1/companies", None, ""),
    ("enrichment", 429, "", "slow down", "GET /v1/companies", Throttled, ""),
    ("enrichment", 503, "", "down", "GET /v1/companies", ServiceFault, ""),
    ("enrichment", 401, "", "bad key", "GET /v1/companies", ServiceFault, ""),
    ("enrichment", 403, "", "forbidden", "GET /v1/companies", AmbiguousFault, ""),
    ("enrichment", 404, "", "unknown company", "GET /v1/companies", RecordFault,
     "not_enrichable"),
    ("enrichment", 422, "", "unknown company", "GET /v1/companies", RecordFault,
     "not_enrichable"),
    ("enrichment", 400, "", "bad domain", "GET /v1/companies", RecordFault, "input_refused"),
]


Row = tuple[str, int, str, str, str, type[SyncError] | None, str]


@pytest.mark.parametrize("row", ROWS, ids=[f"{r[0]} {r[1]} {r[2] or '-'} on {r[4]}" for r in ROWS])
def test_every_answer_has_one_class(row: Row) -> None:
    service, status, code, message, where, expected, reason = row
    found = classify_answer(service, status, {"Retry-After": "3"}, body(code, message),
                            where=where)
    if expected is None:
        assert found is None
        return
    assert type(found) is expected
    if isinstance(found, RecordFault):
        assert found.reason == reason


def test_a_table_wide_403_names_what_to_check() -> None:
    found = classify_answer("dataverse", 403, {}, body("0x80040220", "missing privilege"),
                            where="PATCH accounts")
    assert str(found) == ("dataverse: 403 Forbidden on PATCH accounts (0x80040220): check the "
                          "application user's permissions")


def test_a_missing_privilege_names_it_and_how_to_grant_it() -> None:
    """The caller's roles lack a privilege: no record of the table can be written, so the
    circuit opens at once and no request is split to find a record at fault."""
    found = classify_answer("dataverse", 403, {}, body(
        "0x80040220", "Principal user (Id=u, type=8, roleCount=1), is missing prvWriteAccount "
        "privilege (Id=p) on OTC=1 for entity 'account'."), where="PATCH accounts")
    assert isinstance(found, ConfigFault)
    assert str(found) == ("dataverse: 403 Forbidden on PATCH accounts (0x80040220): the "
                          "application user is missing prvWriteAccount; check the application "
                          "user's permissions")
    assert found.hint == "grant the application user a security role with prvWriteAccount"


def test_a_configuration_fault_carries_a_hint() -> None:
    found = classify_answer("dataverse", 400, {}, body("0x80060888", "Could not find a property "
                                                       "named 'x'"), where="PATCH accounts")
    assert isinstance(found, ConfigFault)
    assert "SYNC_DEFINITION" in found.hint


def test_throttled_carries_retry_after_and_code() -> None:
    found = classify_answer("dataverse", 429, {"Retry-After": "3"}, body("0x80072326"),
                            where="PATCH accounts")
    assert isinstance(found, Throttled)
    assert (found.retry_after_s, found.code) == (3.0, "0x80072326")


@pytest.mark.parametrize(("header", "expected_s"), [
    ("7", 7.0), ("0.5", 0.5), (None, 5.0), ("soon", 5.0), ("-3", 5.0), ("inf", 5.0),
    ("nan", 5.0),
])
def test_retry_after_parsing(header: str | None, expected_s: float) -> None:
    assert parse_retry_after_s(header) == expected_s


@pytest.mark.parametrize(("answer", "expected"), [
    (b'{"error":{"code":"0x1","message":"m"}}', ("0x1", "m")),
    (b'{"error":"plain"}', ("", "plain")),
    (b"<html>gateway</html>", ("", "<html>gateway</html>")),
    (b"\xff\xfe", ("", "\ufffd\ufffd")),
    (b"[1,2]", ("", "[1, 2]")),
])
def test_error_bodies_of_any_shape_are_read(answer: bytes, expected: tuple[str, str]) -> None:
    assert error_code_and_message(answer) == expected


@pytest.mark.parametrize("error", [
    aiohttp.ServerDisconnectedError(), aiohttp.ClientPayloadError("truncated"),
    TimeoutError(), ConnectionResetError(), aiohttp.ClientConnectionError("refused"),
])
def test_transport_failures_are_service_faults(error: BaseException) -> None:
    fault = classify_exception("dataverse", error, where="PATCH accounts")
    assert type(fault) is ServiceFault
    assert "connection failed or timed out" in str(fault)


@pytest.mark.parametrize("error", [
    json.JSONDecodeError("Expecting value", "", 0), KeyError("value"), TypeError("not a list"),
    UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid"),
])
def test_unreadable_answers_are_service_faults(error: BaseException) -> None:
    fault = classify_exception("enrichment", error, where="GET /v1/companies")
    assert type(fault) is ServiceFault
    assert "malformed answer" in str(fault)
