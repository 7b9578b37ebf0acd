"""``$batch``: read the multipart/mixed request, run its operations in order, answer
multipart/mixed. Changesets are atomic and answer per ``Content-ID``; without
``Prefer: odata.continue-on-error`` processing stops at the first failure."""

from __future__ import annotations

import email.parser
import email.policy
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from sync.local.emulators.webapi.odata import ODataError
from sync.local.emulators.webapi.ops import API, Answer

CRLF = "\r\n"
STATUS_TEXT = {200: "OK", 201: "Created", 204: "No Content", 400: "Bad Request",
               404: "Not Found", 405: "Method Not Allowed", 412: "Precondition Failed",
               429: "Too Many Requests", 500: "Internal Server Error"}


@dataclass
class Request:
    """One operation inside a batch."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    content_id: str | None = None


@dataclass
class Changeset:
    """Operations that succeed or fail together."""

    requests: list[Request] = field(default_factory=list)


Item = Request | Changeset
Execute = Callable[[Request], Answer]


def parse_batch(content_type: str, body: bytes) -> list[Item]:
    """The batch's items in order; ODataError when it is not a valid batch."""
    head = f"Content-Type: {content_type}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise ODataError(400, "0x80060888", "A $batch body must be multipart/mixed with a "
                                            "boundary.")
    items: list[Item] = []
    for part in _parts(message):
        if part.is_multipart():
            items.append(Changeset([_request(sub) for sub in _parts(part)]))
        else:
            items.append(_request(part))
    return items


def count_operations(items: list[Item]) -> int:
    return sum(len(i.requests) if isinstance(i, Changeset) else 1 for i in items)


def _parts(message: Message) -> list[Message]:
    payload = message.get_payload()
    return [p for p in payload if isinstance(p, Message)] if isinstance(payload, list) else []


def _request(part: Message) -> Request:
    raw = part.get_payload(decode=True)
    if not isinstance(raw, bytes):
        raise ODataError(400, "0x80060888", "A $batch part has no HTTP request.")
    head, _, body = raw.replace(b"\r\n", b"\n").partition(b"\n\n")
    request_line, *lines = head.decode("utf-8", "replace").split("\n")
    try:
        method, target, _ = request_line.split(" ", 2)
    except ValueError:
        raise ODataError(400, "0x80060888", f"Bad request line {request_line!r}.") from None
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip()] = value.strip()
    url = urlsplit(target)
    path = url.path.split(API, 1)[1] if API in url.path else url.path.lstrip("/")
    text = body.strip()
    try:
        parsed = json.loads(text) if text else None
    except json.JSONDecodeError:
        raise ODataError(400, "0x80060888", "A $batch part's body is not JSON.") from None
    return Request(method.upper(), path, dict(parse_qsl(url.query)), headers, parsed,
                   part.get("Content-ID"))


def run_batch(items: list[Item], execute: Execute, continue_on_error: bool,
              atomic: Callable[[Callable[[], list[tuple[Request, Answer]]]],
                               list[tuple[Request, Answer]]]) -> list[list[tuple[Request,
                                                                                   Answer]]]:
    """Answers grouped as the items were: a list per changeset, one element otherwise."""
    answered: list[list[tuple[Request, Answer]]] = []
    for item in items:
        if isinstance(item, Changeset):
            group = atomic(lambda item=item: _changeset(item, execute))  # type: ignore[misc]
        else:
            group = [(item, _safely(execute, item))]
        answered.append(group)
        failed = any(answer.status >= 400 for _, answer in group)
        if failed and not continue_on_error:
            break
    return answered


def _changeset(changeset: Changeset, execute: Execute) -> list[tuple[Request, Answer]]:
    results = []
    for request in changeset.requests:
        if request.method == "GET":
            raise ODataError(400, "0x80060888", "A changeset cannot contain a GET.")
        answer = execute(request)
        results.append((request, answer))
    return results


def _safely(execute: Execute, request: Request) -> Answer:
    try:
        return execute(request)
    except ODataError as error:
        return Answer(error.status, error.body())


def format_batch(answered: list[list[tuple[Request, Answer]]]) -> tuple[str, bytes]:
    """The response's Content-Type and body."""
    boundary = f"batchresponse_{uuid.uuid4()}"
    chunks = []
    for group in answered:
        if len(group) == 1 and group[0][0].content_id is None:
            chunks.append(f"--{boundary}{CRLF}{_part(*group[0])}")
        else:
            inner = f"changesetresponse_{uuid.uuid4()}"
            body = "".join(f"--{inner}{CRLF}{_part(r, a)}" for r, a in group)
            chunks.append(f"--{boundary}{CRLF}Content-Type: multipart/mixed; boundary={inner}"
                          f"{CRLF}{CRLF}{body}--{inner}--{CRLF}")
    text = "".join(chunks) + f"--{boundary}--{CRLF}"
    return f"multipart/mixed; boundary={boundary}", text.encode("utf-8")


def _part(request: Request, answer: Answer) -> str:
    lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if request.content_id is not None:
        lines.append(f"Content-ID: {request.content_id}")
    lines += ["", f"HTTP/1.1 {answer.status} {STATUS_TEXT.get(answer.status, 'Status')}",
              "OData-Version: 4.0"]
    payload = answer.payload().decode()
    if payload:
        lines.append("Content-Type: application/json; odata.metadata=minimal")
    lines += [f"{name}: {value}" for name, value in answer.headers.items()]
    return CRLF.join([*lines, "", payload]) + CRLF
