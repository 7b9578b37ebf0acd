"""The function app's settings against the code: the same names, the same defaults, no secrets.

The names come from the code (sync/config/settings.py, sync/config/host_settings.py), never
from a copy here, so a setting added to the code fails these tests until the template sets it too.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from sync.config.host_settings import HOST_SETTING_NAMES
from sync.config.settings import AZURE_SETTING_NAMES, SETTING_NAMES, SETTINGS, SettingSpec
from sync.config.storage_names import STORAGE_CONNECTION
from tests.infra.bicep import INFRA, MAIN, decorators, dotted, one, params, unquote

KEY_VAULT_REFERENCE = re.compile(r"^@Microsoft\.KeyVault\(SecretUri=\$\{[\w.]+\}\)$")
AZURE_SPECS = [spec for spec in SETTINGS if not spec.local_only]
# Settings the template builds from its own resources rather than a parameter: SYNC_ENVIRONMENTS
# holds the Dataverse identities' client ids (tests/infra/test_identities.py checks it).
DERIVED = {"SYNC_ENVIRONMENTS"}


def app_settings() -> dict[str, Any]:
    """The properties of the function app's ``appsettings`` config resource."""
    config = one("Microsoft.Web/sites/config")
    assert config.body["name"] == "appsettings"
    assert config.file == MAIN, "the app settings live in main.bicep, beside their parameters"
    return dict(config.body["properties"])


def setting_parameter(name: str) -> dict[str, Any]:
    """The main.bicep parameter an app setting is set from; fails when it is set otherwise."""
    value = app_settings().get(name)
    assert isinstance(value, str), f"{name} is missing or set to an expression"
    assert value in params(MAIN), f"{name} is set to {value!r}, not from a parameter"
    return params(MAIN)[value]


def test_host_settings_are_not_code_settings() -> None:
    assert len(set(HOST_SETTING_NAMES)) == len(HOST_SETTING_NAMES)
    assert not set(HOST_SETTING_NAMES) & set(SETTING_NAMES)


def test_app_settings_are_exactly_what_the_code_and_host_read() -> None:
    expected = set(AZURE_SETTING_NAMES) | set(HOST_SETTING_NAMES)
    actual = set(app_settings())
    drift = {"read but not set": sorted(expected - actual),
             "set but never read": sorted(actual - expected)}
    assert actual == expected, drift


def test_local_only_settings_stay_local() -> None:
    local = {spec.name for spec in SETTINGS if spec.local_only}
    assert STORAGE_CONNECTION in local, "Azure uses the identity-based connection, no string"
    assert not local & set(app_settings())


@pytest.mark.parametrize("spec", [s for s in AZURE_SPECS
                                  if s.default is not None and s.name not in DERIVED],
                         ids=lambda s: s.name)
def test_tunable_setting_is_a_parameter_with_the_code_default(spec: SettingSpec) -> None:
    assert setting_parameter(spec.name)["default"] == spec.default


@pytest.mark.parametrize("spec", [s for s in AZURE_SPECS if s.required and not s.secret],
                         ids=lambda s: s.name)
def test_required_setting_has_no_default_in_the_template(spec: SettingSpec) -> None:
    assert setting_parameter(spec.name)["default"] is None, "the deployer must supply it"


@pytest.mark.parametrize("spec", [s for s in AZURE_SPECS if s.secret], ids=lambda s: s.name)
def test_secret_setting_is_a_key_vault_reference(spec: SettingSpec) -> None:
    assert KEY_VAULT_REFERENCE.match(str(app_settings().get(spec.name)))


def test_enrichment_key_parameter_is_secure_and_kept_out_of_the_parameters_file() -> None:
    assert "secure" in decorators(params(MAIN)["enrichmentApiKey"])
    assert "enrichmentApiKey" not in parameters_file()


def test_storage_connection_is_identity_based() -> None:
    settings = app_settings()
    prefix = f"{STORAGE_CONNECTION}__"
    assert settings[f"{prefix}credential"] == "managedidentity"
    assert dotted(settings[f"{prefix}clientId"]) == "identity.properties.clientId"
    for service in ("blob", "queue", "table"):
        uri = dotted(settings[f"{prefix}{service}ServiceUri"])
        assert uri == f"storage.outputs.{service}Endpoint"


def test_dataverse_and_telemetry_use_the_same_identity() -> None:
    settings = app_settings()
    assert dotted(settings["DATAVERSE_CLIENT_ID"]) == "identity.properties.clientId"
    assert settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == (
        "ClientId=${identity.properties.clientId};Authorization=AAD")
    assert dotted(settings["APPLICATIONINSIGHTS_CONNECTION_STRING"]) == (
        "monitoring.outputs.connectionString")


def parameters_file() -> dict[str, Any]:
    """The parameters in infra/main.parameters.json."""
    text = (INFRA / "main.parameters.json").read_text(encoding="utf-8")
    return dict(json.loads(text)["parameters"])


def test_parameters_file_sets_only_template_parameters() -> None:
    main = params(MAIN)
    assert set(parameters_file()) <= set(main)
    assert not any("secure" in decorators(main[name]) for name in parameters_file())


def test_azure_yaml_deploys_the_tagged_function_app() -> None:
    text = (INFRA.parent / "azure.yaml").read_text(encoding="utf-8")
    service = re.search(r"^services:\n  ([\w-]+):\n((?:    .*\n)+)", text, re.MULTILINE)
    assert service, "azure.yaml declares no service"
    body = service.group(2)
    assert re.search(r"^    host: function$", body, re.MULTILINE)
    assert re.search(r"^    language: python$", body, re.MULTILINE)
    assert re.search(r"^  path: infra$", text, re.MULTILINE)
    tags = {unquote(k): v for k, v in one("Microsoft.Web/sites").body["tags"].items()}
    assert tags["azd-service-name"] == service.group(1)
