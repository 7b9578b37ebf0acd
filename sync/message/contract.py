"""The message contract: what the planner and upstream producers put on the batches queue.

Words: a *message* is one queue message of records (``Message``; its id travels as ``batch_id``
and the queue is ``sync-batches``, names kept from version 1); "batch" alone means the OData
``$batch`` request (``sync.clients.odata_batch``); a *message run* is one message being carried out
(``sync.work.message_run``).

On the wire a message is UTF-8 JSON, base64-encoded (producers use ``TextBase64EncodePolicy``;
the worker decodes it itself so that a message that is not base64 reaches the poison queue with
its reason). Version 4 (``schemas/batch-message.v4.json``)::

    {"version": 4, "batch_id": "plan-2026-11-22-000001", "attempt": 0, "definition": "default",
     "lane": {"environment": "default", "identity": "default"},
     "records": [{"id": "5b1c...", "input": "https://www.contoso.com",
                  "etag": "W/\"1234\"", "current": {"numberofemployees": 120}}]}

``input`` is the enrichment input, e.g. the record's website. ``attempt`` counts how many times
the unfinished part of this batch went back to the queue (a throttle, an open circuit, a service
fault). A record sent back after failing carries its ``history`` (strikes, attempts, first and
last seen, last fault), so a fresh copy of the message keeps what was learnt without counting
dequeues. ``etag`` and ``current`` are what the planner read: the record's version and the values
its mapped columns held, so the worker can leave unchanged records alone, refuse to overwrite a
person's later edit, and keep the values it replaces. ``definition`` names the sync definition
(``default`` when left out). Version 4 adds ``lane`` (``{"environment": "prod", "identity":
"sync1"}``): the identity and environment to write through, chosen by the planner; left out,
the worker picks one of the definition's lanes. Versions 1 (no ``history``), 2 (no ``etag``,
``current``, ``definition``) and 3 (no ``lane``) are still accepted.

A record that breaks the contract on its own (an input too long or not text, an id that is not
a GUID, a field of the wrong type) does not condemn its siblings: ``read_message`` sets it apart
(``Message.refused``, with the reason) and the worker dead-letters it alone as ``unusable_input``
(or, when it names no record, sends it alone to the poison queue). ``decode_message`` is the
strict reading the JSON schema states: one such record makes the whole message invalid.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

from sync.config.lanes import NAME
from sync.failures.errors import ContractError

CONTRACT_VERSION: Final = 4
SUPPORTED_VERSIONS: Final = (1, 2, 3, 4)
DEFAULT_DEFINITION: Final = "default"
MAX_QUEUE_MESSAGE_BYTES: Final = 64 * 1024
"""Azure Storage Queues' limit on one message, measured after base64 encoding."""
NEVER_EXPIRE: Final = -1
"""Time-to-live of every message the app sends: a queued record never silently expires."""
MAX_RECORDS_PER_MESSAGE: Final = 1000
MAX_INPUT_CHARS: Final = 2048
_BATCH_ID: Final = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_GUID: Final = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-"
                          r"[0-9A-Fa-f]{12}")
"""A record id, as schemas/batch-message.v2.json spells it (matched whole)."""
_DEFINITION_NAME: Final = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
"""As schemas/batch-message.v3.json and v4 publish it (63 characters: wider than the settings'
``NAME``, so a message may name a definition the deployment cannot have: the worker refuses
it as unknown)."""
_COLUMN_NAME: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
_MESSAGE_KEYS: Final = {1: frozenset({"version", "batch_id", "attempt", "records"}),
                        2: frozenset({"version", "batch_id", "attempt", "records"}),
                        3: frozenset({"version", "batch_id", "attempt", "records", "definition"}),
                        4: frozenset({"version", "batch_id", "attempt", "records", "definition",
                                      "lane", "read_at"})}
_RECORD_KEYS: Final = {1: frozenset({"id", "input"}), 2: frozenset({"id", "input", "history"}),
                       3: frozenset({"id", "input", "history", "etag", "current"}),
                       4: frozenset({"id", "input", "history", "etag", "current", "enriched"})}
MAX_ETAG_CHARS: Final = 128
MAX_EPOCH_S: Final = 32_503_680_000
"""Year 3000: a read time after it is not one."""
MAX_CURRENT_COLUMNS: Final = 50
MAX_CURRENT_TEXT_CHARS: Final = 4000
Scalar = str | int | float | bool | None
"""A column value as the Web API reads and writes it."""
_HISTORY_KEYS: Final = frozenset({"strikes", "attempts", "first_seen", "last_seen",
                                  "last_fault", "laters", "errors"})
MAX_FAULT_CHARS: Final = 300


