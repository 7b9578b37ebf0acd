"""Dataverse identities of their own: N names, N identities, all assigned, in SYNC_ENVIRONMENTS.

Each test deploys main.bicep offline (tests/infra/evaluate.py). What only Azure knows stays the
expression's text: the i-th identity's client id is ``${identities[i].properties.clientId}``, where
``identities`` loops over the names in their order (test_identities_loop_over_the_names_in_order).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.infra.bicep import INFRA, MAIN, decorators, params, unquote
from tests.infra.evaluate import REQUIRED, Deployment, Ref, created, deploy, only

IDENTITY = "Microsoft.ManagedIdentity/userAssignedIdentities"
ROLE_ASSIGNMENT = "Microsoft.Authorization/roleAssignments"
MODULE = "dataverseIdentities"
APP_IDENTITY_ID = "${identity.id}"
APP_CLIENT_ID = "${identity.properties.clientId}"
PROD = {"name": "prod", "url": "https://contoso.crm.dynamics.com"}
TEST = {"name": "test", "url": "https://contoso-test.crm.dynamics.com"}
EXAMPLE = INFRA / "examples" / "two-identities.parameters.json"


def names(count: int) -> list[str]:
    return [f"sync{n}" for n in range(1, count + 1)]


def client_id(index: int) -> str:
    return f"${{identities[{index}].properties.clientId}}"


def settings(deployment: Deployment) -> dict[str, Any]:
    return dict(only(deployment, "Microsoft.Web/sites/config")["properties"])


def sync_environments(deployment: Deployment) -> dict[str, Any]:
    text = settings(deployment)["SYNC_ENVIRONMENTS"]
    assert isinstance(text, str)
    assert text, "SYNC_ENVIRONMENTS is not set"
    parsed = json.loads(text)
    assert isinstance(parsed, dict)
    return parsed


def assigned(deployment: Deployment) -> set[str]:
    """The resource ids of the identities assigned to the function app."""
    site = only(deployment, "Microsoft.Web/sites")
    assert site["identity"]["type"] == "UserAssigned"
    return {unquote(key) for key in site["identity"]["userAssignedIdentities"]}


def test_by_default_the_app_identity_signs_in_and_sync_environments_stays_empty() -> None:
    deployment = deploy()
    assert len(created(deployment)[IDENTITY]) == 1
    assert assigned(deployment) == {APP_IDENTITY_ID}
    values = settings(deployment)
    assert values["SYNC_ENVIRONMENTS"] == "", "today's default lane, today's partition keys"
    assert values["DATAVERSE_URL"] == REQUIRED["dataverseUrl"]
    assert deployment.output("dataverseIdentities") == [
        {"name": "default", "clientId": Ref("identity.properties.clientId"),
         "principalId": Ref("identity.properties.principalId")}]


@pytest.mark.parametrize("count", [1, 2, 4], ids=lambda n: f"{n} identities")
def test_n_names_create_n_identities_beside_the_app_identity(count: int) -> None:
    identities = created(deploy(dataverseIdentityNames=names(count)))[IDENTITY]
    assert len(identities) == count + 1
    module = deploy(dataverseIdentityNames=names(count)).modules()[MODULE]
    made = [body["name"] for resource in module.resources() for body in module.bodies(resource)]
    assert [name.rsplit("-", 1)[1] for name in made] == names(count)
    assert len(set(made)) == count


def test_identities_loop_over_the_names_in_order() -> None:
    module = deploy(dataverseIdentityNames=names(2)).modules()[MODULE]
    [resource] = module.resources()
    assert (resource.symbol, resource.type) == ("identities", IDENTITY)
    assert resource.loop is not None
    assert resource.loop["detail"]["array_name"] == "checkedNames", "the names, once checked"
    assert module.scope["names"] == names(2)


@pytest.mark.parametrize("count", [1, 2, 4], ids=lambda n: f"{n} identities")
def test_every_identity_is_assigned_to_the_app(count: int) -> None:
    deployment = deploy(dataverseIdentityNames=names(count))
    dataverse = {f"${{identities[{i}].id}}" for i in range(count)}
    assert assigned(deployment) == {APP_IDENTITY_ID} | dataverse


@pytest.mark.parametrize("count", [1, 2, 4], ids=lambda n: f"{n} identities")
def test_sync_environments_holds_each_client_id(count: int) -> None:
    lanes = sync_environments(deploy(dataverseIdentityNames=names(count)))
    assert lanes == {"default": {
        "url": REQUIRED["dataverseUrl"],
        "identities": {name: client_id(i) for i, name in enumerate(names(count))},
        "dop_scope": "environment"}}


def test_every_environment_gets_every_identity() -> None:
    lanes = sync_environments(deploy(dataverseIdentityNames=names(2),
                                     dataverseEnvironments=[PROD, TEST]))
    assert list(lanes) == ["prod", "test"]
    for environment in (PROD, TEST):
        lane = lanes[environment["name"]]
        assert lane["url"] == environment["url"]
        assert lane["identities"] == {"sync1": client_id(0), "sync2": client_id(1)}


def test_environments_without_names_use_the_app_identity_as_default() -> None:
    deployment = deploy(dataverseEnvironments=[PROD, TEST])
    lanes = sync_environments(deployment)
    assert {name: lane["identities"] for name, lane in lanes.items()} == {
        "prod": {"default": APP_CLIENT_ID}, "test": {"default": APP_CLIENT_ID}}
    assert assigned(deployment) == {APP_IDENTITY_ID}


@pytest.mark.parametrize("scope", ["environment", "identity"])
def test_dop_scope_reaches_every_environment(scope: str) -> None:
    lanes = sync_environments(deploy(dataverseDopScope=scope, dataverseEnvironments=[PROD, TEST]))
    assert {lane["dop_scope"] for lane in lanes.values()} == {scope}


def test_dop_scope_is_one_of_the_two_the_app_knows() -> None:
    declared = params(MAIN)["dataverseDopScope"]
    assert decorators(declared)["allowed"] == ["environment", "identity"]
    assert declared["default"] == "environment"


@pytest.mark.parametrize("count", [1, 2, 4], ids=lambda n: f"{n} identities")
def test_outputs_list_each_identity_client_and_principal_id(count: int) -> None:
    outputs = deploy(dataverseIdentityNames=names(count)).output("dataverseIdentities")
    assert outputs == [{"name": name,
                        "clientId": Ref(f"identities[{i}].properties.clientId"),
                        "principalId": Ref(f"identities[{i}].properties.principalId")}
                       for i, name in enumerate(names(count))]


def test_dataverse_identities_get_no_azure_role() -> None:
    with_identities = created(deploy(dataverseIdentityNames=names(4)))[ROLE_ASSIGNMENT]
    assert with_identities == created(deploy())[ROLE_ASSIGNMENT]
    module = deploy(dataverseIdentityNames=names(4)).modules()[MODULE]
    assert {resource.type for resource in module.resources()} == {IDENTITY}


def test_storage_key_vault_and_telemetry_stay_with_the_app_identity() -> None:
    deployment = deploy(dataverseIdentityNames=names(2))
    site = only(deployment, "Microsoft.Web/sites")["properties"]
    assert site["keyVaultReferenceIdentity"] == Ref("identity.id")
    values = settings(deployment)
    assert values["AzureWebJobsStorage__clientId"] == Ref("identity.properties.clientId")
    assert APP_CLIENT_ID in values["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"]


def test_sync_definitions_pass_through() -> None:
    assert params(MAIN)["syncDefinitions"]["default"] == ""
    definitions = json.dumps({"accounts": {"environment": "default"}})
    assert settings(deploy(syncDefinitions=definitions))["SYNC_DEFINITIONS"] == definitions


def example_parameters() -> dict[str, Any]:
    parameters = json.loads(EXAMPLE.read_text(encoding="utf-8"))["parameters"]
    return {name: given["value"] for name, given in parameters.items()}


def test_the_two_identity_example_yields_the_lanes_deploying_md_shows() -> None:
    lanes = sync_environments(Deployment(MAIN, example_parameters()))
    assert lanes == {"default": {
        "url": "https://contoso.crm.dynamics.com",
        "identities": {"sync1": client_id(0), "sync2": client_id(1)},
        "dop_scope": "environment"}}
    doc = (INFRA.parent / "docs" / "deploying.md").read_text(encoding="utf-8")
    assert "infra/examples/two-identities.parameters.json" in doc
    shown = '"identities": {"sync1": "<clientId of sync1>", "sync2": "<clientId of sync2>"}'
    assert shown in doc
