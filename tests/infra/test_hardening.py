"""Hardening: publishing credentials, transport, the site's inbound endpoints, zones, audit logs,
the life cycle of the Key Vault and of the enrichment key."""

from __future__ import annotations

from typing import Any

import pytest

from tests.infra.bicep import MAIN, decorators, params, parse
from tests.infra.evaluate import Ref, created, deploy, only

SECRET = "Microsoft.KeyVault/vaults/secrets"
SUBSCRIPTION = "Microsoft.EventGrid/systemTopics/eventSubscriptions"
DIAGNOSTICS = "Microsoft.Insights/diagnosticSettings"
OPERATOR_IP = "203.0.113.7"
OPERATOR_RANGE = "198.51.100.0/24"


def test_basic_publishing_credentials_are_off() -> None:
    policies = created(deploy())["Microsoft.Web/sites/basicPublishingCredentialsPolicies"]
    assert sorted(p["name"] for p in policies) == ["ftp", "scm"]
    for policy in policies:
        assert policy["parent"] == "functionApp"
        assert policy["properties"] == {"allow": False}


def test_https_only_tls_1_2_and_no_setting_flex_consumption_refuses() -> None:
    site = only(deploy(), "Microsoft.Web/sites")["properties"]
    assert site["httpsOnly"] is True
    assert site["siteConfig"]["minTlsVersion"] == "1.2"
    # FTPS is not supported on Flex Consumption (newer stamps refuse ftpsState), and HTTP/2 is
    # no setting of it (MicrosoftDocs azure-docs, functions-app-settings.md, "Flex Consumption
    # plan deprecations"); FTP stays off through the publishing credentials policy above.
    assert not {"ftpsState", "http20Enabled", "alwaysOn"} & set(site["siteConfig"])


@pytest.mark.parametrize("private", [True, False], ids=["private networking", "public"])
def test_the_site_admits_only_operator_addresses(private: bool) -> None:
    deployment = deploy(privateNetworking=private,
                        operatorIpAddresses=[OPERATOR_IP, OPERATOR_RANGE])
    config = only(deployment, "Microsoft.Web/sites")["properties"]["siteConfig"]
    expected = [{"name": "operator-0", "action": "Allow", "priority": 100,
                 "ipAddress": f"{OPERATOR_IP}/32"},
                {"name": "operator-1", "action": "Allow", "priority": 101,
                 "ipAddress": OPERATOR_RANGE}]
    assert config["ipSecurityRestrictionsDefaultAction"] == "Deny"
    assert config["ipSecurityRestrictions"] == expected
    assert config["scmIpSecurityRestrictionsDefaultAction"] == "Deny"
    assert config["scmIpSecurityRestrictionsUseMain"] is False
    assert config["scmIpSecurityRestrictions"] == expected


def test_without_operator_addresses_the_site_admits_no_one() -> None:
    config = only(deploy(), "Microsoft.Web/sites")["properties"]["siteConfig"]
    assert config["ipSecurityRestrictions"] == config["scmIpSecurityRestrictions"] == []
    assert config["ipSecurityRestrictionsDefaultAction"] == "Deny"
    assert config["scmIpSecurityRestrictionsDefaultAction"] == "Deny"


@pytest.mark.parametrize("zone_redundant", [True, False], ids=["zone-redundant", "one zone"])
def test_zone_redundancy_is_one_switch(zone_redundant: bool) -> None:
    deployment = deploy(zoneRedundant=zone_redundant)
    plan = only(deployment, "Microsoft.Web/serverfarms")
    assert plan["properties"]["zoneRedundant"] is zone_redundant
    storage = only(deployment, "Microsoft.Storage/storageAccounts")
    assert storage["sku"]["name"] == ("Standard_ZRS" if zone_redundant else "Standard_LRS")


def test_zone_redundancy_is_off_by_default() -> None:
    assert only(deploy(), "Microsoft.Web/serverfarms")["properties"]["zoneRedundant"] is False


def test_enrichment_key_is_optional_and_secure() -> None:
    key = params(MAIN)["enrichmentApiKey"]
    assert "secure" in decorators(key)
    assert key["default"] == "", "a deployment without a key keeps the stored one"


@pytest.mark.parametrize(("given", "written"), [("", False), ("k3y", True)],
                         ids=["no key: the stored key stays", "a key: a new version"])
def test_enrichment_key_is_written_only_when_given(given: str, written: bool) -> None:
    deployment = deploy(enrichmentApiKey=given)
    assert ("enrichmentKey" in deployment.modules()) is written
    assert (SECRET in created(deployment)) is written


