"""The private-networking option, both ways: what each setting creates, closes and outputs.

Each test deploys main.bicep offline (tests/infra/evaluate.py) with the option on and off, and
looks at what the deployment and its modules would create, with the values they would set.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.infra.bicep import MAIN, params
from tests.infra.evaluate import REQUIRED, Deployment, Ref, created, deploy, only

OPERATOR_IP = "203.0.113.7"

VNET = "Microsoft.Network/virtualNetworks"
NAT_GATEWAY = "Microsoft.Network/natGateways"
PUBLIC_IP = "Microsoft.Network/publicIPAddresses"
PRIVATE_ENDPOINT = "Microsoft.Network/privateEndpoints"
ZONE = "Microsoft.Network/privateDnsZones"
ZONE_LINK = f"{ZONE}/virtualNetworkLinks"
ZONE_GROUP = f"{PRIVATE_ENDPOINT}/privateDnsZoneGroups"
NETWORK_TYPES = {VNET, "Microsoft.Network/networkSecurityGroups", PRIVATE_ENDPOINT, ZONE,
                 ZONE_LINK, ZONE_GROUP}
EGRESS_TYPES = {NAT_GATEWAY, PUBLIC_IP}

# The private DNS zone of each sub-resource in Azure's public cloud (MicrosoftDocs azure-docs,
# private-link/private-endpoint-dns.md).
ZONES = {
    "blob": "privatelink.blob.core.windows.net",
    "queue": "privatelink.queue.core.windows.net",
    "table": "privatelink.table.core.windows.net",
    "vault": "privatelink.vaultcore.azure.net",
}

NETWORKING = pytest.mark.parametrize("private", [True, False],
                                     ids=["private networking", "public endpoints"])


def test_the_tests_give_exactly_the_required_parameters() -> None:
    required = {name for name, param in params(MAIN).items() if param.get("default") is None}
    assert required == set(REQUIRED)


def firewalled(deployment: Deployment) -> dict[str, dict[str, Any]]:
    """The properties of the storage account and of the Key Vault."""
    return {"storage": only(deployment, "Microsoft.Storage/storageAccounts")["properties"],
            "key vault": only(deployment, "Microsoft.KeyVault/vaults")["properties"]}


@NETWORKING
def test_network_resources_exist_only_with_private_networking(private: bool) -> None:
    types = set(created(deploy(privateNetworking=private)))
    assert (types >= NETWORK_TYPES) is private
    assert not (NETWORK_TYPES & types) or private


def test_private_networking_is_the_default() -> None:
    assert set(created(deploy())) >= NETWORK_TYPES


FIREWALLS = [
    # private, operator addresses, publicNetworkAccess, defaultAction, admitted addresses
    (True, [], "Disabled", "Deny", []),
    (True, [OPERATOR_IP], "Enabled", "Deny", [OPERATOR_IP]),
    (False, [], "Enabled", "Allow", []),
    (False, [OPERATOR_IP], "Enabled", "Allow", []),
]


@pytest.mark.parametrize(
    ("private", "operators", "access", "default_action", "admitted"), FIREWALLS,
    ids=["private: public endpoints off",
         "private with operator addresses: the public endpoint admits them alone",
         "public: open to Entra ID callers",
         "public: operator addresses ignored"])
def test_storage_and_key_vault_firewalls(private: bool, operators: list[str], access: str,
                                         default_action: str, admitted: list[str]) -> None:
    deployment = deploy(privateNetworking=private, operatorIpAddresses=operators)
    for name, properties in firewalled(deployment).items():
        acls = properties["networkAcls"]
        assert properties["publicNetworkAccess"] == access, name
        assert acls["defaultAction"] == default_action, name
        assert [rule["value"] for rule in acls["ipRules"]] == admitted, name
        assert acls["virtualNetworkRules"] == [], name


@NETWORKING
def test_storage_bypasses_nothing_when_private(private: bool) -> None:
    storage = firewalled(deploy(privateNetworking=private))["storage"]
    assert storage["networkAcls"]["bypass"] == ("None" if private else "AzureServices")


def test_every_private_endpoint_has_its_dns_zone_linked_to_the_network() -> None:
    module = deploy(privateNetworking=True).modules()["privateEndpoints"]
    by_type = {r.type: r for r in module.resources()}
    endpoints = module.bodies(by_type[PRIVATE_ENDPOINT])
    zones = module.bodies(by_type[ZONE])
    links = module.bodies(by_type[ZONE_LINK])
    groups = module.bodies(by_type[ZONE_GROUP])
    group_ids = [endpoint["properties"]["privateLinkServiceConnections"][0]["properties"]
                 ["groupIds"] for endpoint in endpoints]
    assert sorted(g for [g] in group_ids) == sorted(ZONES)
    for i, [group_id] in enumerate(group_ids):
        assert zones[i]["name"] == ZONES[group_id]
        assert links[i]["parent"] == Ref(f"zones[{i}]")
        assert links[i]["properties"] == {"registrationEnabled": False,
                                          "virtualNetwork": {"id": Ref("vnet.id")}}
        assert groups[i]["parent"] == Ref(f"endpoints[{i}]")
        [config] = groups[i]["properties"]["privateDnsZoneConfigs"]
        assert config["properties"]["privateDnsZoneId"] == Ref(f"zones[{i}].id")
        subnet = endpoints[i]["properties"]["subnet"]["id"]
        assert subnet == Ref("vnet.properties.subnets[1].id"), "the private endpoints' subnet"


def test_private_endpoints_connect_storage_and_key_vault() -> None:
    module = deploy(privateNetworking=True).modules()["privateEndpoints"]
    targets = {connection["properties"]["groupIds"][0]:
               connection["properties"]["privateLinkServiceId"]
               for body in created(module)[PRIVATE_ENDPOINT]
               for connection in body["properties"]["privateLinkServiceConnections"]}
    assert targets == {"blob": Ref("account.id"), "queue": Ref("account.id"),
                       "table": Ref("account.id"), "vault": Ref("vault.id")}


@NETWORKING
def test_app_sends_all_outbound_traffic_through_the_integration_subnet(private: bool) -> None:
    site = only(deploy(privateNetworking=private), "Microsoft.Web/sites")["properties"]
    expected = Ref("vnet.properties.subnets[0].id") if private else None
    assert site["virtualNetworkSubnetId"] == expected
    assert site["vnetRouteAllEnabled"] is private


def test_integration_subnet_is_delegated_for_flex_consumption() -> None:
    subnets = only(deploy(privateNetworking=True), VNET)["properties"]["subnets"]
    assert [s["name"] for s in subnets] == ["integration", "private-endpoints"]
    integration, endpoints = (s["properties"] for s in subnets)
    services = [d["properties"]["serviceName"] for d in integration["delegations"]]
    assert services == ["Microsoft.App/environments"], "Flex Consumption, not serverFarms"
    assert "delegations" not in endpoints, "a delegated subnet cannot hold private endpoints"
    assert integration["networkSecurityGroup"] == endpoints["networkSecurityGroup"]


EGRESS = [
    # private, staticEgressIp, NAT gateway and public IP created, output
    (True, True, True, Ref("egressIp.properties.ipAddress")),
    (True, False, False, ""),
    (False, True, False, ""),
    (False, False, False, ""),
]


@pytest.mark.parametrize(("private", "static", "expected_nat", "expected_output"), EGRESS,
                         ids=["private with static egress", "private, shared egress",
                              "static egress needs private networking", "public"])
def test_static_egress_ip(private: bool, static: bool, expected_nat: bool,
                          expected_output: Any) -> None:
    deployment = deploy(privateNetworking=private, staticEgressIp=static)
    types = set(created(deployment))
    assert (types >= EGRESS_TYPES) is expected_nat
    assert not (EGRESS_TYPES & types) or expected_nat
    assert deployment.output("egressIpAddress") == expected_output


def test_static_egress_ip_is_the_nat_gateway_of_the_integration_subnet() -> None:
    deployment = deploy(privateNetworking=True, staticEgressIp=True)
    integration = only(deployment, VNET)["properties"]["subnets"][0]["properties"]
    assert integration["natGateway"] == {"id": Ref("natGateway.id")}
    nat = only(deployment, NAT_GATEWAY)
    assert nat["properties"]["publicIpAddresses"] == [{"id": Ref("egressIp.id")}]
    address = only(deployment, PUBLIC_IP)
    assert address["sku"]["name"] == "Standard"
    assert address["properties"]["publicIPAllocationMethod"] == "Static"


def test_without_static_egress_the_subnet_has_no_nat_gateway() -> None:
    deployment = deploy(privateNetworking=True, staticEgressIp=False)
    integration = only(deployment, VNET)["properties"]["subnets"][0]["properties"]
    assert integration["natGateway"] is None


def test_conditions_are_parenthesised_for_the_parser() -> None:
    """pycep (and so checkov) reads ``a && b ? x : y`` as ``a && (b ? x : y)``."""
    deployment = deploy(privateNetworking=False, staticEgressIp=True)
    assert deployment.output("egressIpAddress") == "", "not False, which a && (...) would give"

