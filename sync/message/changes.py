"""What an enrichment would change in a record: its new values against the values read.

One comparison serves skipping unchanged records, the dry run's report and the values kept for a
rollback. The Web API reads and writes JSON scalars; a text column stores an empty string as
null, and a whole or decimal number compares by value (``120`` equals ``120.0``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sync.message.contract import Scalar


def same_value(read: Any, new: Any) -> bool:
    """Whether writing ``new`` over ``read`` leaves the column as it is."""
    read, new = _normal(read), _normal(new)
    if isinstance(read, bool) or isinstance(new, bool):
        return type(read) is type(new) and read == new
    if isinstance(read, (int, float)) and isinstance(new, (int, float)):
        return float(read) == float(new)
    return bool(read == new)


def changed_columns(current: Mapping[str, Scalar] | None,
                    new: Mapping[str, Any]) -> dict[str, Any]:
    """The columns of ``new`` whose value differs from ``current``; all of them when nothing
    was read (a producer's record, or a value too large to carry)."""
    if current is None:
        return dict(new)
    return {column: value for column, value in new.items()
            if column not in current or not same_value(current[column], value)}


def before_values(current: Mapping[str, Scalar] | None,
                  columns: Mapping[str, Any]) -> dict[str, Scalar] | None:
    """The values ``columns`` held before a write, from the read; None when nothing was read."""
    if current is None or any(column not in current for column in columns):
        return None
    return {column: current[column] for column in columns}


def _normal(value: Any) -> Any:
    return None if value == "" else value
