"""The lanes scaling row: its scenario binds on each user's request facet, not the hint; the row
computation (N identities against N x one identity, 429s per lane, CPU headroom); no timing."""

from __future__ import annotations

import pytest

from bench.figures import Result
from bench.machine import idle_share, parse_cpu_times
from bench.scaling import rounds_rate_per_s, scaling_lines, scaling_met, scaling_points
from bench.scenarios import DEFAULT_SCALE, QUICK_SCALE, USER_BOUND, plan_rows
from bench.targets import evaluate
from sync.local.emulators.webapi.stats import ceiling, facet_requests
from tests.test_bench_ceiling import _parsed

WINDOW_S = 10.0


@pytest.mark.parametrize("scale", [DEFAULT_SCALE, QUICK_SCALE], ids=["default", "quick"])
def test_the_user_bound_scenario_binds_on_requests_per_user_not_the_hint(scale: object) -> None:
    config = USER_BOUND.emulator_config(scale.time_scale)  # type: ignore[attr-defined]
    assert _parsed(USER_BOUND, scale) == config  # the emulator's options make the same config
    assert config.max_requests / config.window_s == pytest.approx(40.0, rel=0.05)
    facets = facet_requests(config, "single", 1.0, burst=False)
    assert min(facets, key=lambda f: facets[f]) == "requests"
    per_user_s = ceiling(config)["single"]
    # four identities at the ceiling keep fewer requests in flight than the hint allows
    in_flight = 4 * per_user_s * (config.write_ms_max + config.request_overhead_ms) / 1000
    assert in_flight < config.dop_hint_header
    assert ceiling(config, users=4)["single"] == pytest.approx(4 * per_user_s)


def test_the_scaling_row_is_opt_in() -> None:
    assert not [r for r in plan_rows(DEFAULT_SCALE) if r.kind == "lanes"]
    rows = [r for r in plan_rows(DEFAULT_SCALE, lanes=True) if r.kind == "lanes"]
    assert [(r.identities, r.mode, r.scenario) for r in rows] == [
        (1, "single", USER_BOUND), (2, "single", USER_BOUND), (4, "single", USER_BOUND)]
    assert rows[2].name == "user-bound/product-lanes-x4/single"


def _row(identities: int, rate_per_s: float, *, headroom: float | None = 0.5,
         lanes: list[dict[str, object]] | None = None) -> Result:
    """A lanes row that wrote at ``rate_per_s`` for four windows and ran out of records."""
    timeline = [(t, int(rate_per_s * t)) for t in (0.0, 10.0, 20.0, 30.0, 40.0)]
    written = timeline[-1][1]
    return Result(f"user-bound/product-lanes-x{identities}/single", "lanes", "user-bound",
                  "single", seeded=written, written=written, elapsed_s=40.0,
                  window_s=WINDOW_S, timeline=timeline, identities=identities,
                  lanes=lanes or [], cpu_headroom=headroom,
                  throttled_by_code={"0x80072322": 3} if identities == 1 else {})


def _lanes(identities: int) -> list[dict[str, object]]:
    return [{"environment": "env1", "identity": f"id{n}", "written": 100,
             "throttled_by_facet": {"requests": n}} for n in range(1, identities + 1)]


def test_each_n_is_measured_against_n_times_one_identity() -> None:
    points = scaling_points([_row(4, 150.0, lanes=_lanes(4)), _row(1, 40.0),
                             _row(2, 76.0, lanes=_lanes(2))])
    assert [p.identities for p in points] == [1, 2, 4]
    assert [p.expected_per_s for p in points] == [40.0, 80.0, 160.0]
    assert [p.ratio for p in points] == pytest.approx([1.0, 0.95, 0.9375])
    assert points[0].throttled_by_lane == {"default/default": {"requests": 3}}
    assert points[2].throttled_by_lane["env1/id3"] == {"requests": 3}
    assert scaling_met(points)[0] is True


def test_an_n_under_nine_tenths_fails_the_target() -> None:
    passed, detail = scaling_met(scaling_points([_row(1, 40.0), _row(2, 70.0)]))
    assert passed is False
    assert detail == "x2 70.0/s = 0.88 of 80.0/s"


def test_without_a_one_identity_rate_there_is_no_ratio() -> None:
    points = scaling_points([_row(2, 70.0)])
    assert points[0].ratio is None
    assert scaling_met(points) == (None, "not run (make bench ARGS=--lanes)")
    assert scaling_met([])[0] is None


def test_the_report_prints_the_row_and_the_target() -> None:
    results = [_row(1, 40.0, headroom=0.71), _row(2, 80.0, lanes=_lanes(2), headroom=None)]
    lines = scaling_lines(scaling_points(results))
    assert lines[-2] == "| 1 | 40.0 | 40.0 | 1.00 | default/default requests 3 | 71% |"
    assert lines[-1] == ("| 2 | 80.0 | 80.0 | 1.00 | env1/id1 requests 1; env1/id2 requests 2 "
                         "| - |")
    verdict = next(v for v in evaluate(results) if "identities" in v.target)
    assert verdict.passed is True
    assert scaling_lines([]) == []


STAT = "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 50 0 25 400 25 0 0 0 0 0\n"


def test_cpu_headroom_is_the_machines_idle_share_between_two_readings() -> None:
    before = parse_cpu_times(STAT)
    assert before == (850, 1000)
    after = parse_cpu_times("cpu  400 0 150 1150 50 0 0 0 0 0\n")
    assert idle_share(before, after) == pytest.approx(350 / 750)
    assert idle_share(before, before) is None
    assert parse_cpu_times("") == (0, 0)


def test_bursty_rounds_are_measured_over_whole_rounds_after_the_first() -> None:
    # 400 records a round, rounds 12 s apart (a window of 10 s plus the wait to come back)
    timeline = [(0.0, 0), (2.0, 0), (2.5, 400), (14.0, 400), (14.5, 800), (26.0, 800),
                (26.5, 1200), (38.0, 1200), (38.5, 1600)]
    assert rounds_rate_per_s(timeline, 400, 1600) == pytest.approx(1200 / 36.0)
    # starting the clock at 0 instead would count the start-up and the first burst
    assert rounds_rate_per_s(timeline, 0, 1600) != pytest.approx(1200 / 36.0)
    assert rounds_rate_per_s(timeline, 400, 2000) == 0.0  # never finished: no rate
