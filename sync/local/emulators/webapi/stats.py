"""What the emulator counts, and the ceiling: the most records/s any client could write.

Two statements, both from the configuration alone: ``ceiling`` is the steady state (records/s
after the first window); ``run_bound`` is what a run of length T can have had accepted, the
first window's burst included (budget x (T/W + 1) on the binding facet). ``/_emulator/stats``
shows both: ``ceiling`` and ``run`` (the run so far, first request to last, and its bound).
``tests/webapi/test_ceiling.py`` holds a greedy and an oracle client to ``run_bound``."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

from sync.local.emulators.webapi.config import EmulatorConfig
from sync.local.emulators.webapi.limits import CONCURRENCY, EXEC_TIME, REQUESTS

MODES: Final = ("single", "batch", "bulk")
FACETS: Final = ("requests", "execution", "concurrency")
FACET_OF_CODE: Final = {REQUESTS[0]: "requests", EXEC_TIME[0]: "execution",
                        CONCURRENCY[0]: "concurrency"}
"""The facet each 429 code names."""


def request_shape(config: EmulatorConfig, mode: str) -> tuple[int, float]:
    """Records per request and server seconds per request of a write mode at its largest:

    - single: one record per request, ``write_ms`` (its mean) each;
    - batch: ``max_batch_operations`` records per request, ``batch_op_ms`` each, in sequence;
    - bulk: ``max_batch_operations`` targets per request, ``bulk_target_ms`` each;

    every request adds ``request_overhead_ms``. Larger requests are never worse on any facet,
    so a client sending smaller ones stays under the bounds computed from these."""
    n = config.max_batch_operations
    records, cost_ms = {"single": (1, config.write_ms_mean()),
                        "batch": (n, n * config.batch_op_ms),
                        "bulk": (n, n * config.bulk_target_ms)}[mode]
    return records, (cost_ms + config.request_overhead_ms) / 1000


def facet_requests(config: EmulatorConfig, mode: str, run_s: float, *,
                   burst: bool) -> dict[str, float]:
    """The most requests of ``mode`` one user can have admitted by one server during a run of
    ``run_s`` seconds, per facet (``math.inf`` when a facet cannot bind).

    Steady state (``burst=False``): rate times ``run_s``, with the rates
    ``max_requests / window_s``, ``max_exec_ms / window_s / cost`` and
    ``max_concurrent / cost``. A run from its first admission to its last (``burst=True``):
    split it into ``n = floor(T/W) + 1`` windows of ``W`` (the first admits a full budget at
    once); each takes at most ``max_requests``, and at most ``max_exec_ms / cost + 1`` requests
    (``limits`` admits only while the committed time is under the budget, so a window can
    exceed it by the one request that crossed it, plus ``(1 - exec_in_flight_share) *
    max_concurrent`` requests when in-flight time counts only in part); a slot is held for
    ``cost`` at least, so
    ``max_concurrent * (floor(T/cost) + 1)``. That is the budget x (T/W + 1) of the issue,
    rounded down to whole windows."""
    _, cost_s = request_shape(config, mode)
    window_s, exec_s = config.window_s, config.max_exec_ms / 1000
    if not burst:
        found = {"requests": config.max_requests / window_s * run_s,
                 "execution": exec_s / window_s / cost_s * run_s if cost_s else math.inf,
                 "concurrency": config.max_concurrent / cost_s * run_s if cost_s else math.inf}
        return found
    windows = math.floor(run_s / window_s) + 1
    late = (1.0 - config.exec_in_flight_share) * config.max_concurrent
    return {"requests": config.max_requests * windows,
            "execution": (exec_s / cost_s + 1 + late) * windows if cost_s else math.inf,
            "concurrency": (config.max_concurrent * (math.floor(run_s / cost_s) + 1)
                            if cost_s else math.inf)}


def _records(config: EmulatorConfig, run_s: float, burst: bool, users: int,
             enrichment: tuple[float, float] | None) -> dict[str, float]:
    per_mode = {mode: {facet: count * request_shape(config, mode)[0] * config.servers * users
                       for facet, count in facet_requests(config, mode, run_s,
                                                          burst=burst).items()}
                for mode in MODES}
    result = {mode: min(facets.values()) for mode, facets in per_mode.items()}
    # Any mix of modes: each facet alone bounds the records by its best mode on that facet.
    result["overall"] = min(max(per_mode[m][f] for m in MODES) for f in FACETS)
    if enrichment is not None:
        rate_per_s, burst_records = enrichment
        result["enrichment"] = rate_per_s * run_s + (burst_records if burst else 0.0)
        result["overall"] = min(result["overall"], result["enrichment"])
    return result


def ceiling(config: EmulatorConfig, *, users: int = 1,
            enrichment_rate_per_s: float | None = None) -> dict[str, float]:
    """The steady-state ceiling in records/s (after the first window) per write mode
    (``single``, ``batch``, ``bulk``) and ``overall`` (any mix of modes, and at most the
    enrichment API's rate when given): the minimum over every facet (requests, execution time,
    concurrency) per user per server, times the servers and the users. See ``run_bound`` for
    what a whole run, first-window burst included, can reach."""
    enrichment = None if enrichment_rate_per_s is None else (enrichment_rate_per_s, 0.0)
    return _records(config, 1.0, False, users, enrichment)


def run_bound(config: EmulatorConfig, run_s: float, *, users: int = 1,
              enrichment: tuple[float, float] | None = None) -> dict[str, float]:
    """The most records a run of ``run_s`` seconds (first admission to last) can have had
    accepted, per mode and ``overall``: the burst of the first window included, so about
    ``budget * (T/W + 1)`` on the binding facet. ``enrichment`` is the enrichment API's
    (rate_per_s, burst). The emulator's limits make this an upper bound (see ``limits``)."""
    return _records(config, run_s, True, users, enrichment)


