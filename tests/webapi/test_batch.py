"""``$batch`` over real HTTP in the documented wire format: requests written here as the docs
show them, responses read with Python's own MIME parser (never by matching the emulator's
strings); changesets (atomic, ``Content-ID``, ``$n``), continue-on-error, the 1,000 limit,
and how a batch counts against the limits."""

from __future__ import annotations

import email.parser
import email.policy
import json
import re
from dataclasses import dataclass
from email.message import Message
from typing import Any

import pytest

from tests.webapi.conftest import API, FAST, GHOST, Answer, Client

CRLF = "\r\n"
GUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def op(method: str, path: str, body: Any = None, *, content_id: str | None = None,
       **headers: str) -> str:
    """One operation as a MIME part (headers, blank line, the HTTP request)."""
    lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if content_id is not None:
        lines.append(f"Content-ID: {content_id}")
    lines += ["", f"{method} {path if path.startswith('$') else API + path} HTTP/1.1"]
    if body is not None:
        lines.append("Content-Type: application/json; type=entry")
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    lines += ["", "" if body is None else json.dumps(body)]
    return CRLF.join(lines)


def changeset(*parts: str, name: str = "changeset_7b2c") -> str:
    inner = "".join(f"--{name}{CRLF}{part}{CRLF}" for part in parts)
    return f'Content-Type: multipart/mixed; boundary="{name}"{CRLF}{CRLF}{inner}--{name}--'


def batch(*items: str, boundary: str = "batch_80dd1615") -> tuple[dict[str, str], bytes]:
    """The Content-Type header (quoted boundary, as documented) and the body."""
    body = "".join(f"--{boundary}{CRLF}{item}{CRLF}" for item in items) + f"--{boundary}--{CRLF}"
    return {"Content-Type": f'multipart/mixed; boundary="{boundary}"'}, body.encode()


async def send(client: Client, *items: str, continue_on_error: bool = False) -> Answer:
    headers, body = batch(*items)
    if continue_on_error:
        headers["Prefer"] = "odata.continue-on-error"
    return await client.call("POST", "$batch", headers=headers, data=body)


@dataclass
class Response:
    """One operation's answer, read from its MIME part."""

    status: int
    headers: Message
    body: Any
    content_id: str | None


def read(answer: Answer) -> list[Response | list[Response]]:
    """The batch response's items: a Response, or a changeset's list of them."""
    content_type = answer.headers["Content-Type"]
    assert re.fullmatch(rf"multipart/mixed; boundary=batchresponse_{GUID}", content_type)
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}{CRLF}{CRLF}".encode() + answer.raw)
    assert message.is_multipart()
    assert not message.defects
    items: list[Response | list[Response]] = []
    for part in message.iter_parts():
        if part.is_multipart():
            assert re.fullmatch(f"changesetresponse_{GUID}", part.get_boundary() or "")
            items.append([response(sub) for sub in part.iter_parts()])
        else:
            items.append(response(part))
    return items


def response(part: Message) -> Response:
    """An application/http part: a status line, then headers and a body like a MIME message."""
    assert part.get_content_type() == "application/http"
    assert part["Content-Transfer-Encoding"] == "binary"
    raw = part.get_payload(decode=True)
    assert isinstance(raw, bytes)
    status_line, _, rest = raw.partition(b"\r\n")
    version, status, _ = status_line.decode().split(" ", 2)
    assert version == "HTTP/1.1"
    inner = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(rest)
    payload = inner.get_payload(decode=True)
    body = json.loads(payload) if isinstance(payload, bytes) and payload.strip() else None
    return Response(int(status), inner, body, part["Content-ID"])


def flat(items: list[Response | list[Response]]) -> list[Response]:
    return [r for item in items for r in (item if isinstance(item, list) else [item])]


