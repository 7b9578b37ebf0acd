"""The emulator's settings. Defaults are the documented values; the rest are marked as
assumptions (the service does not document them) and can be changed."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Final

from sync.local.emulators.webapi.faults import Rule

DOCUMENTED_WINDOW_S: Final = 300.0
DOCUMENTED_MAX_REQUESTS: Final = 6000
DOCUMENTED_MAX_EXEC_MS: Final = 1_200_000
DOCUMENTED_MAX_CONCURRENT: Final = 52


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    """Everything the emulator does, as numbers."""

    servers: int = 2
    window_s: float = DOCUMENTED_WINDOW_S
    max_requests: int = DOCUMENTED_MAX_REQUESTS
    max_exec_ms: float = DOCUMENTED_MAX_EXEC_MS
    max_concurrent: int = DOCUMENTED_MAX_CONCURRENT
    dop_hint: int = 10
    """Recommended parallelism per web server; the header carries it times ``servers``."""
    records: int = 0
    seed: int = 1
    # Simulated server time per operation (not documented; assumptions).
    write_ms_min: float = 100.0
    write_ms_max: float = 200.0
    read_page_ms: float = 50.0
    batch_op_ms: float = 100.0
    bulk_target_ms: float = 10.0
    request_overhead_ms: float = 5.0
    # Throttling details (not documented; assumptions).
    concurrency_retry_after_s: float = 1.0
    penalty_s: float = 2.0
    """Added to Retry-After each time a client sends while it is throttled."""
    retry_after_resolution_s: float = 1.0
    """Retry-After is rounded up to this step and is at least one step (whole seconds, as the
    service documents it; also under a time scale, see ``time_scaled``)."""
    ratelimit_headers: int = 1
    """1 sends ``x-ms-ratelimit-*`` on every answer (when the service sends them is not
    documented); 0 leaves them out, to measure a client's pacing without them."""
    exec_in_flight_share: float = 1.0
    """Assumption: the share of what requests in flight are still to spend that counts as used
    when a request asks to be admitted. The service says the execution-time facet "can be
    exceeded for a while", not by how much; 1 (the default, stricter) counts all of it, so a
    window holds at most its budget plus one request; 0 counts only time already spent, so a
    window can also take up to ``max_concurrent`` requests more (``stats.run_bound`` states
    the bound either way)."""
    change_token_ttl_s: float = 7 * 24 * 3600.0
    max_batch_operations: int = 1000
    """Operations per $batch and targets per bulk message (documented); on a time scale fewer
    when that many would take more than a window's execution budget (``operations_limit``)."""
    max_page_size: int = 5000
    # Faults on demand, each a share of admitted requests.
    fault_500_rate: float = 0.0
    fault_503_rate: float = 0.0
    reset_rate: float = 0.0
    slow_rate: float = 0.0
    slow_ms: float = 2000.0
    enriched_share: float = 0.0
    """The share of seeded records that already hold their enriched values (a re-run where
    most records did not change; see ``seeding``)."""
    bypass_privilege: bool = False
    """Whether the calling users hold prvBypassCustomBusinessLogic. Without it (the default)
    a write that sends ``MSCRM.BypassBusinessLogicExecution`` answers 403 with the service's
    missing-privilege error."""
    fault_rules: tuple[Rule, ...] = ()
    """Fault rules in force from the start (see ``faults.py``; more can be added at run time)."""

    def __post_init__(self) -> None:
        checks = [(self.servers >= 1, "servers"), (self.window_s > 0, "window_s"),
                  (self.max_requests >= 1, "max_requests"), (self.max_exec_ms > 0, "max_exec_ms"),
                  (self.max_concurrent >= 1, "max_concurrent"),
                  (1 <= self.dop_hint <= 1024, "dop_hint"), (self.records >= 0, "records"),
                  (0 <= self.write_ms_min <= self.write_ms_max, "write_ms_min/max"),
                  (self.retry_after_resolution_s > 0, "retry_after_resolution_s"),
                  (self.change_token_ttl_s > 0, "change_token_ttl_s"),
                  (self.max_batch_operations >= 1, "max_batch_operations"),
                  (self.max_page_size >= 1, "max_page_size")]
        checks += [(getattr(self, name) >= 0, name) for name in (
            "read_page_ms", "batch_op_ms", "bulk_target_ms", "request_overhead_ms",
            "concurrency_retry_after_s", "penalty_s", "slow_ms")]
        checks.append((0.0 <= self.exec_in_flight_share <= 1.0, "exec_in_flight_share"))
        checks.append((0.0 <= self.enriched_share <= 1.0, "enriched_share"))
        for ok, name in checks:
            if not ok:
                raise ValueError(f"EmulatorConfig.{name} is out of range")
        for rate in ("fault_500_rate", "fault_503_rate", "reset_rate", "slow_rate"):
            if not 0.0 <= getattr(self, rate) <= 1.0:
                raise ValueError(f"EmulatorConfig.{rate} must be between 0 and 1")

    @classmethod
    def time_scaled(cls, factor: float, **overrides: Any) -> EmulatorConfig:
        """The documented limits with time running ``factor`` times faster: the window, the
        execution-time budget, the penalty and the concurrency error's Retry-After divided by
        ``factor``, and the requests per window with them, so every per-second rate (requests/s,
        server seconds per second) stays the documented one. Operation costs are not scaled (a
        write still takes its server time). Retry-After stays in whole seconds
        (``retry_after_resolution_s``), so it is never under 1 s: queue visibility delays are
        whole seconds. ``overrides`` win over the scaled values."""
        if not factor >= 1.0:
            raise ValueError(f"EmulatorConfig.time_scaled factor must be at least 1, got {factor}")
        base = cls()
        values: dict[str, Any] = {
            "window_s": base.window_s / factor,
            "max_requests": max(1, round(base.max_requests / factor)),
            "max_exec_ms": base.max_exec_ms / factor,
            "penalty_s": base.penalty_s / factor,
            "concurrency_retry_after_s": base.concurrency_retry_after_s / factor,
        }
        return cls(**{**values, **overrides})

    @classmethod
    def scaled(cls, window_s: float, **overrides: Any) -> EmulatorConfig:
        """``time_scaled`` by the factor that makes the window ``window_s``."""
        return cls.time_scaled(DOCUMENTED_WINDOW_S / window_s, **overrides)

    @property
    def dop_hint_header(self) -> int:
        return min(1024, self.dop_hint * self.servers)

    def operations_limit(self, op_ms: float) -> int:
        """Operations a $batch or bulk message may hold when each costs ``op_ms``: at most
        ``max_batch_operations``, and only as many as fit in a window's execution budget
        (at least one). At the documented scale the largest request takes a twelfth of the
        budget; on a time scale the budget shrinks and the costs do not, and a request larger
        than the whole budget would run alone and put all its records in one window, so it is
        refused as the service refuses an oversized batch (the client shrinks and resends)."""
        if op_ms <= 0:
            return self.max_batch_operations
        fits = math.floor((self.max_exec_ms - self.request_overhead_ms) / op_ms + 1e-9)
        return max(1, min(self.max_batch_operations, fits))

    def write_ms_mean(self) -> float:
        return (self.write_ms_min + self.write_ms_max) / 2

    def replace(self, **changes: Any) -> EmulatorConfig:
        return dataclasses.replace(self, **changes)
