"""Telemetry with OpenTelemetry's in-memory exporters: the names, attributes and values the
alerts and the workbook query, recorded by the real code paths (the worker against Azurite and
the emulators, the governed call, the queue timer), and nothing configured without a
connection string."""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from azure.identity import ManagedIdentityCredential
from opentelemetry import metrics as otel_metrics
from opentelemetry import trace
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    MeterProvider,
    ObservableGauge,
    UpDownCounter,
)
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from sync import entry
from sync.budget.dependency import Dependency
from sync.budget.governor import Governor
from sync.clock import ManualClock
from sync.config.settings import StorageSettings
from sync.config.storage_names import BATCH_QUEUE, DEAD_LETTER_QUEUE, PLAN_QUEUE, POISON_QUEUE
from sync.failures.circuit import Circuit, CircuitPolicy
from sync.failures.errors import ConfigFault, Throttled
from sync.failures.retry import RetryPolicy
from sync.message.contract import Message, RecordRef
from sync.message.counts import MessageCounts
from sync.plan import planner
from sync.services import unwatch_services, watch_services
from sync.state.storage import QueueProbe, queue_client
from sync.telemetry import events, metrics, names, setup
from sync.telemetry.queues import age_s
from sync.telemetry.tracing import outcome_of, traced_message, traced_plan
from sync.work import worker
from tests.test_governor import NoHooks
from tests.test_worker import FAST, GHOST, refs

Make = Callable[..., Any]
Points = dict[str, list[tuple[dict[str, Any], Any]]]
TELEMETRY_DOC = Path(__file__).parents[1] / "docs" / "operations.md"
NAMES_PY = Path(__file__).parents[1] / "sync" / "telemetry" / "names.py"
DELTA = {kind: AggregationTemporality.DELTA
         for kind in (Counter, UpDownCounter, Histogram, ObservableGauge)}

READER = InMemoryMetricReader(preferred_temporality=DELTA)
SPANS = InMemorySpanExporter()


def _install_providers() -> None:
    """The process's global providers, as configure_azure_monitor sets them, with in-memory
    exporters instead of Azure Monitor's (set once: the API refuses a second provider)."""
    if not isinstance(otel_metrics.get_meter_provider(), MeterProvider):
        otel_metrics.set_meter_provider(MeterProvider(metric_readers=[READER]))
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(SPANS))
        trace.set_tracer_provider(provider)


@pytest.fixture
def telemetry() -> Iterator[None]:
    """Fresh readings: what earlier tests recorded is collected and dropped."""
    _install_providers()
    READER.get_metrics_data()
    SPANS.clear()
    yield
    SPANS.clear()


def collect() -> Points:
    """Every data point since the last collection, by metric name."""
    found: Points = {}
    data = READER.get_metrics_data()
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    value = getattr(point, "value", None)
                    if value is None:
                        value = (point.count, point.sum)  # a histogram: count and sum
                    found.setdefault(metric.name, []).append((dict(point.attributes or {}),
                                                              value))
    return found


def span_named(name: str) -> ReadableSpan:
    (span,) = [s for s in SPANS.get_finished_spans() if s.name == name]
    return span


def encoded(message: Message) -> bytes:
    return base64.b64encode(message.to_json().encode())


# Switching it on.