async def test_a_batch_in_the_documented_wire_format(client: Client) -> None:
    await client.configure(records=3, **FAST)
    first = (await client.ids(1))[0]
    answer = await send(client,
                        op("GET", "WhoAmI"),
                        op("PATCH", f"accounts({first})", {"description": "batched"},
                           If_Match="*"),
                        op("POST", "accounts", {"name": "Contoso"}),
                        op("GET", f"accounts({first})?$select=description"))
    assert answer.status == 200
    assert answer.headers["OData-Version"] == "4.0"
    items = read(answer)
    assert all(isinstance(item, Response) for item in items)
    who, patched, created, got = flat(items)
    assert (who.status, patched.status, created.status, got.status) == (200, 204, 204, 200)
    assert who.body["UserId"] == (await client.get("WhoAmI")).body["UserId"]
    assert patched.headers["OData-Version"] == "4.0"
    assert patched.body is None
    assert re.search(rf"/api/data/v9\.2/accounts\({GUID}\)$", created.headers["OData-EntityId"])
    assert got.headers.get_content_type() == "application/json"
    assert got.body["description"] == "batched"
    assert (await client.admin("stats"))["records"] == {"created": 1, "updated": 1,
                                                        "deleted": 0}


async def test_a_changeset_answers_per_content_id_and_resolves_references(
        client: Client) -> None:
    await client.configure(records=1, **FAST)
    answer = await send(client,
                        changeset(op("POST", "accounts", {"name": "Parent"}, content_id="1"),
                                  op("PATCH", "$1", {"description": "via $1"}, content_id="2",
                                     If_Match="*")),
                        op("GET", "accounts?$select=name,description"
                                  "&$filter=name%20eq%20'Parent'"))
    assert answer.status == 200
    inside, after = read(answer)
    assert isinstance(inside, list)
    assert isinstance(after, Response)
    assert [(r.content_id, r.status) for r in inside] == [("1", 204), ("2", 204)]
    record_id = re.findall(GUID, inside[0].headers["OData-EntityId"])[-1]
    assert inside[1].headers["OData-EntityId"].endswith(f"accounts({record_id})")
    assert [(r["accountid"], r["description"]) for r in after.body["value"]] == [
        (record_id, "via $1")]


async def test_a_failing_changeset_rolls_back_all_of_it(client: Client) -> None:
    await client.configure(records=3, **FAST)
    before = await client.rows()
    first, second, _ = (row["accountid"] for row in before)
    answer = await send(client,
                        changeset(op("PATCH", f"accounts({first})", {"description": "a"},
                                     content_id="1", If_Match="*"),
                                  op("POST", "accounts", {"name": "new"}, content_id="2"),
                                  op("DELETE", f"accounts({second})", content_id="3"),
                                  op("PATCH", f"accounts({GHOST})", {"description": "b"},
                                     content_id="4", If_Match="*"),
                                  op("PATCH", f"accounts({second})", {"description": "c"},
                                     content_id="5", If_Match="*")),
                        op("PATCH", f"accounts({first})", {"description": "after"},
                           If_Match="*"),
                        continue_on_error=True)
    assert answer.status == 200
    failed, after = read(answer)
    assert isinstance(failed, Response)  # one answer for the whole changeset: its failure
    assert (failed.status, failed.content_id) == (404, "4")
    assert failed.body["error"]["code"] == "0x80040217"
    assert isinstance(after, Response)
    assert after.status == 204
    rows = await client.rows()
    assert rows == [{**before[0], **{k: rows[0][k] for k in (
        "description", "versionnumber", "modifiedon", "_modifiedby_value")}}, *before[1:]]
    assert rows[0]["description"] == "after"
    assert (await client.admin("stats"))["records"] == {"created": 0, "updated": 1,
                                                        "deleted": 0}


@pytest.mark.parametrize("bad", [
    op("GET", "WhoAmI", content_id="1"),
    op("PATCH", "$9", {"description": "x"}, content_id="1"),
])
async def test_a_changeset_refuses_gets_and_unknown_references(client: Client,
                                                               bad: str) -> None:
    await client.configure(records=1, **FAST)
    record = (await client.ids(1))[0]
    answer = await send(client, changeset(
        op("PATCH", f"accounts({record})", {"description": "x"}, content_id="0"), bad))
    assert answer.status == 400  # without continue-on-error: the status of the failure
    (failed,) = flat(read(answer))
    assert failed.status == 400
    assert re.search(r"cannot contain a GET|Content-ID Reference: '\$9' does not exist",
                     failed.body["error"]["message"])
    assert (await client.row(record) or {})["description"] is None


