"""CreateMultiple, UpdateMultiple, UpsertMultiple over real HTTP: documented status codes, the
whole request rolled back on any error, duplicate targets, and how they count."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.webapi.conftest import FAST, GHOST, Answer, Client

KIND = "Microsoft.Dynamics.CRM.account"


async def bulk(client: Client, message: str, *targets: dict[str, Any]) -> Answer:
    """POST a bulk message with the targets typed as accounts."""
    return await client.call("POST", f"accounts/Microsoft.Dynamics.CRM.{message}",
                             json_body={"Targets": [{"@odata.type": KIND, **t} for t in targets]})


async def test_create_multiple_answers_200_with_the_ids(client: Client) -> None:
    await client.configure(records=0, **FAST)
    answer = await bulk(client, "CreateMultiple", {"name": "n1"}, {"name": "n2"},
                        {"name": "n3", "accountnumber": "K-3"})
    assert answer.status == 200
    ids = answer.body["Ids"]
    assert len(ids) == len(set(ids)) == 3
    assert sorted(row["accountid"] for row in await client.rows()) == sorted(ids)
    assert (await client.admin("stats"))["records"]["created"] == 3


async def test_update_multiple_answers_204_and_applies_the_first_of_duplicates(
        client: Client) -> None:
    await client.configure(records=3, **FAST)
    first, second, _ = await client.ids(3)
    answer = await bulk(client, "UpdateMultiple", {"accountid": first, "description": "1"},
                        {"accountid": first.upper(), "description": "2"},
                        {"accountid": second, "description": "3"})
    assert answer.status == 204
    assert answer.raw == b""
    assert (await client.row(first) or {})["description"] == "1"
    assert (await client.row(second) or {})["description"] == "3"
    assert (await client.admin("stats"))["records"]["updated"] == 2


async def test_upsert_multiple_answers_204_and_takes_alternate_keys(client: Client) -> None:
    await client.configure(records=2, **FAST)
    existing = (await client.rows())[0]
    answer = await bulk(client, "UpsertMultiple",
                        {"@odata.id": "accounts(accountnumber='NEW-1')", "name": "created"},
                        {"@odata.id": f"accounts(accountnumber='{existing['accountnumber']}')",
                         "name": "updated by key"},
                        {"accountid": GHOST, "name": "created by id"})
    assert answer.status == 204
    by_key = await client.get("accounts(accountnumber='NEW-1')")
    assert by_key.body["name"] == "created"
    assert (await client.row(existing["accountid"]) or {})["name"] == "updated by key"
    assert (await client.row(GHOST) or {})["name"] == "created by id"
    assert (await client.admin("stats"))["records"] == {"created": 2, "updated": 1,
                                                        "deleted": 0}


async def test_update_multiple_rolls_back_entirely_on_one_bad_target(client: Client) -> None:
    await client.configure(records=3, **FAST)
    before = await client.rows()
    first, second, _ = (row["accountid"] for row in before)
    answer = await bulk(client, "UpdateMultiple", {"accountid": first, "description": "x"},
                        {"accountid": GHOST, "description": "y"},
                        {"accountid": second, "description": "z"})
    assert answer.status == 404
    assert answer.error["code"] == "0x80040217"
    assert await client.rows() == before  # not even a version number moved
    assert (await client.admin("stats"))["records"] == {"created": 0, "updated": 0,
                                                        "deleted": 0}


@pytest.mark.parametrize(("message", "targets", "status"), [
    ("UpsertMultiple", [{"accountid": "{a}", "name": "a"}, {"accountid": "{a}", "name": "b"}],
     400),  # duplicate targets: UpsertMultiple errors
    ("UpsertMultiple", [{"accountid": GHOST, "name": "new"},
                        {"@odata.id": "accounts(accountnumber='{n}')", "name": "same"},
                        {"accountid": "{a}", "name": "again"}], 400),  # same record twice
    ("CreateMultiple", [{"name": "ok"}, {"accountid": "{a}"}], 412),  # already exists
    ("CreateMultiple", [{"name": "ok"}, {"nosuch": 1}], 400),  # unknown column
    ("UpdateMultiple", [{"accountid": "{a}", "name": "x"},
                        {"@odata.id": "accounts(accountnumber='{n}')", "name": "y"}], 400),
])
async def test_a_failing_bulk_message_writes_nothing(
        client: Client, message: str, targets: list[dict[str, Any]], status: int) -> None:
    await client.configure(records=2, **FAST)
    before = await client.rows()
    record, number = before[0]["accountid"], before[0]["accountnumber"]
    filled = [{k: v.format(a=record, n=number) if isinstance(v, str) else v
               for k, v in target.items()} for target in targets]
    answer = await bulk(client, message, *filled)
    assert answer.status == status
    assert answer.error["message"]
    assert await client.rows() == before
    assert (await client.admin("stats"))["records"] == {"created": 0, "updated": 0,
                                                        "deleted": 0}


@pytest.mark.parametrize(("body", "text"), [
    ({"Targets": []}, "non-empty"),
    ({}, "non-empty"),
    ({"Targets": [{"name": "x"}] * 1001}, "A maximum number of '1000' operations"),
])
async def test_bad_bulk_bodies(client: Client, body: dict[str, Any], text: str) -> None:
    await client.configure(records=0, **FAST)
    answer = await client.call("POST", "accounts/Microsoft.Dynamics.CRM.CreateMultiple",
                               json_body=body)
    assert answer.status == 400
    assert text in answer.error["message"]
    assert await client.rows() == []


async def test_an_unknown_message_is_404(client: Client) -> None:
    await client.configure(records=0, **FAST)
    answer = await client.call("POST", "accounts/Microsoft.Dynamics.CRM.DeleteMultiple",
                               json_body={"Targets": [{"name": "x"}]})
    assert answer.status == 404


async def test_a_bulk_message_counts_once_and_costs_per_target(client: Client) -> None:
    await client.configure(records=0, servers=1, window_s=60.0, max_requests=5,
                           max_exec_ms=10_000.0, **{**FAST, "bulk_target_ms": 1.0,
                                                    "request_overhead_ms": 5.0})
    answer = await bulk(client, "CreateMultiple",
                        *[{"accountid": str(uuid.uuid4())} for _ in range(100)])
    assert answer.status == 200
    assert answer.headers["x-ms-ratelimit-burst-remaining-xrm-requests"] == "4"
    # 100 x 1 ms + 5 ms spent, in seconds as the service writes it
    assert answer.headers["x-ms-ratelimit-time-remaining-xrm-requests"] == "9.89"
    assert (await client.admin("stats"))["records"]["created"] == 100


@pytest.mark.parametrize("message", ["CreateMultiple", "UpdateMultiple", "UpsertMultiple"])
@pytest.mark.parametrize(("odata_type", "code"), [
    (None, "0x80048d19"),  # no type: the service cannot read the target
    ("Microsoft.Dynamics.CRM.contact", "0x80040203"),  # another table's type
    ("account", "0x80040203"),  # not a qualified type name
], ids=["missing", "another table", "unqualified"])
async def test_every_bulk_target_must_say_it_is_an_account(
        client: Client, message: str, odata_type: str | None, code: str) -> None:
    await client.configure(records=2, **FAST)
    before = await client.rows()
    good = {"@odata.type": KIND, "accountid": before[0]["accountid"], "description": "x"}
    bad = {"accountid": before[1]["accountid"], "description": "y"}
    if odata_type is not None:
        bad["@odata.type"] = odata_type
    answer = await client.call("POST", f"accounts/Microsoft.Dynamics.CRM.{message}",
                               json_body={"Targets": [good, bad]})
    assert answer.status == 400
    assert answer.error["code"] == code
    assert await client.rows() == before


async def test_the_hash_form_of_the_type_is_accepted(client: Client) -> None:
    await client.configure(records=1, **FAST)
    record = (await client.ids(1))[0]
    answer = await client.call("POST", "accounts/Microsoft.Dynamics.CRM.UpdateMultiple",
                               json_body={"Targets": [{"@odata.type": "#" + KIND,
                                                       "accountid": record,
                                                       "description": "typed"}]})
    assert answer.status == 204
    assert (await client.row(record) or {})["description"] == "typed"


@pytest.mark.parametrize(("good_before", "bad_type", "executed_ms"), [
    (0, False, 5.0 + 10.0),  # fails at its first target: that target's work
    (30, False, 5.0 + 31 * 10.0),  # 30 applied, the 31st fails, all rolled back
    (30, True, 5.0),  # refused before any target ran: the overhead only
], ids=["fails at once", "fails after 30 targets", "refused payload"])
async def test_a_failed_bulk_message_costs_the_work_it_did(
        client: Client, good_before: int, bad_type: bool, executed_ms: float) -> None:
    await client.configure(records=good_before, servers=1,
                           **{**FAST, "bulk_target_ms": 10.0, "request_overhead_ms": 5.0})
    targets: list[dict[str, Any]] = [{"@odata.type": KIND, "accountid": record, "name": "n"}
                                     for record in await client.ids(good_before)]
    targets.append({"@odata.type": "Microsoft.Dynamics.CRM.contact" if bad_type else KIND,
                    "accountid": GHOST, "name": "gone"})
    answer = await client.call("POST", "accounts/Microsoft.Dynamics.CRM.UpdateMultiple",
                               json_body={"Targets": targets})
    assert answer.status == (400 if bad_type else 404)
    assert (await client.admin("stats"))["executed_ms"] == pytest.approx(executed_ms)
