"""The sync definition: the default, JSON or a file, and errors that name the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sync.config.json_setting import APP_ROOT
from sync.config.table_definition import DEFAULT_DEFINITION, parse_definition
from sync.failures.errors import ConfigError


def test_app_root_is_where_function_app_lives() -> None:
    assert APP_ROOT.joinpath("function_app.py").exists()


def test_default_is_accounts_from_their_website() -> None:
    definition = parse_definition("")
    assert (definition.entity_set, definition.key, definition.input_column) == (
        "accounts", "accountid", "websiteurl")
    assert definition.mapping == DEFAULT_DEFINITION["mapping"]
    assert definition.read_columns == ("accountid", "websiteurl", "_modifiedby_value",
                                       *definition.mapping)


def test_json_overrides_the_default_field_by_field() -> None:
    definition = parse_definition(json.dumps({
        "entity_set": "contacts", "logical_name": "contact", "key": "contactid",
        "input_column": "websiteurl", "mapping": {"description": "description"},
        "skip_own_changes": False}))
    assert definition.entity_set == "contacts"
    assert definition.mapping == {"description": "description"}
    assert definition.read_columns == ("contactid", "websiteurl", "description")


def test_a_file_in_the_app_by_absolute_path(tmp_path: Path) -> None:
    path = tmp_path / "def.json"
    path.write_text(json.dumps({"filter": "statecode eq 0", "change_tracking": False}))
    definition = parse_definition(f"@{path}")
    assert definition.filter == "statecode eq 0"


@pytest.mark.parametrize(("value", "named"), [
    ("{", "not JSON"),
    ("[]", "JSON object"),
    ('{"surprise": 1}', "unknown fields: surprise"),
    ('{"entity_set": "acc ounts"}', "entity_set"),
    ('{"key": ""}', "key"),
    ('{"filter": 3}', "filter"),
    ('{"filter": "statecode eq 0"}', "change tracking rejects"),
    ('{"change_tracking": "yes"}', "change_tracking"),
    ('{"mapping": {}}', "mapping"),
    ('{"mapping": {"bad column": "employees"}}', "not a column name"),
    ('{"mapping": {"description": "revenue"}}', "not an enrichment field"),
    ("@no/such/file.json", "SYNC_DEFINITION file"),
])
def test_errors_name_the_field(value: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        parse_definition(value)
