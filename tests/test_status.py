"""``sync status`` against Azurite: the numbers of a run and the state around it, as text and
JSON, --watch, and the errors an operator gets (no run, no such run, no queues, no access)."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import re
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from azure.data.tables.aio import TableClient

from sync.budget.cluster import CIRCUIT_PARTITION, GATE_KEY, HINT_KEY, LEASE_PARTITION
from sync.budget.slots import SLOT_PARTITION, slot_key
from sync.cli import build_parser
from sync.clock import ManualClock
from sync.config.settings import StorageSettings
from sync.config.storage_names import (
    BATCH_QUEUE,
    DEAD_LETTER_TABLE,
    LEDGER_TABLE,
    POISON_QUEUE,
    STATE_TABLE,
)
from sync.failures.circuit import CircuitView
from sync.local.azurite import StorageAccount
from sync.message.counts import MessageCounts, RequestUsage
from sync.message.ids import compact_run_id
from sync.ops import status
from sync.ops.outcome import INTERRUPTED, NotFound, until_interrupted
from sync.ops.run_status import (
    ClusterState,
    ControlState,
    RunStatus,
    circuit_state,
    eta_s,
    rate_per_s,
    read_status,
)
from sync.ops.status_view import render, status_dict
from sync.safety.flags import Flag
from sync.state import deployment, ledger, manifests, runs
from sync.state.manifests import PlanManifest
from sync.state.runs import RunRow, RunTotals
from sync.state.storage import queue_client, table_client

ROOT = Path(__file__).parents[1]
START_S = 1_795_000_000.0


def totals(planned: int, done: int, *, plan_complete: bool = True,
           completed_s: float = 0.0) -> RunTotals:
    run = RunRow("run-x", "plan", planned, 1, plan_complete, START_S,
                 completed=completed_s > 0, completed_s=completed_s)
    return RunTotals(run, MessageCounts(written=done))


@pytest.mark.parametrize(("run", "now_s", "rate", "eta"), [
    (totals(1000, 250), START_S + 50, 5.0, 150.0),
    (totals(1000, 0), START_S + 50, 0.0, None),
    (totals(1000, 250, plan_complete=False), START_S + 50, 5.0, None),
    (totals(1000, 1000, completed_s=START_S + 100), START_S + 900, 10.0, 0.0),
], ids=["rate since the start and the open records at that rate",
        "nothing done yet: no ETA", "a plan still paging: the total is unknown, no ETA",
        "a completed run's rate stops at its completion"])
def test_rate_and_eta(run: RunTotals, now_s: float, rate: float, eta: float | None) -> None:
    assert rate_per_s(run, now_s) == rate
    assert eta_s(run, now_s) == eta


@pytest.mark.parametrize(("view", "state"), [
    (CircuitView(), "closed"), (CircuitView(START_S + 5, 2, "503"), "open"),
    (CircuitView(START_S - 5, 2, "503"), "half-open")],
    ids=["never opened", "open until later", "past its time: half-open"])
def test_circuit_state(view: CircuitView, state: str) -> None:
    assert circuit_state(view, START_S) == state


async def seed_run(storage: StorageSettings) -> None:
    """An overlapped run half done, the previous one incomplete, and the shared state."""
    async with (table_client(storage, LEDGER_TABLE, None) as table,
                table_client(storage, STATE_TABLE, None) as state):
        await runs.start_plan(table, "run-old", START_S - 86_400)
        await manifests.record_plan(table, PlanManifest("run-old", 10, 1, 1, complete=True))
        await runs.start_plan(table, "run-new", START_S)
        await manifests.record_plan(table, PlanManifest("run-new", 1000, 10, 1, complete=True))
        await ledger.record_message(table, "run-new-p000000-000", 0, MessageCounts(
            written=380, dead_lettered=20, reenqueued=100,
            dead_lettered_by_reason=Counter({"record_missing": 15, "value_refused": 5}),
            reenqueued_by_reason=Counter({"throttled": 100})))
        await seed_state(state)
    async with table_client(storage, DEAD_LETTER_TABLE, None) as letters:
        for number, state_name in enumerate(["dead"] * 17 + ["replayed"] * 3):
            await letters.upsert_entity({"PartitionKey": "run-new", "RowKey": f"r{number}",
                                         "State": state_name})
        await letters.upsert_entity({"PartitionKey": "run-old", "RowKey": "r0",
                                     "State": "dead"})
    for name, count in ((BATCH_QUEUE, 3), (POISON_QUEUE, 2)):
        async with queue_client(storage, name, None) as queue:
            for _ in range(count):
                await queue.send_message("{}")


async def seed_state(state: TableClient) -> None:
    rows = [(GATE_KEY, {"Until": START_S + 200 + 12.5, "Code": "0x80072322"}),
            (HINT_KEY, {"Hint": 6}),
            ((LEASE_PARTITION, "a"), {"ExpiresAt": START_S + 260}),
            ((LEASE_PARTITION, "gone"), {"ExpiresAt": START_S - 10}),
            ((CIRCUIT_PARTITION, "enrichment"), {"OpenUntil": START_S + 230, "Trips": 1,
                                                 "Reason": "503 from the API"}),
            ((SLOT_PARTITION, slot_key(0)), {"Holder": "a", "ExpiresAt": START_S + 260}),
            ((SLOT_PARTITION, slot_key(1)), {"Holder": "a", "ExpiresAt": START_S + 260}),
            ((SLOT_PARTITION, slot_key(2)), {"Holder": "", "ExpiresAt": 0.0}),
            ((SLOT_PARTITION, slot_key(3)), {"Holder": "gone", "ExpiresAt": START_S - 1}),
            (("prod.a|gate", "dataverse"), {"Until": START_S + 200 + 40, "Code": "0x80072321"}),
            (("prod.b|circuit", "dataverse"), {"OpenUntil": START_S + 260, "Trips": 2,
                                               "Reason": "403 on PATCH accounts"}),
            (("prod|dop", "hint"), {"Hint": 12}),
            (("prod|slot", slot_key(0)), {"Holder": "x", "ExpiresAt": START_S + 260}),
            (("prod|lease", "x"), {"ExpiresAt": START_S + 260})]
    for (partition, row), fields in rows:
        await state.upsert_entity({"PartitionKey": partition, "RowKey": row, **fields})


async def shown(storage: StorageSettings, *, as_json: bool = True, run_id: str | None = None,
                watch_s: float | None = None, times: int | None = None) -> tuple[int, str]:
    out = io.StringIO()
    clock = ManualClock(wall_start_s=START_S + 200, auto_advance=True)
    code = await status.show(storage, run_id, as_json=as_json, watch_s=watch_s, times=times,
                             clock=clock, out=out)
    return code, out.getvalue()


async def test_the_whole_story_as_json(storage: StorageSettings) -> None:
    await seed_run(storage)
    code, out = await shown(storage)
    assert code == 0
    data = json.loads(out)
    run = data["run"]
    assert {k: run[k] for k in ("id", "planned", "enqueued_messages", "written",
                                "dead_lettered", "reenqueued", "open", "previous_run_id")} == {
        "id": "run-new", "planned": 1000, "enqueued_messages": 10, "written": 380,
        "dead_lettered": 20, "reenqueued": 100, "open": 600, "previous_run_id": "run-old"}
    assert run["dead_lettered_by_reason"] == {"record_missing": 15, "value_refused": 5}
    assert run["reenqueued_by_reason"] == {"throttled": 100}
    assert (run["rate_per_s"], run["eta_s"], run["completed"]) == (2.0, 300.0, False)
    assert [other["id"] for other in data["overlapping"]] == ["run-old"]
    assert data["overlapping"][0]["overlapped_by"] == "run-new"
    assert data["queues"][BATCH_QUEUE] == 3
    assert data["poisoned"] == 2
    assert data["dead_letters_by_state"] == {"dead": 17, "replayed": 3}
    assert data["gate"] == {"closed_for_s": 12.5, "code": "0x80072322"}
    assert data["circuits"]["enrichment"] == {"state": "open", "open_for_s": 30.0, "trips": 1,
                                              "reason": "503 from the API"}
    assert data["circuits"]["dataverse"] == {"state": "closed", "open_for_s": 0.0, "trips": 0,
                                             "reason": None}
    assert data["dop"] == {"hint": 6, "slots": 6, "slots_held": 2,
                           "slots_by_instance": {"a": 2}, "instances": 1}
    lanes = data["lanes"]
    assert sorted(lanes) == ["prod", "prod/a", "prod/b"]
    assert lanes["prod/a"]["gate"] == {"closed_for_s": 40.0, "code": "0x80072321"}
    assert lanes["prod/b"]["circuits"]["dataverse"]["state"] == "open"
    assert lanes["prod"]["dop"]["hint"] == 12
    assert (lanes["prod"]["dop"]["slots_held"], lanes["prod"]["dop"]["instances"]) == (1, 1)


async def test_the_same_story_as_text(storage: StorageSettings) -> None:
    await seed_run(storage)
    code, out = await shown(storage, as_json=False)
    assert code == 0
    for line in ("Run run-new (plan)", "dead-lettered            20  record_missing 15, "
                 "value_refused 5", "open                    600", "ETA 300 s",
                 "overlaps         run-old", "Overlapping run (incomplete):",
                 "dead letters now             dead 17, replayed 3",
                 "overlapped by    run-new", "poisoned msgs             2",
                 "throttle gate    closed for 12.5 s (0x80072322)",
                 "DOP hint         6; 2 slot(s) leased by 1 instance(s), 1 busy",
                 "circuit          enrichment: open for 30.0 s: 503 from the API",
                 "circuit          dataverse: closed",
                 "lane prod/a      gate closed for 40.0 s (0x80072321)",
                 "lane prod/b      circuit dataverse open: 403 on PATCH accounts",
                 "lane prod        hint 12; 1 slot(s), 1 busy"):
        assert line in out, out


async def test_unchanged_records_complete_a_run_and_its_requests_are_summed(
        storage: StorageSettings) -> None:
    async with table_client(storage, LEDGER_TABLE, None) as table:
        await runs.start_plan(table, "run-rerun", START_S)
        await manifests.record_plan(table, PlanManifest(
            "run-rerun", 100, 1, 2, complete=True, requests=RequestUsage(reads=3, retries=1)))
        await ledger.record_message(table, "run-rerun-p000000-000", 0, MessageCounts(
            written=10, unchanged=90, requests=RequestUsage(reads=1, writes=2, retries=2)))
        assert await runs.complete_if_done(table, "run-rerun", START_S + 50)
    code, out = await shown(storage, run_id="run-rerun")
    run = json.loads(out)["run"]
    assert code == 0
    assert (run["written"], run["unchanged"], run["open"], run["completed"]) == (10, 90, 0, True)
    assert run["requests"] == {"total": 9, "reads": 4, "writes": 2, "retries": 3, "planner": 4}
    code, text = await shown(storage, as_json=False, run_id="run-rerun")
    for line in ("unchanged                90  (already held their values)",
                 "requests                  9  (reads 4 (planner 4), writes 2, retries 3)"):
        assert line in text, text


async def test_another_run_by_id_and_a_completed_one(storage: StorageSettings) -> None:
    async with table_client(storage, LEDGER_TABLE, None) as table:
        await runs.start_message_run(table, "upstream-1", 2, START_S)
        await ledger.record_message(table, "upstream-1", 0, MessageCounts(written=2))
        assert await runs.complete_if_done(table, "upstream-1", START_S + 4)
    code, out = await shown(storage, run_id="upstream-1")
    run = json.loads(out)["run"]
    assert code == 0
    assert (run["kind"], run["completed"], run["eta_s"], run["elapsed_s"]) == (
        "message", True, 0.0, 4.0)
    assert json.loads(out)["queues"] == {name: 0 for name in json.loads(out)["queues"]}
    _, text = await shown(storage, as_json=False, run_id="upstream-1")
    assert "every queue is empty" in text


async def test_a_producers_long_run_id_is_found_as_the_ledger_keeps_it(
        storage: StorageSettings) -> None:
    long_id = "upstream-" + "x" * 110  # a producer's own id, longer than a run id is kept
    async with table_client(storage, LEDGER_TABLE, None) as table:
        await runs.start_message_run(table, compact_run_id(long_id), 2, START_S)
    code, out = await shown(storage, run_id=long_id)
    assert code == 0
    assert json.loads(out)["run"]["id"] == compact_run_id(long_id)


async def test_no_runs_yet_and_no_such_run(storage: StorageSettings,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert (await shown(storage))[0] == 1
    assert "no runs yet" in capsys.readouterr().err
    assert (await shown(storage, run_id="run-nope"))[0] == 1
    assert "no run 'run-nope' in the ledger" in capsys.readouterr().err


async def test_watch_refreshes_and_waits_for_a_first_run(storage: StorageSettings) -> None:
    code, out = await shown(storage, watch_s=2.0, times=3)
    lines = out.splitlines()
    assert code == 1
    assert len(lines) == 3
    assert all("no runs yet" in json.loads(line)["error"] for line in lines)
    await seed_run(storage)
    code, out = await shown(storage, watch_s=2.0, times=2)
    assert code == 0
    assert [json.loads(line)["run"]["id"] for line in out.splitlines()] == ["run-new"] * 2


def run_main(*argv: str) -> int:
    args: argparse.Namespace = build_parser().parse_args(["status", *argv])
    code: int = args.main(args)
    return code


def test_an_account_without_the_queues_and_tables(account: StorageAccount,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("AzureWebJobsStorage", account.connection_string)
    assert run_main("--json") == 2
    err = capsys.readouterr().err
    assert "does not exist" in err
    assert "init-storage" in err
    assert "AccountKey" not in err


def test_an_identity_without_access_is_told_the_role(account: StorageAccount,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    wrong = re.sub(r"AccountKey=[^;]+", "AccountKey=" + "A" * 88, account.connection_string)
    monkeypatch.setenv("AzureWebJobsStorage", wrong)
    assert run_main() == 2
    err = capsys.readouterr().err
    assert "Storage Table Data Contributor" in err
    assert "AAAA" not in err


def test_bad_options_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main("--watch", "0.1") == 2
    assert run_main("--watch", "--times", "0") == 2
    assert "at least" in capsys.readouterr().err


async def test_ctrl_c_ends_watch_with_130(storage: StorageSettings) -> None:
    await seed_run(storage)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sync", "status", "--watch", "0.5", cwd=ROOT,
        env={**os.environ, "AzureWebJobsStorage": str(storage.connection_string),
             "PYTHONUNBUFFERED": "1"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert process.stdout is not None
    try:
        first = await asyncio.wait_for(process.stdout.readline(), 60)
        assert b"Run run-new" in first
        process.send_signal(signal.SIGINT)
        try:
            _, err = await asyncio.wait_for(process.communicate(), 60)
        except TimeoutError:
            raise AssertionError(f"one SIGINT did not end the watch: {_signals_of(process.pid)}"
                                 ) from None
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 130
    assert b"Traceback" not in err


async def test_the_first_ctrl_c_ends_work_that_drops_its_cancellation() -> None:
    """A watch whose read drops the cancellation Ctrl-C brings (as Python 3.11's wait_for can)
    still ends with 130 on the first SIGINT."""
    cancels: list[int] = []

    async def stubborn() -> int:
        os.kill(os.getpid(), signal.SIGINT)  # the handler is in place before the work starts
        while True:
            try:
                await asyncio.sleep(0.05)
            except asyncio.CancelledError:
                cancels.append(1)
                if len(cancels) > 1:
                    raise

    task = asyncio.ensure_future(until_interrupted(stubborn()))
    assert await asyncio.wait_for(task, 30) == INTERRUPTED
    assert cancels == [1]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # given back


def _signals_of(pid: int) -> str:
    """The signal masks of ``pid`` and of this process, and whether ``pid`` is still there:
    what tells an inherited or blocked SIGINT from a watch that ignored it."""
    found = []
    for name, path in (("child", Path(f"/proc/{pid}/status")), ("test", Path("/proc/self/status"))):
        try:
            lines = path.read_text().splitlines()
        except OSError:
            found.append(f"{name}: gone")
            continue
        found.append(f"{name}: " + ", ".join(line.replace("\t", " ") for line in lines
                                             if line.startswith(("State", "SigBlk", "SigIgn",
                                                                 "SigCgt"))))
    return "; ".join(found)


def test_every_json_key_is_documented_in_operations_md() -> None:
    doc = (ROOT / "docs" / "operations.md").read_text()
    section = doc[doc.index("### `sync status`"):]
    run = totals(10, 5)
    data: dict[str, Any] = status_dict(RunStatus(START_S, run, {}, ClusterState()))
    keys = {*data, *data["run"], *data["gate"], *data["dop"]}
    missing = sorted(key for key in keys if f"`{key}`" not in section)
    assert not missing, f"docs/operations.md's `sync status` section lacks {missing}"


async def test_the_latest_run_of_a_definition(storage: StorageSettings) -> None:
    async with table_client(storage, LEDGER_TABLE, None) as table:
        await runs.start_plan(table, "run-accounts", START_S, "accounts")
        await runs.start_plan(table, "run-contacts", START_S + 60, "contacts")
    out = io.StringIO()
    code = await status.show(storage, None, as_json=True, watch_s=None, out=out,
                             clock=ManualClock(wall_start_s=START_S + 120),
                             definition="accounts")
    run = json.loads(out.getvalue())["run"]
    assert (code, run["id"], run["definition"]) == (0, "run-accounts", "accounts")
    latest = await read_status(storage, None, START_S + 120)
    assert (latest.run.run.run_id, latest.run.run.definition) == ("run-contacts", "contacts")
    missing = await status.show(storage, None, as_json=True, watch_s=None, out=io.StringIO(),
                                definition="leads")
    assert missing == 1


@pytest.mark.parametrize(("flag", "line"), [
    pytest.param(Flag("definition:d", "paused", "why", START_S, acked_by=("h1:7", "h2:9"),
                      first_ack_s=START_S + 2), "definition flag  paused since "
                 "2026-11-18T11:06:40Z: why (read by h1:7, h2:9)", id="read-by-two-hosts"),
    pytest.param(Flag("definition:d", "paused", "", START_S),
                 "definition flag  paused since 2026-11-18T11:06:40Z (no worker has read it "
                 "yet)", id="read-by-none"),
    pytest.param(Flag("definition:d"), "definition flag  running", id="never-set"),
])
def test_a_flag_shows_which_workers_read_it(flag: Flag, line: str) -> None:
    shown = RunStatus(START_S, totals(10, 5), {}, ClusterState(),
                      control=ControlState(definition=flag))
    assert f"  {line}" in render(shown).splitlines()
    data = status_dict(shown)["control"]["definition"]
    assert data["read_by"] == list(flag.acked_by)


async def test_a_definition_the_hosts_do_not_run_is_refused_with_theirs(
        storage: StorageSettings) -> None:
    async with table_client(storage, STATE_TABLE, None) as state:
        await deployment.publish(state, [deployment.Published("accounts", "prod", "https://x",
                                                              ("prod/default",))])
    with pytest.raises(NotFound, match=r"no definition 'contacts'; the deployment runs: "
                                       r"accounts \(as the deployment's hosts published"):
        await read_status(storage, None, START_S, definition="contacts")
