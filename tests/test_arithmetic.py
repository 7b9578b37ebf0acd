"""Pure pieces, table-driven: backoff, re-enqueue delay, chunking, filters, host.json parsing."""

from __future__ import annotations

from pathlib import Path

import pytest

from sync.clients.enrichment import columns_from, domain_of
from sync.config.settings import Settings
from sync.failures.errors import RecordFault
from sync.failures.retry import RetryPolicy
from sync.local.functions_index import QueueOptions, resolve, timespan_s
from sync.message.contract import RecordRef
from sync.plan.planner import batch_id, read_filter
from sync.work.chunks import chunk
from sync.work.requeue import REQUEUE_JITTER_MAX_S, delay_for, requeue_delay_s
from sync.work.writes import allowed_size, smaller

ROOT = Path(__file__).parents[1]


@pytest.mark.parametrize(("attempt", "rand", "expected_s"), [
    (1, 0.0, 0.25), (1, 1.0, 0.5), (2, 0.0, 0.5), (3, 1.0, 2.0), (10, 1.0, 8.0),
])
def test_backoff(attempt: int, rand: float, expected_s: float) -> None:
    assert RetryPolicy(3).backoff_s(attempt, rand) == pytest.approx(expected_s)


def test_backoff_refuses_attempt_zero() -> None:
    with pytest.raises(ValueError, match="attempt"):
        RetryPolicy(3).backoff_s(0, 0.5)


@pytest.mark.parametrize(("retry_after_s", "rand", "expected_s"), [
    (0.0, 0.0, 1), (2.0, 0.0, 2), (2.0, 0.5, 3), (2.5, 0.0, 3), (30.0, 0.99, 32),
])
def test_requeue_delay(retry_after_s: float, rand: float, expected_s: int) -> None:
    assert requeue_delay_s(retry_after_s, rand) == expected_s


@pytest.mark.parametrize(("wait_s", "expected_s"), [(0.0, 1), (5.0, 5), (4.2, 5), (30.0, 30)])
def test_a_throttle_sends_work_back_for_its_retry_after_exactly(wait_s: float,
                                                               expected_s: int) -> None:
    """Never before the Retry-After, and not a second after it: nothing spreads it."""
    assert {delay_for(wait_s, ["throttled", "throttled"]) for _ in range(200)} == {expected_s}


@pytest.mark.parametrize("reasons", [["circuit_open"], ["service_fault"],
                                     ["throttled", "service_fault"], ["deadline"]])
def test_any_other_wait_is_spread(reasons: list[str]) -> None:
    delays = {delay_for(5.0, reasons) for _ in range(400)}
    assert min(delays) >= 5
    assert max(delays) <= 5 + REQUEUE_JITTER_MAX_S
    assert len(delays) > 1


@pytest.mark.parametrize(("size", "count", "groups"), [
    (3, 0, []), (3, 2, [2]), (3, 3, [3]), (3, 7, [3, 3, 1]),
])
def test_chunk(size: int, count: int, groups: list[int]) -> None:
    records = [RecordRef(str(n), "x.com") for n in range(count)]
    assert [len(g) for g in chunk(records, size)] == groups


def test_batch_ids_are_deterministic_and_sortable() -> None:
    assert batch_id("run-x", 3, 7) == "run-x-p000003-007"
    assert batch_id("run-x", 3, 7) < batch_id("run-x", 3, 10) < batch_id("run-x", 4, 0)


def test_read_filter_combines_with_the_configured_filter() -> None:
    env = {"AzureWebJobsStorage": "x", "DATAVERSE_URL": "https://o.crm.dynamics.com",
           "ENRICHMENT_URL": "https://e", "ENRICHMENT_API_KEY": "k"}
    assert read_filter(Settings.from_env(env).definitions.first.table, None) == "websiteurl ne null"
    definition = '{"filter": "statecode eq 0", "change_tracking": false}'
    narrowed = Settings.from_env({**env, "SYNC_DEFINITION": definition})
    table = narrowed.definitions.first.table
    assert read_filter(table, None) == "(statecode eq 0) and websiteurl ne null"
    assert read_filter(table, "2026-11-21T02:00:00Z") == (
        "(statecode eq 0) and websiteurl ne null and modifiedon ge 2026-11-21T02:00:00Z")


@pytest.mark.parametrize(("website", "domain"), [
    ("https://www.contoso.com", "contoso.com"), ("http://Fabrikam.co.uk/about", "fabrikam.co.uk"),
    ("www.adatum.example", "adatum.example"), ("contoso.com", "contoso.com"),
])
def test_domain_of(website: str, domain: str) -> None:
    assert domain_of(website) == domain


@pytest.mark.parametrize("website", ["", "not a url", "https://localhost/", "http://[::1",
                                     "a b.com"])
def test_domain_of_refuses_non_domains(website: str) -> None:
    with pytest.raises(RecordFault, match="no domain"):
        domain_of(website)


def test_columns_from_profile() -> None:
    profile = {"employees": 12, "country": "Chile", "description": "d", "domain": "x.com"}
    mapping = {"numberofemployees": "employees", "address1_country": "country",
               "description": "description"}
    assert columns_from(profile, mapping) == {"numberofemployees": 12, "address1_country": "Chile",
                                     "description": "d"}


@pytest.mark.parametrize(("text", "seconds"), [
    ("00:00:00", 0.0), ("00:00:10", 10.0), ("00:01:00", 60.0), ("01:00:00.5", 3600.5)])
def test_timespan(text: str, seconds: float) -> None:
    assert timespan_s(text) == seconds


def test_host_json_queue_options() -> None:
    options = QueueOptions.from_host_json(ROOT / "host.json")
    assert (options.batch_size, options.new_batch_threshold, options.max_dequeue_count) == (
        16, 8, 5)
    assert options.message_encoding == "none"  # the worker decodes base64 itself


def test_host_json_defaults_are_the_hosts(tmp_path: Path) -> None:
    path = tmp_path / "host.json"
    path.write_text('{"version": "2.0"}')
    options = QueueOptions.from_host_json(path)
    assert options == QueueOptions()


def test_resolve_binding_expressions() -> None:
    assert resolve("%A%-%B%", {"A": "x", "B": "y"}) == "x-y"
    assert resolve("plain", {}) == "plain"


@pytest.mark.parametrize(("message", "allowed"), [
    ("The number of operations in a batch exceeded the limit. A maximum number of '1000' "
     "operations are allowed in a change set.", 1000),
    ("MaxBatchSize: 250", 250),
    ("Record not found", None),
])
def test_allowed_size_reads_too_many_operations_errors(message: str, allowed: int | None) -> None:
    assert allowed_size(RecordFault("dataverse", 400, "0x0", message)) == allowed


def test_allowed_size_needs_a_400() -> None:
    error = RecordFault("dataverse", 404, "0x0", "A maximum number of '1000' operations")
    assert allowed_size(error) is None


@pytest.mark.parametrize(("size", "allowed", "expected"), [
    (100, None, 50), (1500, 1000, 750), (1500, 500, 500), (1, None, 1), (3, None, 1),
])
def test_smaller(size: int, allowed: int | None, expected: int) -> None:
    assert smaller(size, allowed) == expected
