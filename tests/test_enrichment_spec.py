"""The enrichment spec as data: templates, answer paths, the rate-limit headers, answers judged,
the cache's key, and a definition's spec validated at load with errors that name the field.
Pure: no server (tests/test_enrichment_shapes.py asks the emulator)."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from sync.clients.enrichment import Later, default_spec
from sync.clients.enrichment.answers import Judge
from sync.clients.enrichment.calls import inputs_of, single_request
from sync.clients.enrichment.limits import retry_after_s, spent_for_s
from sync.clients.http import Answer
from sync.config.enrichment_paths import MISSING, parse_path, path_text, read_path
from sync.config.enrichment_spec import EnrichmentSpec, parse_enrichment
from sync.config.enrichment_templates import render, render_json
from sync.config.table_definition import parse_definition
from sync.failures.errors import ConfigError, ConfigFault, RecordFault, ServiceFault, Throttled
from sync.state.enrichment_cache import cache_key

EXAMPLES = Path(__file__).parents[1] / "examples" / "enrichment"
ROW = {"websiteurl": " https://www.Contoso.com/about ", "name": " Contoso Ltd ", "count": 7}


@pytest.mark.parametrize(("template", "rendered"), [
    ("{websiteurl|domain}", "contoso.com"),
    ("{name|trim|lower}", "contoso ltd"),
    ("/v1/{websiteurl|domain}/x", "/v1/contoso.com/x"),
    ("{name|trim} at {websiteurl|domain}", "Contoso Ltd at contoso.com"),
    ("no references", "no references"),
])
def test_templates_fill_from_any_column_through_the_transforms(template: str,
                                                                rendered: str) -> None:
    assert render(template, ROW) == rendered


def test_a_path_template_is_percent_encoded() -> None:
    assert render("/c/{name|trim}", ROW, encode=True) == "/c/Contoso%20Ltd"


def test_a_json_body_keeps_a_bare_references_type() -> None:
    body = {"website": "{websiteurl|domain}", "n": "{count}", "list": ["{name|trim}", 3]}
    assert render_json(body, ROW) == {"website": "contoso.com", "n": 7,
                                      "list": ["Contoso Ltd", 3]}


@pytest.mark.parametrize("row", [{}, {"websiteurl": "   "}, {"websiteurl": "not a site"}],
                         ids=["absent", "blank", "no domain"])
def test_a_record_that_cannot_fill_a_template_is_unusable_input(row: dict[str, Any]) -> None:
    with pytest.raises(RecordFault) as caught:
        render("{websiteurl|domain}", row)
    assert caught.value.reason == "unusable_input"


@pytest.mark.parametrize(("path", "value"), [
    ("employees", 12), ("$.metrics.employees", 5), ("offices[0].country", "Norway"),
    ("offices[-1].country", "Chile"), ("offices[2].country", MISSING),
    ("metrics.nope", MISSING), ("employees.deeper", MISSING), ("offices.country", MISSING),
])
def test_paths_read_nested_fields_and_arrays_by_index(path: str, value: Any) -> None:
    answer = {"employees": 12, "metrics": {"employees": 5},
              "offices": [{"country": "Norway"}, {"country": "Chile"}]}
    assert read_path(answer, parse_path(path, "p")) == value


def test_a_path_prints_as_written() -> None:
    assert path_text(parse_path("a.b[0][1].c", "p")) == "a.b[0][1].c"


@pytest.mark.parametrize("path", ["", "a..b", "a[x]", "a.[0]"])
def test_a_malformed_path_is_refused(path: str) -> None:
    with pytest.raises(ConfigError, match="where"):
        parse_path(path, "where")


NOW_S = 1_800_000_000.0


def headers(**values: str) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict({k.replace("_", "-"): v for k, v in values.items()}))


@pytest.mark.parametrize(("given", "honoured", "wait_s"), [
    ({"Retry_After": "7"}, ("Retry-After",), 7.0),
    ({"Retry_After": format_datetime(datetime.fromtimestamp(NOW_S + 30, UTC), usegmt=True)},
     ("Retry-After",), 30.0),
    ({"RateLimit_Reset": "12"}, ("RateLimit",), 12.0),
    ({"RateLimit": "limit=100, remaining=0, reset=9"}, ("RateLimit",), 9.0),
    ({"RateLimit": '"default";r=0;t=4'}, ("RateLimit",), 4.0),
    ({"X_RateLimit_Reset": str(int(NOW_S + 20))}, ("X-RateLimit",), 20.0),
    ({"X_RateLimit_Reset": "3", "Retry_After": "50"}, ("X-RateLimit", "Retry-After"), 3.0),
    ({"X_RateLimit_Reset": "3"}, ("Retry-After",), None),
    ({"Retry_After": "soon"}, ("Retry-After",), None),
], ids=["retry-after seconds", "retry-after date", "ratelimit-reset", "ratelimit combined",
        "ratelimit structured", "x-ratelimit unix time", "the first honoured wins",
        "unhonoured headers are ignored", "unreadable is ignored"])
def test_a_429_waits_what_the_honoured_headers_say(given: dict[str, str],
                                                   honoured: tuple[str, ...],
                                                   wait_s: float | None) -> None:
    assert retry_after_s(headers(**given), honoured, NOW_S) == wait_s


@pytest.mark.parametrize(("given", "spent_s"), [
    ({"RateLimit_Remaining": "0", "RateLimit_Reset": "5"}, 5.0),
    ({"RateLimit_Remaining": "3", "RateLimit_Reset": "5"}, None),
    ({"X_RateLimit_Remaining": "0", "X_RateLimit_Reset": "2"}, 2.0),
    ({"RateLimit_Remaining": "0"}, None),
])
def test_an_answer_that_spends_the_window_says_for_how_long(given: dict[str, str],
                                                            spent_s: float | None) -> None:
    assert spent_for_s(headers(**given), ("RateLimit", "X-RateLimit"), NOW_S) == spent_s


def spec_of(**fields: Any) -> EnrichmentSpec:
    base = {"path": "/v5/company/enrich", "query": {"website": "{websiteurl|domain}"},
            "no_match": [404], "later": {"statuses": [202], "delay_s": 90, "max_laters": 3},
            "out_of_credits": [402], "rate_limit_headers": ["Retry-After", "X-RateLimit"]}
    return parse_enrichment({**base, **fields}, "enrichment", "websiteurl")


MAPPING = {"numberofemployees": "metrics.employees", "address1_country": "geo[0].country"}
COMPANY = {"metrics": {"employees": 40}, "geo": [{"country": "Kenya"}]}


def judged(status: int, body: Any = None, spec: EnrichmentSpec | None = None,
           **given: str) -> Any:
    raw = json.dumps(body).encode() if body is not None else b""
    return Judge(spec or spec_of(), MAPPING, "GET /v5/company/enrich", NOW_S).single(
        Answer(status, headers(**given), raw))


def test_an_answer_is_read_at_the_mappings_paths() -> None:
    assert judged(200, COMPANY) == {"numberofemployees": 40, "address1_country": "Kenya"}


def test_no_match_is_the_records_fault_not_enrichable() -> None:
    with pytest.raises(RecordFault) as caught:
        judged(404, {"error": "not found"})
    assert caught.value.reason == "not_enrichable"


def test_later_waits_the_specs_delay_or_the_answers_retry_after() -> None:
    assert judged(202, {"status": "queued"}) == Later(90.0, 202)
    assert judged(202, {}, Retry_After="15") == Later(15.0, 202)


def test_out_of_credits_is_a_configuration_fault_that_says_so() -> None:
    with pytest.raises(ConfigFault, match="out of credits") as caught:
        judged(402, {"error": "no credits left"})
    assert "none is dead-lettered" in caught.value.hint


def test_a_429_waits_the_honoured_header() -> None:
    with pytest.raises(Throttled) as caught:
        judged(429, {}, X_RateLimit_Reset="4")
    assert caught.value.retry_after_s == 4.0


@pytest.mark.parametrize("body", [{"metrics": {}}, {"metrics": {"employees": {"n": 1}},
                                                    "geo": [{"country": "x"}]}, ["x"]],
                         ids=["absent path", "an object, not a value", "not an object"])
def test_an_answer_that_cannot_be_read_is_malformed(body: Any) -> None:
    with pytest.raises(ServiceFault, match="malformed"):
        judged(200, body)


def test_missing_null_writes_null_for_an_absent_path() -> None:
    assert judged(200, {"metrics": {"employees": 3}}, spec_of(missing="null")) == {
        "numberofemployees": 3, "address1_country": None}


def test_the_default_spec_is_todays_api() -> None:
    spec = default_spec()
    request = single_request(spec, "http://h:1/", {"websiteurl": "https://www.Contoso.com"},
                             {"x-api-key": "k"}, [])
    assert (request.method, str(request.url), request.where) == (
        "GET", "http://h:1/v1/companies?domain=contoso.com", "GET /v1/companies")
    assert request.headers == {"x-api-key": "k"}
    assert spec.no_match == {404, 422}
    assert spec.out_of_credits == {402}


def test_the_cache_key_follows_the_request_not_the_spelling_of_the_input() -> None:
    spec = spec_of()
    first = inputs_of(spec, {"websiteurl": "https://www.contoso.com/x"})
    second = inputs_of(spec, {"websiteurl": "contoso.com"})
    assert cache_key(spec.fingerprint, MAPPING, first) == cache_key(spec.fingerprint, MAPPING,
                                                                     second)
    assert cache_key(spec_of(path="/v6/x").fingerprint, MAPPING, first) != cache_key(
        spec.fingerprint, MAPPING, first)
    assert cache_key(spec.fingerprint, {"description": "summary"}, first) != cache_key(
        spec.fingerprint, MAPPING, first)


@pytest.mark.parametrize(("spec", "named"), [
    ([], "enrichment must be an object"),
    ({"path": "/x", "surprise": 1}, "unknown fields: surprise"),
    ({"query": {}}, "enrichment.path is required"),
    ({"path": "x"}, "enrichment.path must start with /"),
    ({"path": "/x/{web site}"}, "enrichment.path"),
    ({"path": "/x", "query": {"q": "{websiteurl|upper}"}}, "unknown transform 'upper'"),
    ({"path": "/x", "query": {"q": "{websiteurl"}}, "enrichment.query.q: unbalanced"),
    ({"path": "/x", "method": "PUT"}, "enrichment.method"),
    ({"path": "/x", "body": {"a": 1}}, "enrichment.body: a GET sends no body"),
    ({"path": "/x", "headers": {"X-Key": "{secret}"}}, "enrichment.headers.X-Key"),
    ({"path": "/x", "auth": {"type": "basic"}}, "enrichment.auth.type"),
    ({"path": "/x", "auth": {"type": "managed_identity"}}, "enrichment.auth.scope"),
    ({"path": "/x", "auth": {"type": "managed_identity", "scope": "api://a/.default",
                             "client_id": "me"}}, "enrichment.auth.client_id"),
    ({"path": "/x", "no_match": [404, "409"]}, "enrichment.no_match"),
    ({"path": "/x", "no_match": [429]}, "keep their meaning"),
    ({"path": "/x", "no_match": [404], "out_of_credits": [404]}, "404 has two meanings"),
    ({"path": "/x", "later": {"statuses": [302]}}, "enrichment.later.statuses must be 2xx"),
    ({"path": "/x", "later": {"delay_s": -1}}, "enrichment.later.delay_s"),
    ({"path": "/x", "later": {"max_laters": 0}}, "enrichment.later.max_laters"),
    ({"path": "/x", "missing": "skip"}, "enrichment.missing"),
    ({"path": "/x", "rate_limit_headers": ["Retry-After", "X-Rate"]},
     "enrichment.rate_limit_headers"),
    ({"path": "/x", "cache": {"ttl_s": 0}}, "enrichment.cache"),
    ({"path": "/x", "bulk": {"path": "/b"}}, "enrichment.bulk.item is required"),
    ({"path": "/x", "bulk": {"path": "/b", "item": {}, "key": "{websiteurl}",
                             "key_path": "k", "max_inputs": 5000}},
     "enrichment.bulk.max_inputs"),
    ({"hook": "tests.test_enrichment_spec:nothing_here"}, "not an async function"),
    ({"hook": "no_such_module_at_all:hook"}, "module no_such_module_at_all cannot be"),
    ({"hook": "just-text"}, "enrichment.hook must be module:function"),
])
def test_a_spec_is_refused_at_load_with_the_field_named(spec: Any, named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace("[", r"\[")):
        parse_definition(json.dumps({"mapping": {"description": "summary"},
                                     "enrichment": spec}))


def test_with_a_spec_the_mapping_holds_paths_and_they_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"SYNC_DEFINITION.mapping.description"):
        parse_definition(json.dumps({"mapping": {"description": "a..b"},
                                     "enrichment": {"path": "/x"}}))


def test_without_a_spec_the_mapping_still_names_todays_fields() -> None:
    with pytest.raises(ConfigError, match="not an enrichment field"):
        parse_definition(json.dumps({"mapping": {"description": "metrics.employees"}}))


def test_other_input_columns_are_read_by_the_planner_and_carried() -> None:
    definition = parse_definition(f"@{EXAMPLES / 'inhouse.json'}")
    assert definition.extra_inputs == ("name",)
    assert definition.read_columns[-1] == "name"
    assert definition.carried_columns == (*definition.mapping, "name")


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.json")))
def test_every_shipped_example_loads_and_survives_a_round_trip(example: str) -> None:
    """The local stack hands a definition on as ``asdict`` JSON (one per lane)."""
    definition = parse_definition(f"@{EXAMPLES / example}")
    again = parse_definition(json.dumps(asdict(definition)))
    assert again == definition
    assert again.enrichment_spec == definition.enrichment_spec


async def hook_for_tests(columns: dict[str, Any], session: Any) -> dict[str, Any]:
    """A code hook: the spec names it, the definition loads it."""
    return {"description": f"hooked {columns['websiteurl']}"}


nothing_here = "not a function"


def test_a_hook_is_loaded_at_load_time_and_names_its_columns() -> None:
    definition = parse_definition(json.dumps({
        "mapping": {"description": "description"},
        "enrichment": {"hook": "tests.test_enrichment_spec:hook_for_tests",
                       "columns": ["websiteurl", "name"]}}))
    assert definition.enrichment_spec.hook == "tests.test_enrichment_spec:hook_for_tests"
    assert definition.extra_inputs == ("name",)
