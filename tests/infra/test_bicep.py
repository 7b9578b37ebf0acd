"""The Bicep template: it parses, uses the expected resources, keeps keys out, grants little."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sync.config.storage_names import QUEUES, TABLES
from tests.infra.bicep import (
    INFRA,
    MAIN,
    Resource,
    all_resources,
    bicep_files,
    decorators,
    dotted,
    loop_items,
    of_type,
    one,
    params,
    parse,
    symbol_type,
    unquote,
)
from tests.infra.evaluate import deploy, only

STORAGE = "Microsoft.Storage/storageAccounts"
ROLE_ASSIGNMENT = "Microsoft.Authorization/roleAssignments"

API_VERSIONS = {
    "Microsoft.ManagedIdentity/userAssignedIdentities": "2023-01-31",
    "Microsoft.Web/serverfarms": "2024-04-01",
    "Microsoft.Web/sites": "2024-04-01",
    "Microsoft.Web/sites/config": "2024-04-01",
    "Microsoft.Web/sites/basicPublishingCredentialsPolicies": "2024-04-01",
    STORAGE: "2023-05-01",
    f"{STORAGE}/blobServices": "2023-05-01",
    f"{STORAGE}/blobServices/containers": "2023-05-01",
    f"{STORAGE}/queueServices": "2023-05-01",
    f"{STORAGE}/queueServices/queues": "2023-05-01",
    f"{STORAGE}/tableServices": "2023-05-01",
    f"{STORAGE}/tableServices/tables": "2023-05-01",
    "Microsoft.OperationalInsights/workspaces": "2023-09-01",
    "Microsoft.Insights/components": "2020-02-02",
    "Microsoft.KeyVault/vaults": "2023-07-01",
    "Microsoft.KeyVault/vaults/secrets": "2023-07-01",
    ROLE_ASSIGNMENT: "2022-04-01",
    "Microsoft.EventGrid/systemTopics": "2025-02-15",
    "Microsoft.EventGrid/systemTopics/eventSubscriptions": "2025-02-15",
    "Microsoft.Insights/actionGroups": "2023-01-01",
    "Microsoft.Insights/scheduledQueryRules": "2023-12-01",
    "Microsoft.Insights/workbooks": "2023-06-01",
    "Microsoft.Network/virtualNetworks": "2024-05-01",
    "Microsoft.Network/networkSecurityGroups": "2024-05-01",
    "Microsoft.Network/natGateways": "2024-05-01",
    "Microsoft.Network/publicIPAddresses": "2024-05-01",
    "Microsoft.Network/privateEndpoints": "2024-05-01",
    "Microsoft.Network/privateEndpoints/privateDnsZoneGroups": "2024-05-01",
    "Microsoft.Network/privateDnsZones": "2024-06-01",
    "Microsoft.Network/privateDnsZones/virtualNetworkLinks": "2024-06-01",
    "Microsoft.Insights/diagnosticSettings": "2021-05-01-preview",
}

# Built-in role definition ids (MicrosoftDocs azure-docs, role-based-access-control/
# built-in-roles.md) and the resource types each may be assigned on.
ROLES = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": ("Storage Blob Data Owner", {STORAGE}),
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": ("Storage Queue Data Contributor", {STORAGE}),
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": ("Storage Table Data Contributor", {STORAGE}),
    "3913510d-42f4-4e42-8a64-420c390055eb": ("Monitoring Metrics Publisher",
                                             {"Microsoft.Insights/components"}),
    "4633458b-17de-408a-b874-0445c86b69e6": ("Key Vault Secrets User",
                                             {"Microsoft.KeyVault/vaults",
                                              "Microsoft.KeyVault/vaults/secrets"}),
}

# Ways a template can put a key or a connection string where it does not belong.
FORBIDDEN = (
    re.compile(r"listkeys", re.IGNORECASE),
    re.compile(r"\blist[A-Z]\w*\s*\("),        # any list*() function: listKeys, listAccountSas...
    re.compile(r"AccountKey=", re.IGNORECASE),
    re.compile(r"SharedAccessSignature=", re.IGNORECASE),
    re.compile(r"DefaultEndpointsProtocol=", re.IGNORECASE),
)


def role_id(assignment: Resource) -> str:
    """The GUID in ``subscriptionResourceId('Microsoft.Authorization/roleDefinitions', GUID)``,
    written there or in a variable of the file."""
    call = assignment.body["properties"]["roleDefinitionId"]["function"]
    assert call["type"] == "subscription_resource_id"
    assert call["parameters"]["resource_type"] == "Microsoft.Authorization/roleDefinitions"
    name = str(call["parameters"]["resource_name_1"])
    variables = parse(assignment.file).get("variables", {})
    return str(variables[name]["value"]) if name in variables else name


def app_assignments() -> list[Resource]:
    """The role assignments of the app's identity (the operators' are in test_operators.py)."""
    return [a for a in of_type(ROLE_ASSIGNMENT) if not a.symbol.startswith("operator")]


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: str(p.relative_to(INFRA)))
def test_every_bicep_file_parses(path: Path) -> None:
    tree = parse(path)
    assert tree.get("resources"), f"{path.name} declares no resource"


def test_the_module_files_are_the_modules_the_templates_use() -> None:
    used = {(path.parent / m["detail"]["path"]).resolve() for path in bicep_files()
            for m in parse(path).get("modules", {}).values()}
    assert used == set(bicep_files()) - {MAIN}


def test_resource_types_and_api_versions() -> None:
    declared = all_resources()
    assert {r.type for r in declared} == set(API_VERSIONS)
    for resource in declared:
        assert resource.api_version == API_VERSIONS[resource.type], resource.symbol


def test_storage_account_accepts_entra_id_only() -> None:
    properties = one(STORAGE).body["properties"]
    assert properties["allowSharedKeyAccess"] is False
    assert properties["defaultToOAuthAuthentication"] is True
    assert properties["minimumTlsVersion"] == "TLS1_2"
    assert properties["allowBlobPublicAccess"] is False
    assert properties["supportsHttpsTrafficOnly"] is True


@pytest.mark.parametrize("path", [*bicep_files(), *INFRA.glob("*.json"), MAIN.parents[1] /
                                  "azure.yaml"], ids=lambda p: p.name)
def test_no_key_and_no_connection_string_anywhere(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    for pattern in FORBIDDEN:
        assert not pattern.search(text), f"{path.name}: {pattern.pattern}"


def test_role_definitions_are_exactly_the_five() -> None:
    assigned = sorted(role_id(a) for a in app_assignments())
    assert assigned == sorted(ROLES), [ROLES.get(guid, (guid,))[0] for guid in assigned]


@pytest.mark.parametrize("assignment", of_type(ROLE_ASSIGNMENT), ids=lambda a: a.symbol)
def test_each_role_is_scoped_to_its_resource(assignment: Resource) -> None:
    name, allowed = ROLES[role_id(assignment)]
    scope = assignment.body.get("scope")
    assert isinstance(scope, str), f"{name} has no resource scope: resource group or wider"
    assert symbol_type(assignment.file, scope) in allowed, f"{name} on {scope}"


@pytest.mark.parametrize("assignment", app_assignments(), ids=lambda a: a.symbol)
def test_each_role_goes_to_the_app_identity(assignment: Resource) -> None:
    properties = assignment.body["properties"]
    assert properties["principalId"] == "principalId"
    assert properties["principalType"] == "ServicePrincipal"


def test_modules_grant_to_the_user_assigned_identity() -> None:
    assert symbol_type(MAIN, "identity") == "Microsoft.ManagedIdentity/userAssignedIdentities"
    granting = {name: module for name, module in parse(MAIN)["modules"].items()
                if "principalId" in params(INFRA / module["detail"]["path"])}
    assert set(granting) == {"storage", "monitoring", "keyVault"}
    for module in granting.values():
        principal = module["config"]["params"]["principalId"]
        assert dotted(principal) == "identity.properties.principalId"


def test_template_creates_the_queues_and_tables_the_code_uses() -> None:
    assert sorted(loop_items(one(f"{STORAGE}/queueServices/queues"))) == sorted(QUEUES)
    assert sorted(loop_items(one(f"{STORAGE}/tableServices/tables"))) == sorted(TABLES)


def test_flex_consumption_plan_on_linux() -> None:
    plan = one("Microsoft.Web/serverfarms").body
    assert plan["sku"] == {"tier": "FlexConsumption", "name": "FC1"}
    assert plan["properties"]["reserved"] is True, "reserved: true is what makes a plan Linux"


def test_function_app_runs_python_3_11_with_sized_scale_out() -> None:
    site = one("Microsoft.Web/sites").body
    assert site["kind"] == "functionapp,linux"
    assert site["properties"]["httpsOnly"] is True
    config = site["properties"]["functionAppConfig"]
    assert config["runtime"] == {"name": "python", "version": "3.11"}
    assert config["scaleAndConcurrency"] == {"maximumInstanceCount": "maximumInstanceCount",
                                             "instanceMemoryMB": "instanceMemoryMB"}
    count, memory = (decorators(params(MAIN)[name]) for name in config["scaleAndConcurrency"])
    assert (count.get("min_value"), count.get("max_value")) == (1, 1000)
    assert memory.get("allowed") == [512, 2048, 4096]


def test_function_app_uses_only_its_user_assigned_identity() -> None:
    site = one("Microsoft.Web/sites").body
    assert site["identity"]["type"] == "UserAssigned"
    assigned = only(deploy(), "Microsoft.Web/sites")["identity"]["userAssignedIdentities"]
    assert [unquote(k) for k in assigned] == ["${identity.id}"], "no Dataverse identity of its own"
    assert dotted(site["properties"]["keyVaultReferenceIdentity"]) == "identity.id"
    package = site["properties"]["functionAppConfig"]["deployment"]["storage"]
    assert package["type"] == "blobContainer"
    assert package["authentication"]["type"] == "UserAssignedIdentity"
    assert dotted(package["authentication"]["userAssignedIdentityResourceId"]) == "identity.id"


def test_deployment_container_exists_and_is_private() -> None:
    container = one(f"{STORAGE}/blobServices/containers").body
    assert container["name"] == "deploymentContainerName"
    assert container["properties"]["publicAccess"] == "None"


def test_key_vault_is_in_rbac_mode() -> None:
    properties = one("Microsoft.KeyVault/vaults").body["properties"]
    assert properties["enableRbacAuthorization"] is True
    assert "accessPolicies" not in properties
    assert properties["enablePurgeProtection"] is True


def test_app_insights_accepts_entra_id_telemetry_only() -> None:
    properties = one("Microsoft.Insights/components").body["properties"]
    assert properties["DisableLocalAuth"] is True
    assert dotted(properties["WorkspaceResourceId"]) == "workspace.id"
