"""End to end: ``python -m sync local --environments 2 --identities 2``, real processes, Azurite,
an emulator per environment: every record of both environments written, four lanes shown."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.test_local_stack import RUN_TIMEOUT_S, run_local, summary_count

RECORDS = 200
LANES = ["env1/id1", "env1/id2", "env2/id1", "env2/id2"]


@pytest.mark.timeout(RUN_TIMEOUT_S + 30)
def test_two_environments_with_two_identities_write_every_record_of_both(
        local_run_dir: Path) -> None:
    result = run_local("--records", str(RECORDS), "--environments", "2", "--identities", "2")
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert summary_count(out, "planned") == 2 * RECORDS
    assert summary_count(out, "written") == 2 * RECORDS
    assert summary_count(out, "dead-lettered") == 0
    for environment in ("env1", "env2"):
        assert (f"emulator check   {environment}: {RECORDS}/{RECORDS} enriched, 0 "
                "dead-lettered, 0 unaccounted, 0 created") in out
    lanes = re.findall(r"^  (env\d/id\d) +([\d,]+) written", out, re.MULTILINE)
    assert sorted(name for name, _ in lanes) == LANES
    # the emulators counted every write under one of the four identities' users
    assert sum(int(n.replace(",", "")) for _, n in lanes) == 2 * RECORDS
    assert out.count("each user, on each of") == 2
    assert "OK: every record" in out
    logs = " ".join(path.read_text() for path in local_run_dir.glob("*.log"))
    assert "dataverse-emulator-env2" in " ".join(p.name for p in local_run_dir.glob("*.log"))
    assert "Bearer " not in logs + out + result.stderr
