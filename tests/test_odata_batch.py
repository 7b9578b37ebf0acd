"""The $batch wire format: a request a multipart parser reads back, a documented response."""

from __future__ import annotations

import email.parser
import email.policy
import json

from sync.clients.odata_batch import Operation, batch_request, parse_batch_response

API = "/api/data/v9.2/"
BOUNDARY = "batchresponse_156da4b8-cd2a-4ad1-8ef9-5e6cb9e6d7e1"
# The shape of the response in the Web API documentation: one success, one failure.
DOCUMENTED_RESPONSE = (
    f"--{BOUNDARY}\r\n"
    "Content-Type: application/http\r\n"
    "Content-Transfer-Encoding: binary\r\n"
    "\r\n"
    "HTTP/1.1 204 No Content\r\n"
    "OData-Version: 4.0\r\n"
    "OData-EntityId: https://org.example/api/data/v9.2/accounts(a479da64-df7a-eb11-a812-000d3a1a0f8d)\r\n"
    "\r\n"
    "\r\n"
    f"--{BOUNDARY}\r\n"
    "Content-Type: application/http\r\n"
    "Content-Transfer-Encoding: binary\r\n"
    "\r\n"
    "HTTP/1.1 404 Not Found\r\n"
    "Content-Type: application/json; odata.metadata=minimal\r\n"
    "OData-Version: 4.0\r\n"
    "\r\n"
    '{"error":{"code":"0x80040217","message":"account With Id = 1 Does Not Exist"}}\r\n'
    f"--{BOUNDARY}--\r\n"
).encode()


def test_request_reads_back_with_a_multipart_parser() -> None:
    ops = [Operation("PATCH", "accounts(1)", {"If-Match": "*"}, {"name": "A"}),
           Operation("PATCH", "accounts(2)", {"If-Match": "*"}, {"name": "B"})]
    content_type, body = batch_request(ops, API, boundary="batch_x")
    assert content_type == 'multipart/mixed; boundary="batch_x"'
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    parts = message.get_payload()
    assert isinstance(parts, list)
    assert len(parts) == 2
    first = parts[0]
    assert first.get_content_type() == "application/http"
    assert first["Content-Transfer-Encoding"] == "binary"
    lines = first.get_payload(decode=True).decode().split("\r\n")
    assert lines[0] == "PATCH /api/data/v9.2/accounts(1) HTTP/1.1"
    assert "If-Match: *" in lines
    assert "Content-Type: application/json" in lines
    assert json.loads(lines[lines.index("") + 1]) == {"name": "A"}


def test_documented_response_parses_in_order() -> None:
    results = parse_batch_response(f"multipart/mixed; boundary={BOUNDARY}",
                                   DOCUMENTED_RESPONSE)
    assert [r.status for r in results] == [204, 404]
    assert results[0].headers["OData-Version"] == "4.0"
    assert json.loads(results[1].body)["error"]["code"] == "0x80040217"


def test_changeset_parts_are_flattened() -> None:
    inner = "changesetresponse_1"
    body = (f"--{BOUNDARY}\r\n"
            f"Content-Type: multipart/mixed; boundary={inner}\r\n\r\n"
            f"--{inner}\r\nContent-Type: application/http\r\n"
            "Content-Transfer-Encoding: binary\r\nContent-ID: 1\r\n\r\n"
            "HTTP/1.1 204 No Content\r\n\r\n\r\n"
            f"--{inner}\r\nContent-Type: application/http\r\n"
            "Content-Transfer-Encoding: binary\r\nContent-ID: 2\r\n\r\n"
            "HTTP/1.1 204 No Content\r\n\r\n\r\n"
            f"--{inner}--\r\n"
            f"--{BOUNDARY}--\r\n").encode()
    results = parse_batch_response(f"multipart/mixed; boundary={BOUNDARY}", body)
    assert [r.status for r in results] == [204, 204]
