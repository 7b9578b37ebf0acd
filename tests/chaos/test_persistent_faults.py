"""A 403 on every write that lasts the whole run (the caller lacks ``prvWriteAccount``): nothing is
written, nothing dead-lettered, the run reports itself blocked with the reason, and the sync
stops knocking: one probe per growing opening for the whole cluster, a request never split.

Before, the circuit opened once, for 5 s, and never again: each message came back every 2-3 s,
split down to single records (12,500 re-enqueues for 500 records in 90 s, 869 refused writes in
60 s for 500 records).

The scenarios run on a time scale: "5 minutes" of the service's time are ``SCALE`` times shorter
here (the emulator's window, the circuit's openings and its cap all divided by ``SCALE``), and
the figures are given in the service's time (per minute of it).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final

import pytest

from sync.local.verify import emulator_stats
from tests.chaos.harness import (
    LOG_ROOT,
    RECORDS,
    Result,
    Stack,
    assert_nothing_lost,
    current,
    findings,
    note,
    run_local,
)

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(300)]

StartStack = Callable[..., Awaitable[Stack]]
SCALE: Final = 5.0
"""Service seconds per second here: the documented 300 s window is 60 s."""
MINUTE_S: Final = 60.0 / SCALE
RUN_MINUTES: Final = 5
SCALED_ENV: Final = {"SYNC_CIRCUIT_OPEN_S": "1", "SYNC_CIRCUIT_MAX_OPEN_S": str(300 / SCALE)}
"""The defaults (5 s, growing to 300 s) on the scale."""
EMULATOR_ARGS: Final = (f"--window-s={300 / SCALE:g}",)
REFUSED: Final = {"preset": "403-privilege", "hits": "writes"}
PRESET: Final = "403-privilege"
REASON: Final = "is missing prvWriteAccount; check the application user's permissions"
FIRST_MINUTE_REFUSED_MAX: Final = 40
"""Writes refused in the first minute: those in flight when the first answer came, and the
probes of the first short openings."""
LATER_MINUTE_REFUSED_MAX: Final = 6
"""Writes refused in each later minute: a probe per opening, the openings 20 s and longer."""
LATER_REQUEUES_PER_MESSAGE_MAX: Final = 4.0
"""Times a message goes back to the queue in each later minute: once per opening at most."""
FIGURES_PATH: Final = LOG_ROOT / "persistent-403.json"


@dataclass(frozen=True, slots=True)
class Minute:
    """What one minute of the service's time saw."""

    refused_writes: int
    requeues_per_message: float
    """Records sent back to the queue in that minute, per record planned: how many times each
    message went back."""


def record_figures(name: str, minutes: list[Minute]) -> str:
    """Keep the figures beside the results table; answer them as one line."""
    figures = json.loads(FIGURES_PATH.read_text()) if FIGURES_PATH.exists() else {}
    figures[name] = [asdict(minute) for minute in minutes]
    FIGURES_PATH.parent.mkdir(parents=True, exist_ok=True)
    FIGURES_PATH.write_text(json.dumps(figures, indent=1))
    refused = ", ".join(str(m.refused_writes) for m in minutes)
    requeues = ", ".join(f"{m.requeues_per_message:.1f}" for m in minutes)
    return f"refused writes by minute {refused}; re-enqueues per message by minute {requeues}"


async def test_a_permanent_403_backs_off_through_the_pieces(stacks: StartStack) -> None:
    """Two hosts for 5 minutes of the service's time, sampled each minute: the first minute
    meets the refusal, the later ones send a probe per opening for the whole cluster."""
    started_s = time.monotonic()
    stack = await stacks(env=SCALED_ENV, dataverse_args=(
        *EMULATOR_ARGS, f"--fault={json.dumps(REFUSED)}"))
    for number in range(2):
        stack.start_host(fire_timer=number == 0)
    minutes: list[Minute] = []
    refused_before = requeued_before = 0
    for _ in range(RUN_MINUTES):
        await asyncio.sleep(MINUTE_S)
        refused = int((await emulator_stats(stack.dataverse_url))["faults"].get(PRESET, 0))
        snap = await current(stack)
        minutes.append(Minute(refused - refused_before,
                              (snap.counts.reenqueued - requeued_before) / stack.records))
        refused_before, requeued_before = refused, snap.counts.reenqueued
    found = await findings(stack, await current(stack))
    figures = record_figures("pieces, 2 hosts", minutes)
    note(Result("permanent 403 for 5 min", f"403 on every write, 2 hosts, time x{SCALE:g}",
                stack.records, found.snapshot.counts.written, found.dead_by_reason,
                time.monotonic() - started_s, f"blocked; {figures}"))
    assert_nothing_lost(found, finished=False)
    snap = found.snapshot
    assert snap.counts.written == 0
    assert snap.counts.dead_lettered == 0
    assert snap.planned == stack.records
    assert REASON in snap.blocked_by
    assert found.poison == []
    assert minutes[0].refused_writes <= FIRST_MINUTE_REFUSED_MAX, figures
    for minute in minutes[1:]:
        assert minute.refused_writes <= LATER_MINUTE_REFUSED_MAX, figures
        assert minute.requeues_per_message <= LATER_REQUEUES_PER_MESSAGE_MAX, figures


def test_a_permanent_403_backs_off_through_sync_local(tmp_path: Path) -> None:
    """The command users run, for 5 minutes of the service's time: blocked, exit 1, the reason
    named, nothing dead-lettered, the refused writes counted by the emulator bounded."""
    run = run_local(tmp_path / "run.json", timeout_s=RUN_MINUTES * MINUTE_S, env=SCALED_ENV,
                    dataverse_faults=(REFUSED,),
                    extra_args=tuple(f"--emulator-arg={arg}" for arg in EMULATOR_ARGS))
    figures = run.figures or {}
    stats = figures.get("emulator_stats") or {}
    refused = int(stats.get("faults", {}).get(PRESET, 0))
    requeues = int(figures.get("reenqueued", 0)) / RECORDS
    note(Result("permanent 403 for 5 min (sync local)",
                f"403 on every write, time x{SCALE:g}", RECORDS, int(figures.get("written", 0)),
                run.dead_by_reason, run.wall_s,
                f"exit {run.code}; {refused} refused writes, {requeues:.1f} re-enqueues per "
                f"message in {RUN_MINUTES} min"))
    assert run.code == 1, run.explain()
    assert "FAILED: blocked:" in run.stderr, run.explain()
    assert REASON in run.stderr, run.explain()
    assert "OK:" not in run.stdout, run.explain()
    assert figures["planned"] == RECORDS
    assert figures["written"] == 0
    assert figures["dead_lettered"] == 0
    assert not figures["finished"]
    assert len(run.unaccounted) == RECORDS  # every record still to do: on the queue
    assert refused <= FIRST_MINUTE_REFUSED_MAX + (RUN_MINUTES - 1) * LATER_MINUTE_REFUSED_MAX
    assert requeues <= 2 * LATER_REQUEUES_PER_MESSAGE_MAX + (RUN_MINUTES - 1) * \
        LATER_REQUEUES_PER_MESSAGE_MAX
