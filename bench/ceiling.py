"""The ceiling each row is measured against: what the Dataverse emulator's limits allow any client
per write mode (from its ``/_emulator/stats``), within the enrichment API's own limit.

``dataverse_ceiling`` is the one place that reads the emulator's figure: when the emulator states
a proven ceiling under another name or shape, only that function changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.scenarios import MODES


@dataclass(frozen=True, slots=True)
class Ceiling:
    """Records/s per write mode for Dataverse alone, and for the whole environment."""

    dataverse_per_s: dict[str, float]
    enrichment_per_s: float

    def mode_per_s(self, mode: str) -> float:
        """A mode's ceiling: its Dataverse bound or the enrichment API's, whichever is lower."""
        return min(self.dataverse_per_s[mode], self.enrichment_per_s)

    @property
    def overall_per_s(self) -> float:
        """The best mode's ceiling: what the environment allows at most."""
        return max(self.mode_per_s(mode) for mode in MODES)

    def as_dict(self) -> dict[str, Any]:
        return {"dataverse_per_s": self.dataverse_per_s,
                "enrichment_per_s": self.enrichment_per_s,
                "mode_per_s": {mode: self.mode_per_s(mode) for mode in MODES},
                "overall_per_s": self.overall_per_s}


def dataverse_ceiling(stats: dict[str, Any]) -> dict[str, float]:
    """Records/s per write mode from the emulator's stats (today ``stats["ceiling"][mode]``:
    the minimum over the request, execution-time and concurrency facets per server, times the
    servers; steady state, the first window's burst excluded)."""
    found = stats["ceiling"]
    return {mode: float(found[mode]) for mode in MODES}


def ceiling_of(stats: dict[str, Any], enrichment_rate_per_s: float) -> Ceiling:
    return Ceiling(dataverse_ceiling(stats), enrichment_rate_per_s)
