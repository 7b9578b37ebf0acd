"""Alerts as code: the rules on a run, the action group they notify, the workbook of a run.

Offline, like the rest of tests/infra: the alert queries are read from the parsed Bicep, the
workbook from its JSON, and both are held to the telemetry contract (sync/telemetry/names.py,
parsed by tests/infra/kql.py). Every number a rule compares against is a parameter with a
default, passed from main.bicep, so an operator tunes it without editing a query.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from sync.config.storage_names import POISON_QUEUE
from sync.telemetry import names
from tests.infra import kql
from tests.infra.bicep import INFRA, MAIN, Resource, decorators, params, parse, resources
from tests.infra.evaluate import Ref, created, deploy

RULE = "Microsoft.Insights/scheduledQueryRules"
WORKBOOK = "Microsoft.Insights/workbooks"
ALERTS = INFRA / "modules" / "runalerts.bicep"
WORKBOOK_MODULE = INFRA / "modules" / "workbook.bicep"
WORKBOOK_JSON = INFRA / "workbooks" / "run.json"

# Values of the contract a query compares with, not thresholds: names.py documents each.
CONTRACT_VALUES = {"circuitClosedState": 0}

# Each rule on the app's telemetry and what it must read.
SIGNALS = {
    "poisonMessages": {names.QUEUE_DEPTH, names.QUEUE, POISON_QUEUE},
    "deadLetters": {names.RUN_COMPLETED, names.DEAD_LETTERED, names.RUN_ID},
    "runOverdue": {names.RUN_PLANNED, names.RUN_COMPLETED, names.RUN_ID},
    "circuitOpen": {names.CIRCUIT_STATE, names.SERVICE},
    "throttling": {names.DATAVERSE_THROTTLED},
    "noRun": {names.RUN_PLANNED},
    "unexpectedErrors": {names.UNEXPECTED_ERRORS, names.ERROR_TYPE, names.TRACE_HASH},
}
# Each rule on what the Functions host writes, and the table it reads (kql.HOST_TABLES).
HOST_RULES = {"failedInvocations": "requests", "exceptions": "exceptions"}

# Each threshold parameter: a value to deploy with, the rule it reaches, and where.
THRESHOLDS = [
    ("poisonMessagesThreshold", 7, "poisonMessages", "threshold"),
    ("deadLettersThreshold", 25, "deadLetters", "threshold"),
    ("runDeadlineHours", 9, "runOverdue", "query"),
    ("circuitOpenMinutes", 30, "circuitOpen", "query"),
    ("throttledWindowMinutes", 45, "throttling", "windowSize"),
    ("throttledPerMinuteThreshold", 12, "throttling", "threshold"),
    ("noRunHours", 30, "noRun", "windowSize"),
    ("failedInvocationsThreshold", 3, "failedInvocations", "threshold"),
    ("exceptionsThreshold", 5, "exceptions", "threshold"),
    ("unexpectedErrorsThreshold", 2, "unexpectedErrors", "threshold"),
]


def rules() -> list[Resource]:
    return [r for r in resources(ALERTS) if r.type == RULE]


def criterion(rule: Resource) -> dict[str, Any]:
    [only] = rule.body["properties"]["criteria"]["allOf"]
    return dict(only)


def template(rule: Resource) -> tuple[str, list[Any]]:
    """A rule's query text as written, and the arguments ``format()`` fills it with."""
    query = criterion(rule)["query"]
    arguments: list[Any] = []
    if isinstance(query, dict):
        call = query["function"]
        assert call["type"] == "format", f"{rule.symbol}: a query is a variable or format(var, ...)"
        parameters = call["parameters"]
        query = parameters["format_string"]
        arguments = [parameters[key] for key in sorted(parameters) if key.startswith("arg_")]
    variables = parse(ALERTS)["variables"]
    assert query in variables, f"{rule.symbol}: the query is a variable of the module"
    return str(variables[query]["value"]), arguments


def identifiers(expression: Any) -> set[str]:
    """The names an expression's operands are made of (``a * b`` gives {a, b})."""
    if isinstance(expression, str):
        return {expression}
    if isinstance(expression, dict):
        return {name for value in expression.get("operator", {}).get("operands", {}).values()
                for name in identifiers(value)}
    return set()


def deployed_rules(**given: Any) -> dict[str, dict[str, Any]]:
    """The evaluated body of each rule main.bicep deploys with the given parameters, by symbol."""
    module = deploy(**given).modules().get("runAlerts")
    if module is None:
        return {}
    return {rule.symbol: module.bodies(rule)[0] for rule in module.resources() if rule.type == RULE}


def workbook() -> dict[str, Any]:
    return dict(json.loads(WORKBOOK_JSON.read_text(encoding="utf-8")))


