"""``/_emulator/stats`` per user: records written (single, $batch parts, bulk targets, a rolled
back changeset not counted), 429s by facet, peak concurrency, and the limits each user has."""

from __future__ import annotations

import hashlib
import uuid

import pytest

from sync.local.emulators.webapi.limits import CONCURRENCY, EXEC_TIME, REQUESTS
from sync.local.emulators.webapi.servers import user_of
from sync.local.emulators.webapi.stats import FACET_OF_CODE
from tests.webapi.conftest import FAST, GHOST, Client, token_for
from tests.webapi.test_batch import changeset, op, send
from tests.webapi.test_bulk import bulk


@pytest.mark.parametrize(("code", "facet"), [
    (REQUESTS[0], "requests"),
    (EXEC_TIME[0], "execution"),
    (CONCURRENCY[0], "concurrency"),
], ids=["0x80072322 is the request count", "0x80072321 is execution time",
        "0x80072326 is concurrency"])
def test_each_429_code_names_its_facet(code: str, facet: str) -> None:
    assert FACET_OF_CODE[code] == facet


def test_an_opaque_token_with_an_identity_suffix_is_a_user_of_its_own() -> None:
    """The local stack's identities send ``<token>-<identity>``: each its own user."""
    first, second = user_of("Bearer local-abc-id1"), user_of("Bearer local-abc-id2")
    assert first is not None
    assert second is not None
    assert first != second
    digest = hashlib.sha256(b"local-abc-id1").hexdigest()
    assert first == str(uuid.uuid5(uuid.NAMESPACE_OID, digest))


async def test_records_written_are_counted_per_user(client: Client) -> None:
    await client.configure(records=6, **FAST)
    ids = await client.ids(6)
    other = token_for("second-user")
    assert (await client.patch(ids[0], {"description": "a"})).status == 204
    assert (await bulk(client, "UpdateMultiple",
                       *({"accountid": i, "description": "b"} for i in ids[1:4]))).status == 204
    answer = await send(client, op("PATCH", f"accounts({ids[4]})", {"description": "c"},
                                   If_Match="*"),
                        changeset(op("PATCH", f"accounts({ids[5]})", {"description": "d"},
                                     content_id="1", If_Match="*"),
                                  op("PATCH", f"accounts({GHOST})", {"description": "e"},
                                     content_id="2", If_Match="*")),
                        continue_on_error=True)
    assert answer.status == 200
    assert (await client.patch(ids[5], {"description": "f"}, token=other)).status == 204
    assert (await client.get("WhoAmI", token=other)).status == 200
    me = (await client.get("WhoAmI")).body["UserId"]
    them = (await client.get("WhoAmI", token=other)).body["UserId"]
    users = (await client.admin("stats"))["users"]
    # 1 PATCH + 3 bulk targets + 1 $batch part; the changeset rolled back
    assert users[me]["written"] == 5
    assert users[me]["requests"] == 4
    assert users[them] == {"requests": 3, "written": 1, "throttled_by_facet": {},
                           "peak_concurrency": 1}


async def test_429s_are_counted_per_user_by_facet(client: Client) -> None:
    await client.configure(records=2, window_s=60.0, max_requests=2, servers=1, **FAST)
    record = (await client.ids(1))[0]
    other = token_for("unthrottled-user")
    statuses = [(await client.patch(record, {"description": "x"})).status for _ in range(4)]
    assert statuses == [204, 204, 429, 429]
    assert (await client.patch(record, {"description": "y"}, token=other)).status == 204
    stats = await client.admin("stats")
    me = user_of(f"Bearer {client.token}")
    them = user_of(f"Bearer {other}")
    assert me is not None
    assert them is not None
    assert stats["users"][me]["throttled_by_facet"] == {"requests": 2}
    assert stats["users"][me]["written"] == 2
    assert stats["users"][them]["throttled_by_facet"] == {}
    assert stats["users"][them]["written"] == 1
    assert stats["limits"] == {"window_s": 60.0, "max_requests": 2,
                               "max_exec_ms": stats["limits"]["max_exec_ms"],
                               "max_concurrent": 52, "servers": 1}


async def test_reset_stats_clears_the_users(client: Client) -> None:
    await client.configure(records=1, **FAST)
    record = (await client.ids(1))[0]
    assert (await client.patch(record, {"description": "x"})).status == 204
    assert (await client.admin("stats"))["users"]
    await client.admin("reset-stats", method="POST")
    assert (await client.admin("stats"))["users"] == {}