def test_without_a_connection_string_nothing_is_configured(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(setup, "_configured", [])
    calls: list[dict[str, Any]] = []
    tracer_provider = trace.get_tracer_provider()
    for environ in ({}, {setup.CONNECTION_SETTING: "  "},
                    {setup.AUTHENTICATION_SETTING: "ClientId=x;Authorization=AAD"}):
        assert setup.configure_telemetry(environ, configure=lambda **kw: calls.append(kw)) \
            is False
    assert setup.configure_telemetry({}) is False  # the real distro is not even imported
    assert calls == []
    assert trace.get_tracer_provider() is tracer_provider


def test_a_connection_string_configures_the_distro_with_the_managed_identity(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(setup, "_configured", [])
    monkeypatch.setattr(logging.getLogger("sync"), "level", logging.NOTSET)
    calls: list[dict[str, Any]] = []
    client_ids: list[str | None] = []

    def credential(client_id: str | None) -> ManagedIdentityCredential:
        client_ids.append(client_id)
        return setup.managed_identity(client_id)

    environ = {setup.CONNECTION_SETTING: "InstrumentationKey=00000000-0000-0000-0000-000000000001"
                                         ";IngestionEndpoint=https://example.invalid/",
               setup.AUTHENTICATION_SETTING: "ClientId=1b2c3d4e-0000-4000-8000-000000000000;"
                                             "Authorization=AAD"}
    assert setup.configure_telemetry(environ, configure=lambda **kw: calls.append(kw),
                                     credential=credential)
    (options,) = calls
    assert options["connection_string"] == environ[setup.CONNECTION_SETTING]
    assert isinstance(options["credential"], ManagedIdentityCredential)
    assert client_ids == ["1b2c3d4e-0000-4000-8000-000000000000"]
    assert options["logger_name"] == "sync"
    assert options["instrumentation_options"]["azure_sdk"] == {"enabled": False}
    assert logging.getLogger("sync").level == logging.INFO
    assert setup.configure_telemetry(environ, configure=lambda **kw: calls.append(kw)) is False
    assert len(calls) == 1, "configured once per process"


@pytest.mark.parametrize(("authentication", "client_id"), [
    pytest.param("ClientId=abc;Authorization=AAD", "abc", id="the-host-form"),
    pytest.param("Authorization=AAD; clientid = abc ", "abc", id="any-order-and-case"),
    pytest.param("Authorization=AAD", None, id="system-assigned"),
    pytest.param("", None, id="unset"),
])
def test_the_identity_is_the_one_the_authentication_string_names(
        authentication: str, client_id: str | None) -> None:
    assert setup.client_id_of(authentication) == client_id


@pytest.mark.parametrize(("code", "facet"), [
    ("0x80072322", "requests"), ("0x80072321", "execution_time"),
    ("0x80072326", "concurrency"), ("", "other"), ("0x80048544", "other"),
])
def test_a_429_code_names_its_facet(code: str, facet: str) -> None:
    assert metrics.facet_of(code) == facet


@pytest.mark.parametrize(("counts", "outcome"), [
    (MessageCounts(rejected_messages=1), "poisoned"),
    (MessageCounts(written=3, reenqueued=1), "requeued"),
    (MessageCounts(written=3, dead_lettered=1), "dead_lettered"),
    (MessageCounts(written=3), "written"),
])
def test_a_message_outcome(counts: MessageCounts, outcome: str) -> None:
    assert outcome_of(counts) == outcome


# The contract in docs/operations.md.

def contract_names() -> dict[str, str]:
    """Every name constant of names.py (DEFAULT_DEFINITION is a value, not a name)."""
    pairs = re.findall(r'^([A-Z_]+): Final = "([^"]+)"', NAMES_PY.read_text(), re.MULTILINE)
    return {constant: value for constant, value in pairs if constant != "DEFAULT_DEFINITION"}


def documented_telemetry_rows() -> dict[str, list[str]]:
    section = TELEMETRY_DOC.read_text().split("\n## Telemetry names\n", 1)[1].split("\n#", 1)[0]
    rows = re.findall(r"^\| `([^`]+)` \|(.*)\|$", section, re.MULTILINE)
    return {name: [cell.strip() for cell in rest.split("|")] for name, rest in rows}


def test_every_telemetry_name_is_in_the_documented_table() -> None:
    assert len(contract_names()) > 30
    rows = documented_telemetry_rows()
    assert sorted(set(contract_names().values()) - set(rows)) == []
    assert sorted(set(rows) - set(contract_names().values())) == [], "not in names.py"
    for name, (kind, _unit, _attributes, meaning) in rows.items():
        assert kind in ("counter", "histogram", "gauge", "span", "event", "attribute"), name
        assert meaning, name


# Real code paths: the worker against Azurite and the emulators.

@pytest.mark.emulator(records=30, **FAST)
async def test_a_message_is_one_span_and_its_records_are_counted(
        telemetry: None, make_services: Make) -> None:
    services = await make_services(SYNC_WRITE_MODE="single")
    records = await refs(services, 10)
    ghost = RecordRef(GHOST, "https://www.ghost.example")
    message = Message("run-20260101T020000Z-1a2b3c-p0001-0003", (*records, ghost))
    counts = await traced_message(
        lambda: worker.process_queue_message(services, encoded(message)),
        definition=names.DEFAULT_DEFINITION, mode="single")
    assert (counts.written, counts.dead_lettered) == (10, 1)

    span = span_named(names.PROCESS_BATCH)
    assert dict(span.attributes or {}) == {
        names.DEFINITION: "default", names.MODE: "single", names.OUTCOME: "dead_lettered",
        names.RUN_ID: "run-20260101T020000Z-1a2b3c", names.MESSAGE_ID: message.batch_id,
        names.RECORDS: 11}
    points = collect()
    assert points[names.RECORDS_WRITTEN] == [
        ({names.DEFINITION: "default", names.MODE: "single"}, 10)]
    assert points[names.RECORDS_DEAD_LETTERED] == [
        ({names.DEFINITION: "default", names.REASON: "record_missing"}, 1)]
    assert names.RECORDS_REENQUEUED not in points
    ((attributes, (calls, total_ms)),) = points[names.ENRICHMENT_LATENCY]
    assert attributes == {}
    assert calls == 11  # the ghost's website enriches too; its write is refused
    assert total_ms >= 0


async def test_unchanged_records_are_counted_apart_from_written(telemetry: None) -> None:
    metrics.message_done(MessageCounts(written=2, unchanged=5), definition="default", mode="bulk")
    points = collect()
    assert points[names.RECORDS_UNCHANGED] == [({names.DEFINITION: "default"}, 5)]
    assert points[names.RECORDS_WRITTEN] == [
        ({names.DEFINITION: "default", names.MODE: "bulk"}, 2)]


@pytest.mark.emulator(records=60, max_requests=10, window_s=4.0, **FAST)
async def test_429s_count_by_facet_and_the_remainder_by_reason(
        telemetry: None, make_services: Make) -> None:
    services = await make_services(SYNC_MAX_WAIT_S="0", SYNC_WRITE_MODE="single")
    await services.first_lane.dataverse.who_am_i()  # the hint is known (as after a plan's read)
    await services.first_lane.cluster.refresh()
    records = await refs(services, 40)
    counts = await traced_message(
        lambda: worker.process_queue_message(
            services, encoded(Message("throttled", tuple(records)))),
        definition=names.DEFAULT_DEFINITION, mode="single")
    assert counts.reenqueued > 0
    points = collect()
    ((facet, throttled),) = points[names.DATAVERSE_THROTTLED]
    assert facet == {names.FACET: "requests", names.LANE: "default/default"}
    assert throttled == counts.throttled_by_code["0x80072322"] > 0
    assert sum(value for _, value in points[names.RECORDS_REENQUEUED]) == counts.reenqueued
    assert {a[names.REASON] for a, _ in points[names.RECORDS_REENQUEUED]} == {"throttled"}
    assert span_named(names.PROCESS_BATCH).attributes[names.OUTCOME] == "requeued"


async def test_a_poisoned_message_counts_with_its_reason(
        telemetry: None, make_services: Make) -> None:
    services = await make_services()
    counts = await traced_message(lambda: worker.process_queue_message(services, b"not base64!"),
                                  definition=names.DEFAULT_DEFINITION, mode="bulk")
    assert counts.rejected_messages == 1
    assert collect()[names.MESSAGES_POISONED] == [
        ({names.REASON: metrics.POISON_REASON}, 1)]
    span = span_named(names.PROCESS_BATCH)
    assert span.attributes[names.OUTCOME] == "poisoned"
    assert names.MESSAGE_ID not in span.attributes  # nothing could be decoded


async def test_a_failed_invocation_is_a_failed_span(telemetry: None) -> None:
    async def broken() -> MessageCounts:
        raise OSError("queue unreachable")

    with pytest.raises(OSError, match="unreachable"):
        await traced_message(broken, definition="default", mode="bulk")
    span = span_named(names.PROCESS_BATCH)
    assert span.attributes[names.OUTCOME] == "failed"
    assert not span.status.is_ok
    assert names.RECORDS_WRITTEN not in collect()


@pytest.mark.emulator(records=30, **FAST)
async def test_a_plan_invocation_is_one_span(telemetry: None, make_services: Make) -> None:
    services = await make_services()
    now = datetime(2026, 1, 1, 2, 0, tzinfo=UTC)
    state = await traced_plan(lambda: planner.plan(services, now), definition="default")
    assert state is None
    span = span_named(names.PLAN)
    assert span.attributes[names.OUTCOME] == "complete"
    assert span.attributes[names.DEFINITION] == "default"
    assert str(span.attributes[names.RUN_ID]).startswith("run-20260101T020000Z")
    assert span.attributes[names.MODE] in ("full", "delta", "watermark")


@pytest.mark.emulator(records=10, **FAST)
async def test_the_gauges_read_the_hint_and_each_circuit(
        telemetry: None, make_services: Make) -> None:
    services = await make_services(SYNC_WRITE_MODE="single")
    records = await refs(services, 2)
    await worker.process_message(services, Message("hint", tuple(records)).to_json()
                                 .encode())
    services.first_lane.dependency.circuit.failed(ConfigFault("dataverse", "403 on PATCH accounts"))
    watch_services(services)
    try:
        points = collect()
    finally:
        unwatch_services(services)
    assert services.first_lane.dataverse.dop_hint
    assert points[names.DOP_HINT] == [({}, services.first_lane.dataverse.dop_hint)]
    assert points[names.DOP_IN_USE] == [({}, 0)]
    assert sorted(points[names.CIRCUIT_STATE], key=lambda p: p[0][names.SERVICE]) == [
        ({names.SERVICE: "dataverse"}, 2), ({names.SERVICE: "enrichment"}, 0)]
    assert names.CIRCUIT_STATE not in collect(), "nothing is read once unwatched"


# The governed call: admission waits, 429 facets, in-flight requests.

def dependency(governor: Governor, clock: ManualClock) -> Dependency:
    circuit = Circuit("dataverse", CircuitPolicy(), clock=clock)
    return Dependency("dataverse", governor, circuit, RetryPolicy(0), clock=clock)


async def test_a_wait_for_admission_is_recorded_with_the_dop_in_use(telemetry: None) -> None:
    clock = ManualClock()
    governor = Governor(1, max_wait_s=60)
    dep = dependency(governor, clock)
    release = asyncio.Event()
    entered = asyncio.Event()

    async def hold() -> str:
        entered.set()
        await release.wait()
        return "first"

    metrics.watch(1, metrics.Watched(dop_in_use=lambda: governor.in_flight,
                                     dop_hint=lambda: None))
    try:
        first = asyncio.create_task(dep.call(hold, NoHooks()))
        await entered.wait()
        second = asyncio.create_task(dep.call(lambda: asyncio.sleep(0, "second"), NoHooks()))
        await asyncio.sleep(0)
        assert collect()[names.DOP_IN_USE] == [({}, 1)]
        clock.advance(3.0)  # the second request waits 3 s on the one clock
        release.set()
        assert (await first, await second) == ("first", "second")
    finally:
        metrics.unwatch(1)
    points = collect()
    assert points[names.GATE_WAIT] == [({names.SERVICE: "dataverse"}, (1, 3.0))]
    assert names.DOP_HINT not in points


async def test_a_429_counts_under_the_facet_its_code_names(telemetry: None) -> None:
    dep = dependency(Governor(4), ManualClock())

    async def refused() -> None:
        raise Throttled("dataverse", 30.0, "0x80072321")

    with pytest.raises(Throttled):
        await dep.call(refused, NoHooks())
    assert collect()[names.DATAVERSE_THROTTLED] == [
        ({names.FACET: "execution_time", names.LANE: "default/default"}, 1)]


# Queue depth and age, on the timer.

def test_age_of_a_message() -> None:
    inserted = datetime(2026, 1, 1, 2, 0, tzinfo=UTC)
    assert age_s(inserted, inserted.timestamp() + 90.5) == 90.5
    assert age_s(inserted, inserted.timestamp() - 5) == 0.0, "clock skew is no age"
    assert age_s(None, 123.0) == 0.0


async def test_each_queue_reports_its_depth_and_oldest_age(
        telemetry: None, storage: StorageSettings) -> None:
    async with queue_client(storage, BATCH_QUEUE, None) as batches, \
            queue_client(storage, DEAD_LETTER_QUEUE, None) as letters:
        for number in range(3):
            await batches.send_message(f"m{number}")
        await letters.send_message("letter")
    probe = QueueProbe(storage)
    try:
        samples = await probe.record(ManualClock(wall_start_s=time.time() + 600))
    finally:
        await probe.close()
    by_queue = {s.queue: s for s in samples}
    assert set(by_queue) == {BATCH_QUEUE, POISON_QUEUE, DEAD_LETTER_QUEUE, PLAN_QUEUE}
    assert (by_queue[BATCH_QUEUE].depth, by_queue[DEAD_LETTER_QUEUE].depth) == (3, 1)
    assert 590 <= by_queue[BATCH_QUEUE].oldest_age_s <= 660  # sent just now, seen 600 s on
    assert (by_queue[PLAN_QUEUE].depth, by_queue[PLAN_QUEUE].oldest_age_s) == (0, 0.0)
    points = collect()
    depths = {a[names.QUEUE]: v for a, v in points[names.QUEUE_DEPTH]}
    assert depths == {BATCH_QUEUE: 3, POISON_QUEUE: 0, DEAD_LETTER_QUEUE: 1, PLAN_QUEUE: 0}
    ages = {a[names.QUEUE]: v for a, v in points[names.QUEUE_OLDEST_AGE]}
    assert ages[BATCH_QUEUE] == by_queue[BATCH_QUEUE].oldest_age_s
    assert ages[PLAN_QUEUE] == 0.0


# The entry points the triggers call.

@pytest.mark.emulator(records=10, **FAST)
async def test_the_entry_points_trace_and_sample(telemetry: None, app_env: dict[str, str],
                                                 make_services: Make) -> None:
    services = await make_services()
    records = await refs(services, 3)
    try:
        counts = await entry.process_message(encoded(Message("entry", tuple(records))))
        samples = await entry.record_queue_metrics()
        points = collect()  # the services entry opened are watched while open
    finally:
        await entry.close_services()
    assert counts.written == 3
    assert span_named(names.PROCESS_BATCH).attributes[names.MODE] == "bulk"
    assert {s.queue for s in samples} == {BATCH_QUEUE, POISON_QUEUE, DEAD_LETTER_QUEUE,
                                          PLAN_QUEUE}
    assert points[names.RECORDS_WRITTEN] == [
        ({names.DEFINITION: "default", names.MODE: "bulk"}, 3)]
    assert names.DOP_IN_USE in points
    assert names.DOP_IN_USE not in collect(), "closed services are no longer read"


# Logs: what the distro exports from the ``sync`` logger.

def test_events_and_structured_records_reach_the_log_exporter() -> None:
    """The handler the distro adds to the ``sync`` logger, with an in-memory exporter."""
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    handler = LoggingHandler(logger_provider=provider)
    logger = logging.getLogger(setup.LOGGER_NAME)
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        events.emit(names.RUN_COMPLETED, {names.RUN_ID: "run-1", names.WRITTEN: 5})
        logging.getLogger("sync.work.worker").info("batch %s done", "b-1",
                                              extra={"event": "batch_done", "batch_id": "b-1"})
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    exported = [data.log_record for data in exporter.get_finished_logs()]
    event, record = exported
    assert event.attributes[events.EVENT_NAME_ATTRIBUTE] == names.RUN_COMPLETED
    assert (event.attributes[names.RUN_ID], event.attributes[names.WRITTEN]) == ("run-1", 5)
    assert record.body == "batch b-1 done"
    assert record.attributes["event"] == "batch_done"