def limits_json(config: EmulatorConfig) -> dict[str, float]:
    """The limits each user has on each web server, and the servers."""
    return {"window_s": config.window_s, "max_requests": config.max_requests,
            "max_exec_ms": config.max_exec_ms, "max_concurrent": config.max_concurrent,
            "servers": config.servers}


@dataclass
class Stats:
    """Counters since the start (or the last reset)."""

    requests_by_server: Counter[str] = field(default_factory=Counter)
    throttled_by_code: Counter[str] = field(default_factory=Counter)
    retry_after_announced_s: float = 0.0
    faults: Counter[str] = field(default_factory=Counter)
    peak_by_user: dict[str, int] = field(default_factory=dict)
    peak_by_server: dict[str, int] = field(default_factory=dict)
    in_flight_by_server: Counter[str] = field(default_factory=Counter)
    in_flight_by_user: Counter[str] = field(default_factory=Counter)
    first_request_s: float | None = None
    last_request_s: float | None = None
    late_requests: int = 0
    late_throttled: int = 0
    executed_ms: float = 0.0
    """Server time charged to admitted requests, failed ones included."""
    write_options: Counter[str] = field(default_factory=Counter)
    """Writes that carried each bulk-job header, by header and value."""
    requests_by_user: Counter[str] = field(default_factory=Counter)
    written_by_user: Counter[str] = field(default_factory=Counter)
    """Records updated by each user's requests (a PATCH, each $batch part, each bulk target)."""
    throttled_by_user: dict[str, Counter[str]] = field(default_factory=dict)
    """Each user's 429s by facet (``requests``, ``execution``, ``concurrency``)."""

    def arrived(self, now_s: float, window_s: float) -> bool:
        """Note an arrival; answers whether it is after the first window."""
        if self.first_request_s is None:
            self.first_request_s = now_s
        self.last_request_s = now_s
        return now_s - self.first_request_s >= window_s

    def admitted(self, user: str, server: str, late: bool) -> None:
        """A request starts: peaks are of requests in flight, a user's over every server."""
        self.requests_by_server[server] += 1
        self.requests_by_user[user] += 1
        self.in_flight_by_server[server] += 1
        self.in_flight_by_user[user] += 1
        self.peak_by_user[user] = max(self.peak_by_user.get(user, 0),
                                      self.in_flight_by_user[user])
        self.peak_by_server[server] = max(self.peak_by_server.get(server, 0),
                                          self.in_flight_by_server[server])
        self.late_requests += late

    def finished(self, user: str, server: str) -> None:
        self.in_flight_by_server[server] -= 1
        self.in_flight_by_user[user] -= 1

    def reset(self) -> Stats:
        """Fresh counters that still know the requests in flight."""
        return Stats(in_flight_by_server=Counter(+self.in_flight_by_server),
                     in_flight_by_user=Counter(+self.in_flight_by_user))

    def wrote(self, user: str, records: int) -> None:
        """A request of ``user`` updated ``records`` records."""
        if records:
            self.written_by_user[user] += records

    def throttled(self, user: str, code: str, retry_after_s: float, late: bool) -> None:
        self.throttled_by_code[code] += 1
        facet = FACET_OF_CODE.get(code, code)
        self.throttled_by_user.setdefault(user, Counter())[facet] += 1
        self.retry_after_announced_s += retry_after_s
        self.late_requests += late
        self.late_throttled += late

    def as_json(self, config: EmulatorConfig, counters: Any) -> dict[str, Any]:
        return {"requests_by_server": dict(self.requests_by_server),
                "requests": sum(self.requests_by_server.values()),
                "throttled_by_code": dict(self.throttled_by_code),
                "throttled": sum(self.throttled_by_code.values()),
                "retry_after_announced_s": round(self.retry_after_announced_s, 3),
                "faults": dict(self.faults),
                "write_options": dict(self.write_options),
                "peak_concurrency_by_user": self.peak_by_user,
                "peak_concurrency_by_server": self.peak_by_server,
                "executed_ms": round(self.executed_ms, 3),
                "after_first_window": {"requests": self.late_requests,
                                       "throttled": self.late_throttled},
                "records": {"created": counters.created, "updated": counters.updated,
                            "deleted": counters.deleted},
                "ceiling": ceiling(config), "run": self.run_json(config),
                "dop_hint": config.dop_hint_header, "users": self.users_json(),
                "limits": limits_json(config)}

    def users_json(self) -> dict[str, dict[str, Any]]:
        """Per user (``servers.user_of``): requests admitted, records written, 429s by facet,
        peak requests in flight over every server."""
        users = (set(self.requests_by_user) | set(self.throttled_by_user)
                 | set(self.written_by_user))
        return {user: {"requests": self.requests_by_user[user],
                       "written": self.written_by_user[user],
                       "throttled_by_facet": dict(self.throttled_by_user.get(user, {})),
                       "peak_concurrency": self.peak_by_user.get(user, 0)}
                for user in sorted(users)}

    def elapsed_s(self) -> float:
        """Emulator time from the first request to the last (0 before two)."""
        if self.first_request_s is None or self.last_request_s is None:
            return 0.0
        return self.last_request_s - self.first_request_s

    def run_json(self, config: EmulatorConfig) -> dict[str, Any]:
        """The run so far: its length and the records it can have had accepted at most."""
        elapsed_s = self.elapsed_s()
        return {"elapsed_s": round(elapsed_s, 6), "bound_records": run_bound(config, elapsed_s)}
