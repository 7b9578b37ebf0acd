"""Collections and records over real HTTP: paging, $select, $filter, $top, OData errors,
GET/PATCH/DELETE by id and by alternate key, If-Match / If-None-Match / ETags, upserts,
POST and WhoAmI."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from tests.webapi.conftest import FAST, GHOST, Client, token_for


async def read_all(client: Client, path: str, prefer: str) -> tuple[list[dict[str, Any]], int]:
    """Every row of a read, following @odata.nextLink unchanged with the same Prefer; and
    how many pages it took (bounded)."""
    rows: list[dict[str, Any]] = []
    answer = await client.get(path, headers={"Prefer": prefer})
    for pages in range(1, 100):
        assert answer.status == 200, answer.body
        rows += answer.body["value"]
        link = answer.body.get("@odata.nextLink")
        if link is None:
            return rows, pages
        assert "$skiptoken=" in link
        answer = await client.follow(link, headers={"Prefer": prefer})
    pytest.fail("the read never ended")


async def test_paging_12000_records_at_5000_a_page(client: Client) -> None:
    await client.configure(records=12_000, **FAST)
    sizes: list[int] = []
    answer = await client.get("accounts?$select=accountid",
                              headers={"Prefer": "odata.maxpagesize=5000"})
    assert answer.headers["Preference-Applied"] == "odata.maxpagesize=5000"
    seen: list[str] = []
    while True:
        sizes.append(len(answer.body["value"]))
        seen += [row["accountid"] for row in answer.body["value"]]
        if "@odata.nextLink" not in answer.body:
            break
        assert len(sizes) < 5
        answer = await client.follow(answer.body["@odata.nextLink"],
                                     headers={"Prefer": "odata.maxpagesize=5000"})
    assert sizes == [5000, 5000, 2000]
    assert len(seen) == len(set(seen)) == 12_000
    assert set(seen) == {row["accountid"] for row in await client.rows()}


async def test_page_size_is_capped_at_the_maximum(client: Client) -> None:
    await client.configure(records=10, max_page_size=4, **FAST)
    for prefer in ("odata.maxpagesize=100", ""):
        rows, pages = await read_all(client, "accounts?$select=name", prefer)
        assert (len(rows), pages) == (10, 3)


async def test_next_links_keep_the_filter_and_select(client: Client) -> None:
    await client.configure(records=30, **FAST)
    rows, pages = await read_all(
        client, "accounts?$select=accountnumber&$filter=statecode eq 0 and "
                "(accountnumber ge 'ACC-0000010' and accountnumber lt 'ACC-0000025')",
        "odata.maxpagesize=6")
    assert pages == 3
    assert sorted(row["accountnumber"] for row in rows) == [
        f"ACC-{n:07d}" for n in range(10, 25)]
    assert all(set(row) == {"@odata.etag", "accountnumber", "accountid"} for row in rows)


async def test_top_limits_the_whole_read(client: Client) -> None:
    await client.configure(records=20, **FAST)
    rows, pages = await read_all(client, "accounts?$top=5&$select=name", "odata.maxpagesize=2")
    assert (len(rows), pages) == (5, 3)
    rows, pages = await read_all(client, "accounts?$top=0", "")
    assert (rows, pages) == ([], 1)


async def test_select_answers_the_columns_the_id_and_the_etag(client: Client) -> None:
    await client.configure(records=3, **FAST)
    stored = (await client.rows())[0]
    selected = (await client.get("accounts?$select=name,revenue")).body["value"][0]
    assert selected == {"@odata.etag": 'W/"0"', "name": stored["name"],
                        "revenue": stored["revenue"], "accountid": stored["accountid"]}
    everything = (await client.get("accounts")).body["value"][0]
    assert everything == {"@odata.etag": 'W/"0"', **stored}


FILTERS = [
    ("accountnumber eq 'ACC-0000003'", {3}),
    ("accountnumber eq 'acc-0000003'", {3}),
    ("accountnumber ne 'ACC-0000003'", set(range(10)) - {3} | {10}),
    ("accountnumber gt 'ACC-0000007'", {8, 9, 10}),
    ("accountnumber ge 'ACC-0000007' and accountnumber le 'ACC-0000008'", {7, 8}),
    ("(accountnumber eq 'ACC-0000001' or accountnumber eq 'ACC-0000002') and statecode eq 0",
     {1, 2}),
    ("name eq 'O''Brien Ltd'", {10}),
    ("name eq 'o''brien ltd'", {10}),
    ("numberofemployees ge 50", {10}),
    ("numberofemployees lt 50 or numberofemployees eq null", set(range(10))),
    ("numberofemployees ne null", {10}),
    ("revenue gt 100000000", set()),
    ("revenue ge 100000", set(range(10))),
    ("createdon ge 2000-01-01T00:00:00Z and createdon lt 2100-01-01", set(range(11))),
    ("modifiedon lt 2000-01-01T00:00:00Z", set()),
    ("accountid eq 00000000-0000-4000-8000-00000000BEEF", {10}),
]


@pytest.mark.parametrize(("expression", "expected"), FILTERS)
async def test_filter(client: Client, expression: str, expected: set[int]) -> None:
    await client.configure(records=10, **FAST)
    created = await client.call("POST", "accounts", json_body={
        "accountid": "00000000-0000-4000-8000-00000000beef", "name": "O'Brien Ltd",
        "accountnumber": "NEW-0000010", "numberofemployees": 50})
    assert created.status == 204
    answer = await client.get(f"accounts?$filter={expression}&$select=accountnumber")
    assert answer.status == 200, answer.body
    assert {int(row["accountnumber"][4:]) for row in answer.body["value"]} == expected


ERRORS = [
    ("GET", "accounts?$select=nosuchcolumn", None, 400,
     "Could not find a property named 'nosuchcolumn' on type 'Microsoft.Dynamics.CRM.account'."),
    ("GET", "accounts?$filter=nosuch eq 1", None, 400, "Could not find a property named 'nosuch'"),
    ("GET", "accounts?$filter=name eq", None, 400, "Syntax error in $filter"),
    ("GET", "accounts?$filter=name eq 'x' or", None, 400, "Syntax error in $filter"),
    ("GET", "accounts?$filter=(name eq 'x'", None, 400, "Syntax error in $filter"),
    ("GET", "accounts?$filter=name likes 'x'", None, 400, "unknown operator 'likes'"),
    ("GET", "accounts(not-a-guid)", None, 400, "Unrecognized 'Edm.Guid' literal 'not-a-guid'"),
    ("PATCH", "accounts(1234)", {"name": "x"}, 400, "Unrecognized 'Edm.Guid' literal '1234'"),
    ("DELETE", "accounts(abc)", None, 400, "Unrecognized 'Edm.Guid' literal 'abc'"),
    ("GET", "nosuchset", None, 404, "Resource not found for the segment 'nosuchset'"),
    ("GET", "accounts(name='x')", None, 400, "'name' is not an alternate key of account"),
    ("GET", "accounts?$skip=10", None, 400, "$skip is not supported"),
    ("GET", "accounts?$orderby=name", None, 501, "does not implement $orderby"),
    ("GET", "accounts?$top=ten", None, 400, "Invalid value 'ten' for $top"),
    ("GET", "accounts?$skiptoken=garbage", None, 400, "The $skiptoken is not valid"),
    ("PATCH", f"accounts({GHOST})", {"nosuch": 1}, 400, "Could not find a property named "
                                                        "'nosuch'"),
    ("POST", "accounts", {"createdon": "2020-01-01"}, 400, "Could not find a property named "
                                                          "'createdon'"),
    ("POST", "accounts", {"accountid": "not-a-guid"}, 400, "Unrecognized 'Edm.Guid' literal"),
    ("POST", "accounts(00000000-0000-4000-8000-00000000dead)", {}, 405, "not supported"),
    ("GET", f"accounts({GHOST})", None, 404, f"account With Id = {GHOST} Does Not Exist"),
]


@pytest.mark.parametrize("case", ERRORS, ids=[f"{c[0]} {c[1]}" for c in ERRORS])
async def test_bad_requests_answer_odata_errors(
        client: Client, case: tuple[str, str, Any, int, str]) -> None:
    method, path, body, status, text = case
    await client.configure(records=3, **FAST)
    answer = await client.call(method, path, json_body=body)
    assert answer.status == status
    assert set(answer.error) == {"code", "message"}
    assert re.fullmatch(r"0x[0-9a-f]{8}", answer.error["code"])
    assert text in answer.error["message"]
    assert len(await client.rows()) == 3  # nothing written


@pytest.mark.parametrize(("path", "body", "text"), [
    ("accounts", b"{not json", "not valid JSON"),
    ("accounts", b"\xff\xfe", "not valid JSON"),
    ("accounts", b"[1, 2]", "must be a JSON object"),
    (f"accounts({GHOST})", b"\"text\"", "must be a JSON object"),
    ("accounts/Microsoft.Dynamics.CRM.CreateMultiple", b"[]", "must be a JSON object"),
])
async def test_a_body_that_is_not_a_json_object_is_an_odata_error(
        client: Client, path: str, body: bytes, text: str) -> None:
    await client.configure(records=1, **FAST)
    method = "PATCH" if path.endswith(")") else "POST"
    answer = await client.call(method, path, data=body,
                               headers={"Content-Type": "application/json"})
    assert answer.status == 400
    assert text in answer.error["message"]
    assert len(await client.rows()) == 1


async def test_get_patch_delete_by_id_and_by_alternate_key(client: Client) -> None:
    await client.configure(records=5, **FAST)
    first, second = (await client.rows())[:2]
    by_id = await client.get(f"accounts({first['accountid'].upper()})?$select=accountnumber")
    assert by_id.body["accountnumber"] == first["accountnumber"]
    by_key = await client.get(f"accounts(accountnumber='{first['accountnumber']}')")
    assert by_key.body["accountid"] == first["accountid"]
    assert by_key.body["@odata.context"].endswith("$metadata#accounts/$entity")
    patched = await client.call("PATCH", f"accounts(accountnumber='{first['accountnumber']}')",
                                headers={"If-Match": "*"}, json_body={"description": "by key"})
    assert patched.status == 204
    assert patched.headers["OData-EntityId"].endswith(f"accounts({first['accountid']})")
    assert (await client.row(first["accountid"]) or {})["description"] == "by key"
    deleted = await client.call("DELETE", f"accounts(accountnumber='{first['accountnumber']}')")
    assert deleted.status == 204
    assert (await client.call("DELETE", f"accounts({second['accountid']})")).status == 204
    for record in (first, second):
        gone = await client.get(f"accounts({record['accountid']})")
        assert gone.status == 404
        assert gone.error["code"] == "0x80040217"
        assert (await client.call("DELETE", f"accounts({record['accountid']})")).status == 404
    assert len(await client.rows()) == 3
    assert (await client.admin("stats"))["records"] == {"created": 0, "updated": 1,
                                                        "deleted": 2}


async def test_if_match_star_on_a_missing_record_is_404_and_creates_nothing(
        client: Client) -> None:
    await client.configure(records=2, **FAST)
    for path in (f"accounts({GHOST})", "accounts(accountnumber='NOPE')"):
        missing = await client.call("PATCH", path, headers={"If-Match": "*"},
                                    json_body={"name": "x"})
        assert missing.status == 404
        assert missing.error["code"] == "0x80040217"
    assert len(await client.rows()) == 2
    assert (await client.admin("stats"))["records"]["created"] == 0


async def test_if_none_match_star_on_an_existing_record_is_412(client: Client) -> None:
    await client.configure(records=2, **FAST)
    existing = (await client.rows())[0]
    refused = await client.call("PATCH", f"accounts({existing['accountid']})",
                                headers={"If-None-Match": "*"}, json_body={"name": "changed"})
    assert refused.status == 412
    assert refused.error["code"] == "0x80060882"
    assert await client.row(existing["accountid"]) == existing
    created = await client.call("PATCH", f"accounts({GHOST})", headers={"If-None-Match": "*"},
                                json_body={"name": "new"})
    assert created.status == 204
    assert (await client.admin("stats"))["records"] == {"created": 1, "updated": 0,
                                                        "deleted": 0}


async def test_patch_without_if_match_upserts(client: Client) -> None:
    await client.configure(records=1, **FAST)
    by_id = await client.call("PATCH", f"accounts({GHOST})", json_body={"name": "new"})
    assert by_id.status == 204
    assert by_id.headers["OData-EntityId"].endswith(f"accounts({GHOST})")
    by_key = await client.call("PATCH", "accounts(accountnumber='O''Neil')",
                               json_body={"name": "keyed"})
    assert by_key.status == 204
    again = await client.call("PATCH", f"accounts({GHOST})", json_body={"name": "newer"})
    assert again.status == 204
    rows = {row["name"]: row for row in await client.rows()}
    assert rows["newer"]["accountid"] == GHOST
    assert rows["keyed"]["accountnumber"] == "O'Neil"
    assert (await client.admin("stats"))["records"] == {"created": 2, "updated": 1,
                                                        "deleted": 0}


async def test_etags_guard_against_lost_updates(client: Client) -> None:
    await client.configure(records=1, **FAST)
    record = (await client.ids(1))[0]
    tag = (await client.get(f"accounts({record})")).body["@odata.etag"]
    ok = await client.call("PATCH", f"accounts({record})", headers={"If-Match": tag},
                           json_body={"description": "first"})
    assert ok.status == 204
    stale = await client.call("PATCH", f"accounts({record})", headers={"If-Match": tag},
                              json_body={"description": "second"})
    assert stale.status == 412
    assert (await client.row(record) or {})["description"] == "first"
    assert (await client.get(f"accounts({record})")).body["@odata.etag"] != tag


async def test_the_body_cannot_move_a_record_to_another_id(client: Client) -> None:
    await client.configure(records=1, **FAST)
    record = (await client.ids(1))[0]
    moved = await client.patch(record, {"accountid": GHOST, "name": "moved"})
    assert moved.status == 400
    same = await client.patch(record, {"accountid": record.upper(), "name": "same"})
    assert same.status == 204
    assert [row["accountid"] for row in await client.rows()] == [record]


async def test_alternate_keys_stay_unique(client: Client) -> None:
    await client.configure(records=2, **FAST)
    first, second = await client.rows()
    taken = await client.patch(second["accountid"], {"accountnumber": first["accountnumber"]})
    assert taken.status == 412
    assert taken.error["code"] == "0x80060892"
    duplicate = await client.call("POST", "accounts",
                                  json_body={"accountnumber": first["accountnumber"]})
    assert duplicate.status == 412
    by_key = await client.get(f"accounts(accountnumber='{first['accountnumber']}')")
    assert by_key.body["accountid"] == first["accountid"]


async def test_create(client: Client) -> None:
    await client.configure(records=0, **FAST)
    created = await client.call("POST", "accounts", json_body={
        "@odata.type": "Microsoft.Dynamics.CRM.account", "name": "Fabrikam"})
    assert created.status == 204
    found = re.search(r"accounts\(([0-9a-f-]{36})\)$", created.headers["OData-EntityId"])
    assert found
    assert created.headers["Location"] == created.headers["OData-EntityId"]
    row = (await client.get(f"accounts({found.group(1)})")).body
    assert row["name"] == "Fabrikam"
    assert row["_createdby_value"] == (await client.get("WhoAmI")).body["UserId"]
    chosen = str(uuid.uuid4())
    assert (await client.call("POST", "accounts", json_body={"accountid": chosen})).status == 204
    again = await client.call("POST", "accounts", json_body={"accountid": chosen})
    assert again.status == 412
    assert (await client.admin("stats"))["records"]["created"] == 2


async def test_who_am_i(client: Client) -> None:
    await client.configure(records=0, **FAST)
    oid = "11111111-2222-4333-8444-555555555555"
    for path in ("WhoAmI", "WhoAmI()"):
        me = await client.get(path, token=token_for(oid))
        assert me.status == 200
        assert me.body["UserId"] == oid
        assert set(me.body) == {"UserId", "BusinessUnitId", "OrganizationId"}
    opaque = [(await client.get("WhoAmI", token="opaque-token")).body["UserId"]
              for _ in range(2)]
    assert opaque[0] == opaque[1] != oid
    uuid.UUID(opaque[0])