@dataclass(frozen=True, slots=True)
class RecordHistory:
    """What earlier deliveries learnt about one record that failed."""

    strikes: int = 0
    """Deliveries on which it met an ambiguous fault while its siblings succeeded."""
    attempts: int = 0
    """Requests carrying it that failed, over every delivery."""
    first_seen: str = ""
    last_seen: str = ""
    last_fault: str = ""
    laters: int = 0
    """Times the enrichment API answered "later" (202, 201): not failures; bounded by the
    spec's ``max_laters``."""
    errors: int = 0
    """Deliveries an unexpected error (a bug) stopped while carrying it; bounded by
    ``SYNC_BUG_ATTEMPTS``, then the record goes to the poison queue."""

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"strikes": self.strikes, "attempts": self.attempts,
                                "first_seen": self.first_seen, "last_seen": self.last_seen,
                                "last_fault": self.last_fault[:MAX_FAULT_CHARS]}
        if self.laters:
            wire["laters"] = self.laters
        if self.errors:
            wire["errors"] = self.errors
        return wire


@dataclass(frozen=True, slots=True)
class RecordRef:
    """One record to enrich: its primary key, its enrichment input, what befell it so far."""

    id: str
    input: str
    history: RecordHistory | None = None
    etag: str | None = None
    """The record's version when it was read (``@odata.etag``); None when not read."""
    current: Mapping[str, Scalar] | None = field(default=None, hash=False)
    """The mapped columns' values when it was read; None when not read."""
    enriched: Mapping[str, Scalar] | None = field(default=None, hash=False)
    """The mapped columns' values its enrichment answered in this run (the worker sends them
    with a record it puts back on the queue, so the next delivery does not pay for them
    again); None when not enriched yet."""

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"id": self.id, "input": self.input}
        if self.history is not None:
            wire["history"] = self.history.to_wire()
        if self.etag is not None:
            wire["etag"] = self.etag
        if self.current is not None:
            wire["current"] = dict(self.current)
        if self.enriched is not None:
            wire["enriched"] = dict(self.enriched)
        return wire


@dataclass(frozen=True, slots=True)
class Refused:
    """A record of a message that breaks the contract on its own, set apart with the reason."""

    where: str
    """Its place in the message: ``records[3]``."""
    reason: str
    id: str | None
    """Its id (lower case) when it names a GUID; None when it names no record."""
    item: Any = field(hash=False, compare=False)
    """The record as the message held it (echoed by its dead letter or poison entry)."""

    @property
    def input(self) -> str:
        """Its input as text, for the dead letter ("" when it has none)."""
        value = self.item.get("input") if isinstance(self.item, dict) else None
        if value is None:
            return ""
        return value if isinstance(value, str) else json.dumps(value)


@dataclass(frozen=True, slots=True)
class Message:
    """A validated message of records."""

    batch_id: str
    records: tuple[RecordRef, ...]
    attempt: int = 0
    definition: str = DEFAULT_DEFINITION
    lane: tuple[str, str] | None = None
    """(environment, identity) to write through; None: the worker picks one of the
    definition's lanes."""
    refused: tuple[Refused, ...] = ()
    """Records that broke the contract on their own (``read_message``); never on the wire."""
    read_at: float | None = None
    """When the planner read the records' ETags and values (epoch seconds, its clock); None for
    a producer's message. A bulk write of a fresh read needs no check of its own
    (``bulk_etag_check_after_s``)."""

    def to_json(self) -> str:
        """The message as compact JSON text (the queue client adds the base64 layer)."""
        body: dict[str, Any] = {"version": CONTRACT_VERSION, "batch_id": self.batch_id,
                                "attempt": self.attempt, "definition": self.definition}
        if self.lane is not None:
            body["lane"] = {"environment": self.lane[0], "identity": self.lane[1]}
        if self.read_at is not None:
            body["read_at"] = round(self.read_at, 3)
        body["records"] = [r.to_wire() for r in self.records]
        return json.dumps(body, separators=(",", ":"))


ENVELOPE_BYTES: Final = 512
"""More than the JSON around the records can take: version, a 128-character batch id, attempt,
a 63-character definition name, a lane of two 32-character names, the read's time."""
RECORDS_BUDGET_BYTES: Final = MAX_QUEUE_MESSAGE_BYTES * 3 // 4 - ENVELOPE_BYTES
"""What the records' JSON may take so that the whole message fits after base64."""


def record_size_bytes(record: RecordRef) -> int:
    """What one record takes in a message's JSON, with the comma after it."""
    return len(json.dumps(record.to_wire(), separators=(",", ":")).encode("utf-8")) + 1