def good_missing_good(first: str, second: str) -> list[str]:
    """Three updates, the middle one of a record that does not exist."""
    return [op("PATCH", f"accounts({record})", {"description": text}, If_Match="*")
            for record, text in ((first, "a"), (GHOST, "b"), (second, "c"))]


async def test_continue_on_error_answers_every_operation(client: Client) -> None:
    await client.configure(records=3, **FAST)
    first, second, _ = await client.ids(3)
    answer = await send(client, *good_missing_good(first, second), continue_on_error=True)
    assert answer.status == 200
    assert [r.status for r in flat(read(answer))] == [204, 404, 204]
    assert (await client.row(second) or {})["description"] == "c"


async def test_without_continue_on_error_the_batch_stops_at_the_first_error(
        client: Client) -> None:
    await client.configure(records=3, **FAST)
    first, second, _ = await client.ids(3)
    answer = await send(client, *good_missing_good(first, second))
    assert answer.status == 404  # the batch answers with its first failure
    statuses = [r.status for r in flat(read(answer))]
    assert statuses == [204, 404]
    assert (await client.row(first) or {})["description"] == "a"
    assert (await client.row(second) or {})["description"] is None


@pytest.mark.parametrize(("singles", "in_changeset", "accepted"), [
    (1000, 0, True), (1001, 0, False), (400, 600, True), (401, 600, False)])
async def test_the_thousand_operation_limit(client: Client, singles: int, in_changeset: int,
                                            accepted: bool) -> None:
    await client.configure(records=1, **FAST)
    record = (await client.ids(1))[0]
    update = op("PATCH", f"accounts({record})", {"description": "x"}, If_Match="*")
    items = [update] * singles
    if in_changeset:
        items.append(changeset(*[update] * in_changeset))
    answer = await send(client, *items, continue_on_error=True)
    updated = (await client.admin("stats"))["records"]["updated"]
    if accepted:
        assert answer.status == 200
        assert [r.status for r in flat(read(answer))] == [204] * (singles + in_changeset)
        assert updated == singles + in_changeset
        return
    assert answer.status == 400
    assert answer.error["code"] == "0x8004800d"
    assert "A maximum number of '1000' operations are allowed in a change set" in (
        answer.error["message"])
    assert updated == 0


async def test_a_batch_counts_once_and_adds_up_its_execution_time(client: Client) -> None:
    await client.configure(records=1, window_s=60.0, max_requests=3, max_exec_ms=10_000.0,
                           servers=1, **{**FAST, "batch_op_ms": 5.0,
                                         "request_overhead_ms": 2.0})
    record = (await client.ids(1))[0]
    answer = await send(client, *[op("PATCH", f"accounts({record})", {"description": "x"},
                                     If_Match="*")] * 10)
    assert answer.status == 200
    assert answer.headers["x-ms-ratelimit-burst-remaining-xrm-requests"] == "2"
    # 10 x 5 + 2 ms spent, in seconds as the service writes it
    assert answer.headers["x-ms-ratelimit-time-remaining-xrm-requests"] == "9.94"
    assert (await client.admin("stats"))["requests"] == 1


@pytest.mark.parametrize(("content_type", "body"), [
    ("application/json", b"{}"),
    ("multipart/mixed; boundary=batch_x", b"no parts at all"),
    ("multipart/mixed; boundary=batch_x",
     b"--batch_x\r\nContent-Type: application/http\r\n\r\nNOT-A-REQUEST-LINE\r\n--batch_x--"),
])
async def test_a_malformed_batch_is_an_odata_error(client: Client, content_type: str,
                                                   body: bytes) -> None:
    await client.configure(records=1, **FAST)
    answer = await client.call("POST", "$batch", data=body,
                               headers={"Content-Type": content_type})
    assert answer.status == 400
    assert answer.error["code"] == "0x80060888"
