"""What the emulator counts, and the ceiling: the most records/s any client could write.

Two statements, both from the configuration alone, both upper bounds at any setting:

- ``ceiling``: records/s over any whole window (``window_s`` seconds, wherever it starts), so
  over any span of whole windows: the most one window can admit, divided by its length. The
  rate over a span that is not whole windows is bounded by the whole windows it touches
  (a client's burst as a window frees its budget counts once per window): a run's records over
  its length can read above ``ceiling`` (a 100 s run on a 20 s window can read 1.2x, the
  first window's burst and each window's included); ``run_bound`` is the statement for that;
- ``run_bound``: what a run of length T (first admission to last) can have had accepted:
  ``floor(T/W) + 1`` windows' worth on the binding facet, and the one request a client's first
  request of a new largest size can take beyond the execution-time budget (see ``limits``).

``/_emulator/stats`` shows both: ``ceiling``, and ``run`` (the run so far: its length, its
bound, that bound as records/s over the run's length, and the records written in each whole
window since the first request). ``tests/webapi/test_ceiling.py`` holds greedy,
Retry-After-honouring and oracle clients to both over a grid of settings."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

from sync.local.emulators.webapi.config import EmulatorConfig
from sync.local.emulators.webapi.hint_watch import HintWatch
from sync.local.emulators.webapi.limits import CONCURRENCY, EXEC_TIME, REQUESTS

MODES: Final = ("single", "batch", "bulk")
FACETS: Final = ("requests", "execution", "concurrency")
FACET_OF_CODE: Final = {REQUESTS[0]: "requests", EXEC_TIME[0]: "execution",
                        CONCURRENCY[0]: "concurrency"}
"""The facet each 429 code names."""


def request_shape(config: EmulatorConfig, mode: str) -> tuple[int, float]:
    """Records per request and server seconds per request of a write mode at its largest:

    - single: one record per request, ``write_ms`` (its mean) each;
    - batch: ``operations_limit`` records per request, ``batch_op_ms`` each, in sequence;
    - bulk: ``operations_limit`` targets per request, ``bulk_target_ms`` each;

    every request adds ``request_overhead_ms``."""
    batch, bulk = (config.operations_limit(config.batch_op_ms),
                   config.operations_limit(config.bulk_target_ms))
    records, cost_ms = {"single": (1, config.write_ms_mean()),
                        "batch": (batch, batch * config.batch_op_ms),
                        "bulk": (bulk, bulk * config.bulk_target_ms)}[mode]
    return records, (cost_ms + config.request_overhead_ms) / 1000


def cheapest_cost_s(config: EmulatorConfig, mode: str) -> float:
    """Server seconds of the request of ``mode`` that costs least per record: the largest (the
    overhead is per request), a single write at ``write_ms_min``. The bounds count with it, so
    a client whose requests are smaller or slower stays under them."""
    if mode == "single":
        return (config.write_ms_min + config.request_overhead_ms) / 1000
    return request_shape(config, mode)[1]


def window_requests(config: EmulatorConfig, mode: str) -> dict[str, float]:
    """The most requests of ``mode`` one user can have admitted by one server within any one
    window, per facet (``math.inf`` when a facet cannot bind), with ``cost`` =
    ``cheapest_cost_s``:

    - requests: ``max_requests``;
    - execution: ``max(1, max_exec / cost)``: the requests started in a window run at most the
      budget (``limits`` keeps room for the largest request), or one alone, plus
      ``(1 - exec_in_flight_share) * max_concurrent`` when in-flight time counts in part;
    - concurrency: ``max_concurrent * (window / cost + 1)``: a slot is held for ``cost`` at
      least, so it starts at most that many requests in a window."""
    cost_s, window_s = cheapest_cost_s(config, mode), config.window_s
    if cost_s <= 0:
        return {"requests": float(config.max_requests), "execution": math.inf,
                "concurrency": math.inf}
    late = (1.0 - config.exec_in_flight_share) * config.max_concurrent
    return {"requests": float(config.max_requests),
            "execution": max(1.0, config.max_exec_ms / 1000 / cost_s) + late,
            "concurrency": config.max_concurrent * (window_s / cost_s + 1)}


def facet_requests(config: EmulatorConfig, mode: str, run_s: float, *,
                   burst: bool) -> dict[str, float]:
    """The most requests of ``mode`` one user can have admitted by one server during
    ``run_s`` seconds, per facet (``math.inf`` when a facet cannot bind).

    Whole windows (``burst=False``): ``window_requests`` per window, ``run_s / window_s``
    windows (the ceiling's rate times ``run_s``). A run from its first admission to its last
    (``burst=True``): ``n = floor(T/W) + 1`` windows of ``window_requests`` each (the first
    admits its budget at once), one request more on the execution facet (a client's first
    request of a new largest size, once), and on the concurrency facet
    ``max_concurrent * (T/cost + 1)`` (a slot starts at most ``floor(T/c) + 1`` requests of
    cost ``c`` in ``T``; smaller requests carry fewer records for each start they gain)."""
    per_window = window_requests(config, mode)
    if not burst:
        return {facet: count * run_s / config.window_s for facet, count in per_window.items()}
    cost_s = cheapest_cost_s(config, mode)
    windows = _whole(run_s / config.window_s) + 1
    return {"requests": per_window["requests"] * windows,
            "execution": per_window["execution"] * windows + 1,
            "concurrency": (config.max_concurrent * (run_s / cost_s + 1)
                            if cost_s > 0 else math.inf)}


def _whole(ratio: float) -> int:
    """``floor`` that reads a ratio a rounding error short of a whole number as that number."""
    return math.floor(ratio + 1e-9)


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
    """The ceiling in records/s over any whole window, per write mode (``single``, ``batch``,
    ``bulk``) and ``overall`` (any mix of modes, and at most the enrichment API's steady rate
    when given: its bucket's burst over a span is the caller's to add): the minimum over every
    facet (requests, execution time, concurrency, ``window_requests``) per user per server,
    divided by the window, times the servers and the users. A client's first request of a new
    largest size can take one request more, once (``run_bound`` counts it). See ``run_bound``
    for what a run of any length, first-window burst included, can reach."""
    enrichment = None if enrichment_rate_per_s is None else (enrichment_rate_per_s, 0.0)
    return _records(config, 1.0, False, users, enrichment)


def run_bound(config: EmulatorConfig, run_s: float, *, users: int = 1,
              enrichment: tuple[float, float] | None = None) -> dict[str, float]:
    """The most records a run of ``run_s`` seconds (first admission to last) can have had
    accepted, per mode and ``overall``: the burst of the first window included, so about
    ``budget * (T/W + 1)`` on the binding facet (``facet_requests``). ``enrichment`` is the
    enrichment API's (rate_per_s, burst). The emulator's limits make this an upper bound (see
    ``limits``)."""
    return _records(config, run_s, True, users, enrichment)


def run_ceiling_per_s(config: EmulatorConfig, run_s: float) -> dict[str, float]:
    """``run_bound`` as records/s over the run's length: what a run's records over its own
    length can read at most (above ``ceiling`` for short runs; 0 before a run has a length)."""
    if run_s <= 0:
        return {name: 0.0 for name in (*MODES, "overall")}
    return {name: bound / run_s for name, bound in run_bound(config, run_s).items()}


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
    written_by_window: Counter[int] = field(default_factory=Counter)
    """Records updated in each whole window since the first request (0: the first window)."""
    hints: HintWatch = field(default_factory=HintWatch)
    """Requests in flight at each admission against the hint in force (``hint_watch``)."""

    def arrived(self, now_s: float, window_s: float) -> bool:
        """Note an arrival; answers whether it is after the first window."""
        if self.first_request_s is None:
            self.first_request_s = now_s
        self.last_request_s = now_s
        return now_s - self.first_request_s >= window_s

    def admitted(self, user: str, server: str, late: bool, *, hint: int, now_s: float) -> None:
        """A request starts under ``hint``: peaks are of requests in flight, a user's over
        every server."""
        self.requests_by_server[server] += 1
        self.requests_by_user[user] += 1
        self.in_flight_by_server[server] += 1
        self.in_flight_by_user[user] += 1
        self.peak_by_user[user] = max(self.peak_by_user.get(user, 0),
                                      self.in_flight_by_user[user])
        self.peak_by_server[server] = max(self.peak_by_server.get(server, 0),
                                          self.in_flight_by_server[server])
        self.late_requests += late
        self.hints.admitted(hint, now_s, {server: self.in_flight_by_server[server],
                                          f"user:{user}": self.in_flight_by_user[user]})

    def finished(self, user: str, server: str) -> None:
        self.in_flight_by_server[server] -= 1
        self.in_flight_by_user[user] -= 1

    def reset(self) -> Stats:
        """Fresh counters that still know the requests in flight."""
        return Stats(in_flight_by_server=Counter(+self.in_flight_by_server),
                     in_flight_by_user=Counter(+self.in_flight_by_user),
                     hints=self.hints.fresh())

    def wrote(self, user: str, records: int, now_s: float, window_s: float) -> None:
        """A request of ``user`` admitted at ``now_s`` updated ``records`` records."""
        if records:
            self.written_by_user[user] += records
            first_s = now_s if self.first_request_s is None else self.first_request_s
            self.written_by_window[math.floor((now_s - first_s) / window_s)] += records

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
                "in_flight_vs_hint": self.hints.as_json(),
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
        """The run so far: its length, the records it can have had accepted at most (and that
        as records/s over its length), the records written in each whole window since the
        first request (the last one still running when the run goes on)."""
        elapsed_s = self.elapsed_s()
        windows = max(self.written_by_window, default=-1) + 1
        return {"elapsed_s": round(elapsed_s, 6), "bound_records": run_bound(config, elapsed_s),
                "ceiling_per_s": run_ceiling_per_s(config, elapsed_s),
                "records_by_window": [self.written_by_window[n] for n in range(windows)]}
