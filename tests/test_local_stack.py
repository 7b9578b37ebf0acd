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
from pathlib import Path

import pytest

from sync.definition import parse_definition
from sync.local.emulators.enrichment import EnrichmentConfig
from sync.local.processes import Children
from sync.local.verify import is_enriched

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
def test_two_thousand_records_end_to_end_with_two_instances() -> None:
    result = run_local("--records", "2000", "--instances", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert summary_count(out, "planned") == 2000
    assert summary_count(out, "written") == 2000
    assert summary_count(out, "dead-lettered") == 0
    assert "emulator check   2,000/2,000 enriched, 0 dead-lettered, 0 unaccounted, 0 created" \
        in out
    assert "OK: every record" in out
    logs = " ".join(path.read_text() for path in (ROOT / ".local-run").glob("*.log"))
    assert "host-1" in " ".join(p.name for p in (ROOT / ".local-run").glob("*.log"))
    for secret in ("AccountKey", EnrichmentConfig().api_key, "Bearer ", "eyJ"):
        assert secret not in logs + out + result.stderr


def children_of(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.timeout(120)
def test_ctrl_c_stops_everything_it_started() -> None:
    process = subprocess.Popen([sys.executable, "-m", "sync", "local", "--records", "20000"],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    deadline_s = time.monotonic() + 60
    started: set[int] = set()
    while time.monotonic() < deadline_s and len(started) < 4:  # azurite, 2 emulators, host
        started |= children_of(process.pid)
        time.sleep(0.2)
    assert len(started) >= 4, f"children seen: {started}"
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 130, output
    assert "Interrupted" in output
    assert [pid for pid in started if alive(pid)] == []


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
