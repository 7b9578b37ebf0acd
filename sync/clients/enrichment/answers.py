"""Judging an enrichment answer under its spec: the columns it gives, "later", or the error.

The spec's statuses come first: ``no_match`` is the record's fault (``not_enrichable``: it is
dead-lettered and never retried), ``later`` an answer to come (``Later``: the record waits on
the queue and is asked again), ``out_of_credits`` a configuration fault (the circuit opens at
once: the line stops, nothing is dead-lettered). A 429 waits what the honoured rate-limit
headers say. Every other status is judged by the one triage (``sync.failures.triage``). A
success is read at the mapping's paths; what cannot be read is a malformed answer (a service
fault), never a column written wrong.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sync.clients.enrichment.limits import retry_after_s
from sync.clients.http import Answer, judged
from sync.config.enrichment_bulk import Bulk
from sync.config.enrichment_paths import MISSING, Step, parse_path, read_path
from sync.config.enrichment_spec import EnrichmentSpec
from sync.config.enrichment_templates import SERVICE
from sync.failures.errors import ConfigFault, RecordFault, ServiceFault, SyncError, Throttled
from sync.failures.triage import (
    DEFAULT_RETRY_AFTER_S,
    MALFORMED_ERRORS,
    classify_exception,
    error_code_and_message,
)

NO_MATCH: Final = "not_enrichable"
OUT_OF_CREDITS_HINT: Final = ("the enrichment API refuses calls: the account is out of credits "
                              "or over its quota. Top it up or wait for the quota to reset; "
                              "the records wait on the queue, none is dead-lettered")


@dataclass(frozen=True, slots=True)
class Later:
    """The API accepted the request and will answer later: ask again after ``retry_after_s``."""

    retry_after_s: float
    status: int = 202


Outcome = dict[str, Any] | Later
"""What a call gives one record: its columns, or "later"."""
ItemOutcome = dict[str, Any] | Later | SyncError
"""What a bulk call gives one record: its columns, "later", or its own error."""
Scalar = (str, int, float, bool, type(None))


@functools.lru_cache(maxsize=256)
def _path(text: str) -> tuple[Step, ...]:
    return parse_path(text, "mapping")


def columns_of(data: Any, mapping: Mapping[str, str], *, missing_is_null: bool,
               where: str) -> dict[str, Any]:
    """The Dataverse columns read from an answer at the mapping's paths; a path that is
    absent (unless ``missing_is_null``) or holds an object is a malformed answer."""
    columns: dict[str, Any] = {}
    for column, text in mapping.items():
        value = read_path(data, _path(text))
        if value is MISSING and missing_is_null:
            value = None
        if value is MISSING:
            raise ServiceFault(SERVICE, f"malformed answer to {where}: no {text}")
        if not isinstance(value, Scalar):
            raise ServiceFault(SERVICE, f"malformed answer to {where}: {text} is not a value")
        columns[column] = value
    return columns


def out_of_credits(status: int, body: bytes, where: str) -> ConfigFault:
    code, message = error_code_and_message(body)
    return ConfigFault(SERVICE, f"{status} on {where}: out of credits or quota", status, code,
                       message, hint=OUT_OF_CREDITS_HINT)


def no_match(status: int, body: bytes) -> RecordFault:
    code, message = error_code_and_message(body)
    return RecordFault(SERVICE, status, code, message or "no match", reason=NO_MATCH)


def later_of(spec: EnrichmentSpec, status: int, headers: Mapping[str, str],
             now_s: float) -> Later:
    """How long to wait before asking again: the answer's Retry-After when honoured, else the
    spec's delay."""
    asked = retry_after_s(headers, ("Retry-After",), now_s) \
        if "Retry-After" in spec.rate_limit_headers else None
    return Later(spec.later.delay_s if asked is None else asked, status)


def special(spec: EnrichmentSpec, answer: Answer, where: str, now_s: float) -> Later | None:
    """The spec's own statuses and 429: raise or answer Later; None for anything else."""
    status = answer.status
    if status in spec.no_match:
        raise no_match(status, answer.body)
    if status in spec.later.statuses:
        return later_of(spec, status, answer.headers, now_s)
    if status in spec.out_of_credits:
        raise out_of_credits(status, answer.body, where)
    if status == 429:
        code, _ = error_code_and_message(answer.body)
        found = retry_after_s(answer.headers, spec.rate_limit_headers, now_s)
        raise Throttled(SERVICE, DEFAULT_RETRY_AFTER_S if found is None else found, code)
    return None


def json_of(body: bytes, where: str) -> Any:
    try:
        return json.loads(body)
    except MALFORMED_ERRORS as error:
        raise classify_exception(SERVICE, error, where=where) from None


@dataclass(frozen=True, slots=True)
class Judge:
    """Judges the answers of one call under the spec, reading the mapping's paths."""

    spec: EnrichmentSpec
    mapping: Mapping[str, str]
    where: str
    now_s: float

    def single(self, answer: Answer) -> Outcome:
        """One record's answer: its columns or Later; raises the domain errors."""
        later = special(self.spec, answer, self.where, self.now_s)
        if later is not None:
            return later
        data = json_of(judged(SERVICE, answer, self.where).body, self.where)
        if not isinstance(data, dict):
            raise ServiceFault(SERVICE, f"malformed answer to {self.where}: not a JSON object")
        return self._columns(data)

    def bulk(self, bulk: Bulk, answer: Answer, keys: Sequence[str]) -> list[ItemOutcome]:
        """A bulk answer matched back to ``keys`` (one per record, in order). A refusal of
        the whole call raises; each record's own outcome is a value."""
        later = special(self.spec, answer, self.where, self.now_s)
        if later is not None:
            return [later for _ in keys]
        data = json_of(judged(SERVICE, answer, self.where).body, self.where)
        items = read_path(data, bulk.answers_path) if bulk.answers_path else data
        if not isinstance(items, list):
            raise ServiceFault(SERVICE, f"malformed answer to {self.where}: no list of answers")
        by_key = {str(read_path(item, bulk.key_path)): item for item in items}
        return [self._item(bulk, by_key.get(key)) for key in keys]

    def _columns(self, data: Any) -> dict[str, Any]:
        return columns_of(data, self.mapping, missing_is_null=self.spec.missing_is_null,
                          where=self.where)

    def _item(self, bulk: Bulk, item: Any) -> ItemOutcome:
        if item is None:
            return ServiceFault(SERVICE, f"malformed answer to {self.where}: no answer for a "
                                         "record")
        status = read_path(item, bulk.status_path) if bulk.status_path else 200
        if not isinstance(status, int) or isinstance(status, bool):
            return ServiceFault(SERVICE, f"malformed answer to {self.where}: a status is not "
                                         "a number")
        if status >= 300 or status in self.spec.later.statuses:
            return self._refused_item(status, json.dumps(item).encode())
        fields = read_path(item, bulk.data_path) if bulk.data_path else item
        try:
            return self._columns(fields)
        except ServiceFault as fault:
            return fault

    def _refused_item(self, status: int, body: bytes) -> ItemOutcome:
        """One record's own status in a bulk answer, as a single call's would be judged."""
        spec = self.spec
        if status in spec.out_of_credits:
            raise out_of_credits(status, body, self.where)
        if status in spec.no_match:
            return no_match(status, body)
        if status in spec.later.statuses:
            return Later(spec.later.delay_s, status)
        if status >= 500 or status == 429 or status < 400:
            return ServiceFault(SERVICE, f"{status} for a record in {self.where}", status)
        code, message = error_code_and_message(body)
        return RecordFault(SERVICE, status, code, message, reason="input_refused")
