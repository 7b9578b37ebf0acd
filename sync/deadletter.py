"""What goes to the dead-letter and poison queues: the item and a reason a person can act on."""

from __future__ import annotations

import json
import time
from typing import Final

from sync.contract import RecordRef
from sync.errors import PermanentError, SyncError, TransientError

MAX_ECHOED_CHARS: Final = 40_000
"""A rejected message is echoed up to this length, so the envelope fits a queue message."""


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def record_envelope(batch_id: str, record: RecordRef, error: SyncError) -> str:
    """A dead letter for one record that could not be written."""
    detail: dict[str, object] = {"reason": str(error)}
    if isinstance(error, PermanentError):
        detail.update(service=error.service, status=error.status, code=error.code,
                      message=error.message)
    elif isinstance(error, TransientError):
        detail.update(service=error.service, status=error.status,
                      reason=f"transient failures persisted after retries: {error.detail}")
    return json.dumps({"kind": "record", "batch_id": batch_id, "at": _now_iso(),
                       "record": {"id": record.id, "input": record.input}, **detail})


def message_envelope(body: bytes, reason: str) -> str:
    """A poison entry for a message that breaks the contract, echoing what it held."""
    text = body.decode("utf-8", "replace")
    return json.dumps({"kind": "message", "at": _now_iso(), "reason": reason,
                       "message": text[:MAX_ECHOED_CHARS],
                       "truncated": len(text) > MAX_ECHOED_CHARS})
