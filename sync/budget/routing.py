"""Which lane a message is written through, and where its unfinished work goes.

The planner deals a definition's messages to its lanes in turn. A message that names none (a
producer's, or an older contract's) takes the open lane with the most room. When a lane is
throttled or its circuit is open, the records it could not write go back on the queue naming
no lane, visible at once, so the worker that takes them writes them through whichever lane is
open then, instead of waiting out the Retry-After (routing away, as one would by hand). A
message names one lane (or none, and is then given one when taken) and a record is in one
message at a time, so no record is ever written by two lanes at once.
"""

from __future__ import annotations

from collections.abc import Sequence

from sync.budget.lane import Lane


def is_open(lane: Lane) -> bool:
    """The lane may send now: its gate (shared by every instance) is open and its Dataverse
    circuit is closed."""
    return lane.governor.gate_remaining_s() == 0 and lane.dependency.circuit.state == "closed"


def room(lane: Lane) -> int:
    """Requests the lane could add now (what it allows less what it has in flight)."""
    return lane.governor.allowed - lane.governor.in_flight


def pick(lanes: Sequence[Lane]) -> Lane:
    """For a message that names no lane: the open lane with the most room (the first in
    order on a tie); when none is open, the one whose gate opens first."""
    open_lanes = [lane for lane in lanes if is_open(lane)]
    if open_lanes:
        return max(open_lanes, key=room)
    return min(lanes, key=lambda lane: lane.governor.gate_remaining_s())


def away_from(current: Lane, lanes: Sequence[Lane]) -> Lane | None:
    """Another open lane to hand ``current``'s unfinished work to; None when there is none."""
    others = [lane for lane in lanes if lane.key != current.key and is_open(lane)]
    return max(others, key=room) if others else None
