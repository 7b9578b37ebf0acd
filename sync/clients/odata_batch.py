"""The OData ``$batch`` wire format: build a multipart/mixed request, read its response.

Each operation travels as an ``application/http`` part outside any changeset, so with
``Prefer: odata.continue-on-error`` each one succeeds or fails on its own and the response holds
one part per operation, in order.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

CRLF = "\r\n"


@dataclass(frozen=True, slots=True)
class Operation:
    """One request inside a batch; ``path`` is relative to the Web API root."""

    method: str
    path: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class OperationResult:
    """One response inside a batch response."""

    status: int
    headers: Mapping[str, str]
    body: bytes


def batch_request(operations: Sequence[Operation], api_path: str,
                  boundary: str | None = None) -> tuple[str, bytes]:
    """The Content-Type header and the body of a ``$batch`` POST."""
    boundary = boundary or f"batch_{uuid.uuid4()}"
    parts = [_part(op, api_path, boundary) for op in operations]
    body = "".join(parts) + f"--{boundary}--{CRLF}"
    return f'multipart/mixed; boundary="{boundary}"', body.encode("utf-8")


def _part(operation: Operation, api_path: str, boundary: str) -> str:
    lines = [f"--{boundary}", "Content-Type: application/http",
             "Content-Transfer-Encoding: binary", "",
             f"{operation.method} {api_path}{operation.path} HTTP/1.1"]
    headers = dict(operation.headers)
    payload = ""
    if operation.body is not None:
        headers.setdefault("Content-Type", "application/json")
        payload = json.dumps(operation.body, separators=(",", ":"))
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines += ["", payload]
    return CRLF.join(lines) + CRLF


def parse_batch_response(content_type: str, body: bytes) -> list[OperationResult]:
    """The operations' responses, in order, changesets flattened."""
    head = f"Content-Type: {content_type}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise ValueError("a $batch response must be multipart/mixed")
    return [_result(part) for part in _leaves(message)]


def _leaves(message: Message) -> list[Message]:
    leaves: list[Message] = []
    for part in message.get_payload():
        if not isinstance(part, Message):
            continue
        if part.is_multipart():
            leaves += _leaves(part)
        else:
            leaves.append(part)
    return leaves


def _result(part: Message) -> OperationResult:
    raw = part.get_payload(decode=True)
    if not isinstance(raw, bytes):
        raise ValueError("a $batch response part has no body")
    head, _, payload = raw.replace(b"\r\n", b"\n").partition(b"\n\n")
    status_line, *header_lines = head.decode("utf-8", "replace").split("\n")
    status = int(status_line.split()[1])
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip()] = value.strip()
    return OperationResult(status=status, headers=headers, body=payload.strip())
