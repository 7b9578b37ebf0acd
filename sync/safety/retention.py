"""Deleting what runs leave behind once ``SYNC_STATE_RETENTION_DAYS`` have passed.

The planner's timer calls ``sweep_quietly`` once per tick, after the before-image sweep. For
each run started more than the retention ago (never less than the before-images' retention
plus the image sweep's look-back, so the image sweep has had its chances and rollback still
says "expired"), oldest-first in bounded steps (``budget_s``; the next tick goes on):

- its ledger partition and index rows (``sync.state.run_retention``);
- its dry-run report partition, its before-image partition (by then only the sweep's
  tombstone: the images expired and were swept), its canary row and admitted ids, and its run
  flag;

then the flag rows past the retention that stop nothing (``sync.safety.flags.sweep_flags``).
After a year of nights the shared state holds the last retention's worth of runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from sync.safety import flags
from sync.safety.before_images import DAY_S
from sync.safety.canary import CANARY_PARTITION, admitted_partition
from sync.safety.image_sweep import SWEEP_LOOKBACK_DAYS
from sync.state.run_retention import ExpiredRun, delete_partition, expired_runs, retire_run
from sync.state.storage import Stores
from sync.state.sweeps import quietly

SWEEP_BUDGET_S: Final = 60.0
RUNS_PER_STEP: Final = 50


@dataclass(frozen=True, slots=True)
class Retention:
    """How long a run's rows are kept, in days (see the module)."""

    state_days: int
    rollback_days: int

    @property
    def days(self) -> int:
        """The retention in force: never before the images' sweep range has passed."""
        return max(self.state_days, self.rollback_days + SWEEP_LOOKBACK_DAYS)


async def retire(stores: Stores, run: ExpiredRun) -> int:
    """Delete every row of one run, in every table; how many went."""
    gone = await delete_partition(stores.reports, run.run_id)
    gone += await delete_partition(stores.before_images, run.run_id)
    gone += await delete_partition(stores.state, admitted_partition(run.run_id))
    await stores.state.delete_entity(CANARY_PARTITION, run.run_id)
    await stores.state.delete_entity(flags.CONTROL_PARTITION, flags.run_scope(run.run_id))
    return gone + await retire_run(stores.ledger, run)


async def sweep(stores: Stores, now_s: float, retention: Retention, *,
                monotonic_s: Callable[[], float], budget_s: float = SWEEP_BUDGET_S) -> int:
    """Retire the runs past the retention within ``budget_s``, then sweep the flags; how many
    rows went."""
    deadline_s = monotonic_s() + budget_s
    cutoff_s = now_s - retention.days * DAY_S
    gone = 0
    while monotonic_s() < deadline_s:
        found = await expired_runs(stores.ledger, cutoff_s, RUNS_PER_STEP)
        for run in found:
            gone += await retire(stores, run)
        if len(found) < RUNS_PER_STEP:
            break
    return gone + await flags.sweep_flags(stores.state, now_s, retention.days)


async def sweep_quietly(stores: Stores, now_s: float, retention: Retention, *,
                        monotonic_s: Callable[[], float]) -> int:
    """``sweep``, logging instead of raising: the plan it follows must not fail for it."""
    return await quietly(sweep(stores, now_s, retention, monotonic_s=monotonic_s),
                         "rows of runs past their retention", "retention")
