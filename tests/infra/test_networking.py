"""The private-networking option, both ways: what each setting creates, closes and outputs.

Each test deploys main.bicep offline (tests/infra/evaluate.py) with the option on and off, and
looks at what the deployment and its modules would create, with the values they would set.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.infra.bicep import MAIN, params, parse
from tests.infra.evaluate import (
    CHINA_CLOUD,
    PUBLIC_CLOUD,
    REQUIRED,
    US_GOVERNMENT_CLOUD,
    Deployment,
    Ref,
    created,
    deploy,
    only,
)

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

# The private DNS zone of each sub-resource in Azure's public cloud, Azure China and Azure
# Government (MicrosoftDocs azure-docs, private-link/private-endpoint-dns.md).
ZONES = {
    "blob": "privatelink.blob.core.windows.net",
    "queue": "privatelink.queue.core.windows.net",
    "table": "privatelink.table.core.windows.net",
    "vault": "privatelink.vaultcore.azure.net",
}
CHINA_ZONES = {
    "blob": "privatelink.blob.core.chinacloudapi.cn",
    "queue": "privatelink.queue.core.chinacloudapi.cn",
    "table": "privatelink.table.core.chinacloudapi.cn",
    "vault": "privatelink.vaultcore.azure.cn",
}
US_GOVERNMENT_ZONES = {
    "blob": "privatelink.blob.core.usgovcloudapi.net",
    "queue": "privatelink.queue.core.usgovcloudapi.net",
    "table": "privatelink.table.core.usgovcloudapi.net",
    "vault": "privatelink.vaultcore.usgovcloudapi.net",
}
CENTRAL_ZONE = ("/subscriptions/0000/resourceGroups/rg-dns/providers/"
                "Microsoft.Network/privateDnsZones/privatelink.queue.core.windows.net")

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


CLOSED = ("Disabled", "Deny", [])
OPERATORS_ONLY = ("Enabled", "Deny", [OPERATOR_IP])
PUBLIC = ("Enabled", "Allow", [])

FIREWALLS = [
    # private, operator addresses, (operatorStorageAccess, operatorKeyVaultAccess),
    # storage and Key Vault as (publicNetworkAccess, defaultAction, admitted addresses)
    (True, [], (True, True), CLOSED, CLOSED),
    (True, [OPERATOR_IP], (True, False), OPERATORS_ONLY, CLOSED),
    (True, [OPERATOR_IP], (False, True), CLOSED, OPERATORS_ONLY),
    (True, [OPERATOR_IP], (True, True), OPERATORS_ONLY, OPERATORS_ONLY),
    (True, [OPERATOR_IP], (False, False), CLOSED, CLOSED),
    (False, [], (True, True), PUBLIC, PUBLIC),
    (False, [OPERATOR_IP], (True, True), PUBLIC, PUBLIC),
]


@pytest.mark.parametrize(
    ("private", "operators", "opened", "storage", "vault"), FIREWALLS,
    ids=["private: public endpoints off",
         "private, operators on storage: storage admits them alone, Key Vault stays closed",
         "private, operators on Key Vault: Key Vault admits them alone, storage stays closed",
         "private, operators on both",
         "private, addresses given but neither opened",
         "public: open to Entra ID callers",
         "public: operator addresses ignored"])
def test_storage_and_key_vault_firewalls(private: bool, operators: list[str],
                                         opened: tuple[bool, bool],
                                         storage: tuple[str, str, list[str]],
                                         vault: tuple[str, str, list[str]]) -> None:
    deployment = deploy(privateNetworking=private, operatorIpAddresses=operators,
                        operatorStorageAccess=opened[0], operatorKeyVaultAccess=opened[1])
    expected = {"storage": storage, "key vault": vault}
    for name, properties in firewalled(deployment).items():
        acls = properties["networkAcls"]
        access, default_action, admitted = expected[name]
        assert properties["publicNetworkAccess"] == access, name
        assert acls["defaultAction"] == default_action, name
        assert [rule["value"] for rule in acls["ipRules"]] == admitted, name
        assert acls["virtualNetworkRules"] == [], name


def test_operators_open_storage_and_not_key_vault_by_default() -> None:
    declared = params(MAIN)
    assert declared["operatorStorageAccess"]["default"] is True
    assert declared["operatorKeyVaultAccess"]["default"] is False, "rotation needs no opening"


@NETWORKING
def test_storage_bypasses_nothing_when_private(private: bool) -> None:
    storage = firewalled(deploy(privateNetworking=private))["storage"]
    assert storage["networkAcls"]["bypass"] == ("None" if private else "AzureServices")


def endpoint_zones(deployment: Deployment) -> dict[str, Any]:
    """The zone each private endpoint's zone group registers in, by sub-resource."""
    module = deployment.modules()["privateEndpoints"]
    by_type = {r.type: r for r in module.resources()}
    endpoints = module.bodies(by_type[PRIVATE_ENDPOINT])
    groups = module.bodies(by_type[ZONE_GROUP])
    found = {}
    for i, endpoint in enumerate(endpoints):
        [connection] = endpoint["properties"]["privateLinkServiceConnections"]
        [group_id] = connection["properties"]["groupIds"]
        assert groups[i]["parent"] == Ref(f"endpoints[{i}]")
        [config] = groups[i]["properties"]["privateDnsZoneConfigs"]
        found[group_id] = config["properties"]["privateDnsZoneId"]
    return found


def zone_modules(deployment: Deployment) -> dict[str, Deployment]:
    """The zone module of each sub-resource (modules/privatednszone.bicep), by sub-resource."""
    module = deployment.modules()["privateEndpoints"]
    return {item.scope["linkName"].removeprefix("link-"): item
            for item in module.module_items("zones")}


