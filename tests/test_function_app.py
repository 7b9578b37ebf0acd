"""function_app.py indexes as the Python worker indexes it, with the bindings the design names."""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest

from sync.config.storage_names import BATCH_QUEUE, PLAN_QUEUE, STORAGE_CONNECTION
from sync.entry import MisconfiguredApp
from sync.local.functions_index import index, load_app
from sync.telemetry import setup

APP_PATH = Path(__file__).parents[1] / "function_app.py"
VALID_ENV = {"AzureWebJobsStorage": "UseDevelopmentStorage=true",
             "DATAVERSE_URL": "https://contoso.crm.dynamics.com",
             "ENRICHMENT_URL": "https://enrich.example.com", "ENRICHMENT_API_KEY": "k"}


@pytest.fixture(autouse=True, scope="module")
def valid_settings() -> Iterator[None]:
    """function_app.py checks the settings when it loads; these are valid."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in VALID_ENV.items():
            patch.setenv(name, value)
        yield


@pytest.fixture(scope="module")
def functions() -> dict[str, Any]:
    return {f.get_function_name(): f for f in load_app(APP_PATH).get_functions()}


def test_a_misconfigured_app_fails_to_load_naming_every_bad_setting(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ENRICHMENT_URL")
    monkeypatch.setenv("SYNC_WRITE_MODE", "fast")
    monkeypatch.setenv("SYNC_MAX_RETRIES", "many")
    with pytest.raises(MisconfiguredApp) as caught:
        load_app(APP_PATH)
    lines = [line for line in str(caught.value).splitlines() if line.startswith("  - ")]
    assert lines == [
        "  - ENRICHMENT_URL is required: Base URL of the enrichment API.",
        "  - SYNC_WRITE_MODE must be one of single, batch, bulk, got 'fast'",
        "  - SYNC_MAX_RETRIES must be an integer, got 'many'",
    ]
    assert "k" not in str(caught.value).split(":", 1)[0]


def test_exactly_the_expected_functions(functions: dict[str, Any]) -> None:
    assert sorted(functions) == ["continue_plan", "plan_sync", "process_batch",
                                 "record_queue_metrics"]


def test_plan_sync_is_a_timer_on_the_schedule_setting(functions: dict[str, Any]) -> None:
    trigger = functions["plan_sync"].get_trigger().get_dict_repr()
    assert trigger["type"] == "timerTrigger"
    assert trigger["schedule"] == "%SYNC_SCHEDULE%"


def test_process_batch_is_a_queue_trigger_on_the_batches_queue(
        functions: dict[str, Any]) -> None:
    trigger = functions["process_batch"].get_trigger().get_dict_repr()
    assert trigger["type"] == "queueTrigger"
    assert trigger["queueName"] == BATCH_QUEUE
    assert trigger["connection"] == STORAGE_CONNECTION


def test_continue_plan_is_a_queue_trigger_on_the_plan_queue(functions: dict[str, Any]) -> None:
    trigger = functions["continue_plan"].get_trigger().get_dict_repr()
    assert trigger["type"] == "queueTrigger"
    assert trigger["queueName"] == PLAN_QUEUE
    assert trigger["connection"] == STORAGE_CONNECTION


def test_parameter_names_equal_binding_names(functions: dict[str, Any]) -> None:
    for function in functions.values():
        params = set(inspect.signature(function.get_user_function()).parameters)
        assert params == {b.name for b in function.get_bindings()}


def test_every_function_is_async(functions: dict[str, Any]) -> None:
    for function in functions.values():
        assert inspect.iscoroutinefunction(function.get_user_function())


def test_local_index_resolves_the_schedule_setting() -> None:
    environ = {"SYNC_SCHEDULE": "0 */5 * * * *", "SYNC_QUEUE_METRICS_SCHEDULE": "30 * * * * *"}
    indexed = {f.name: f for f in index(load_app(APP_PATH), environ)}
    assert indexed["plan_sync"].schedule == "0 */5 * * * *"
    assert len(indexed["plan_sync"].schedule.split()) == 6
    assert indexed["record_queue_metrics"].schedule == "30 * * * * *"


def test_record_queue_metrics_is_a_timer_on_its_schedule_setting(
        functions: dict[str, Any]) -> None:
    trigger = functions["record_queue_metrics"].get_trigger().get_dict_repr()
    assert trigger["type"] == "timerTrigger"
    assert trigger["schedule"] == "%SYNC_QUEUE_METRICS_SCHEDULE%"


def test_local_index_refuses_a_missing_setting() -> None:
    with pytest.raises(KeyError, match="SYNC_SCHEDULE"):
        index(load_app(APP_PATH), {})


def test_local_index_refuses_parameters_that_differ_from_bindings() -> None:
    app = func.FunctionApp()

    @app.queue_trigger(arg_name="msg", queue_name="q", connection="C")
    async def wrong(message: func.QueueMessage) -> None:
        return None

    with pytest.raises(ValueError, match="differ from bindings"):
        index(app, {})


def test_sync_never_imports_azure_functions() -> None:
    root = Path(__file__).parents[1] / "sync"
    offenders = [p for p in root.rglob("*.py")
                 if "local" not in p.parts and "azure.functions" in p.read_text()]
    assert offenders == []


def test_loading_without_a_connection_string_configures_no_telemetry(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("APPLICATIONINSIGHTS_CONNECTION_STRING", raising=False)
    monkeypatch.setattr(setup, "_configured", [])
    load_app(APP_PATH)
    assert setup._configured == []


def test_host_logs_successful_invocations_in_its_application_insights_mode() -> None:
    """The host's OpenTelemetry mode covers HTTP, Service Bus and Event Hubs triggers only
    (docs/deploying.md, Telemetry): the host stays in its Application Insights mode."""
    host = json.loads((APP_PATH.parent / "host.json").read_text())
    assert "telemetryMode" not in host
    levels = host["logging"]["logLevel"]
    assert levels.get("Host.Results", levels["default"]) in ("Trace", "Debug", "Information")
    assert levels.get("Function", levels["default"]) in ("Trace", "Debug", "Information")