def fitted(record: RecordRef) -> RecordRef:
    """``record`` as it fits a message alone: as it is, else without the values read
    (``current``: the worker then writes it without comparing, as a producer's record).

    A record that passes the contract always fits without them (2,048 characters of input at
    12 bytes each when JSON escapes them, a 128-character ETag and a history of 300-character
    texts take under 40,000 of the 48,672 bytes); ValueError for one that does not."""
    if record_size_bytes(record) <= RECORDS_BUDGET_BYTES:
        return record
    lighter = replace(record, current=None)
    size_bytes = record_size_bytes(lighter)
    if size_bytes > RECORDS_BUDGET_BYTES:
        raise ValueError(f"record {record.id} takes {size_bytes} bytes without the values read; "
                         f"a message holds {RECORDS_BUDGET_BYTES} (it breaks the contract)")
    return lighter


def fitting_groups(records: Iterable[RecordRef], max_count: int) -> Iterator[tuple[RecordRef, ...]]:
    """Consecutive groups of at most ``max_count`` records whose message fits the queue; a
    record too large alone goes without its values read (``fitted``), never over the budget."""
    group: list[RecordRef] = []
    used = 0
    for record in map(fitted, records):
        size = record_size_bytes(record)
        if group and (len(group) == max_count or used + size > RECORDS_BUDGET_BYTES):
            yield tuple(group)
            group, used = [], 0
        group.append(record)
        used += size
    if group:
        yield tuple(group)


