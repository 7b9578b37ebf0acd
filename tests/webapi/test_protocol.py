"""The Web API protocol of the emulator: collections, records, $batch, bulk messages, change
tracking, faults and the command line, over real HTTP."""

from __future__ import annotations

import email.parser
import email.policy
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sync.batchwire import Operation, batch_request
from tests.webapi.conftest import API, Client, token_for

ROOT = Path(__file__).parents[2]
FAST = {"write_ms_min": 0.0, "write_ms_max": 0.0, "read_page_ms": 0.0,
        "request_overhead_ms": 0.0, "batch_op_ms": 0.0, "bulk_target_ms": 0.0}
GHOST = "00000000-0000-4000-8000-00000000dead"


async def ids(client: Client, count: int) -> list[str]:
    return [str(r["accountid"]) for r in (await client.admin("records"))["value"][:count]]


async def test_paging_12000_records_at_5000_a_page(client: Client) -> None:
    await client.configure(records=12_000, **FAST)
    seen: list[str] = []
    url = "accounts?$select=accountid"
    pages = 0
    while url:
        answer = await client.get(url.split(API, 1)[-1],
                                  headers={"Prefer": "odata.maxpagesize=5000"})
        assert answer.status == 200
        pages += 1
        seen += [row["accountid"] for row in answer.body["value"]]
        url = answer.body.get("@odata.nextLink", "")
        assert "$skiptoken=" in url or not url
    assert pages == 3
    assert len(seen) == len(set(seen)) == 12_000


@pytest.mark.parametrize(("expression", "expected"), [
    ("accountnumber eq 'ACC-0000003'", 1),
    ("accountnumber ne 'ACC-0000003'", 9),
    ("accountnumber gt 'ACC-0000007'", 2),
    ("accountnumber ge 'ACC-0000007' and accountnumber le 'ACC-0000008'", 2),
    ("(accountnumber eq 'ACC-0000001' or accountnumber eq 'ACC-0000002') and statecode eq 0", 2),
    ("numberofemployees eq null", 10),
    ("numberofemployees ne null", 0),
    ("revenue lt 0", 0),
    ("createdon ge 2000-01-01T00:00:00Z", 10),
    ("name eq 'It''s'", 0),
])
async def test_filter(client: Client, expression: str, expected: int) -> None:
    await client.configure(records=10, **FAST)
    answer = await client.get(f"accounts?$filter={expression}&$select=accountid,name")
    assert answer.status == 200, answer.body
    assert len(answer.body["value"]) == expected
    assert all(set(row) == {"accountid", "name"} for row in answer.body["value"])


@pytest.mark.parametrize(("path", "status", "text"), [
    ("accounts?$select=nosuchcolumn", 400, "Could not find a property named 'nosuchcolumn'"),
    ("accounts?$filter=nosuch eq 1", 400, "Could not find a property named 'nosuch'"),
    ("accounts?$filter=name eq", 400, "Syntax error in $filter"),
    ("accounts?$filter=name likes 'x'", 400, "unknown operator"),
    ("accounts(not-a-guid)", 400, "Unrecognized 'Edm.Guid' literal"),
    ("nosuchset", 404, "Resource not found for the segment 'nosuchset'"),
])
async def test_bad_requests_answer_odata_errors(client: Client, path: str, status: int,
                                                text: str) -> None:
    await client.configure(records=3, **FAST)
    answer = await client.get(path)
    assert answer.status == status
    assert text in answer.body["error"]["message"]
    assert answer.body["error"]["code"].startswith("0x")


