"""Queue depth and oldest-message age, per queue, sampled by a timer.

Azure's own queue metric is account-wide and refreshed too rarely to follow a run, so the app
samples each of its queues (``sync.state.storage.QueueProbe`` holds a client of each): the
approximate message count from the queue's properties, and the age of the first message a
peek returns. A peek sees visible messages only:
records re-enqueued with a delay count in the depth but not in the age until they show again.
An empty queue (nothing visible) reports an age of 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from azure.storage.queue.aio import QueueClient

from sync.clock import SYSTEM_CLOCK, Clock
from sync.telemetry import metrics


@dataclass(frozen=True, slots=True)
class QueueSample:
    """One queue's state when it was sampled."""

    queue: str
    depth: int
    oldest_age_s: float


def age_s(inserted_on: datetime | None, now_s: float) -> float:
    """Seconds since ``inserted_on`` (0 when unknown, or in the future by clock skew)."""
    if inserted_on is None:
        return 0.0
    return max(0.0, now_s - inserted_on.timestamp())


async def sample(queue: QueueClient, clock: Clock = SYSTEM_CLOCK) -> QueueSample:
    """The depth and oldest visible message's age of one queue."""
    properties = await queue.get_queue_properties()
    peeked = await queue.peek_messages(max_messages=1)
    oldest = peeked[0].inserted_on if peeked else None
    return QueueSample(queue.queue_name, int(properties.approximate_message_count or 0),
                       age_s(oldest, clock.wall_s()))


async def record_queues(queues: Sequence[QueueClient],
                        clock: Clock = SYSTEM_CLOCK) -> list[QueueSample]:
    """Sample every queue and record the gauges; answers the samples."""
    samples = [await sample(queue, clock) for queue in queues]
    for found in samples:
        metrics.queue_sampled(found.queue, found.depth, found.oldest_age_s)
    return samples
