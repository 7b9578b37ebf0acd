"""Templates that build an enrichment request from a record's columns: ``{websiteurl|domain}``.

A template is text with references in braces: a column name, then transforms after ``|``, applied
left to right. The transforms are ``domain`` (a website's bare domain: ``https://www.Contoso.com/x``
-> ``contoso.com``), ``lower`` and ``trim``. A JSON body is a template too: every string in it is
one, and a string that is a single reference without transforms keeps the column's own type (a
number stays a number). Pure functions; a record whose columns cannot fill a template raises
RecordFault (``unusable_input``), a template that cannot be parsed raises ConfigError at load.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote, urlsplit

from sync.failures.errors import ConfigError, RecordFault

SERVICE: Final = "enrichment"
DOMAIN_CACHE_SIZE: Final = 4096
"""Websites whose domain is kept: more than the records one host has in flight (host.json
batchSize 16 messages of at most 100 records)."""
_SPACE: Final = re.compile(r"\s")
"""Whitespace as ``str.isspace`` sees it (``re`` tests the same Unicode property)."""
_REFERENCE: Final = re.compile(r"\{([^{}]*)\}")
_COLUMN: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")


@functools.lru_cache(maxsize=DOMAIN_CACHE_SIZE)
def domain_of(website: str) -> str:
    """The bare domain of a website value: ``https://www.Contoso.com/x`` -> ``contoso.com``.

    Raises RecordFault (``unusable_input``) for anything that names no domain. Cached: the
    worker checks each record's website before it asks the governor, and the call asks again
    (a RecordFault is raised anew each time, never cached)."""
    text = website.strip()
    try:
        host = urlsplit(text if "//" in text else f"//{text}").hostname or ""
    except ValueError:
        host = ""
    host = host.removeprefix("www.")
    if "." not in host or _SPACE.search(host):
        raise RecordFault(SERVICE, 0, "InvalidInput", f"no domain in website {website[:100]!r}",
                          reason="unusable_input")
    return host


TRANSFORMS: Final[dict[str, Callable[[str], str]]] = {
    "domain": domain_of, "lower": str.lower, "trim": str.strip}


@dataclass(frozen=True, slots=True)
class Reference:
    """``{column|transform|...}``: a column's value, transformed."""

    column: str
    transforms: tuple[str, ...] = ()

    def value(self, columns: Mapping[str, Any]) -> Any:
        """The column's value through the transforms; RecordFault when the record has none."""
        found = columns.get(self.column)
        if found is None or (isinstance(found, str) and not found.strip()):
            raise RecordFault(SERVICE, 0, "InvalidInput", f"no value in column {self.column}",
                              reason="unusable_input")
        if not self.transforms:
            return found
        text = str(found)
        for name in self.transforms:
            text = TRANSFORMS[name](text)
        if not text:
            raise RecordFault(SERVICE, 0, "InvalidInput",
                              f"column {self.column} is empty after {'|'.join(self.transforms)}",
                              reason="unusable_input")
        return text


TEMPLATE_CACHE_SIZE: Final = 256
"""Templates (and their references) kept parsed: a spec's few, each asked once per record."""


@functools.lru_cache(maxsize=TEMPLATE_CACHE_SIZE)
def reference_of(text: str, where: str) -> Reference:
    """``websiteurl|domain`` as a Reference; ConfigError naming ``where`` when it is not one."""
    column, *transforms = (part.strip() for part in text.split("|"))
    if not _COLUMN.match(column):
        raise ConfigError(f"{where}: {{{text}}} must name a column: {{column}} or "
                          "{column|transform}")
    unknown = [name for name in transforms if name not in TRANSFORMS]
    if unknown:
        raise ConfigError(f"{where}: unknown transform {unknown[0]!r} (one of "
                          f"{', '.join(TRANSFORMS)})")
    return Reference(column, tuple(transforms))


@functools.lru_cache(maxsize=TEMPLATE_CACHE_SIZE)
def references(template: str, where: str) -> tuple[Reference, ...]:
    """Every reference of a text template, checked; ConfigError for stray braces."""
    found = tuple(reference_of(match.group(1), where) for match in _REFERENCE.finditer(template))
    if "{" in _REFERENCE.sub("", template) or "}" in _REFERENCE.sub("", template):
        raise ConfigError(f"{where}: unbalanced braces in {template!r}")
    return found


def render(template: str, columns: Mapping[str, Any], where: str = "template", *,
           encode: bool = False) -> str:
    """The text with each reference replaced by its value (percent-encoded with ``encode``:
    a URL's path)."""
    refs = {match.group(1): reference_of(match.group(1), where)
            for match in _REFERENCE.finditer(template)}

    def value(match: re.Match[str]) -> str:
        text = str(refs[match.group(1)].value(columns))
        return quote(text, safe="") if encode else text

    return _REFERENCE.sub(value, template)


def render_json(template: Any, columns: Mapping[str, Any]) -> Any:
    """A JSON template filled: a string that is one bare reference keeps the value's type."""
    if isinstance(template, str):
        whole = _REFERENCE.fullmatch(template)
        if whole is not None:
            return reference_of(whole.group(1), "template").value(columns)
        return render(template, columns)
    if isinstance(template, dict):
        return {key: render_json(value, columns) for key, value in template.items()}
    if isinstance(template, list):
        return [render_json(item, columns) for item in template]
    return template


def json_references(template: Any, where: str) -> tuple[Reference, ...]:
    """Every reference of a JSON template, checked."""
    if isinstance(template, str):
        return references(template, where)
    if isinstance(template, dict):
        return tuple(ref for key, value in template.items()
                     for ref in json_references(value, f"{where}.{key}"))
    if isinstance(template, list):
        return tuple(ref for index, item in enumerate(template)
                     for ref in json_references(item, f"{where}[{index}]"))
    return ()
