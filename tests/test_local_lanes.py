"""``python -m sync local --environments M --identities N``: the hosts' settings per the lanes
contract, each environment's emulator, the per-lane summary, progress over several runs."""

from __future__ import annotations

import json

import pytest

from sync.config.table_definition import DEFAULT_DEFINITION, parse_definition
from sync.local.emulators.webapi.servers import user_of
from sync.local.environments import (
    emulator_args,
    emulator_name,
    host_environment,
    opaque_token,
)
from sync.local.lanes import (
    EnvironmentFigures,
    LaneFigures,
    Layout,
    identity_token,
    lane_figures,
    lane_lines,
    lane_settings,
    users_of_identities,
)
from sync.local.progress import added_up
from sync.message.counts import MessageCounts
from sync.state.ledger_rows import PLAN_KIND
from sync.state.runs import RunRow, RunTotals

URLS = {"env1": "http://127.0.0.1:5001", "env2": "http://127.0.0.1:5002"}
BASE = {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "ENRICHMENT_URL": "http://x"}


def test_one_environment_one_identity_is_todays_single_lane() -> None:
    layout = Layout()
    assert layout.single
    assert layout.environment_names == ("default",)
    assert layout.identity_names == ("default",)
    assert lane_settings(layout, {"default": "http://127.0.0.1:1"}, DEFAULT_DEFINITION) == {}


@pytest.mark.parametrize(("environments", "identities", "names", "ids"), [
    (2, 1, ("env1", "env2"), ("id1",)),
    (1, 2, ("env1",), ("id1", "id2")),
    (3, 4, ("env1", "env2", "env3"), ("id1", "id2", "id3", "id4")),
], ids=["two environments, one identity", "one environment, two identities",
        "three environments, four identities"])
def test_several_lanes_are_named_env_and_id(environments: int, identities: int,
                                            names: tuple[str, ...], ids: tuple[str, ...]) -> None:
    layout = Layout(environments, identities)
    assert not layout.single
    assert layout.environment_names == names
    assert layout.identity_names == ids


def test_a_layout_without_environments_or_identities_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Layout(0, 1)
    with pytest.raises(ValueError, match="at least 1"):
        Layout(1, 0)


def test_lane_settings_follow_the_contract() -> None:
    settings = lane_settings(Layout(2, 2), URLS, DEFAULT_DEFINITION)
    assert json.loads(settings["SYNC_ENVIRONMENTS"]) == {
        "env1": {"url": URLS["env1"], "identities": {"id1": None, "id2": None}},
        "env2": {"url": URLS["env2"], "identities": {"id1": None, "id2": None}}}
    definitions = json.loads(settings["SYNC_DEFINITIONS"])
    assert definitions == {name: {**DEFAULT_DEFINITION, "environment": name}
                           for name in ("env1", "env2")}


def test_single_lane_hosts_get_todays_settings() -> None:
    env = host_environment(BASE, Layout(), {"default": URLS["env1"]}, dry_run=False)
    assert env["DATAVERSE_URL"] == URLS["env1"]
    assert "SYNC_ENVIRONMENTS" not in env
    assert "SYNC_DEFINITIONS" not in env
    assert "SYNC_DEFINITION" not in env
    claims = user_of(f"Bearer {env['DATAVERSE_STATIC_TOKEN']}")
    assert claims is not None  # a JWT naming a made-up user, as before
    assert env["DATAVERSE_STATIC_TOKEN"].count(".") == 2


def test_lane_hosts_get_lane_settings_and_the_given_definition_in_each_environment() -> None:
    given = {**BASE, "DATAVERSE_URL": "http://127.0.0.1:9", "DATAVERSE_CLIENT_ID": "x",
             "SYNC_DEFINITION": json.dumps({"bulk_etag_check": False})}
    env = host_environment(given, Layout(2, 2), URLS, dry_run=True)
    for replaced in ("DATAVERSE_URL", "SYNC_DEFINITION", "DATAVERSE_CLIENT_ID"):
        assert replaced not in env
    definitions = json.loads(env["SYNC_DEFINITIONS"])
    assert set(definitions) == {"env1", "env2"}
    for name, definition in definitions.items():
        assert definition["environment"] == name
        assert definition["bulk_etag_check"] is False
        assert definition["dry_run"] is True
        fields = {k: v for k, v in definition.items() if k != "environment"}
        assert parse_definition(json.dumps(fields)).bulk_etag_check is False
    assert env["DATAVERSE_STATIC_TOKEN"].startswith("local-")
    assert env["DATAVERSE_STATIC_TOKEN"].count(".") == 0