async def test_records_by_id_and_alternate_key(client: Client) -> None:
    await client.configure(records=5, **FAST)
    row = (await client.admin("records"))["value"][0]
    first, number = row["accountid"], row["accountnumber"]
    by_id = await client.get(f"accounts({first})?$select=accountnumber")
    assert by_id.body == {"accountnumber": number}
    by_key = await client.get(f"accounts(accountnumber='{number}')?$select=accountid")
    assert by_key.body == {"accountid": first}
    patched = await client.call("PATCH", f"accounts(accountnumber='{number}')",
                                headers={"If-Match": "*"}, json_body={"description": "by key"})
    assert patched.status == 204
    assert (await client.get(f"accounts({first})")).body["description"] == "by key"
    assert (await client.call("DELETE", f"accounts({first})")).status == 204
    assert (await client.get(f"accounts({first})")).status == 404
    assert (await client.admin("stats"))["records"]["deleted"] == 1


async def test_if_match_and_if_none_match(client: Client) -> None:
    await client.configure(records=2, **FAST)
    existing = (await ids(client, 1))[0]
    missing = await client.call("PATCH", f"accounts({GHOST})", headers={"If-Match": "*"},
                                json_body={"name": "x"})
    assert missing.status == 404
    assert missing.body["error"]["code"] == "0x80040217"
    exists = await client.call("PATCH", f"accounts({existing})",
                               headers={"If-None-Match": "*"}, json_body={"name": "x"})
    assert exists.status == 412
    assert (await client.admin("stats"))["records"]["created"] == 0
    upsert = await client.call("PATCH", f"accounts({GHOST})", json_body={"name": "new"})
    assert upsert.status == 204
    assert (await client.admin("stats"))["records"]["created"] == 1


async def test_create_and_who_am_i(client: Client) -> None:
    await client.configure(records=0, **FAST)
    created = await client.call("POST", "accounts", json_body={"name": "Fabrikam"})
    assert created.status == 204
    assert re.search(r"accounts\([0-9a-f-]{36}\)$", created.headers["OData-EntityId"])
    unknown = await client.call("POST", "accounts", json_body={"nosuch": 1})
    assert unknown.status == 400
    me = await client.get("WhoAmI", token=token_for("11111111-2222-4333-8444-555555555555"))
    assert me.body["UserId"] == "11111111-2222-4333-8444-555555555555"


