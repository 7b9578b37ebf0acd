"""One name rule for lanes and identities: the app's (sync/config/lanes.py, NAME) is the Bicep's.

Bicep has no regular expressions, so infra/lanenames.json states the rule as data the templates
check with string functions (length, first character, characters). These tests hold its pattern
to the app's constant, its data to the pattern over every character a name could hold, and both
templates to it: a name the app refuses fails the deployment (evaluated offline by
tests/infra/evaluate.py), a name it accepts deploys.
"""

from __future__ import annotations

import json
import string
from typing import Any

import pytest

from sync.config.lanes import NAME
from tests.infra.bicep import INFRA, MAIN, decorators, params
from tests.infra.evaluate import DeploymentFailed, created, deploy

RULE_FILE = INFRA / "lanenames.json"
IDENTITIES = INFRA / "modules" / "dataverseidentities.bicep"
IDENTITY = "Microsoft.ManagedIdentity/userAssignedIdentities"

# Names around every edge of the rule; the tests add every printable ASCII character and a few
# others in first, middle and last place.
EDGES = ["", "a", "z", "sync1", "sync-1", "a" * 32, "a" * 33, "a" + "9" * 31, "a-", "a--b",
         "Sync1", "SYNC", "1sync", "-sync", "sync_1", "sync.1", "sync 1", "syncé", "sync\n",
         "ß", "prod", "test"]


def rule() -> dict[str, Any]:
    return dict(json.loads(RULE_FILE.read_text(encoding="utf-8")))


def app_accepts(name: str) -> bool:
    """The app's rule on a whole name: NAME's pattern, matched in full."""
    return NAME.fullmatch(name) is not None


def candidates() -> list[str]:
    singles = [chr(code) for code in range(32, 127)] + ["é", "ß", "\n", "\t"]
    placed = [f"{c}ab" for c in singles] + [f"a{c}b" for c in singles] + [f"ab{c}" for c in singles]
    return sorted({*EDGES, *singles, *placed})


def test_the_rule_file_states_the_apps_pattern() -> None:
    assert rule()["pattern"] == NAME.pattern


def test_the_rule_files_data_is_its_pattern() -> None:
    data = rule()
    assert data["firstChars"] == string.ascii_lowercase
    assert sorted(data["chars"]) == sorted(string.ascii_lowercase + string.digits + "-")
    assert all(len(c) == 1 for c in data["chars"]), "split() takes single-character delimiters"
    assert data["maxLength"] == 32


def bicep_accepts_identity(name: str) -> bool:
    try:
        created(deploy(dataverseIdentityNames=[name]))
    except DeploymentFailed:
        return False
    return True


def bicep_accepts_environment(name: str) -> bool:
    try:
        created(deploy(dataverseEnvironments=[{"name": name, "url": "https://x.crm.dynamics.com"}]))
    except DeploymentFailed:
        return False
    return True


@pytest.mark.parametrize("name", candidates(), ids=repr)
def test_identity_names_deploy_exactly_when_the_app_accepts_them(name: str) -> None:
    assert bicep_accepts_identity(name) == app_accepts(name)


@pytest.mark.parametrize("name", EDGES, ids=repr)
def test_environment_names_deploy_exactly_when_the_app_accepts_them(name: str) -> None:
    assert bicep_accepts_environment(name) == app_accepts(name)


def test_a_refused_name_says_which_and_why() -> None:
    with pytest.raises(DeploymentFailed) as refused:
        created(deploy(dataverseIdentityNames=["sync1", "Sync2"]))
    assert '"Sync2"' in str(refused.value)
    assert NAME.pattern in str(refused.value)


def test_a_refused_name_creates_nothing() -> None:
    """The check is a variable the identities loop over: ARM evaluates it before any resource."""
    module = deploy(dataverseIdentityNames=["Sync1"]).modules()["dataverseIdentities"]
    with pytest.raises(DeploymentFailed):
        module.evaluate("checkedNames")


def test_accepted_names_create_their_identities() -> None:
    assert len(created(deploy(dataverseIdentityNames=["sync1", "sync-2"]))[IDENTITY]) == 3


@pytest.mark.parametrize(("path", "param"), [(MAIN, "dataverseIdentityNames"),
                                              (MAIN, "dataverseEnvironments"),
                                              (IDENTITIES, "names")])
def test_parameter_descriptions_state_the_apps_pattern(path: Any, param: str) -> None:
    description = decorators(params(path)[param])["description"]
    assert NAME.pattern in description
