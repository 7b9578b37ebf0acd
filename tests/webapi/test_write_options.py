"""The emulator's side of writing safely: a person's edit gives a row a new ETag, so a stale one
answers 412 (in a PATCH and in a $batch part, stricter than a guess: never applied); the bypass
header needs its privilege in every write form; the stats count the options sent."""

from __future__ import annotations

from typing import Any

import pytest

from sync.clients.odata_batch import Operation, batch_request, parse_batch_response
from sync.local.emulators.webapi.ops import API
from tests.webapi.conftest import Client

BYPASS = {"MSCRM.BypassBusinessLogicExecution": "CustomSync,CustomAsync"}


async def etag_of(client: Client, record_id: str) -> str:
    answer = await client.get(f"accounts({record_id})?$select=name")
    assert answer.body is not None
    return str(answer.body["@odata.etag"])


async def person_edits(client: Client, record_id: str, **values: Any) -> None:
    assert await client.admin("records", "POST", {"rows": [{"accountid": record_id,
                                                            **values}]}) == {"changed": 1}


async def test_an_edit_moves_the_etag_and_a_stale_one_is_refused_in_a_patch(
        client: Client) -> None:
    await client.configure(records=3)
    record = (await client.ids(1))[0]
    read = await etag_of(client, record)
    await person_edits(client, record, numberofemployees=7)
    assert await etag_of(client, record) != read
    stale = await client.call("PATCH", f"accounts({record})", headers={"If-Match": read},
                              json_body={"numberofemployees": 99})
    assert stale.status == 412
    assert stale.body is not None
    assert stale.body["error"]["code"] == "0x80060882"
    row = await client.row(record)
    assert row is not None
    assert row["numberofemployees"] == 7
    fresh = await client.call("PATCH", f"accounts({record})",
                              headers={"If-Match": await etag_of(client, record)},
                              json_body={"numberofemployees": 99})
    assert fresh.status == 204


async def test_a_stale_etag_fails_its_batch_part_alone(client: Client) -> None:
    await client.configure(records=3)
    first, second = await client.ids(2)
    stale = await etag_of(client, first)
    await person_edits(client, first, description="typed")
    content_type, body = batch_request([
        Operation("PATCH", f"accounts({first})", {"If-Match": stale}, {"description": "x"}),
        Operation("PATCH", f"accounts({second})", {"If-Match": await etag_of(client, second)},
                  {"description": "y"})], API)
    answer = await client.call("POST", "$batch", data=body, headers={
        "Content-Type": content_type, "Prefer": "odata.continue-on-error"})
    assert answer.status == 200
    parts = parse_batch_response(answer.headers["Content-Type"], answer.raw)
    assert [part.status for part in parts] == [412, 204]
    rows = {r["accountid"]: r for r in await client.rows()}
    assert (rows[first]["description"], rows[second]["description"]) == ("typed", "y")


@pytest.mark.parametrize("form", ["patch", "batch", "bulk"])
async def test_bypass_needs_the_privilege_in_every_write_form(client: Client, form: str) -> None:
    await client.configure(records=3)
    record = (await client.ids(1))[0]
    for granted, expected in ((False, 403), (True, 204)):
        await client.admin("config", "PATCH", {"bypass_privilege": granted})
        status, raw = await _write(client, form, record)
        assert status == expected, raw
        if not granted:
            assert b"is missing prvBypassCustomBusinessLogic privilege" in raw
    stats = await client.admin("stats")
    assert stats["write_options"] == {
        "MSCRM.BypassBusinessLogicExecution: CustomSync,CustomAsync": 1}


async def test_a_bypass_value_the_service_does_not_know_is_refused(client: Client) -> None:
    await client.configure(records=3, bypass_privilege=True)
    record = (await client.ids(1))[0]
    answer = await client.call("PATCH", f"accounts({record})", json_body={"name": "n"},
                               headers={"If-Match": "*",
                                        "MSCRM.BypassBusinessLogicExecution": "Plugins"})
    assert answer.status == 400


async def _write(client: Client, form: str, record: str) -> tuple[int, bytes]:
    """One write of ``form`` with the bypass header: its status (a $batch part's) and body."""
    if form == "patch":
        answer = await client.call("PATCH", f"accounts({record})", json_body={"name": "n"},
                                   headers={"If-Match": "*", **BYPASS})
        return answer.status, answer.raw
    if form == "bulk":
        answer = await client.call(
            "POST", "accounts/Microsoft.Dynamics.CRM.UpdateMultiple", headers=BYPASS,
            json_body={"Targets": [{"@odata.type": "Microsoft.Dynamics.CRM.account",
                                    "accountid": record, "name": "n"}]})
        return answer.status, answer.raw
    content_type, body = batch_request(
        [Operation("PATCH", f"accounts({record})", {"If-Match": "*", **BYPASS},
                   {"name": "n"})], API)
    answer = await client.call("POST", "$batch", data=body, headers={
        "Content-Type": content_type, "Prefer": "odata.continue-on-error"})
    assert answer.status == 200
    parts = parse_batch_response(answer.headers["Content-Type"], answer.raw)
    return parts[0].status, parts[0].body
