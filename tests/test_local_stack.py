"""End to end: ``python -m sync local`` as a user runs it, real processes, Azurite, emulators."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sync.config.table_definition import parse_definition
from sync.failures.circuit import CircuitView
from sync.local.emulators.enrichment import EnrichmentConfig
from sync.local.hosts import HostWatch
from sync.local.processes import Children
from sync.local.progress import Snapshot
from sync.local.summary import Outcome, report, still_to_do
from sync.local.verify import Verification, is_enriched, with_cancelled
from sync.message.counts import MessageCounts
from tests.test_signals import (
    EXIT_WAIT_S,
    STACK_CHILDREN,
    START_WAIT_S,
    LocalRun,
    assert_stopped_gracefully,
)

pytestmark = pytest.mark.usefixtures("local_run_dir")  # each stack in its own directory
ROOT = Path(__file__).parents[1]
RUN_TIMEOUT_S = 240


def run_local(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sync", "local", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False)


def summary_count(output: str, label: str) -> int:
    match = re.search(rf"^\s+{label}\s+([\d,]+)", output, re.MULTILINE)
    assert match, f"no {label!r} in summary:\n{output}"
    return int(match.group(1).replace(",", ""))


@pytest.mark.timeout(RUN_TIMEOUT_S + 30)
def test_two_thousand_records_end_to_end_with_two_instances(local_run_dir: Path) -> None:
    figures = local_run_dir / "run.json"
    result = run_local("--records", "2000", "--instances", "2", "--json-out", str(figures))
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert summary_count(out, "planned") == 2000
    assert summary_count(out, "written") == 2000
    assert summary_count(out, "dead-lettered") == 0
    assert "emulator check   2,000/2,000 enriched, 0 dead-lettered, 0 unaccounted, 0 created" \
        in out
    assert "OK: every record" in out
    logs = " ".join(path.read_text() for path in local_run_dir.glob("*.log"))
    assert "host-1" in " ".join(p.name for p in local_run_dir.glob("*.log"))
    for secret in ("AccountKey", EnrichmentConfig().api_key, "Bearer ", "eyJ"):
        assert secret not in logs + out + result.stderr
    assert_service_timeline_leads_the_ledger(json.loads(figures.read_text()), 2000)


def assert_service_timeline_leads_the_ledger(figures: dict[str, Any], records: int) -> None:
    """``--json-out``'s two timelines, sampled at the same polls: the emulator's count of
    writes never falls, is never behind the ledger's count of finished messages (a message is
    counted after its writes land; nothing was dead-lettered), and ends at every record."""
    ledger = [(float(t), int(n)) for t, n in figures["timeline"]]
    service = [(float(t), int(n)) for t, n in figures["service_timeline"]]
    assert [t for t, _ in service] == [t for t, _ in ledger]
    counts = [n for _, n in service]
    assert counts == sorted(counts)
    assert all(written >= done for (_, written), (_, done) in zip(service, ledger, strict=True))
    assert counts[-1] == records


@pytest.mark.timeout(RUN_TIMEOUT_S + 30)
def test_a_rerun_with_nothing_to_change_writes_nothing_and_says_so() -> None:
    result = run_local("--records", "300", "--emulator-arg=--enriched-share=1")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert summary_count(out, "written") == 0
    unchanged = summary_count(out, "unchanged")
    assert unchanged + summary_count(out, "dead-lettered") == 300
    assert unchanged > 250
    requests = re.search(r"requests\s+([\d,]+)\s+\(Dataverse: reads (\d+), writes (\d+)", out)
    assert requests is not None, out
    assert int(requests.group(3)) == 0  # not one write
    assert "OK: every record" in out


@pytest.mark.timeout(START_WAIT_S + EXIT_WAIT_S + 60)
def test_ctrl_c_stops_everything_it_started() -> None:
    run = LocalRun("--records", "20000", sigint=signal.SIG_DFL)  # however the suite started
    try:
        run.wait_for_children(STACK_CHILDREN)
        run.signal(signal.SIGINT)
        assert_stopped_gracefully(run, signal.SIGINT)
    finally:
        run.kill_everything()


@pytest.mark.timeout(RUN_TIMEOUT_S + 30)
def test_dataverse_url_points_the_sync_at_a_running_endpoint(tmp_path: Path) -> None:
    children = Children(tmp_path)
    try:
        _, url = children.start("external", ["emulator", "dataverse", "--records", "300"],
                                wait_for_url_s=30)
        result = run_local("--dataverse-url", url)
        assert result.returncode == 0, result.stdout + result.stderr
        assert summary_count(result.stdout, "planned") == 300
        assert summary_count(result.stdout, "written") == 300
        assert "emulator check" not in result.stdout  # not ours to inspect: the ledger decides
        with urllib.request.urlopen(f"{url}/_emulator/records?entityset=accounts",  # noqa: S310
                                    timeout=10) as answer:
            rows = json.load(answer)["value"]
        assert all(is_enriched(row, parse_definition("")) for row in rows)
    finally:
        children.stop_all()


@pytest.mark.timeout(RUN_TIMEOUT_S + EXIT_WAIT_S + 60)
def test_keep_leaves_the_stack_up_for_sync_status_until_sigterm() -> None:
    run = LocalRun("--records", "300", "--keep")
    try:
        run.wait_until("the kept stack", lambda: "Kept running (--keep)" in run.output,
                       RUN_TIMEOUT_S)
        assert "OK: every record" in run.output
        answer = subprocess.run([sys.executable, "-m", "sync", "status", "--local", "--json"],
                                cwd=ROOT, capture_output=True, text=True, timeout=60,
                                check=False)
        assert answer.returncode == 0, answer.stderr
        status = json.loads(answer.stdout)
        run_figures = status["run"]
        assert (run_figures["planned"], run_figures["written"], run_figures["dead_lettered"],
                run_figures["open"], run_figures["completed"]) == (300, 300, 0, 0, True)
        assert summary_count(run.output, "written") == run_figures["written"]
        assert status["poisoned"] == summary_count(run.output, "poisoned msgs") == 0
        assert status["dop"]["hint"] is not None
        run.signal(signal.SIGTERM)
        assert run.wait_for_exit() == 0, run.output
        assert "Stopped: no process this run started is left." in run.output
        assert len(run.seen) >= STACK_CHILDREN
        assert run.left_alive() == []
        gone = subprocess.run([sys.executable, "-m", "sync", "status", "--local"], cwd=ROOT,
                              capture_output=True, text=True, timeout=60, check=False)
        assert gone.returncode == 2
        assert "no local stack is running" in gone.stderr
    finally:
        run.kill_everything()


def sync_command(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m sync ARGS`` as an operator runs it."""
    return subprocess.run([sys.executable, "-m", "sync", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=False)


def local_status() -> dict[str, Any]:
    answer = sync_command("status", "--local", "--json")
    assert answer.returncode == 0, answer.stderr
    status: dict[str, Any] = json.loads(answer.stdout)
    return status


def enrichment_url(run_dir: Path) -> str:
    log = (run_dir / "enrichment-emulator.log").read_text()
    match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", log)
    assert match, log
    return match.group(1)


@pytest.mark.timeout(RUN_TIMEOUT_S + EXIT_WAIT_S + 120)
def test_status_tells_a_faulty_run_and_replay_brings_the_dead_letters_to_written(
        local_run_dir: Path) -> None:
    fault = json.dumps({"preset": "422-unknown-company", "rate": 0.1})
    run = LocalRun("--records", "300", "--keep", f"--enrichment-arg=--fault={fault}")
    try:
        run.wait_until("the kept stack", lambda: "Kept running (--keep)" in run.output,
                       RUN_TIMEOUT_S)
        before = local_status()
        dead = before["run"]["dead_lettered"]
        assert dead > 0, run.output
        assert before["run"]["dead_lettered_by_reason"] == {"not_enrichable": dead}
        assert (before["run"]["written"] + dead, before["run"]["completed"]) == (300, True)
        assert before["dead_letters_by_state"] == {"dead": dead}
        listed = sync_command("deadletters", "list", "--local", "--reason", "not_enrichable")
        assert len(listed.stdout.strip().splitlines()) >= dead, listed.stdout
        faults = f"{enrichment_url(local_run_dir)}/_emulator/faults"
        cleared = urllib.request.Request(faults, method="DELETE")  # noqa: S310
        with urllib.request.urlopen(cleared, timeout=10) as answer:  # noqa: S310 (loopback)
            assert answer.status == 200
        replayed = sync_command("deadletters", "replay", "--local")
        assert replayed.returncode == 0, replayed.stderr
        assert f"replayed {dead} dead letters" in replayed.stdout
        assert f"deleted {dead} messages from sync-deadletter" in replayed.stdout
        after = wait_for_status(lambda s: s["run"]["written"] == 300)
        assert after["dead_letters_by_state"] == {"replayed": dead}
        assert after["queues"]["sync-deadletter"] == 0, (replayed.stdout, after)
        again = sync_command("deadletters", "replay", "--local")
        assert "replayed 0 dead letters" in again.stdout
        assert f"{dead} skipped: already replayed" in again.stdout
        run.signal(signal.SIGTERM)
        assert run.wait_for_exit() == 0, run.output
        assert run.left_alive() == []
    finally:
        run.kill_everything()


def wait_for_status(ready: Callable[[dict[str, Any]], bool],
                    limit_s: float = 90.0) -> dict[str, Any]:
    """Poll ``sync status --local --json`` until ``ready`` (bounded by ``limit_s``)."""
    deadline_s = time.monotonic() + limit_s
    while True:
        status = local_status()
        if ready(status) or time.monotonic() > deadline_s:
            assert ready(status), status
            return status
        time.sleep(1)


@pytest.mark.timeout(RUN_TIMEOUT_S + 30)
def test_a_dry_run_reports_what_would_change_and_writes_nothing() -> None:
    result = run_local("--records", "300", "--dry-run")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert summary_count(out, "planned") == 300
    assert summary_count(out, "written") == 0
    assert "Dry run: nothing was written" in out
    compared = sum(summary_count(out, label) for label in ("would change", "unchanged", "failed"))
    assert compared == 300
    assert summary_count(out, "would change") > 0
    assert "sample (first 20 changes)" in out
    assert "OK: dry run: every planned record was compared; nothing was written." in out


def outcome_of(*, planned: int = 2000, written: int = 300, cancelled: int = 0,
               unaccounted: int = 0, poisoned_records: int = 0, circuits: bool = False,
               blocked: str = "", ended_hosts: str = "", queued: int = 0) -> Outcome:
    counts = MessageCounts(written=written, cancelled=cancelled)
    views = {"enrichment": CircuitView(1e12, 3, "503 Service Unavailable")} if circuits else {}
    snap = Snapshot(planned=planned, plan_complete=True, counts=counts, queued_messages=queued,
                    elapsed_s=10.0, circuits=views, blocked=blocked)
    check = Verification(records=planned, enriched=written,
                         unaccounted=[f"id-{n}" for n in range(unaccounted)])
    return Outcome(snap, with_cancelled(check, cancelled), 1 if poisoned_records else 0,
                   frozenset(), [], None, poisoned_records=poisoned_records,
                   ended_hosts=ended_hosts)


def test_a_cancelled_run_is_reported_cancelled_and_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert report(outcome_of(cancelled=1700, unaccounted=1700), 10.0) == 0
    out, err = capsys.readouterr()
    assert summary_count(out, "cancelled") == 1700
    assert "emulator check   300/2,000 enriched, 0 dead-lettered, 1,700 cancelled, " \
           "0 unaccounted, 0 created" in out
    assert "OK: the run was cancelled (sync cancel): 1,700 records cancelled" in out
    assert err == ""


def test_more_records_missing_than_cancelled_is_a_failure(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert report(outcome_of(cancelled=10, unaccounted=1700, written=290), 10.0) == 1
    assert "FAILED: 1700 records unaccounted for, 0 created" in capsys.readouterr().err


def test_poisoned_records_are_not_still_to_do(capsys: pytest.CaptureFixture[str]) -> None:
    outcome = outcome_of(planned=400, written=300, poisoned_records=100)
    assert still_to_do(outcome) == 0
    report(outcome, 10.0)
    out = capsys.readouterr().out
    assert summary_count(out, "still to do") == 0
    assert "poisoned msgs             1  (100 records: see `sync poison list`)" in out


@pytest.mark.parametrize(("blocked", "circuits", "says"), [
    pytest.param("enrichment: 503 now", True, "FAILED: blocked: enrichment: 503 now. 1,700",
                 id="the-watch-s-verdict-names-the-fault-it-judged"),
    pytest.param("", True, "FAILED: blocked: enrichment: 503 Service Unavailable. 1,700",
                 id="out-of-time-with-a-circuit-open-names-the-circuit-s-fault-now"),
    pytest.param("", False, "FAILED: the sync did not finish (timeout, or no host left",
                 id="out-of-time-without-a-circuit"),
])
def test_a_run_that_did_not_finish_says_why(capsys: pytest.CaptureFixture[str], blocked: str,
                                            circuits: bool, says: str) -> None:
    assert report(outcome_of(blocked=blocked, circuits=circuits, queued=17), 10.0) == 1
    assert says in capsys.readouterr().err


def test_a_finished_run_does_not_name_a_circuit_as_open(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert report(outcome_of(planned=300, circuits=True), 10.0) == 0
    assert "circuit open" not in capsys.readouterr().out


def test_a_host_that_ended_is_reported_and_the_run_judged_by_its_records(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    children = Children(tmp_path)
    hosts = [children.start(f"host-{n}", ["emulator", "enrichment"])[0] for n in range(2)]
    said: list[str] = []
    clock = iter([0.0, 12.4])
    watch = HostWatch(hosts, said.append, clock=lambda: next(clock))
    try:
        assert watch.any_alive()
        os.killpg(hosts[1].process.pid, signal.SIGKILL)
        hosts[1].process.wait()
        assert watch.any_alive()
        assert watch.any_alive()  # said once
    finally:
        children.stop_all()
    assert said == ["host-1 ended (SIGKILL) after 12 s; the 1 other host(s) take over its "
                    "messages when their lease ends (up to 60 s)"]
    assert watch.summary() == "1 of 2 ran to the end; host-1 ended (SIGKILL) after 12 s"
    assert report(outcome_of(planned=300, ended_hosts=watch.summary()), 10.0) == 0
    assert "  hosts            1 of 2 ran to the end; host-1 ended (SIGKILL) after 12 s" in \
        capsys.readouterr().out


@pytest.mark.parametrize(("name", "value"), [
    ("APPLICATIONINSIGHTS_CONNECTION_STRING", "garbage"),
    ("DATAVERSE_STATIC_TOKEN", "local-token\nwith-a-line-break"),
])
def test_a_setting_the_wire_would_refuse_stops_sync_local_before_anything_starts(
        name: str, value: str) -> None:
    done = subprocess.run([sys.executable, "-m", "sync", "local", "--records", "10"],
                          cwd=ROOT, env={**os.environ, name: value}, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "nothing was started" in done.stderr
    assert f"  - {name} " in done.stderr
    assert "Starting Azurite" not in done.stdout
