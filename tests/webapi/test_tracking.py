"""Change tracking over real HTTP: a full tracked read ends with a delta link; the delta link
answers only what changed since, deleted rows as ``$deletedEntity``; what tracking rejects;
unknown and expired tokens."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.webapi.conftest import FAST, GHOST, Answer, Client

TRACKED = {"Prefer": "odata.track-changes,odata.maxpagesize=20"}


async def tracked_read(client: Client, first: str) -> tuple[list[dict[str, Any]], str, Answer]:
    """Every row of a tracked read from ``first`` (bounded), its delta link, its last page."""
    answer = await client.get(first, headers=TRACKED)
    rows: list[dict[str, Any]] = []
    for _ in range(50):
        assert answer.status == 200, answer.body
        assert answer.headers["Preference-Applied"].startswith("odata.track-changes")
        rows += answer.body["value"]
        if "@odata.deltaLink" in answer.body:
            assert "@odata.nextLink" not in answer.body
            assert "$deltatoken=" in answer.body["@odata.deltaLink"]
            return rows, answer.body["@odata.deltaLink"], answer
        answer = await client.follow(answer.body["@odata.nextLink"], headers=TRACKED)
    pytest.fail("the tracked read never ended")


async def test_only_what_changed_plus_deleted_ids(client: Client) -> None:
    await client.configure(records=50, **FAST)
    rows, delta, _ = await tracked_read(client, "accounts?$select=accountid,name")
    assert len(rows) == 50
    changed, gone, untouched = (await client.ids(3))
    await client.patch(changed, {"name": "changed"})
    await client.call("DELETE", f"accounts({gone})")
    await client.call("PATCH", f"accounts({GHOST})", json_body={"name": "created"})
    created_then_gone = (await client.call("POST", "accounts", json_body={"name": "brief"}))
    brief = created_then_gone.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")
    await client.call("DELETE", f"accounts({brief})")
    since, next_delta, last = await tracked_read(client, delta.split("/api/data/v9.2/", 1)[1])
    live = {row["accountid"]: row for row in since if "accountid" in row}
    assert {k: v["name"] for k, v in live.items()} == {changed: "changed", GHOST: "created"}
    assert all(set(row) == {"@odata.etag", "accountid", "name"} for row in live.values())
    deleted = [row for row in since if row.get("reason") == "deleted"]
    assert sorted(row["id"] for row in deleted) == sorted([gone, brief])
    for row in deleted:
        assert set(row) == {"@odata.context", "id", "reason"}
        assert row["@odata.context"].endswith("/api/data/v9.2/$metadata#accounts/$deletedEntity")
    assert untouched not in live
    assert last.headers["Preference-Applied"] == "odata.track-changes"
    nothing, _, _ = await tracked_read(client, next_delta.split("/api/data/v9.2/", 1)[1])
    assert nothing == []


async def test_a_long_delta_is_paged(client: Client) -> None:
    await client.configure(records=60, **FAST)
    _, delta, _ = await tracked_read(client, "accounts?$select=name")
    ids = await client.ids(45)
    for record in ids:
        await client.patch(record, {"description": "x"})
    since, _, _ = await tracked_read(client, delta.split("/api/data/v9.2/", 1)[1])
    assert sorted(row["accountid"] for row in since) == sorted(ids)


async def test_a_rolled_back_write_is_not_a_change(client: Client) -> None:
    await client.configure(records=3, **FAST)
    _, delta, _ = await tracked_read(client, "accounts?$select=name")
    first = (await client.ids(1))[0]
    failed = await client.call("POST", "accounts/Microsoft.Dynamics.CRM.UpdateMultiple",
                               json_body={"Targets": [
                                   {"@odata.type": "Microsoft.Dynamics.CRM.account",
                                    "accountid": first, "name": "x"},
                                   {"@odata.type": "Microsoft.Dynamics.CRM.account",
                                    "accountid": GHOST, "name": "y"}]})
    assert failed.status == 404
    since, _, _ = await tracked_read(client, delta.split("/api/data/v9.2/", 1)[1])
    assert since == []


@pytest.mark.parametrize("query", ["$filter=statecode eq 0", "$top=5", "$orderby=name",
                                   "$expand=primarycontactid"])
async def test_tracking_rejects_filter_and_friends(client: Client, query: str) -> None:
    await client.configure(records=5, **FAST)
    first = await client.get(f"accounts?{query}", headers=TRACKED)
    assert first.status == 400
    assert "not supported with change tracking" in first.error["message"]
    _, delta, _ = await tracked_read(client, "accounts?$select=name")
    with_token = await client.follow(f"{delta}&{query}", headers=TRACKED)
    assert with_token.status == 400


@pytest.mark.parametrize("token", ["999999", "abc", "", "-1"])
async def test_an_unknown_token_is_an_error(client: Client, token: str) -> None:
    await client.configure(records=5, **FAST)
    answer = await client.get(f"accounts?$deltatoken={token}", headers=TRACKED)
    assert answer.status == 400
    assert answer.error["code"] == "0x80044352"
    assert "expired or not valid" in answer.error["message"]


async def test_an_expired_token_is_an_error(client: Client) -> None:
    await client.configure(records=5, change_token_ttl_s=0.2, **FAST)
    _, delta, _ = await tracked_read(client, "accounts?$select=name")
    assert (await client.follow(delta, headers=TRACKED)).status == 200
    await asyncio.sleep(0.25)
    expired = await client.follow(delta, headers=TRACKED)
    assert expired.status == 400
    assert expired.error["code"] == "0x80044352"