def parts_of(content_type: str, body: bytes) -> list[Any]:
    """The response read with Python's own MIME parser."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    assert message.get_content_type() == "multipart/mixed"
    return list(message.iter_parts())


def status_of(part: Any) -> int:
    assert part.get_content_type() == "application/http"
    assert part["Content-Transfer-Encoding"] == "binary"
    first_line = part.get_payload(decode=True).split(b"\r\n", 1)[0].decode()
    assert first_line.startswith("HTTP/1.1 ")
    return int(first_line.split()[1])


async def send_batch(client: Client, ops: list[Operation], *,
                     continue_on_error: bool = True) -> Any:
    content_type, body = batch_request(ops, API)
    headers = {"Content-Type": content_type}
    if continue_on_error:
        headers["Prefer"] = "odata.continue-on-error"
    return await client.call("POST", "$batch", headers=headers, data=body)


def good_missing_good(first: str, second: str) -> list[Operation]:
    """Three updates, the middle one of a record that does not exist."""
    return [Operation("PATCH", f"accounts({record})", {"If-Match": "*"}, {"description": text})
            for record, text in ((first, "a"), (GHOST, "b"), (second, "c"))]


async def test_batch_in_the_documented_wire_format(client: Client) -> None:
    await client.configure(records=3, **FAST)
    first, second, _ = await ids(client, 3)
    answer = await send_batch(client, good_missing_good(first, second))
    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("multipart/mixed; boundary=batchresponse_")
    assert [status_of(p) for p in parts_of(answer.headers["Content-Type"], answer.raw)] == [
        204, 404, 204]


async def test_without_continue_on_error_the_batch_stops_at_the_first_error(
        client: Client) -> None:
    await client.configure(records=3, **FAST)
    first, second, _ = await ids(client, 3)
    answer = await send_batch(client, good_missing_good(first, second), continue_on_error=False)
    assert [status_of(p) for p in parts_of(answer.headers["Content-Type"], answer.raw)] == [
        204, 404]
    assert (await client.get(f"accounts({second})")).body["description"] is None


async def test_a_failing_changeset_rolls_back_all_of_it(client: Client) -> None:
    await client.configure(records=3, **FAST)
    first, second, _ = await ids(client, 3)
    boundary, changeset = "batch_t", "changeset_t"
    def op(n: int, record: str) -> str:
        return (f"--{changeset}\r\nContent-Type: application/http\r\n"
                f"Content-Transfer-Encoding: binary\r\nContent-ID: {n}\r\n\r\n"
                f"PATCH {API}accounts({record}) HTTP/1.1\r\nContent-Type: application/json\r\n"
                f"If-Match: *\r\n\r\n{{\"description\": \"in changeset\"}}\r\n")
    body = (f"--{boundary}\r\nContent-Type: multipart/mixed; boundary={changeset}\r\n\r\n"
            f"{op(1, first)}{op(2, second)}{op(3, GHOST)}--{changeset}--\r\n"
            f"--{boundary}--\r\n").encode()
    answer = await client.call("POST", "$batch", data=body, headers={
        "Content-Type": f"multipart/mixed; boundary={boundary}"})
    assert answer.status == 200
    outer = parts_of(answer.headers["Content-Type"], answer.raw)
    inner = list(outer[0].iter_parts()) if outer[0].is_multipart() else [outer[0]]
    assert [status_of(p) for p in inner] == [404]
    for record in (first, second):
        assert (await client.get(f"accounts({record})")).body["description"] is None


async def test_the_thousand_operation_limit(client: Client) -> None:
    await client.configure(records=1, **FAST)
    record = (await ids(client, 1))[0]
    ops = [Operation("PATCH", f"accounts({record})", {"If-Match": "*"}, {"description": "x"})
           for _ in range(1001)]
    answer = await send_batch(client, ops)
    assert answer.status == 400
    assert "A maximum number of '1000' operations are allowed" in answer.body["error"]["message"]


KIND = "Microsoft.Dynamics.CRM.account"


async def bulk(client: Client, message: str, *targets: dict[str, Any]) -> Any:
    """POST a bulk message with the targets typed as accounts."""
    return await client.call("POST", f"accounts/Microsoft.Dynamics.CRM.{message}",
                             json_body={"Targets": [{"@odata.type": KIND, **t} for t in targets]})


async def test_bulk_messages(client: Client) -> None:
    await client.configure(records=3, **FAST)
    first, second, third = await ids(client, 3)
    update = await bulk(client, "UpdateMultiple", {"accountid": first, "description": "1"},
                        {"accountid": first, "description": "2"},
                        {"accountid": second, "description": "3"})
    assert update.status == 204
    assert (await client.get(f"accounts({first})")).body["description"] == "1"  # the first
    created = await bulk(client, "CreateMultiple", {"name": "n1"}, {"name": "n2"})
    assert created.status == 200
    assert len(created.body["Ids"]) == 2
    upsert = await bulk(client, "UpsertMultiple",
                        {"@odata.id": "accounts(accountnumber='NEW-1')", "name": "u"},
                        {"accountid": third, "name": "t"})
    assert upsert.status == 204
    assert (await client.get("accounts(accountnumber='NEW-1')")).status == 200
    duplicate = await bulk(client, "UpsertMultiple", {"accountid": third, "name": "a"},
                           {"accountid": third, "name": "b"})
    assert duplicate.status == 400


async def test_update_multiple_rolls_back_on_one_bad_target(client: Client) -> None:
    await client.configure(records=3, **FAST)
    first, second, _ = await ids(client, 3)
    answer = await bulk(client, "UpdateMultiple", {"accountid": first, "description": "x"},
                        {"accountid": GHOST, "description": "y"},
                        {"accountid": second, "description": "z"})
    assert answer.status == 404
    for record in (first, second):
        assert (await client.get(f"accounts({record})")).body["description"] is None
    stats = await client.admin("stats")
    assert stats["records"] == {"created": 0, "updated": 0, "deleted": 0}


async def test_change_tracking(client: Client) -> None:
    await client.configure(records=50, **FAST)
    tracked = {"Prefer": "odata.track-changes,odata.maxpagesize=20"}
    url, rows = "accounts?$select=accountid,name", []
    while True:
        answer = await client.get(url, headers=tracked)
        rows += answer.body["value"]
        if "@odata.deltaLink" in answer.body:
            delta = answer.body["@odata.deltaLink"].split(API, 1)[1]
            break
        url = answer.body["@odata.nextLink"].split(API, 1)[1]
    assert len(rows) == 50
    assert answer.headers["Preference-Applied"].startswith("odata.track-changes")
    changed, gone = (await ids(client, 3))[1:3]
    await client.call("PATCH", f"accounts({changed})", headers={"If-Match": "*"},
                      json_body={"name": "changed"})
    await client.call("DELETE", f"accounts({gone})")
    since = await client.get(delta, headers=tracked)
    values = since.body["value"]
    assert [v["accountid"] for v in values if "accountid" in v] == [changed]
    deleted = [v for v in values if v.get("reason") == "deleted"]
    assert [v["id"] for v in deleted] == [gone]
    assert deleted[0]["@odata.context"].endswith("$metadata#accounts/$deletedEntity")
    filtered = await client.get("accounts?$filter=statecode eq 0", headers=tracked)
    assert filtered.status == 400
    expired = await client.get("accounts?$deltatoken=999999", headers=tracked)
    assert expired.status == 400
    assert "expired" in expired.body["error"]["message"]


@pytest.mark.parametrize(("fault", "status"), [("fault_500_rate", 500),
                                               ("fault_503_rate", 503)])
async def test_faults_appear_at_the_configured_rate(client: Client, fault: str,
                                                    status: int) -> None:
    await client.configure(records=2, seed=7, **FAST, **{fault: 0.3})
    statuses = [(await client.get("WhoAmI")).status for _ in range(400)]
    share = statuses.count(status) / len(statuses)
    assert 0.22 < share < 0.38  # 0.3 within about four standard deviations
    assert (await client.admin("stats"))["faults"] == {str(status): statuses.count(status)}


async def test_resets_and_slow_answers(client: Client) -> None:
    await client.configure(records=2, seed=3, reset_rate=0.5, slow_rate=0.0, **FAST)
    outcomes = []
    for _ in range(40):
        try:
            outcomes.append((await client.get("WhoAmI")).status)
        except Exception as error:
            outcomes.append(type(error).__name__)
    assert 5 < sum(1 for o in outcomes if o != 200) < 35
    assert (await client.admin("stats"))["faults"]["reset"] > 0


def test_cli_help_names_the_documented_defaults() -> None:
    result = subprocess.run([sys.executable, "-m", "sync", "emulator", "dataverse", "--help"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    text = " ".join(result.stdout.split())  # argparse wraps lines
    for expected in ("--window-s", "(300, documented)", "--max-requests", "(6000, documented)",
                     "--max-concurrent", "(52, documented)", "--dop-hint", "--fault-503-rate"):
        assert expected in text


def test_cli_prints_its_url_first_and_serves() -> None:
    process = subprocess.Popen([sys.executable, "-m", "sync", "emulator", "dataverse",
                                "--records", "4"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        url = re.search(r"http://\S+", first)
        assert url, first
        import urllib.request  # noqa: PLC0415 (only this test needs it)

        with urllib.request.urlopen(f"{url.group(0)}/_emulator/records",  # noqa: S310
                                    timeout=10) as answer:
            assert len(json.load(answer)["value"]) == 4
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()

