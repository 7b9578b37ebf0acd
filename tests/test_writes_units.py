"""The pure parts of writing safely: what a write sets after a change since the read, the
definition's write switches and the headers they send, request usage arithmetic and its ledger
round trip, the bulk-check's emulator seeding."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sync.clients.dataverse import Version
from sync.config.table_definition import parse_definition
from sync.failures.errors import ConfigError
from sync.local.emulators.webapi.seeding import enrich_share
from sync.local.emulators.webapi.store import accounts
from sync.local.verify import expected_columns
from sync.message.contract import RecordRef
from sync.message.counts import MessageCounts, RequestUsage
from sync.state.ledger_rows import counts_from, message_entity
from sync.state.manifests import PlanManifest, manifest_from, plan_entity
from sync.work.conflicts import edited_columns, input_now, inputs_changed, to_write
from sync.work.write_requests import fields_of, if_match

READ = {"numberofemployees": 10, "address1_country": "France", "description": "old"}
NEW = {"numberofemployees": 120, "address1_country": "Spain", "description": "new"}


@pytest.mark.parametrize(("now", "policy", "expected"), [
    (READ, "keep", NEW),
    ({**READ, "address1_country": "Italy"}, "keep",
     {"numberofemployees": 120, "description": "new"}),
    ({**READ, "address1_country": "Italy"}, "overwrite", NEW),
    ({**READ, "description": ""}, "keep", {"numberofemployees": 120, "address1_country": "Spain"}),
    ({**READ, "numberofemployees": 10.0}, "keep", NEW),  # same value, another JSON type
], ids=["nobody edited", "a person's column kept", "overwritten", "cleared is an edit",
        "10 equals 10.0"])
def test_the_edit_policy_decides_the_columns_a_person_changed(
        now: dict[str, Any], policy: str, expected: dict[str, Any]) -> None:
    assert to_write(READ, now, NEW, policy) == expected


def test_a_record_read_without_values_has_no_edits_to_tell() -> None:
    assert edited_columns(None, {"description": "x"}, NEW) == set()
    assert to_write(None, {"description": "x"}, NEW, "keep") == NEW


@pytest.mark.parametrize(("value", "expected"), [
    (" https://a.example ", "https://a.example"), ("", None), (None, None), (3, None)])
def test_the_input_read_again(value: Any, expected: str | None) -> None:
    assert input_now(Version('W/"1"', {"websiteurl": value}), "websiteurl") == expected


ID = "00000000-0000-4000-8000-000000000009"


@pytest.mark.parametrize(("before", "now", "changed"), [
    (RecordRef(ID, "Contoso", current={"city": "Lyon"}),
     RecordRef(ID, "Contoso", current={"city": "Lyon"}), False),
    (RecordRef(ID, "Contoso", current={"city": "Lyon"}),
     RecordRef(ID, "Contoso", current={"city": "Nice"}), True),  # another input the API reads
    (RecordRef(ID, "Contoso", current={"city": "Lyon"}),
     RecordRef(ID, "Fabrikam", current={"city": "Lyon"}), True),
    (RecordRef(ID, "Contoso"), RecordRef(ID, "Contoso", current={"city": "Nice"}), False),
], ids=["nothing", "another input", "the input", "not read before"])
def test_a_record_read_again_is_enriched_again_when_an_input_changed(
        before: RecordRef, now: RecordRef, changed: bool) -> None:
    assert inputs_changed(before, now, ("city",)) is changed


def test_a_write_sets_only_what_changed_and_carries_the_read_etag() -> None:
    record = RecordRef("00000000-0000-4000-8000-000000000001", "https://a.example",
                       etag='W/"7"', current={**READ, "description": "new"})
    assert fields_of((record, NEW)) == {"numberofemployees": 120, "address1_country": "Spain"}
    assert if_match(record) == 'W/"7"'
    producer = RecordRef(record.id, record.input)
    assert fields_of((producer, NEW)) == NEW
    assert if_match(producer) == "*"


@pytest.mark.parametrize(("fields", "headers"), [
    ({}, {}),
    ({"bypass_business_logic": True},
     {"MSCRM.BypassBusinessLogicExecution": "CustomSync,CustomAsync"}),
    ({"bypass_business_logic": ["CustomAsync"]},
     {"MSCRM.BypassBusinessLogicExecution": "CustomAsync"}),
    ({"bypass_business_logic": ["CustomAsync", "CustomSync"],
      "suppress_duplicate_detection": True},
     {"MSCRM.BypassBusinessLogicExecution": "CustomSync,CustomAsync",
      "MSCRM.SuppressDuplicateDetection": "true"}),
])
def test_the_bulk_job_options_become_headers(fields: dict[str, Any],
                                             headers: dict[str, str]) -> None:
    assert parse_definition(json.dumps(fields)).write_headers == headers


def test_the_defaults_keep_todays_behaviour_with_the_safe_policy() -> None:
    definition = parse_definition("")
    assert (definition.edit_policy, definition.bypass_business_logic,
            definition.suppress_duplicate_detection, definition.bulk_etag_check,
            definition.bulk_etag_check_after_s) == ("keep", (), False, True, 30.0)


@pytest.mark.parametrize(("fields", "named"), [
    ({"edit_policy": "merge"}, "edit_policy"),
    ({"bypass_business_logic": ["Plugins"]}, "bypass_business_logic"),
    ({"bypass_business_logic": "CustomSync"}, "bypass_business_logic"),
    ({"suppress_duplicate_detection": "yes"}, "suppress_duplicate_detection"),
    ({"bulk_etag_check": 1}, "bulk_etag_check"),
    ({"bulk_etag_check_after_s": -1}, "bulk_etag_check_after_s"),
    ({"bulk_etag_check_after_s": "30"}, "bulk_etag_check_after_s"),
    ({"bulk_etag_check_after_s": 7200}, "bulk_etag_check_after_s"),
])
def test_a_bad_write_switch_is_refused_by_name(fields: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        parse_definition(json.dumps(fields))


def test_request_usage_counts_first_sends_and_re_sends() -> None:
    usage = RequestUsage()
    for kind, retry in [("read", False), ("write", False), ("write", True), ("read", True),
                        ("write", False)]:
        usage.count(kind, retry=retry)
    assert (usage.reads, usage.writes, usage.retries, usage.total) == (1, 2, 2, 5)


def test_unchanged_and_usage_round_trip_through_the_ledger_rows() -> None:
    counts = MessageCounts(written=3, unchanged=27, requests=RequestUsage(2, 3, 1))
    again = counts_from(message_entity("b-1", 0, counts))
    assert (again.unchanged, again.requests, again.done) == (27, RequestUsage(2, 3, 1), 30)
    total = MessageCounts()
    total.add(again)
    total.add(again)
    assert (total.unchanged, total.requests.total) == (54, 12)
    manifest = PlanManifest("run-1", 30, 1, 1, complete=True, requests=RequestUsage(reads=4,
                                                                                    retries=1))
    assert manifest_from(plan_entity(manifest)).requests == RequestUsage(reads=4, retries=1)


def test_the_emulator_seeds_a_share_of_accounts_with_their_enriched_values() -> None:
    table = accounts(200, seed=5)
    count = enrich_share(table, 0.9, seed=5)
    definition = parse_definition("")

    def holds(row: dict[str, Any]) -> bool:
        expected = expected_columns(row.get("websiteurl"), definition)
        return expected is not None and all(row.get(k) == v for k, v in expected.items())

    held = sum(holds(row) for row in table.rows.values())
    assert held == count
    assert 160 <= count <= 195
