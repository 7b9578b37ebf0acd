"""Fault rules: what an emulator answers instead of the truth, to which requests, and when.

Pure decisions, no I/O: a ``Rule`` (parsed from JSON by ``fault_parsing.parse_rule``), a
``FaultBook`` holding the rules in force on an injected clock, and ``pick``, which chooses the
rule (if any) that hits one request. The HTTP modules apply what was picked.

A rule is *what*, *which* and *when*:

- what (``kind``): ``error`` (a status, error code, message and optional ``Retry-After``;
  ``preset`` fills them with a realistic answer), ``reset`` (the connection is dropped before
  any answer), ``not_json`` / ``truncated_json`` / ``missing_field`` (a 200 whose body is not
  JSON, is cut off mid-way, or lacks ``field``), ``commit_then_drop`` (the write is applied,
  then the connection is dropped before the answer);
- which (``hits``): ``all``, ``writes`` or ``reads``, narrowed by ``keys`` (record ids for the
  Web API, domains for the enrichment API): a keyed rule hits only what touches those keys;
- when: a ``rate`` (0..1, drawn from the emulator's seeded RNG) and an optional ``window_s``
  from when the rule was added (on the emulator's clock); without a window, until cleared.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from sync.clock import Clock

KINDS: Final = ("error", "reset", "not_json", "truncated_json", "missing_field",
                "commit_then_drop")
MALFORMED: Final = frozenset({"not_json", "truncated_json", "missing_field"})
HITS: Final = ("all", "writes", "reads")


@dataclass(frozen=True, slots=True)
class Rule:
    """One fault: what it answers, which requests it hits, how often and for how long."""

    kind: str
    name: str
    status: int = 0
    code: str = ""
    message: str = ""
    retry_after_s: float | None = None
    field: str = "value"
    hits: str = "all"
    keys: frozenset[str] = frozenset()
    rate: float = 1.0
    window_s: float | None = None

    def as_json(self, keys_field: str) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind, "name": self.name, "hits": self.hits,
                                "rate": self.rate, "window_s": self.window_s}
        if self.kind == "error":
            data.update(status=self.status, code=self.code, message=self.message,
                        retry_after_s=self.retry_after_s)
        if self.kind == "missing_field":
            data["field"] = self.field
        if self.keys:
            data[keys_field] = sorted(self.keys)
        return data


@dataclass(frozen=True, slots=True)
class Preset:
    """A realistic error answer a rule can name instead of spelling it out."""

    status: int
    code: str
    message: str
    retry_after_s: float | None = None


@dataclass(frozen=True, slots=True)
class Dialect:
    """What one emulator's rules may say: its presets, kinds, and what its keys are called."""

    presets: Mapping[str, Preset]
    keys_field: str
    kinds: tuple[str, ...] = KINDS
    hits: tuple[str, ...] = HITS
    default_field: str = "value"
    default_code: str = "0x80040216"
    default_message: str = "An unexpected error occurred."