def workbook_queries() -> dict[str, str]:
    """Every query of the workbook (its items' and its parameters'), by item or parameter name."""
    found = {}
    for item in workbook()["items"]:
        content = item["content"]
        if "query" in content:
            found[item["name"]] = content["query"]
        for parameter in content.get("parameters", []):
            if "query" in parameter:
                found[f"parameter {parameter['name']}"] = parameter["query"]
    return found


# --- the contract reader itself

def test_the_contract_is_read_by_section() -> None:
    contract = kql.contract()
    assert names.RUN_ID in contract.attributes
    assert names.QUEUE_DEPTH in contract.metrics
    assert names.RUN_COMPLETED in contract.events
    assert names.PROCESS_BATCH in contract.spans
    assert names.DEFAULT_DEFINITION not in contract.names(), "a value, not a name"


@pytest.mark.parametrize(("query", "problem"), [
    ('customMetrics | where name == "sync.records.writen"', "not a metric or event"),
    ('customEvents | where name == "sync.records.written"', "does not read its table"),
    ('customEvents | where name == "run_completed" | extend r = customDimensions["run_id"]',
     "reads attribute"),
    ('customMetrics | where name in ("sync.queue.depth", "sync.queue.size")',
     "not a metric or event"),
    ('customMetrics | where tostring(customDimensions["sync.queue"]) == "sync-batch-poison"',
     "looks like a queue"),
    ('requests | where success == false', "reads table requests"),
], ids=["a misspelt metric", "a metric looked for in customEvents", "an attribute without sync.",
        "an unknown name in a list", "an unknown queue", "another table"])
def test_the_reader_catches_what_is_not_the_contract(query: str, problem: str) -> None:
    assert any(problem in found for found in kql.problems(query)), kql.problems(query)


# --- the rules

def test_the_nine_rules_exist() -> None:
    assert sorted(rule.symbol for rule in rules()) == sorted([*SIGNALS, *HOST_RULES])


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r.symbol)
def test_rule_queries_name_only_the_contract(rule: Resource) -> None:
    query, _ = template(rule)
    host_tables = frozenset({HOST_RULES[rule.symbol]}) if rule.symbol in HOST_RULES else frozenset()
    assert kql.problems(query, host_tables) == []


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r.symbol)
def test_rule_reads_its_signal(rule: Resource) -> None:
    query, _ = template(rule)
    if rule.symbol in HOST_RULES:
        assert kql.reads_table(query, HOST_RULES[rule.symbol])
        assert not kql.tables(query)
        return
    read = kql.filtered_names(query) | kql.dimensions(query) | set(kql.literals(query))
    assert SIGNALS[rule.symbol] <= read


def test_failed_invocations_are_the_unsuccessful_requests_per_function() -> None:
    [rule] = [r for r in rules() if r.symbol == "failedInvocations"]
    query, _ = template(rule)
    assert "where success == false" in query
    assert "functionName = operation_Name" in query
    assert [d["name"] for d in criterion(rule)["dimensions"]] == ["functionName"]


def test_exceptions_are_counted_per_type() -> None:
    [rule] = [r for r in rules() if r.symbol == "exceptions"]
    query, _ = template(rule)
    assert "exceptionType = type" in query
    assert [d["name"] for d in criterion(rule)["dimensions"]] == ["exceptionType"]


def test_nothing_ran_fires_on_no_planned_run_at_all() -> None:
    body = deployed_rules()["noRun"]["properties"]
    [only] = body["criteria"]["allOf"]
    assert (only["timeAggregation"], only["operator"], only["threshold"]) == \
        ("Count", "LessThanOrEqual", 0), "no row is a count of 0"
    assert "dimensions" not in only, "a dimension with no row would be no series: silent"
    assert body["windowSize"] == "PT26H", "a day between runs, and two hours to spare"
    assert body["evaluationFrequency"] == "PT1H"
    assert decorators(params(ALERTS)["noRunHours"])["max_value"] <= 48, "a log alert's window"


