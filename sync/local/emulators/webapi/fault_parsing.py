"""Fault rules from their JSON form: every field checked (``RuleError`` names the one that is
wrong), presets filled in, the defaults that depend on the kind, and a stable name."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from sync.local.emulators.webapi.faults import MALFORMED, Dialect, Rule


class RuleError(ValueError):
    """A rule that cannot be applied; the message names the field."""


def parse_rule(data: Any, dialect: Dialect) -> Rule:
    """A rule from its JSON form; ``RuleError`` naming the field when it is not valid."""
    if not isinstance(data, Mapping):
        raise RuleError("a rule must be a JSON object")
    known = {"kind", "name", "preset", "status", "code", "message", "retry_after_s", "field",
             "hits", "rate", "window_s", dialect.keys_field}
    unknown = sorted(set(data) - known)
    if unknown:
        raise RuleError(f"unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    kind = _choice(data, "kind", dialect.kinds, "error" if "preset" in data else None)
    error = _error_fields(data, dialect) if kind == "error" else {}
    keys = _keys(data, dialect.keys_field)
    default_hits = _default_hits(kind, keys)
    hits = _choice(data, "hits", dialect.hits,
                   default_hits if default_hits in dialect.hits else "all")
    if keys and kind != "error":
        raise RuleError(f"{dialect.keys_field} go with kind error only")
    rule = Rule(kind=kind, name="", hits=hits, keys=keys, rate=_rate(data),
                window_s=_window(data), field=_text(data, "field", dialect.default_field),
                **error)
    return replace(rule, name=_text(data, "name", default_name(rule, data.get("preset"))))


def default_name(rule: Rule, preset: str | None) -> str:
    """The stable name the stats count a rule's faults under."""
    base = preset or (f"error-{rule.status}" if rule.kind == "error" else rule.kind)
    if rule.kind == "missing_field":
        base = f"missing-{rule.field}"
    return f"key-{base}" if rule.keys else base


def _default_hits(kind: str, keys: frozenset[str]) -> str:
    if keys or kind == "commit_then_drop":
        return "writes"
    return "reads" if kind in MALFORMED else "all"


def _error_fields(data: Mapping[str, Any], dialect: Dialect) -> dict[str, Any]:
    preset_name = data.get("preset")
    preset = None
    if preset_name is not None:
        preset = dialect.presets.get(str(preset_name))
        if preset is None:
            raise RuleError(f"preset must be one of {', '.join(dialect.presets)}")
    status = data.get("status", preset.status if preset else None)
    if not isinstance(status, int) or not 400 <= status <= 599:
        raise RuleError("status must be an HTTP error status (400..599), or give a preset")
    retry_after_s = data.get("retry_after_s", preset.retry_after_s if preset else None)
    if retry_after_s is not None and (not isinstance(retry_after_s, int | float)
                                      or retry_after_s < 0):
        raise RuleError("retry_after_s must be a number of seconds >= 0")
    return {"status": status,
            "code": _text(data, "code", preset.code if preset else dialect.default_code),
            "message": _text(data, "message", preset.message if preset else
                             dialect.default_message),
            "retry_after_s": None if retry_after_s is None else float(retry_after_s)}


def _choice(data: Mapping[str, Any], name: str, allowed: Sequence[str],
            default: str | None) -> str:
    value = data.get(name, default)
    if value not in allowed:
        raise RuleError(f"{name} must be one of {', '.join(allowed)}")
    return str(value)


def _text(data: Mapping[str, Any], name: str, default: str) -> str:
    value = data.get(name, default)
    if not isinstance(value, str) or not value:
        raise RuleError(f"{name} must be a non-empty string")
    return value


def _keys(data: Mapping[str, Any], name: str) -> frozenset[str]:
    value = data.get(name, [])
    if not isinstance(value, list) or not all(isinstance(k, str) and k for k in value):
        raise RuleError(f"{name} must be a list of strings")
    return frozenset(k.lower() for k in value)


def _rate(data: Mapping[str, Any]) -> float:
    rate = data.get("rate", 1.0)
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
        raise RuleError("rate must be a number between 0 and 1")
    return float(rate)


def _window(data: Mapping[str, Any]) -> float | None:
    window_s = data.get("window_s")
    if window_s is None:
        return None
    if isinstance(window_s, bool) or not isinstance(window_s, int | float) or window_s <= 0:
        raise RuleError("window_s must be a number of seconds > 0 (or null: until cleared)")
    return float(window_s)


def fault_rule_of(dialect: Dialect) -> Callable[[str], Rule]:
    """The parser of one ``--fault`` value of an emulator's command line: a rule as JSON, for
    that dialect's faults; a bad one is an argparse error that says why."""

    def parsed(text: str) -> Rule:
        try:
            return parse_rule(json.loads(text), dialect)
        except (ValueError, RuleError) as error:
            raise argparse.ArgumentTypeError(f"not a fault rule: {error}") from None

    return parsed
