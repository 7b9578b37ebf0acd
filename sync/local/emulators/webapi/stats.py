"""What the emulator counts, and the ceiling: the most records/s any client could write."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sync.local.emulators.webapi.config import EmulatorConfig


def ceiling(config: EmulatorConfig) -> dict[str, float]:
    """Records/s per write mode for the whole environment under the limits, per server times
    the servers. Each mode is bound by the request count, the execution time, or the
    concurrency (requests in flight times how long each takes), whichever is least.

    - single: one record per request, ``write_ms`` each;
    - batch: ``max_batch_operations`` records per request, ``batch_op_ms`` each, in sequence;
    - bulk: ``max_batch_operations`` targets per request, ``bulk_target_ms`` each.
    """
    per_request_s = config.max_requests / config.window_s
    exec_s_per_s = config.max_exec_ms / 1000 / config.window_s
    n = config.max_batch_operations
    modes = {"single": (1, config.write_ms_mean() + config.request_overhead_ms),
             "batch": (n, n * config.batch_op_ms + config.request_overhead_ms),
             "bulk": (n, n * config.bulk_target_ms + config.request_overhead_ms)}
    result = {}
    for mode, (records, cost_ms) in modes.items():
        cost_s = cost_ms / 1000
        bounds = [per_request_s * records]
        if cost_s > 0:  # free operations are bound by the request count alone
            bounds += [exec_s_per_s / cost_s * records, config.max_concurrent / cost_s * records]
        per_server = min(bounds)
        result[mode] = per_server * config.servers
    result["overall"] = max(result.values())
    return result


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
    late_requests: int = 0
    late_throttled: int = 0
    executed_ms: float = 0.0
    """Server time charged to admitted requests, failed ones included."""

    def arrived(self, now_s: float, window_s: float) -> bool:
        """Note an arrival; answers whether it is after the first window."""
        if self.first_request_s is None:
            self.first_request_s = now_s
        return now_s - self.first_request_s >= window_s

    def admitted(self, user: str, server: str, late: bool) -> None:
        """A request starts: peaks are of requests in flight, a user's over every server."""
        self.requests_by_server[server] += 1
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

    def throttled(self, code: str, retry_after_s: float, late: bool) -> None:
        self.throttled_by_code[code] += 1
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
                "peak_concurrency_by_user": self.peak_by_user,
                "peak_concurrency_by_server": self.peak_by_server,
                "executed_ms": round(self.executed_ms, 3),
                "after_first_window": {"requests": self.late_requests,
                                       "throttled": self.late_throttled},
                "records": {"created": counters.created, "updated": counters.updated,
                            "deleted": counters.deleted},
                "ceiling": ceiling(config), "dop_hint": config.dop_hint_header}