def test_a_token_given_in_the_environment_is_kept() -> None:
    env = host_environment({**BASE, "DATAVERSE_STATIC_TOKEN": "mine"}, Layout(1, 2),
                           {"env1": URLS["env1"]}, dry_run=False)
    assert env["DATAVERSE_STATIC_TOKEN"] == "mine"


def test_each_identity_is_a_user_of_its_own() -> None:
    token = opaque_token()
    assert identity_token(token, "default") == token
    assert identity_token(token, "id2") == f"{token}-id2"
    users = users_of_identities(Layout(1, 3), token)
    assert sorted(users.values()) == ["id1", "id2", "id3"]
    assert users[str(user_of(f"Bearer {token}-id2"))] == "id2"


def test_every_environment_has_its_own_emulator_and_data() -> None:
    assert emulator_name("default") == "dataverse-emulator"
    assert emulator_name("env2") == "dataverse-emulator-env2"
    assert emulator_args(1, 200, ("--servers=3",)) == [
        "emulator", "dataverse", "--records", "200", "--servers=3"]
    assert emulator_args(2, 200, ("--servers=3",)) == [
        "emulator", "dataverse", "--records", "200", "--seed", "2", "--servers=3"]


STATS = {"users": {"u-1": {"requests": 120, "written": 1000,
                           "throttled_by_facet": {"requests": 2}, "peak_concurrency": 18},
                   "u-2": {"requests": 100, "written": 800, "throttled_by_facet": {},
                           "peak_concurrency": 9},
                   "u-person": {"requests": 1, "written": 1, "throttled_by_facet": {},
                                "peak_concurrency": 1}},
         "limits": {"window_s": 10.0, "max_requests": 200, "max_exec_ms": 40000.0,
                    "max_concurrent": 52, "servers": 2}}


def test_lane_figures_come_from_the_users_of_the_identities() -> None:
    found = lane_figures("env1", STATS, {"u-2": "id2", "u-1": "id1", "u-idle": "id3"}, 20.0)
    assert [lane.identity for lane in found.lanes] == ["id1", "id2", "id3"]
    first, _, idle = found.lanes
    assert first == LaneFigures("env1", "id1", written=1000, requests=120,
                                throttled_by_facet={"requests": 2}, peak_concurrency=18,
                                rate_per_s=50.0)
    assert (idle.written, idle.requests, idle.rate_per_s) == (0, 0, 0.0)
    assert found.limits["max_concurrent"] == 52


def test_the_summary_shows_each_lane_and_each_environments_limits() -> None:
    lanes = [lane_figures(name, STATS, {"u-1": "id1", "u-2": "id2"}, 20.0)
             for name in ("env1", "env2")]
    lines = lane_lines(lanes)
    assert lines[1].startswith("Lanes (environment/identity")
    lane_rows = [line for line in lines if line.startswith("  env")]
    assert len(lane_rows) == 4
    assert lane_rows[0] == ("  env1/id1             1,000 written     50.0 rec/s  429s requests "
                            "2, execution 0, concurrency 0  peak 18 in flight  120 requests")
    assert lane_rows[3].startswith("  env2/id2               800 written     40.0 rec/s")
    limits = [line for line in lines if "each user" in line]
    assert limits == ["    each user, on each of 2 server(s): 200 requests and 40,000 ms of "
                      "execution per 10 s window, 52 in flight (so at most 104 in flight in "
                      "all)"] * 2


def test_one_lane_has_no_lane_section() -> None:
    assert lane_lines([]) == []


def test_an_environment_without_limits_shows_its_lanes_only() -> None:
    lane = LaneFigures("env1", "id1", 5, 5, {}, 1, 1.0)
    assert len(lane_lines([EnvironmentFigures("env1", [lane])])) == 3


def _run(run_id: str, planned: int, complete: bool, written: int) -> RunTotals:
    row = RunRow(run_id, PLAN_KIND, planned=planned, batches=1, plan_complete=complete,
                 started_s=0.0)
    return RunTotals(row, MessageCounts(written=written))


def test_several_definitions_runs_add_up_and_finish_together() -> None:
    planned, complete, counts, _ = added_up([_run("a", 200, True, 150),
                                             _run("b", 200, True, 200)], expected_runs=2)
    assert (planned, complete, counts.written) == (400, True, 350)


def test_a_plan_not_yet_started_keeps_the_run_open() -> None:
    assert not added_up([_run("a", 200, True, 200)], expected_runs=2)[1]
    assert not added_up([_run("a", 200, True, 200), _run("b", 0, False, 0)],
                        expected_runs=2)[1]
    assert not added_up([], expected_runs=1)[1]