def test_every_private_endpoint_has_its_dns_zone_linked_to_the_network() -> None:
    deployment = deploy(privateNetworking=True)
    assert endpoint_zones(deployment) == {group: Ref("zone.id") for group in ZONES}
    for group_id, zone_module in zone_modules(deployment).items():
        [zone] = created(zone_module)[ZONE]
        [link] = created(zone_module)[ZONE_LINK]
        assert zone["name"] == ZONES[group_id]
        assert link["parent"] == "zone"
        assert link["properties"] == {"registrationEnabled": False,
                                      "virtualNetwork": {"id": Ref("vnet.id")}}
    module = deployment.modules()["privateEndpoints"]
    for endpoint in created(module)[PRIVATE_ENDPOINT]:
        subnet = endpoint["properties"]["subnet"]["id"]
        assert subnet == Ref("vnet.properties.subnets[1].id"), "the private endpoints' subnet"


@pytest.mark.parametrize(("cloud", "zones"), [(PUBLIC_CLOUD, ZONES), (CHINA_CLOUD, CHINA_ZONES),
                                              (US_GOVERNMENT_CLOUD, US_GOVERNMENT_ZONES)],
                         ids=["Azure", "Azure China", "Azure Government"])
def test_zone_names_are_the_clouds(cloud: dict[str, Any], zones: dict[str, str]) -> None:
    deployment = deploy(cloud=cloud, privateNetworking=True)
    names = {group_id: only(module, ZONE)["name"]
             for group_id, module in zone_modules(deployment).items()}
    assert names == zones


def test_no_zone_name_is_written_for_one_cloud() -> None:
    for path in (MAIN.parent / "modules").glob("private*.bicep"):
        lines = path.read_text(encoding="utf-8").splitlines()
        code = [line for line in lines if not line.lstrip().startswith("//")]
        assert not [line for line in code if "windows.net" in line or "azure.net" in line]


def test_an_existing_zone_is_used_and_not_created() -> None:
    deployment = deploy(privateNetworking=True, privateDnsZoneIds={"queue": CENTRAL_ZONE})
    assert endpoint_zones(deployment) == {"blob": Ref("zone.id"), "queue": CENTRAL_ZONE,
                                          "table": Ref("zone.id"), "vault": Ref("zone.id")}
    made = {group_id: set(created(module)) for group_id, module in zone_modules(deployment).items()}
    assert made == {"blob": {ZONE, ZONE_LINK}, "queue": set(), "table": {ZONE, ZONE_LINK},
                    "vault": {ZONE, ZONE_LINK}}, "no local zone, no link to a central one"


def test_all_zones_existing_creates_no_zone() -> None:
    central = {group_id: f"/zones/{zone}" for group_id, zone in ZONES.items()}
    deployment = deploy(privateNetworking=True, privateDnsZoneIds=central)
    assert endpoint_zones(deployment) == central
    assert not {ZONE, ZONE_LINK} & set(created(deployment))


@pytest.mark.parametrize("symbol", ["functionApp", "appSettings"])
def test_the_app_starts_after_the_private_endpoints_and_their_records(symbol: str) -> None:
    resource = parse(MAIN)["resources"][symbol]["config"]
    assert "privateEndpoints" in resource["dependsOn"]
    module = deploy(privateNetworking=True).modules()["privateEndpoints"]
    types = {r.type for r in module.resources()}
    assert {PRIVATE_ENDPOINT, ZONE_GROUP} <= types, "the records are the module's own"
    zone_group = next(r for r in module.resources() if r.type == ZONE_GROUP)
    body = module.bodies(zone_group)[0]
    zone_id = body["properties"]["privateDnsZoneConfigs"][0]["properties"]["privateDnsZoneId"]
    assert zone_id == Ref("zone.id"), "read from the zone module: it waits for the zone and link"


def test_private_endpoints_connect_storage_and_key_vault() -> None:
    module = deploy(privateNetworking=True).modules()["privateEndpoints"]
    targets = {connection["properties"]["groupIds"][0]:
               connection["properties"]["privateLinkServiceId"]
               for body in created(module)[PRIVATE_ENDPOINT]
               for connection in body["properties"]["privateLinkServiceConnections"]}
    assert targets == {"blob": Ref("account.id"), "queue": Ref("account.id"),
                       "table": Ref("account.id"), "vault": Ref("vault.id")}


# Site properties Flex Consumption does not use for networking (MicrosoftDocs azure-docs,
# azure-functions/functions-app-settings.md, "Flex Consumption plan deprecations").
NOT_FLEX = ("vnetRouteAllEnabled", "vnetContentShareEnabled", "vnetImagePullEnabled",
            "vnetBackupRestoreEnabled", "outboundVnetRouting")


@NETWORKING
def test_app_is_integrated_with_the_network_by_its_subnet_alone(private: bool) -> None:
    site = only(deploy(privateNetworking=private), "Microsoft.Web/sites")["properties"]
    expected = Ref("vnet.properties.subnets[0].id") if private else None
    assert site["virtualNetworkSubnetId"] == expected
    config = site["siteConfig"]
    assert not [name for name in NOT_FLEX if name in site or name in config]
    settings = only(deploy(privateNetworking=private), "Microsoft.Web/sites/config")
    assert not {"WEBSITE_VNET_ROUTE_ALL", "WEBSITE_CONTENTOVERVNET",
                "WEBSITE_DNS_SERVER"} & set(settings["properties"])


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

