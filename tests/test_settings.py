"""Settings: parsed once, validated with errors that name the setting, secrets kept out of repr."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sync.config.settings import SETTINGS, Settings
from sync.failures.errors import ConfigError

BASE = {"AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "DATAVERSE_URL": "http://127.0.0.1:5555", "ENRICHMENT_URL": "http://127.0.0.1:5556",
        "ENRICHMENT_API_KEY": "key-123", "DATAVERSE_STATIC_TOKEN": "token-abc"}


def test_defaults_are_the_declared_ones() -> None:
    settings = Settings.from_env(BASE)
    assert settings.definitions.first.table.entity_set == "accounts"
    assert settings.page_size == 5000
    assert settings.batch_size == 100
    assert settings.dataverse_max_concurrency == 52
    assert settings.write_mode == "bulk"
    assert settings.keep_affinity is False


@pytest.mark.parametrize(("change", "named"), [
    ({"DATAVERSE_URL": ""}, "DATAVERSE_URL"),
    ({"DATAVERSE_URL": "ftp://x"}, "DATAVERSE_URL"),
    ({"ENRICHMENT_API_KEY": ""}, "ENRICHMENT_API_KEY"),
    ({"SYNC_BATCH_SIZE": "0"}, "SYNC_BATCH_SIZE"),
    ({"SYNC_BATCH_SIZE": "ten"}, "SYNC_BATCH_SIZE"),
    ({"SYNC_PAGE_SIZE": "5001"}, "SYNC_PAGE_SIZE"),
    ({"DATAVERSE_TIMEOUT_S": "-1"}, "DATAVERSE_TIMEOUT_S"),
    ({"AzureWebJobsStorage": ""}, "AzureWebJobsStorage"),
    ({"SYNC_WRITE_MODE": "fast"}, "SYNC_WRITE_MODE"),
    ({"DATAVERSE_KEEP_AFFINITY": "maybe"}, "DATAVERSE_KEEP_AFFINITY"),
    ({"SYNC_LEASE_S": "2"}, "SYNC_LEASE_S"),
])
def test_bad_settings_are_named(change: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        Settings.from_env({**BASE, **change})


def test_identity_based_storage() -> None:
    env = {k: v for k, v in BASE.items() if k != "AzureWebJobsStorage"}
    env |= {"AzureWebJobsStorage__queueServiceUri": "https://acct.queue.core.windows.net",
            "AzureWebJobsStorage__tableServiceUri": "https://acct.table.core.windows.net",
            "AzureWebJobsStorage__clientId": "11111111-2222-3333-4444-555555555555"}
    storage = Settings.from_env(env).storage
    assert storage.connection_string is None
    assert storage.queue_url == "https://acct.queue.core.windows.net"
    assert storage.client_id == "11111111-2222-3333-4444-555555555555"


@pytest.mark.parametrize("url", ["https://contoso.crm.dynamics.com", "http://10.0.0.5:8080"])
def test_static_token_is_refused_off_loopback(url: str) -> None:
    with pytest.raises(ConfigError, match="DATAVERSE_STATIC_TOKEN"):
        Settings.from_env({**BASE, "DATAVERSE_URL": url})


@pytest.mark.parametrize("url", ["http://127.0.0.1:1", "http://localhost:2", "http://[::1]:3"])
def test_static_token_is_accepted_on_loopback(url: str) -> None:
    assert Settings.from_env({**BASE, "DATAVERSE_URL": url}).dataverse_static_token


def test_secrets_stay_out_of_repr() -> None:
    env = {**BASE, "AzureWebJobsStorage": "AccountName=a;AccountKey=SECRETKEY"}
    text = repr(Settings.from_env(env))
    for secret in ("key-123", "token-abc", "SECRETKEY"):
        assert secret not in text


def documented_defaults() -> dict[str, str | None]:
    """The defaults of the settings table in docs/settings.md."""
    doc = (Path(__file__).parents[1] / "docs" / "settings.md").read_text()
    doc = doc.split("\n## The settings\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([A-Za-z_][A-Za-z0-9_]*)` \|([^|]*)\|", doc, re.MULTILINE)
    cells = {"": None, "(required)": None, "(empty)": ""}
    return {name: cells.get(cell.strip(), cell.strip().strip("`")) for name, cell in rows}


def test_the_settings_doc_lists_every_setting_with_its_default() -> None:
    assert documented_defaults() == {spec.name: spec.default for spec in SETTINGS}


@pytest.mark.parametrize(("name", "value", "says"), [
    ("SYNC_SCHEDULE", "every night", "six NCRONTAB fields"),
    ("SYNC_SCHEDULE", "0 2 * * *", "six NCRONTAB fields"),
    ("DATAVERSE_CLIENT_ID", "my-identity", "a GUID"),
    ("AzureWebJobsStorage__clientId", "x", "a GUID"),
])
def test_forms_the_host_or_azure_would_refuse_are_refused_at_load(name: str, value: str,
                                                                    says: str) -> None:
    env = {"AzureWebJobsStorage__queueServiceUri": "https://a.queue.core.windows.net",
           "AzureWebJobsStorage__tableServiceUri": "https://a.table.core.windows.net",
           "DATAVERSE_URL": "https://x.crm.dynamics.com", "ENRICHMENT_URL": "https://e.example",
           "ENRICHMENT_API_KEY": "k", name: value}
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    assert [p for p in caught.value.problems if p.startswith(name)] != []
    assert says in str(caught.value)


CONNECTION = ("InstrumentationKey=00000000-0000-4000-8000-000000000001;IngestionEndpoint="
              "https://westeurope-5.in.applicationinsights.azure.com/;LiveEndpoint="
              "https://westeurope.livediagnostics.monitor.azure.com/;ApplicationId="
              "11111111-0000-4000-8000-000000000000")
"""The form the portal (and the Bicep's ``connectionString`` output) gives."""


@pytest.mark.parametrize(("name", "value", "says"), [
    pytest.param("APPLICATIONINSIGHTS_CONNECTION_STRING", "garbage", "key=value pairs",
                 id="a-connection-string-that-is-not-one"),
    pytest.param("APPLICATIONINSIGHTS_CONNECTION_STRING", "IngestionEndpoint=https://x/",
                 "InstrumentationKey=<a GUID", id="a-connection-string-without-a-key"),
    pytest.param("APPLICATIONINSIGHTS_CONNECTION_STRING",
                 "InstrumentationKey=00000000-0000-4000-8000-00000000000A", "lower case",
                 id="an-instrumentation-key-the-exporter-refuses"),
    pytest.param("APPLICATIONINSIGHTS_CONNECTION_STRING", CONNECTION + ";", "key=value pairs",
                 id="a-trailing-separator-the-exporter-cannot-split"),
    pytest.param("APPLICATIONINSIGHTS_CONNECTION_STRING",
                 "InstrumentationKey=00000000-0000-4000-8000-000000000001;IngestionEndpoint=x",
                 "https:// URL", id="an-endpoint-that-is-not-a-url"),
    pytest.param("APPLICATIONINSIGHTS_AUTHENTICATION_STRING", "ClientId=me;Authorization=AAD",
                 "a GUID", id="an-authentication-string-with-a-bad-client-id"),
    pytest.param("APPLICATIONINSIGHTS_AUTHENTICATION_STRING", "Authorization=ikey",
                 "Authorization=AAD", id="an-authentication-string-without-entra-id"),
    pytest.param("DATAVERSE_STATIC_TOKEN", "token\nwith-a-line-break", "a line break at "
                 "character 6", id="a-token-with-a-line-break"),
    pytest.param("DATAVERSE_STATIC_TOKEN", "token with-a-space", "a space",
                 id="a-token-with-a-space"),
    pytest.param("DATAVERSE_STATIC_TOKEN", "tok\x07en", "a control character",
                 id="a-token-with-a-control-character"),
    pytest.param("ENRICHMENT_API_KEY", "kéy", "outside ASCII", id="a-key-outside-ascii"),
])
def test_values_that_go_on_the_wire_are_refused_at_load_when_the_wire_would_refuse_them(
        name: str, value: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**BASE, name: value})
    (problem,) = caught.value.problems
    assert problem.startswith(name), problem
    assert says in problem
    if name in ("DATAVERSE_STATIC_TOKEN", "ENRICHMENT_API_KEY"):
        assert value not in str(caught.value)  # a secret is never repeated


def test_the_forms_azure_gives_are_accepted() -> None:
    settings = Settings.from_env({
        **BASE, "APPLICATIONINSIGHTS_CONNECTION_STRING": CONNECTION,
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING":
            "ClientId=1b2c3d4e-0000-4000-8000-000000000000;Authorization=AAD"})
    assert settings.dataverse_static_token == "token-abc"
    assert Settings.from_env({**BASE, "APPLICATIONINSIGHTS_AUTHENTICATION_STRING":
                              "Authorization=AAD"})


def test_a_definitions_own_enrichment_key_is_checked_too() -> None:
    definitions = '{"crm": {"enrichment_key_setting": "ENRICHMENT_API_KEY_CRM"}}'
    with pytest.raises(ConfigError, match="ENRICHMENT_API_KEY_CRM holds a line break"):
        Settings.from_env({**BASE, "SYNC_DEFINITIONS": definitions,
                           "ENRICHMENT_API_KEY_CRM": "abc\ndef"})
