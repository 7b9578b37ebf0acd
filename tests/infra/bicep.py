"""Small readers over pycep-parser's tree of the Bicep files in infra/.

pycep turns a file into plain dicts: ``parameters``, ``variables``, ``resources`` (by symbolic
name, nested children flattened as ``parent__child`` with their full type), ``modules``,
``outputs``. Two quirks shape these helpers: an identifier and a string literal both come out as
``str`` (``scope: account`` gives ``"account"``), and a quoted object key keeps its quotes.
A third shapes the templates: pycep reads ``a && b ? x : y`` as ``a && (b ? x : y)``, so every
condition with ``&&`` or ``||`` in them is in parentheses.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pycep import BicepParser

INFRA = Path(__file__).resolve().parents[2] / "infra"
MAIN = INFRA / "main.bicep"

Tree = dict[str, Any]


def bicep_files() -> list[Path]:
    """Every .bicep file under infra/."""
    return sorted(INFRA.rglob("*.bicep"))


@functools.cache
def parse(path: Path) -> Tree:
    """The parsed tree of one file (parsed once per test session)."""
    return BicepParser().parse(file_path=path)


@dataclass(frozen=True)
class Resource:
    """One resource declaration; ``body`` is its object, with a ``for`` loop or an ``if`` unwrapped.

    ``condition`` is the ``if (...)`` expression, None when the resource is always deployed.
    """

    file: Path
    symbol: str
    type: str
    api_version: str
    body: dict[str, Any]
    loop: dict[str, Any] | None
    condition: Any = None


def resources(path: Path) -> list[Resource]:
    """The resources one file creates (``existing`` references create nothing and are left out)."""
    found = []
    for symbol, declared in parse(path).get("resources", {}).items():
        if declared.get("existing"):
            continue
        config = declared["config"]
        wrapped = "loop_type" in config or "condition" in config
        body = config["config"] if wrapped else config
        found.append(Resource(path, symbol, declared["type"], declared["api_version"], body,
                              config.get("loop_type"), config.get("condition")))
    return found


def all_resources() -> list[Resource]:
    """The resources of every file."""
    return [resource for path in bicep_files() for resource in resources(path)]


def of_type(resource_type: str) -> list[Resource]:
    """Every resource of one type, in any file."""
    return [r for r in all_resources() if r.type == resource_type]


def one(resource_type: str) -> Resource:
    """The single resource of a type; fails when there are none or several."""
    found = of_type(resource_type)
    assert len(found) == 1, f"expected one {resource_type}, found {len(found)}"
    return found[0]


def symbol_type(path: Path, symbol: str) -> str | None:
    """The type of the resource a symbolic name refers to in that file, if any."""
    declared = parse(path).get("resources", {}).get(symbol)
    return None if declared is None else str(declared["type"])


def loop_items(resource: Resource) -> list[Any]:
    """The values a ``[for x in items: ...]`` resource iterates, resolving a variable name."""
    assert resource.loop is not None, f"{resource.symbol} is not a loop"
    items = resource.loop["detail"]["array_name"]
    if isinstance(items, str):
        items = parse(resource.file)["variables"][items]["value"]
    return list(items)


def params(path: Path) -> dict[str, dict[str, Any]]:
    """The ``param`` declarations of a file, by name."""
    return dict(parse(path).get("parameters", {}))


def decorators(param: dict[str, Any]) -> dict[str, Any]:
    """A param's decorators as {type: argument}, e.g. {"min_value": 1, "secure": None}."""
    return {d["type"]: d.get("argument") for d in param["decorators"]}


def dotted(expression: Any) -> str:
    """A property access chain as text: ``identity.properties.clientId``; anything else: repr."""
    if isinstance(expression, str):
        return expression
    operator = expression.get("operator", {}) if isinstance(expression, dict) else {}
    if operator.get("type") != "property_accessor":
        return repr(expression)
    operands = operator["operands"]
    return f"{dotted(operands['operand_1'])}.{dotted(operands['operand_2'])}"


def unquote(key: str) -> str:
    """An object key without the quotes pycep keeps: ``'azd-service-name'`` -> azd-service-name."""
    return key.strip("'")