def encoded_size_bytes(text: str) -> int:
    """Size of ``text`` on the queue after UTF-8 and base64 encoding."""
    raw = len(text.encode("utf-8"))
    return 4 * ((raw + 2) // 3)


def decode_message(body: bytes) -> Message:
    """Parse and validate a message body (already base64-decoded) strictly, as the JSON schema
    does: ContractError says why not, a record that breaks the contract included."""
    message = read_message(body)
    if message.refused:
        raise ContractError(message.refused[0].reason)
    return message


def read_message(body: bytes) -> Message:
    """Parse and validate a message body (already base64-decoded): ContractError when the
    message itself breaks the contract; the records that break it alone are set apart in
    ``Message.refused``."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ContractError(f"message is not UTF-8 text (byte {error.start})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ContractError(f"message is not JSON: {error.msg} at char {error.pos}") from None
    return _message(data)


def _message(data: Any) -> Message:
    if not isinstance(data, dict):
        raise ContractError("message must be a JSON object")
    version = data.get("version")
    if version not in SUPPORTED_VERSIONS or isinstance(version, bool):
        supported = ", ".join(map(str, SUPPORTED_VERSIONS))
        raise ContractError(f"unknown contract version {version!r}; supported: {supported}")
    _no_unknown_keys(data, _MESSAGE_KEYS[version], "message")
    batch_id = data.get("batch_id")
    if not isinstance(batch_id, str) or not _BATCH_ID.match(batch_id):
        raise ContractError("batch_id must be 1-128 characters of A-Z a-z 0-9 . _ : -")
    attempt = data.get("attempt", 0)
    if not isinstance(attempt, int) or isinstance(attempt, bool) or attempt < 0:
        raise ContractError("attempt must be a non-negative integer")
    definition = data.get("definition", DEFAULT_DEFINITION)
    if not isinstance(definition, str) or not _DEFINITION_NAME.fullmatch(definition):
        raise ContractError("definition must be 1-63 characters of a-z 0-9 -, starting with a "
                            "letter")
    records, refused = _records(data.get("records"), version)
    return Message(batch_id=batch_id, records=records, attempt=attempt, definition=definition,
                   lane=_lane(data.get("lane")), refused=refused,
                   read_at=_read_at(data.get("read_at")))


def _read_at(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not 0 <= value < MAX_EPOCH_S:
        raise ContractError("read_at must be a time in epoch seconds")
    return float(value)


def _lane(value: Any) -> tuple[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"environment", "identity"}:
        raise ContractError("lane must be an object with environment and identity")
    names = (value["environment"], value["identity"])
    if not all(isinstance(name, str) and NAME.fullmatch(name) for name in names):
        raise ContractError("lane.environment and lane.identity must be 1-32 characters of "
                            "a-z 0-9 -, starting with a letter")
    return names


def _records(items: Any, version: int) -> tuple[tuple[RecordRef, ...], tuple[Refused, ...]]:
    if not isinstance(items, list) or not items:
        raise ContractError("records must be a non-empty list")
    if len(items) > MAX_RECORDS_PER_MESSAGE:
        raise ContractError(f"records holds {len(items)} items; at most "
                            f"{MAX_RECORDS_PER_MESSAGE} per message")
    records: list[RecordRef] = []
    refused: list[Refused] = []
    for index, item in enumerate(items):
        where = f"records[{index}]"
        try:
            records.append(record_from(item, where, version))
        except ContractError as error:
            refused.append(Refused(where, error.reason, _id_of(item), item))
    ids = [r.id for r in records] + [r.id for r in refused if r.id is not None]
    if len(set(ids)) != len(ids):
        raise ContractError("records must not repeat an id")
    return tuple(records), tuple(refused)


def _id_of(item: Any) -> str | None:
    """The id a record that broke the contract names, when it is a GUID."""
    record_id = item.get("id") if isinstance(item, dict) else None
    return record_id.lower() if isinstance(record_id, str) and _is_guid(record_id) else None


def input_problem(value: Any) -> str | None:
    """Why ``value`` cannot be a record's input (None when it can): it must be text of 1 to
    ``MAX_INPUT_CHARS`` characters that UTF-8 can encode (no lone surrogate)."""
    if not isinstance(value, str):
        return f"input must be text, not {_json_type(value)}"
    if not 0 < len(value) <= MAX_INPUT_CHARS:
        return (f"input must be a string of 1-{MAX_INPUT_CHARS} characters; it holds "
                f"{len(value)}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        return f"input is not text: a lone surrogate at character {error.start}"
    return None


def _json_type(value: Any) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", list: "a list",
             dict: "an object", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def record_from(item: Any, where: str, version: int = CONTRACT_VERSION) -> RecordRef:
    """A validated record from its JSON form; ContractError names ``where`` it failed."""
    if not isinstance(item, dict):
        raise ContractError(f"{where} must be an object")
    _no_unknown_keys(item, _RECORD_KEYS[version], where)
    record_id, value = item.get("id"), item.get("input")
    if not isinstance(record_id, str) or not _is_guid(record_id):
        raise ContractError(f"{where}.id must be a GUID")
    history = _history(item["history"], f"{where}.history") if "history" in item else None
    return RecordRef(id=record_id.lower(), input=_input(value, where), history=history,
                     etag=_etag(item.get("etag"), f"{where}.etag"),
                     current=_current(item.get("current"), f"{where}.current"),
                     enriched=_current(item.get("enriched"), f"{where}.enriched"))


def _input(value: Any, where: str) -> str:
    problem = input_problem(value)
    if problem is not None:
        raise ContractError(f"{where}.{problem}")
    return str(value)


def _etag(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ETAG_CHARS:
        raise ContractError(f"{where} must be a string of 1-{MAX_ETAG_CHARS} characters")
    return value


def _current(value: Any, where: str) -> dict[str, Scalar] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or len(value) > MAX_CURRENT_COLUMNS:
        raise ContractError(f"{where} must be an object of at most {MAX_CURRENT_COLUMNS} columns")
    for column, cell in value.items():
        if not _COLUMN_NAME.match(column):
            raise ContractError(f"{where}: {column[:100]!r} is not a column name")
        if not _is_scalar(cell):
            raise ContractError(f"{where}.{column} must be a string of at most "
                                f"{MAX_CURRENT_TEXT_CHARS} characters, a number, true, false "
                                "or null")
    return value


def columns_problem(values: Mapping[str, Any]) -> str | None:
    """Why ``values`` cannot travel as a record's ``current`` or ``enriched`` (None when they
    can): at most 50 columns, each a column name with a scalar."""
    try:
        _current(dict(values), "values")
    except ContractError as error:
        return error.reason
    return None


def _is_scalar(cell: Any) -> bool:
    if isinstance(cell, str):
        return len(cell) <= MAX_CURRENT_TEXT_CHARS
    return cell is None or isinstance(cell, (bool, int, float))


def _history(item: Any, where: str) -> RecordHistory:
    if not isinstance(item, dict):
        raise ContractError(f"{where} must be an object")
    _no_unknown_keys(item, _HISTORY_KEYS, where)
    counts = {name: item.get(name, 0) for name in ("strikes", "attempts", "laters", "errors")}
    for name, value in counts.items():
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 1_000_000:
            raise ContractError(f"{where}.{name} must be a non-negative integer")
    texts = {name: item.get(name, "") for name in ("first_seen", "last_seen", "last_fault")}
    for name, text in texts.items():
        if not isinstance(text, str) or len(text) > MAX_FAULT_CHARS:
            raise ContractError(f"{where}.{name} must be a string of at most "
                                f"{MAX_FAULT_CHARS} characters")
    return RecordHistory(strikes=counts["strikes"], attempts=counts["attempts"],
                         laters=counts["laters"], errors=counts["errors"], **texts)


def _no_unknown_keys(data: dict[str, Any], allowed: frozenset[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ContractError(f"{where} has unknown fields: {', '.join(unknown)}")


def _is_guid(text: str) -> bool:
    return _GUID.fullmatch(text) is not None
