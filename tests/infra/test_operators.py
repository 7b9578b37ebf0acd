"""The operator path: the people who run `sync status` and the repair commands get exactly the two
data roles those commands need, on the storage account alone, by a parameter.

What the commands need is the runbook's word (docs/operations.md, "Deploy"): Storage Queue Data
Contributor and Storage Table Data Contributor. The key rotation the runbook gives deploys the key's
module through the resource manager, which needs no Key Vault data role, so none is granted.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.infra.bicep import MAIN, Resource, decorators, dotted, params, parse
from tests.infra.evaluate import deploy

ROLE_ASSIGNMENT = "Microsoft.Authorization/roleAssignments"
QUEUE_DATA_CONTRIBUTOR = "974c5e8b-45b9-4653-ba55-5f855dd0fb88"
TABLE_DATA_CONTRIBUTOR = "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"
ALICE = "11111111-1111-1111-1111-111111111111"
OPS_GROUP = "22222222-2222-2222-2222-222222222222"


def operator_assignments(**given: object) -> list[tuple[Resource, dict[str, Any]]]:
    """The operators' role assignments the storage module creates: (declaration, evaluated body)."""
    module = deploy(**given).modules()["storage"]
    return [(resource, body) for resource in module.resources()
            if resource.type == ROLE_ASSIGNMENT and resource.symbol.startswith("operator")
            for body in module.bodies(resource)]


def role(resource: Resource) -> str:
    """The role definition GUID an assignment grants (a variable of storage.bicep)."""
    name = resource.body["properties"]["roleDefinitionId"]["function"]["parameters"][
        "resource_name_1"]
    return str(parse(resource.file)["variables"][name]["value"])


def test_no_operator_no_grant() -> None:
    assert operator_assignments() == []


@pytest.mark.parametrize(("principals", "kind"), [([ALICE], "User"),
                                                  ([ALICE, OPS_GROUP], "Group")],
                         ids=["one user", "two groups"])
def test_each_operator_gets_exactly_queue_and_table_data_contributor(principals: list[str],
                                                                    kind: str) -> None:
    assignments = operator_assignments(operatorPrincipalIds=principals, operatorPrincipalType=kind)
    granted = sorted((body["properties"]["principalId"], role(resource))
                     for resource, body in assignments)
    roles = [QUEUE_DATA_CONTRIBUTOR, TABLE_DATA_CONTRIBUTOR]
    assert granted == sorted((principal, r) for principal in principals for r in roles)
    for _, body in assignments:
        assert body["properties"]["principalType"] == kind
        assert body["scope"] == "account", "the storage account, nothing wider"


def test_operator_role_assignment_names_are_one_per_principal_and_role() -> None:
    names = [[dotted(argument) for argument in resource.body["name"]["function"]["parameters"]
              .values()] for resource, _ in operator_assignments(operatorPrincipalIds=[ALICE])]
    assert names == [
        ["account.id", "operator", "queueDataContributorRole"],
        ["account.id", "operator", "tableDataContributorRole"]], "redeploying is a no-op"


def test_operators_get_no_key_vault_role() -> None:
    deployment = deploy(operatorPrincipalIds=[ALICE])
    vault_module = deployment.modules()["keyVault"]
    assert "operatorPrincipalIds" not in vault_module.scope


def test_operator_principal_type_is_one_of_three() -> None:
    declared = params(MAIN)["operatorPrincipalType"]
    assert decorators(declared)["allowed"] == ["User", "Group", "ServicePrincipal"]
    assert declared["default"] == "User"
    assert params(MAIN)["operatorPrincipalIds"]["default"] == []
