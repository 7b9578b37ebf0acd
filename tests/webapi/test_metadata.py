"""EntityDefinitions over real HTTP: what clients read to find a table's entity set and key."""

from __future__ import annotations

import pytest

from tests.webapi.conftest import FAST, Client


async def test_the_definition_by_filter_names_the_entity_set_and_keys(client: Client) -> None:
    await client.configure(records=0, **FAST)
    answer = await client.get("EntityDefinitions?$select=LogicalName,EntitySetName,"
                              "PrimaryIdAttribute&$filter=LogicalName eq 'account'")
    assert answer.status == 200
    [found] = answer.body["value"]
    assert found == {"MetadataId": found["MetadataId"], "LogicalName": "account",
                     "EntitySetName": "accounts", "PrimaryIdAttribute": "accountid"}


async def test_the_definition_by_key_and_by_metadata_id_agree(client: Client) -> None:
    await client.configure(records=0, **FAST)
    by_name = await client.get("EntityDefinitions(LogicalName='account')")
    assert by_name.status == 200
    assert by_name.body["PrimaryNameAttribute"] == "name"
    by_id = await client.get(f"EntityDefinitions({by_name.body['MetadataId']})")
    assert by_id.body["EntitySetName"] == by_name.body["EntitySetName"] == "accounts"


async def test_the_emulated_tables_have_no_choice_columns(client: Client) -> None:
    await client.configure(records=0, **FAST)
    answer = await client.get("EntityDefinitions(LogicalName='account')/Attributes/"
                              "Microsoft.Dynamics.CRM.PicklistAttributeMetadata"
                              "?$select=LogicalName&$expand=OptionSet($select=Options)")
    assert answer.status == 200
    assert answer.body["value"] == []


@pytest.mark.parametrize(("path", "status"), [
    ("EntityDefinitions?$filter=LogicalName eq 'contact'", 200),  # no such table: empty
    ("EntityDefinitions(LogicalName='contact')", 404),
    ("EntityDefinitions?$filter=startswith(LogicalName,'a')", 501),
    ("EntityDefinitions?$select=NoSuchProperty", 400),
    ("EntityDefinitions(LogicalName='account')/Keys", 501),
])
async def test_what_the_metadata_does_not_have(client: Client, path: str, status: int) -> None:
    await client.configure(records=0, **FAST)
    answer = await client.get(path)
    assert answer.status == status
    if status == 200:
        assert answer.body["value"] == []


async def test_metadata_needs_a_token_and_counts_as_a_request(client: Client) -> None:
    await client.configure(records=0, **FAST)
    assert (await client.get("EntityDefinitions", token="")).status == 401
    assert (await client.get("EntityDefinitions")).status == 200
    assert (await client.admin("stats"))["requests"] == 1