_USER: Final = "00000000-0000-0000-0000-00000000beef"
DATAVERSE: Final = Dialect(keys_field="record_ids", presets={
    "401": Preset(401, "0x80072560", "The user is not a member of the organization."),
    "403-privilege": Preset(
        403, "0x80040220",
        f"Principal user (Id={_USER}, type=8, roleCount=1), is missing prvWriteAccount "
        "privilege (Id=a5d4a4b2-0000-0000-0000-000000000000) on OTC=1 for entity 'account'. "
        f"context.Caller={_USER}"),
    "403-record-access": Preset(
        403, "0x80040220",
        "SecLib::AccessCheckEx failed. Returned hr = -2147187962, ObjectID: "
        "6e1f0d4c-0000-4000-8000-000000000000, OwnerId: 7a2b9c1d-0000-0000-0000-000000000000, "
        f"OwnerIdType: 8 and CallingUser: {_USER}. ObjectTypeCode: 1, objectBusinessUnitId: "
        "9f3e2d1c-0000-0000-0000-000000000000, AccessRights: WriteAccess "),
    "500-plugin": Preset(
        500, "0x80040265",
        "An unexpected error occurred from ISV code. (ErrorType = ClientError) Unexpected "
        "exception from plug-in (Execute): Contoso.Plugins.AccountValidation: "
        "System.NullReferenceException: Object reference not set to an instance of an "
        "object."),
    "400-type": Preset(
        400, "0x80048d19",
        "Error identified in Payload provided by the user for Entity :'accounts', For more "
        "information on this error please follow this help link "
        "https://go.microsoft.com/fwlink/?linkid=2195293  ---->  InnerException : "
        "Microsoft.OData.ODataException: Cannot convert the literal 'Contoso' to the expected "
        "type 'Edm.Int32'. (property numberofemployees)"),
    "503": Preset(503, "0x80040216", "The service is temporarily unavailable. Try again "
                                     "later."),
    "429-requests": Preset(429, "0x80072322", "Number of requests exceeded the limit of 6000 "
                                              "over time window of 300 seconds.", 5.0),
    "429-execution-time": Preset(
        429, "0x80072321", "Combined execution time of incoming requests exceeded limit of "
                           "1,200,000 milliseconds over time window of 300 seconds. Decrease "
                           "number of concurrent requests or reduce the duration of requests "
                           "and try again later.", 5.0),
    "429-concurrency": Preset(429, "0x80072326", "Number of concurrent requests exceeded the "
                                                 "limit of 52.", 1.0),
})
"""The Web API's rules. The 503 code and message are an assumption (not documented).
``400-type`` is the refusal of a mapped column whose type the value does not fit
(``numberofemployees``, a whole number, given text): a rule with ``hits: writes`` refuses it
on every write, as a mapping the table refuses does."""


@dataclass(frozen=True, slots=True)
class Target:
    """What a request is, as far as rules care: ``writes``, ``reads`` or ``other``, and the
    keys it touches (record ids, domains)."""

    scope: str
    keys: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Entry:
    """A rule in force: its id and when it was added on the emulator's clock."""

    id: int
    rule: Rule
    added_s: float

    def live(self, now_s: float) -> bool:
        return self.rule.window_s is None or now_s < self.added_s + self.rule.window_s

    def as_json(self, keys_field: str, now_s: float) -> dict[str, Any]:
        left_s = None if self.rule.window_s is None else round(
            self.added_s + self.rule.window_s - now_s, 3)
        return {"id": self.id, **self.rule.as_json(keys_field), "window_left_s": left_s}


def hits(rule: Rule, target: Target, *, keyed: bool) -> bool:
    """Whether ``rule`` applies to ``target``: keyed rules only where keys are checked (and
    only when the target touches one of their keys), the others only where they are not."""
    if bool(rule.keys) != keyed:
        return False
    if rule.keys and not rule.keys & target.keys:
        return False
    return rule.hits in ("all", target.scope)


def pick(entries: Sequence[Entry], target: Target, now_s: float, draw: Callable[[], float],
         *, keyed: bool = False) -> Rule | None:
    """The first live rule that hits ``target`` and whose rate the draw falls under (one draw
    per matching rule with a rate below 1, so a seed repeats the same choices)."""
    for entry in entries:
        rule = entry.rule
        if not entry.live(now_s) or not hits(rule, target, keyed=keyed):
            continue
        if rule.rate >= 1.0 or draw() < rule.rate:
            return rule
    return None


@dataclass
class FaultBook:
    """The rules in force on one emulator, on its clock, with its seeded RNG."""

    clock: Clock
    rng: random.Random
    dialect: Dialect
    entries: list[Entry] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def add(self, rule: Rule) -> Entry:
        entry = Entry(next(self._ids), rule, self.clock.monotonic_s())
        self.entries.append(entry)
        return entry

    def live(self) -> list[Entry]:
        """The rules still in force (expired windows are forgotten)."""
        now_s = self.clock.monotonic_s()
        self.entries = [e for e in self.entries if e.live(now_s)]
        return list(self.entries)

    def clear(self) -> int:
        cleared, self.entries = len(self.entries), []
        return cleared

    def pick(self, target: Target, *, keyed: bool = False) -> Rule | None:
        if not self.entries:
            return None
        return pick(self.entries, target, self.clock.monotonic_s(), self.rng.random,
                    keyed=keyed)

    def listing(self) -> list[dict[str, Any]]:
        now_s = self.clock.monotonic_s()
        return [e.as_json(self.dialect.keys_field, now_s) for e in self.live()]
