"""What counts as a change: the comparison behind skipping, the dry run and rollback."""

from __future__ import annotations

from typing import Any

import pytest

from sync.message.changes import before_values, changed_columns, same_value


@pytest.mark.parametrize(("read", "new", "same"), [
    (120, 120, True), (120, 120.0, True), (120, 121, False),
    ("Contoso", "Contoso", True), ("Contoso", "contoso", False),
    (None, None, True), ("", None, True), (None, "", True), (None, "x", False),
    (None, 0, False), (0, None, False),
    (True, True, True), (True, 1, False), (False, 0, False), (0, False, False),
    ("12", 12, False),
])
def test_same_value(read: Any, new: Any, same: bool) -> None:
    assert same_value(read, new) is same


def test_only_the_columns_that_differ_are_changes() -> None:
    current = {"numberofemployees": 120, "address1_country": "SE", "description": None}
    new = {"numberofemployees": 120.0, "address1_country": "NO", "description": ""}
    assert changed_columns(current, new) == {"address1_country": "NO"}


def test_an_unread_record_changes_every_column() -> None:
    assert changed_columns(None, {"a": 1, "b": None}) == {"a": 1, "b": None}


def test_a_column_not_read_is_a_change() -> None:
    assert changed_columns({"a": 1}, {"a": 1, "b": 2}) == {"b": 2}


def test_before_values_are_the_read_values_of_the_written_columns() -> None:
    current = {"a": 1, "b": "x", "c": None}
    assert before_values(current, {"b": "y", "c": 3}) == {"b": "x", "c": None}
    assert before_values(current, {"d": 1}) is None
    assert before_values(None, {"a": 2}) is None
