"""Rolling a run back: each written record gets the values it held before, unless a person (or
a later run) changed it since.

For each before-image of the run (``sync.safety.before_images``) that has not expired: read the
record's written columns and ETag; if they still hold the values the run wrote
(``sync.message.changes.same_value`` column by column), PATCH the previous values with
``If-Match: <etag>``, so an edit made between the read and the PATCH answers 412 and is never
undone; on a 412 the record is read and judged once more. A record whose columns hold anything
else is left as it is: ``already_restored`` when they hold the previous values (an earlier
rollback of the run restored it), else ``changed_since``.

Outcomes per record: ``restored``, ``already_restored``, ``changed_since``, ``not_restorable``
(written without a read: no previous values), ``missing`` (the record is gone), ``failed`` (a
service or record error after ``MAX_ATTEMPTS``). With ``dry_run`` nothing is written:
``restored`` counts what would be.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from azure.data.tables.aio import TableClient

from sync.clients.record_client import RecordClient
from sync.clock import SYSTEM_CLOCK, Clock
from sync.failures.errors import ConfigFault, Deferred, ServiceFault, SyncError
from sync.message.changes import same_value
from sync.safety.before_images import Image, read_images
from sync.state import runs

logger = logging.getLogger(__name__)

RESTORED: Final = "restored"
ALREADY_RESTORED: Final = "already_restored"
CHANGED_SINCE: Final = "changed_since"
NOT_RESTORABLE: Final = "not_restorable"
MISSING: Final = "missing"
FAILED: Final = "failed"
OUTCOMES: Final = (RESTORED, ALREADY_RESTORED, CHANGED_SINCE, NOT_RESTORABLE, MISSING, FAILED)
MAX_ATTEMPTS: Final = 4
"""Tries of one record after a throttle or a service fault (waiting Retry-After or a back-off)."""
BACKOFF_S: Final = 1.0
"""The first wait after a service fault; doubled on each further one."""
DEFAULT_CONCURRENCY: Final = 8
"""Records restored at once: an operator's command, well inside any environment's DOP hint."""


class RollbackError(Exception):
    """The rollback cannot start (no such run, images expired); nothing was changed."""


@dataclass(slots=True)
class RollbackReport:
    """What a rollback did (or, dry, would do)."""

    run_id: str
    dry_run: bool
    outcomes: Counter[str] = field(default_factory=Counter)
    expired: int = 0
    """Images past their retention, left alone."""

    @property
    def failed(self) -> int:
        return self.outcomes[FAILED]

    def to_dict(self) -> dict[str, Any]:
        return {"run": self.run_id, "dry_run": self.dry_run, "expired": self.expired,
                **{outcome: self.outcomes[outcome] for outcome in OUTCOMES}}


def still_written(values: Mapping[str, Any], written: Mapping[str, Any]) -> bool:
    """Whether every column still holds the value the run wrote (or, given the before-image,
    the value it replaced)."""
    return all(column in values and same_value(values[column], value)
               for column, value in written.items())


def left_as_it_is(values: Mapping[str, Any], image: Image) -> str:
    """Why a record that no longer holds the run's values is not restored: it holds the
    previous ones already, or someone changed it."""
    restored = image.before is not None and still_written(values, image.before)
    return ALREADY_RESTORED if restored else CHANGED_SINCE


async def restore_one(client: RecordClient, image: Image, *, dry_run: bool) -> str:
    """One record's outcome (see the module); raises the client's errors."""
    if image.before is None:
        return NOT_RESTORABLE
    for _ in range(2):  # a 412 re-checks once
        read = await client.read(image.entity_set, image.record_id, tuple(image.after))
        if read is None:
            return MISSING
        if not still_written(read.values, image.after):
            return left_as_it_is(read.values, image)
        if dry_run or await client.write(image.entity_set, image.record_id, image.before,
                                         read.etag):
            return RESTORED
    logger.warning("record %s changed twice while it was being restored", image.record_id,
                   extra={"event": "rollback_raced", "record_id": image.record_id})
    return FAILED


async def attempt(client: RecordClient, image: Image, *, dry_run: bool,
                  clock: Clock = SYSTEM_CLOCK) -> str:
    """``restore_one`` with waits: a throttle waits its Retry-After, a service fault a growing
    back-off; after ``MAX_ATTEMPTS``, or at once for the record's own error (or a
    configuration fault), the record has failed."""
    backoff_s = BACKOFF_S
    error: SyncError | None = None
    for number in range(1, MAX_ATTEMPTS + 1):
        if number > 1:
            await clock.sleep(_delay_s(error, backoff_s))
            backoff_s *= 2
        try:
            return await restore_one(client, image, dry_run=dry_run)
        except (Deferred, ServiceFault) as retryable:
            error = retryable
            if isinstance(retryable, ConfigFault):
                break
        except SyncError as refused:
            error = refused
            break
    logger.warning("record %s not restored: %s", image.record_id, error,
                   extra={"event": "rollback_failed", "record_id": image.record_id})
    return FAILED


def _delay_s(error: SyncError | None, backoff_s: float) -> float:
    """Retry-After for a throttle (or an open circuit), else the back-off."""
    return error.retry_after_s if isinstance(error, Deferred) else backoff_s


async def live_images(images_table: TableClient, ledger: TableClient, run_id: str,
                      now_s: float) -> tuple[list[Image], int]:
    """The run's images that have not expired, and how many have; ``RollbackError`` when there
    is nothing to roll back (no such run, or every image expired)."""
    images, swept = await read_images(images_table, run_id)
    if not images:
        if swept:
            raise RollbackError(f"run {run_id!r}: its before-images expired "
                                "(SYNC_ROLLBACK_RETENTION_DAYS) and were deleted: nothing "
                                "changed")
        if await runs.read_run(ledger, run_id) is None:
            raise RollbackError(f"no run {run_id!r}: the ledger does not know it (run ids look "
                                "like run-20261122T020000Z-1a2b3c, or a producer's batch id)")
        raise RollbackError(f"run {run_id!r} changed no record (or kept no before-image): "
                            "nothing to roll back")
    live = [image for image in images if not image.expired(now_s)]
    if not live:
        raise RollbackError(f"run {run_id!r}: its {len(images):,} before-images expired "
                            "(SYNC_ROLLBACK_RETENTION_DAYS): nothing changed")
    return live, len(images) - len(live)


async def roll_back(client: RecordClient, images_table: TableClient, ledger: TableClient,
                    run_id: str, *, dry_run: bool, concurrency: int = DEFAULT_CONCURRENCY,
                    clock: Clock = SYSTEM_CLOCK,
                    on_progress: Callable[[int, int], None] | None = None) -> RollbackReport:
    """Restore a run's records (see the module); ``on_progress`` hears (records done, records
    to do) after each one."""
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    images, expired = await live_images(images_table, ledger, run_id, clock.wall_s())
    report = RollbackReport(run_id, dry_run, expired=expired)
    gate = asyncio.Semaphore(concurrency)

    async def one(image: Image) -> None:
        async with gate:
            report.outcomes[await attempt(client, image, dry_run=dry_run, clock=clock)] += 1
            if on_progress is not None:
                on_progress(report.outcomes.total(), len(images))

    async with asyncio.TaskGroup() as group:
        for image in images:
            group.create_task(one(image))
    return report
