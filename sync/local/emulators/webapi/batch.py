"""``$batch``: read the multipart/mixed request, run its operations in order, answer
multipart/mixed. Changesets are atomic and answer per ``Content-ID``; without
``Prefer: odata.continue-on-error`` processing stops at the first failure."""

from __future__ import annotations

import dataclasses
import email.parser
import email.policy
import json
import uuid
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from email.message import Message
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from multidict import CIMultiDict

from sync.local.emulators.webapi.odata import ODataError
from sync.local.emulators.webapi.ops import API, Answer

CRLF = "\r\n"


@dataclass
class Request:
    """One operation inside a batch."""

    method: str
    path: str
    query: dict[str, str]
    headers: Mapping[str, str]
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
    if not items:
        raise ODataError(400, "0x80060888", "The $batch request holds no operation.")
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
    method, _, rest = request_line.strip().partition(" ")
    target, _, version = rest.rpartition(" ")
    if not (method and target and version.startswith("HTTP/")):
        raise ODataError(400, "0x80060888", f"Bad request line {request_line!r}.")
    headers: CIMultiDict[str] = CIMultiDict()
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip()] = value.strip()
    url = urlsplit(target)
    path = unquote(url.path.split(API, 1)[1] if API in url.path else url.path.lstrip("/"))
    text = body.strip()
    try:
        parsed = json.loads(text) if text else None
    except json.JSONDecodeError:
        raise ODataError(400, "0x80060888", "A $batch part's body is not JSON.") from None
    return Request(method.upper(), path, dict(parse_qsl(url.query)), headers, parsed,
                   part.get("Content-ID"))


@dataclass
class Answered:
    """What one item of the batch answered: a changeset's answers, or one request's."""

    answers: list[tuple[Request, Answer]]
    changeset: bool = False

    @property
    def failed(self) -> Answer | None:
        return next((a for _, a in self.answers if a.status >= 400), None)


def run_batch(items: list[Item], execute: Execute, continue_on_error: bool,
              transaction: Callable[[], AbstractContextManager[object]]) -> list[Answered]:
    """Every item's answers in order; without ``continue_on_error`` the first failure ends
    the batch. A changeset runs inside ``transaction()``: all of it or, on the first failure,
    none of it, answered by that failure alone."""
    answered: list[Answered] = []
    for item in items:
        if isinstance(item, Changeset):
            answered.append(_changeset(item, execute, transaction))
        else:
            answered.append(Answered([(item, _safely(execute, item))]))
        if answered[-1].failed is not None and not continue_on_error:
            break
    return answered


def _changeset(changeset: Changeset, execute: Execute,
               transaction: Callable[[], AbstractContextManager[object]]) -> Answered:
    results: list[tuple[Request, Answer]] = []
    created: dict[str, str] = {}
    current: Request | None = None
    try:
        with transaction():
            for current in changeset.requests:
                if current.method == "GET":
                    raise ODataError(400, "0x80060888", "A changeset cannot contain a GET.")
                answer = execute(_resolved(current, created))
                results.append((current, answer))
                entity = answer.headers.get("OData-EntityId", "")
                if current.content_id is not None and API in entity:
                    created[current.content_id] = entity.split(API, 1)[1]
    except ODataError as error:
        failing = current or Request("POST", "", {}, {}, None)
        return Answered([(failing, Answer(error.status, error.body()))])
    return Answered(results, changeset=True)


def _resolved(request: Request, created: Mapping[str, str]) -> Request:
    """The request with a leading ``$n`` replaced by the record Content-ID n created."""
    if not request.path.startswith("$"):
        return request
    reference, slash, rest = request.path.partition("/")
    if reference[1:] not in created:
        raise ODataError(400, "0x80060888", f"Content-ID Reference: '{reference}' does not "
                                            "exist in the batch context.")
    return dataclasses.replace(request, path=created[reference[1:]] + slash + rest)


def _safely(execute: Execute, request: Request) -> Answer:
    try:
        return execute(request)
    except ODataError as error:
        return Answer(error.status, error.body())


def format_batch(answered: list[Answered]) -> tuple[str, bytes]:
    """The response's Content-Type and body."""
    boundary = f"batchresponse_{uuid.uuid4()}"
    chunks = []
    for item in answered:
        if not item.changeset:
            chunks += [f"--{boundary}{CRLF}{_part(r, a)}" for r, a in item.answers]
            continue
        inner = f"changesetresponse_{uuid.uuid4()}"
        body = "".join(f"--{inner}{CRLF}{_part(r, a)}" for r, a in item.answers)
        chunks.append(f"--{boundary}{CRLF}Content-Type: multipart/mixed; boundary={inner}"
                      f"{CRLF}{CRLF}{body}--{inner}--{CRLF}")
    text = "".join(chunks) + f"--{boundary}--{CRLF}"
    return f"multipart/mixed; boundary={boundary}", text.encode("utf-8")


def _part(request: Request, answer: Answer) -> str:
    lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if request.content_id is not None:
        lines.append(f"Content-ID: {request.content_id}")
    lines += ["", f"HTTP/1.1 {answer.status} {_reason(answer.status)}", "OData-Version: 4.0"]
    payload = answer.payload().decode()
    if payload:
        lines.append("Content-Type: application/json; odata.metadata=minimal")
    lines += [f"{name}: {value}" for name, value in answer.headers.items()]
    return CRLF.join([*lines, "", payload]) + CRLF


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Status"