def test_each_written_key_version_expires() -> None:
    deployment = deploy(enrichmentApiKey="k3y", enrichmentKeyValidityDays=90)
    module = deployment.modules()["enrichmentKey"]
    assert module.scope["validityDays"] == 90
    assert module.scope["writtenAt"] == Ref("utc_now(...)"), "the deployment's own time"
    secret = only(deployment, SECRET)
    assert secret["properties"]["contentType"] == "text/plain"
    attributes = secret["properties"]["attributes"]
    assert attributes["enabled"] is True
    exp = parse(module.path)["resources"]["secret"]["config"]["properties"]["attributes"]["exp"]
    add = exp["function"]["parameters"]["date_time"]["function"]
    assert add["type"] == "date_time_add"
    assert add["parameters"] == {"base": "writtenAt", "duration": "P${validityDays}D",
                                 "format": None}
    days = decorators(params(MAIN)["enrichmentKeyValidityDays"])
    assert days["min_value"] > 30, "the near-expiry event comes 30 days ahead: after creation"


def test_the_app_reads_the_newest_key_version() -> None:
    deployment = deploy()
    reference = deployment.modules()["keyVault"].output("referenceUri")
    assert reference == "${vault.properties.vaultUri}secrets/enrichment-api-key", "no version"
    assert deployment.modules()["keyVault"].scope["secretName"] == "enrichment-api-key"
    key = deploy(enrichmentApiKey="k3y").modules()["enrichmentKey"]
    assert key.scope["secretName"] == "enrichment-api-key"


def test_app_settings_wait_for_the_key() -> None:
    settings = only(deploy(enrichmentApiKey="k3y"), "Microsoft.Web/sites/config")
    assert "enrichmentKey" in settings["dependsOn"]


@pytest.mark.parametrize("days", [7, 90])
def test_key_vault_soft_delete_retention_is_a_parameter(days: int) -> None:
    vault = only(deploy(keyVaultSoftDeleteRetentionDays=days), "Microsoft.KeyVault/vaults")
    assert vault["properties"]["softDeleteRetentionInDays"] == days
    assert vault["properties"]["enableSoftDelete"] is True


def test_key_vault_soft_delete_retention_defaults_to_90_days() -> None:
    declared = params(MAIN)["keyVaultSoftDeleteRetentionDays"]
    assert declared["default"] == 90, "Azure's own modules' default"
    assert (decorators(declared)["min_value"], decorators(declared)["max_value"]) == (7, 90)
    assert only(deploy(), "Microsoft.KeyVault/vaults")["properties"][
        "softDeleteRetentionInDays"] == 90


def diagnostics(deployment_given: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each diagnostic setting the deployment creates, by the resource it is the scope of."""
    return {body["scope"]: body for body in created(deploy(**deployment_given))[DIAGNOSTICS]}


def test_key_vault_audit_log_goes_to_the_workspace() -> None:
    audit = diagnostics({})["vault"]["properties"]
    assert audit["workspaceId"] == Ref("workspace.id")
    assert audit["logs"] == [{"category": "AuditEvent", "enabled": True}]


@pytest.mark.parametrize(("read_logs", "categories"), [
    (False, ["StorageWrite", "StorageDelete"]),
    (True, ["StorageRead", "StorageWrite", "StorageDelete"]),
], ids=["writes and deletes (default)", "reads too"])
def test_queue_and_table_logs_go_to_the_workspace(read_logs: bool, categories: list[str]) -> None:
    found = diagnostics({"storageReadLogs": read_logs})
    assert set(found) == {"vault", "queueService", "tableService"}, "no blob logs: host leases"
    for service in ("queueService", "tableService"):
        properties = found[service]["properties"]
        assert properties["workspaceId"] == Ref("workspace.id")
        assert properties["logs"] == [{"category": c, "enabled": True} for c in categories]
    assert params(MAIN)["storageReadLogs"]["default"] is False


def expiry_subscription() -> dict[str, Any]:
    return only(deploy(), SUBSCRIPTION)


def test_key_expiry_raises_an_azure_monitor_alert() -> None:
    subscription = expiry_subscription()["properties"]
    assert subscription["filter"]["includedEventTypes"] == [
        "Microsoft.KeyVault.SecretNearExpiry", "Microsoft.KeyVault.SecretExpired"]
    assert subscription["filter"]["subjectBeginsWith"] == "enrichment-api-key"
    assert subscription["filter"]["subjectEndsWith"] == "enrichment-api-key"
    assert subscription["eventDeliverySchema"] == "CloudEventSchemaV1_0", "all alerts accept"
    destination = subscription["destination"]
    assert destination["endpointType"] == "MonitorAlert"
    assert destination["properties"]["actionGroups"] == [Ref("group.id")]


def test_the_alerts_come_from_the_vaults_events() -> None:
    topic = only(deploy(), "Microsoft.EventGrid/systemTopics")
    assert topic["properties"] == {"source": Ref("vault.id"),
                                   "topicType": "Microsoft.KeyVault.vaults"}
    assert expiry_subscription()["parent"] == "events"


@pytest.mark.parametrize(("address", "receivers"), [("", 0), ("ops@example.com", 1)],
                         ids=["no address: Azure Monitor only", "an address: email"])
def test_alert_email_is_optional(address: str, receivers: int) -> None:
    group = only(deploy(alertEmailAddress=address), "Microsoft.Insights/actionGroups")
    emails = group["properties"]["emailReceivers"]
    assert len(emails) == receivers
    assert all(e["emailAddress"] == address for e in emails)
