"""The ids of the messages a run is made of, and how to read a run back from one.

A planner's message is ``<run>-p<page>-<n>``; a replay of a run's dead letters is
``<run>:replay-<token>``; an upstream producer's message is its own run. A message the worker
makes from another (the parts of a remainder it sends back, the records a canary holds) is a
**part**: ``<root>.<kind><16 hex>``, where the root is the first message's id and the hex a
digest of the parent's id, its attempt and the records the part carries. So

- every message the product makes has an id of its own: two parts of one delivery carry
  different records, two deliveries of different parents differ in id or attempt, and the
  ledger's row of each (``msg:<id>|<attempt>``) is its own;
- a message delivered twice makes the same parts with the same ids, so their rows overwrite
  instead of counting twice;
- the id stays within the contract's 128 characters however long the lineage: a part replaces
  its parent's mark instead of adding to it, and a root too long to take a mark is compacted
  to its run (``<run>`` for a producer's, ``<run>:replay-`` for a replay, ``<run>-p0`` for a
  planner's), which ``run_id_of`` reads back the same way.

A run id longer than ``MAX_RUN_ID_CHARS`` (a producer's long batch id) is kept as its first
characters and a digest of the whole (``run_id_of``), so its parts map back to it. Ids a
version before parts made (``<id>.1``, ``<id>.1.2``, ``<id>.w``) still map to their run.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import Final

MAX_BATCH_ID_CHARS: Final = 128
"""The contract's limit on a batch id (sync.message.contract)."""
REPLAY_MARK: Final = ":replay-"
"""Between the run id and the replay's token in the batch id of a replayed message."""
REMAINDER: Final = "r"
"""The kind of a part the worker sends back unfinished (``sync.work.requeue``)."""
HELD: Final = "h"
"""The kind of a part a canary holds (``sync.work.holds``)."""
REFUSED: Final = "u"
"""The kind of the part that counts a message's records the contract refused alone
(``sync.work.filing``)."""
DIGEST_CHARS: Final = 16
PART_MARK_CHARS: Final = 2 + DIGEST_CHARS
"""``.`` + the kind + the digest."""
MAX_ROOT_CHARS: Final = MAX_BATCH_ID_CHARS - PART_MARK_CHARS
MAX_RUN_ID_CHARS: Final = MAX_ROOT_CHARS - len(REPLAY_MARK) - 3
"""A run id longer than this is compacted (``compact_run_id``), so a part of any message of
the run, replays and planner's messages included, fits the contract."""
_PART_MARK: Final = re.compile(rf"\.[{REMAINDER}{HELD}{REFUSED}][0-9a-f]{{{DIGEST_CHARS}}}$")
_OLD_SUFFIXES: Final = re.compile(r"(?:\.\d+)+$")
"""The ``.<n>`` of a remainder split before parts (a planner's ``.w`` needs no stripping)."""
_COMPACT_MARK: Final = ".l"


def replay_batch_id(run_id: str, token: str) -> str:
    """The batch id of a message that replays dead letters of ``run_id``: ``run_id_of`` maps
    it back to the run as the ledger keeps it (``compact_run_id``)."""
    head = compact_run_id(run_id)
    return f"{head[:128 - len(REPLAY_MARK) - len(token)]}{REPLAY_MARK}{token}"


def part_id(batch_id: str, attempt: int, kind: str, record_ids: Iterable[str]) -> str:
    """The id of a part made from message ``batch_id`` (delivered as ``attempt``) carrying
    ``record_ids``: the same for the same parent and records, another for any other."""
    if kind not in (REMAINDER, HELD, REFUSED):
        raise ValueError(f"unknown part kind {kind!r}")
    text = "|".join((batch_id, str(attempt), kind, *sorted(record_ids)))
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:DIGEST_CHARS]
    return f"{_part_root(root_of(batch_id))}.{kind}{digest}"


def root_of(batch_id: str) -> str:
    """The id without a part's mark: the first message's id (or its compact form)."""
    return _PART_MARK.sub("", batch_id)


def _part_root(root: str) -> str:
    """What a part's id starts with: the root, or, for a root too long to take a mark, a
    compact form ``run_id_of`` maps to the same run."""
    if len(root) <= MAX_ROOT_CHARS:
        return root
    run_id = run_id_of(root)
    if REPLAY_MARK in root:
        return f"{run_id}{REPLAY_MARK}"
    if is_planned(root):
        return f"{run_id}-p0"
    return run_id


def refused_batch_id(batch_id: str) -> str:
    """Where the records of ``batch_id`` that the contract refused alone are counted: a part of
    its own (kind ``u``), so its ledger row is never a remainder's."""
    return part_id(batch_id, 0, REFUSED, ())


def run_id_of(batch_id: str) -> str:
    """The run a batch belongs to: a planner's batch (``<run>-p<page>-<n>``) its plan's run; a
    replay of a run's dead letters (``<run>:replay-<token>``) that run; a producer's batch its
    own run. A part's mark and the suffixes of older versions are left out; a run id longer
    than ``MAX_RUN_ID_CHARS`` is compacted."""
    root = root_of(batch_id)
    head, mark, _ = root.partition(REPLAY_MARK)
    if mark:
        natural = head
    elif is_planned(root):
        natural = root.rpartition("-p")[0]
    else:
        natural = _OLD_SUFFIXES.sub("", root) or root
    return compact_run_id(natural)


def compact_run_id(run_id: str) -> str:
    """A run id as the ledger keeps it: itself, or when longer than ``MAX_RUN_ID_CHARS`` its
    first characters, ``.l`` and a digest of the whole."""
    if len(run_id) <= MAX_RUN_ID_CHARS:
        return run_id
    digest = hashlib.sha256(run_id.encode("utf-8")).hexdigest()[:DIGEST_CHARS]
    keep = MAX_RUN_ID_CHARS - len(_COMPACT_MARK) - DIGEST_CHARS
    return f"{run_id[:keep]}{_COMPACT_MARK}{digest}"


def is_planned(batch_id: str) -> bool:
    """Whether the batch came from the planner (its run has a plan) or from a producer."""
    head, sep, _ = root_of(batch_id).rpartition("-p")
    return bool(sep) and head.startswith("run-")