def test_circuit_alert_is_open_for_n_minutes_on_the_latest_state() -> None:
    [rule] = [r for r in rules() if r.symbol == "circuitOpen"]
    query, arguments = template(rule)
    assert arguments == ["circuitClosedState", "circuitOpenMinutes"]
    # The last closed report per service, then the reports after it: open (or probing) since.
    assert "where state == {0}" in query
    assert "where isnull(closedAt) or timestamp > closedAt" in query
    assert "where openSince <= ago({1}m)" in query
    assert "samples" not in query, "not 'every sample open': half-open probes break that"
    window = rule.body["properties"]["windowSize"]
    longest = max(decorators(params(ALERTS)["circuitOpenMinutes"])["allowed"])
    assert window == "PT6H"
    assert longest < 6 * 60, "the window reaches past the longest N"


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r.symbol)
def test_rule_queries_hold_no_number(rule: Resource) -> None:
    query, arguments = template(rule)
    assert kql.numbers(query) == [], "a number in a query is a threshold no one can tune"
    placeholders = {int(n) for n in re.findall(r"\{(\d+)\}", query)}
    assert placeholders == set(range(len(arguments))), "every argument used, none missing"


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r.symbol)
def test_every_number_a_rule_compares_with_is_a_parameter(rule: Resource) -> None:
    declared = params(ALERTS)
    _, arguments = template(rule)
    for argument in arguments:
        assert argument in declared or argument in CONTRACT_VALUES, argument
    threshold = criterion(rule)["threshold"]
    if threshold == 0:
        assert criterion(rule)["timeAggregation"] == "Count", "0 rows is the only fixed bound"
    else:
        assert identifiers(threshold) <= set(declared), threshold
    for field in ("windowSize", "evaluationFrequency"):
        for name in re.findall(r"\$\{(\w+)\}", rule.body["properties"][field]):
            assert name in declared, f"{field} interpolates {name}"


def test_contract_values_are_the_contracts() -> None:
    variables = parse(ALERTS)["variables"]
    assert {name: variables[name]["value"] for name in CONTRACT_VALUES} == CONTRACT_VALUES
    line = next(line for line in kql.NAMES.read_text(encoding="utf-8").splitlines()
                if line.startswith("CIRCUIT_STATE"))
    assert "0 closed" in line


def threshold_params() -> list[str]:
    structural = {"location", "tags", "appInsightsId", "actionGroupId"}
    return sorted(set(params(ALERTS)) - structural)


@pytest.mark.parametrize("name", threshold_params())
def test_each_threshold_is_a_main_parameter_with_a_default(name: str) -> None:
    main = params(MAIN)[name]
    assert main.get("default") is not None, "a sensible default"
    assert "description" in decorators(main)
    bounds = ("allowed", "min_value", "max_value")
    module_decorators = decorators(params(ALERTS)[name])
    assert {key: decorators(main).get(key) for key in bounds} == \
        {key: module_decorators.get(key) for key in bounds}, "the same bounds in both"
    module = parse(MAIN)["modules"]["runAlerts"]["config"]["config"]["params"]
    assert module[name] == name, "main passes its own parameter"


def test_the_thresholds_are_the_ones_tested() -> None:
    assert sorted(name for name, *_ in THRESHOLDS) == threshold_params()


@pytest.mark.parametrize(("name", "value", "symbol", "field"), THRESHOLDS,
                         ids=[name for name, *_ in THRESHOLDS])
def test_a_threshold_given_to_main_reaches_its_rule(name: str, value: int, symbol: str,
                                                   field: str) -> None:
    module = deploy(**{name: value}).modules()["runAlerts"]
    assert module.scope[name] == value
    [rule] = [r for r in module.resources() if r.symbol == symbol]
    properties = rule.body["properties"]
    if field == "threshold":
        assert name in identifiers(criterion(rule)["threshold"])
    elif field == "windowSize":
        assert f"${{{name}}}" in properties["windowSize"]
    else:
        _, arguments = template(rule)
        assert name in arguments


def test_the_default_thresholds() -> None:
    bodies = deployed_rules()
    [poison] = bodies["poisonMessages"]["properties"]["criteria"]["allOf"]
    [dead] = bodies["deadLetters"]["properties"]["criteria"]["allOf"]
    assert poison["threshold"] == 0, "any poison message"
    assert dead["threshold"] == 0, "any dead letter"
    module = deploy().modules()["runAlerts"]
    assert module.scope["runDeadlineHours"] == 6
    assert module.scope["circuitOpenMinutes"] == 15
    assert (module.scope["throttledPerMinuteThreshold"], module.scope["throttledWindowMinutes"]) \
        == (30, 15)
    assert module.scope["noRunHours"] == 26
    assert (module.scope["failedInvocationsThreshold"], module.scope["exceptionsThreshold"],
            module.scope["unexpectedErrorsThreshold"]) == (0, 0, 0), \
        "an invocation that fails, an exception logged, an unexpected error: a bug (DESIGN.md, " \
        "invariant 5)"


@pytest.mark.parametrize("enabled", [True, False], ids=["alerts on", "alerts off"])
def test_one_parameter_switches_the_rules(enabled: bool) -> None:
    types = created(deploy(alertsEnabled=enabled))
    assert len(types.get(RULE, [])) == (9 if enabled else 0)
    assert len(types["Microsoft.Insights/actionGroups"]) == 1, "the group stays"
    assert len(types[WORKBOOK]) == 1, "the workbook stays"


