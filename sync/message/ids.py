"""The ids of the messages a run is made of, and how to read a run back from one.

A planner's message is ``<run>-p<page>-<n>``; a replay of a run's dead letters is
``<run>:replay-<token>``; an upstream producer's message is its own run, and the parts the
worker splits a remainder into carry ``.<n>`` suffixes (``sync.work.worker``).
"""

from __future__ import annotations

import re
from typing import Final

_SPLIT_SUFFIX: Final = re.compile(r"(?:\.\d+)+$")


REPLAY_MARK: Final = ":replay-"
"""Between the run id and the replay's token in the batch id of a replayed message."""


def replay_batch_id(run_id: str, token: str) -> str:
    """The batch id of a message that replays dead letters of ``run_id``: ``run_id_of`` maps
    it back to the run (a run id too long to fit beside the mark is cut)."""
    return f"{run_id[:128 - len(REPLAY_MARK) - len(token)]}{REPLAY_MARK}{token}"


REFUSED_SUFFIX: Final = ".0"
"""The ledger row of a message's records that broke the contract alone: a split suffix that no
remainder takes (the first part of a remainder keeps the message's own id)."""


def refused_batch_id(batch_id: str) -> str:
    """Where the records of ``batch_id`` that the contract refused are counted."""
    return batch_id[:128 - len(REFUSED_SUFFIX)] + REFUSED_SUFFIX


def run_id_of(batch_id: str) -> str:
    """The run a batch belongs to: a planner's batch (``<run>-p<page>-<n>``) its plan's run; a
    replay of a run's dead letters (``<run>:replay-<token>``) that run; a producer's batch its
    own run, without the ``.<n>`` suffixes the worker gives the parts of a remainder it had to
    split (``sync.work.worker``)."""
    head, mark, _ = batch_id.partition(REPLAY_MARK)
    if mark:
        return head
    if is_planned(batch_id):
        return batch_id.rpartition("-p")[0]
    return _SPLIT_SUFFIX.sub("", batch_id) or batch_id


def is_planned(batch_id: str) -> bool:
    """Whether the batch came from the planner (its run has a plan) or from a producer."""
    head, sep, _ = batch_id.rpartition("-p")
    return bool(sep) and head.startswith("run-")
