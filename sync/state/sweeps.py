"""The planner timer's sweeps run quietly: a sweep that fails is logged and tried again at the
next tick, because the plan it follows must not fail for it."""

from __future__ import annotations

import logging
from collections.abc import Awaitable

logger = logging.getLogger(__name__)


async def quietly(sweep: Awaitable[int], what: str, event: str, unit: str = "rows") -> int:
    """How many ``what`` (e.g. "expired before-images") ``sweep`` deleted, 0 when it raised;
    logged as ``{event}_swept`` with ``unit`` counted, or ``{event}_sweep_failed``."""
    try:
        gone = await sweep
    except Exception:
        logger.exception("%s not deleted; the next plan tries again", what,
                         extra={"event": f"{event}_sweep_failed"})
        return 0
    if gone:
        logger.info("%d %s deleted", gone, what, extra={"event": f"{event}_swept", unit: gone})
    return gone