def test_rules_query_the_component_and_notify_the_action_group() -> None:
    for symbol, body in deployed_rules().items():
        properties = body["properties"]
        assert body["kind"] == "LogAlert", symbol
        assert properties["scopes"] == [Ref("appInsights.id")], symbol
        assert properties["actions"] == {"actionGroups": [Ref("group.id")]}, symbol
        assert properties["enabled"] is True, symbol
        assert properties["severity"] in range(5), symbol
        assert "docs/operations.md" in properties["description"], symbol


@pytest.mark.parametrize("address", ["", "ops@example.com"], ids=["no address", "an address"])
def test_the_action_group_has_the_email_receiver_given(address: str) -> None:
    [group] = created(deploy(alertEmailAddress=address))["Microsoft.Insights/actionGroups"]
    receivers = group["properties"]["emailReceivers"]
    assert [r["emailAddress"] for r in receivers] == ([address] if address else [])


def runbook_section(rule: Resource) -> str:
    heading = re.search(r'"([^"]+)"\.$', rule.body["properties"]["description"])
    assert heading, f"{rule.symbol}: the description names its runbook section"
    return heading[1]


def test_the_runbook_explains_every_alert() -> None:
    runbook = (INFRA.parent / "docs" / "operations.md").read_text(encoding="utf-8")
    for rule in rules():
        section = runbook_section(rule)
        assert f"### {section}" in runbook, section
        assert rule.body["properties"]["displayName"] == section, "the alert bears its name"


# --- the workbook

def test_the_workbook_is_loaded_from_its_json_file() -> None:
    [resource] = [r for r in resources(WORKBOOK_MODULE) if r.type == WORKBOOK]
    loaded = resource.body["properties"]["serializedData"]["function"]
    assert loaded["type"] == "load_text_content"
    assert (WORKBOOK_MODULE.parent / loaded["parameters"]["file_path"]).resolve() == WORKBOOK_JSON
    assert resource.body["kind"] == "shared"


def test_the_workbook_is_a_valid_notebook() -> None:
    book = workbook()
    assert book["version"] == "Notebook/1.0"
    for item in book["items"]:
        assert item["type"] in (1, 3, 9), item["name"]
        assert item["name"], "items are named"
    names_seen = [item["name"] for item in book["items"]]
    assert len(names_seen) == len(set(names_seen))


def test_the_workbook_reads_the_component() -> None:
    module = deploy().modules()["workbook"]
    assert module.scope["appInsightsId"] == Ref("appInsights.id")
    [resource] = module.resources()
    source = resource.body["properties"]["sourceId"]["function"]
    assert source == {"type": "to_lower", "parameters": {"string_to_change": "appInsightsId"}}
    for item in workbook()["items"]:
        if item["type"] == 3:
            assert item["content"]["resourceType"] == "microsoft.insights/components"


@pytest.mark.parametrize(("name", "query"), sorted(workbook_queries().items()))
def test_workbook_queries_name_only_the_contract(name: str, query: str) -> None:
    assert kql.problems(query) == []


@pytest.mark.parametrize(("item", "needs"), [
    ("throughput", {names.RECORDS_WRITTEN}),
    ("throttled", {names.DATAVERSE_THROTTLED, names.FACET}),
    ("dop", {names.DOP_IN_USE, names.DOP_HINT}),
    ("depth", {names.QUEUE_DEPTH, names.QUEUE}),
    ("age", {names.QUEUE_OLDEST_AGE, names.QUEUE}),
    ("deadletters", {names.RECORDS_DEAD_LETTERED, names.REASON}),
    ("summary", {names.RUN_PLANNED, names.RUN_COMPLETED, names.PLANNED, names.WRITTEN,
                 names.DEAD_LETTERED}),
])
def test_the_workbook_shows_a_run(item: str, needs: set[str]) -> None:
    query = workbook_queries()[item]
    assert needs <= kql.filtered_names(query) | kql.dimensions(query)
    assert "{RunId}" in query, "scoped to the chosen run"


def test_the_workbook_picks_runs_from_their_planned_events() -> None:
    query = workbook_queries()["parameter RunId"]
    assert kql.filtered_names(query) == {names.RUN_PLANNED}
    assert names.RUN_ID in kql.dimensions(query)


def time_contexts(node: Any) -> list[int]:
    """Every ``timeContext.durationMs`` anywhere in the workbook."""
    if isinstance(node, dict):
        here = [node["timeContext"]["durationMs"]] if "timeContext" in node else []
        return here + [ms for value in node.values() for ms in time_contexts(value)]
    if isinstance(node, list):
        return [ms for value in node for ms in time_contexts(value)]
    return []


def test_the_run_picker_spans_what_the_panels_span() -> None:
    durations = time_contexts(workbook())
    assert len(durations) > 2
    assert set(durations) == {48 * 3600 * 1000}, "a run picked is one the panels can show"
