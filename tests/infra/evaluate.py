"""What a deployment of infra/ creates and sets for given parameters, decided offline.

A small evaluator over pycep's expression tree, enough of Bicep for the template's switches:
literals, parameters, variables (``for`` loops included), ``cond ? a : b``, ``&&``, ``||``,
``!``, comparisons, ``+``, the string, array and object functions the templates call
(``empty()``, ``union()``, ``join()``, ``split()``, ``contains()``, ...), ``environment()`` of a
chosen cloud, ``loadJsonContent()``, string interpolation, object properties, and module
outputs (evaluated in the module's own deployment, so ``network.outputs.id`` becomes the
network's ``vnet.id``; a module in a ``for`` loop is one deployment per item). What only Azure
knows (resource ids, endpoints, ``utcNow()``) stays a ``Ref`` holding the expression's text, and
inside an interpolated string it stays ``${text}``; a condition that comes down to a ``Ref`` is
an error, not a guess. ``int()`` of a text that is no number fails the deployment, as in ARM
(``DeploymentFailed``): the templates use it to refuse a parameter with a message.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pycep import BicepParser

from tests.infra.bicep import INFRA, MAIN, Resource, params, parse, resources

# main.bicep's parameters without a default: what every deployment must be given.
REQUIRED = {
    "environmentName": "dvsync",
    "dataverseUrl": "https://contoso.crm.dynamics.com",
    "enrichmentUrl": "https://enrichment.example.com",
}


# environment() in three clouds, the members the templates read (az cloud show).
PUBLIC_CLOUD = {"name": "AzureCloud", "suffixes": {"storage": "core.windows.net",
                                                   "keyvaultDns": ".vault.azure.net"}}
CHINA_CLOUD = {"name": "AzureChinaCloud", "suffixes": {"storage": "core.chinacloudapi.cn",
                                                       "keyvaultDns": ".vault.azure.cn"}}
US_GOVERNMENT_CLOUD = {"name": "AzureUSGovernment",
                       "suffixes": {"storage": "core.usgovcloudapi.net",
                                    "keyvaultDns": ".vault.usgovcloudapi.net"}}


@dataclass(frozen=True)
class Ref:
    """A value Azure decides at deployment: the expression's text, e.g. ``vnet.id``."""

    text: str


class DeploymentFailed(Exception):
    """What ARM would refuse the deployment for, e.g. ``int()`` of a sentence."""


class Deployment:
    """One Bicep file deployed with parameter values: its scope, resources, modules and outputs."""

    def __init__(self, path: Path, given: Mapping[str, Any],
                 cloud: Mapping[str, Any] = PUBLIC_CLOUD) -> None:
        declared = params(path)
        unknown = set(given) - set(declared)
        assert not unknown, f"{path.name} has no parameters {sorted(unknown)}"
        self.path = path
        self.cloud = cloud
        self.tree = parse(path)
        self.scope: dict[str, Any] = dict(given)
        for name, param in declared.items():
            if name not in given:
                assert param.get("default") is not None, f"{path.name}: {name} is required"
                self.scope[name] = self.evaluate(param["default"])

    def __repr__(self) -> str:
        return f"Deployment({self.path.relative_to(INFRA)})"

    # --- what it creates

    def resources(self) -> list[Resource]:
        """The resources this deployment creates (their ``if`` holds)."""
        return [r for r in resources(self.path) if self.holds(r.condition)]

    def bodies(self, resource: Resource) -> list[dict[str, Any]]:
        """The evaluated body of a resource, one per item of its ``for`` loop."""
        if resource.loop is None:
            return [self.evaluate(resource.body)]
        return [self.evaluate(resource.body, local) for local in self._loop_scopes(resource.loop)]

    def modules(self) -> dict[str, Deployment]:
        """The modules this deployment deploys, by symbolic name (``name[i]`` in a loop)."""
        found: dict[str, Deployment] = {}
        for name, declared in self.tree.get("modules", {}).items():
            if "loop_type" in declared["config"]:
                found.update({f"{name}[{i}]": item
                              for i, item in enumerate(self.module_items(name))})
            elif (module := self.module(name)) is not None:
                found[name] = module
        return found

    def module(self, name: str) -> Deployment | None:
        """The deployment of one module, None when its ``if`` does not hold."""
        declared = self.tree["modules"][name]
        config = declared["config"]
        assert "loop_type" not in config, f"{name} is a loop: module_items()"
        if "condition" in config and not self.holds(config["condition"]):
            return None
        body = config["config"] if "condition" in config else config
        return self._module_deployment(declared, body, {})

    def module_items(self, name: str) -> list[Deployment]:
        """One deployment per item of a module's ``for`` loop."""
        declared = self.tree["modules"][name]
        config = declared["config"]
        return [self._module_deployment(declared, config["config"], local)
                for local in self._loop_scopes(config["loop_type"])]

    def _module_deployment(self, declared: dict[str, Any], body: dict[str, Any],
                           local: Mapping[str, Any]) -> Deployment:
        values = {key: self.evaluate(value, local) for key, value in body.get("params", {}).items()}
        return Deployment(self.path.parent / declared["detail"]["path"], values, self.cloud)

    def everything(self) -> list[tuple[Deployment, Resource]]:
        """Every resource created by this deployment and the modules under it."""
        mine = [(self, resource) for resource in self.resources()]
        return mine + [pair for module in self.modules().values() for pair in module.everything()]

    def output(self, name: str) -> Any:
        return self.evaluate(self.tree["outputs"][name]["value"])

    # --- expressions

    def holds(self, condition: Any) -> bool:
        """Whether an ``if`` condition holds; no condition always does."""
        if condition is None:
            return True
        value = self.evaluate(condition)
        assert isinstance(value, bool), f"{self}: cannot decide {condition!r} (it is {value!r})"
        return value

    def evaluate(self, expression: Any, local: Mapping[str, Any] | None = None) -> Any:
        """The value of an expression, with loop variables in ``local``."""
        local = local or {}
        if isinstance(expression, str):
            return self._name(expression, local)
        if isinstance(expression, list):
            return [self.evaluate(item, local) for item in expression]
        if isinstance(expression, dict):
            return self._object(expression, local)
        return expression

    def _object(self, expression: dict[str, Any], local: Mapping[str, Any]) -> Any:
        """An operator, a function call, a ``for`` loop, or a plain object."""
        if len(expression) == 1 and "operator" in expression:
            return self._operator(expression["operator"], local)
        if len(expression) == 1 and "function" in expression:
            return self._function(expression["function"], local)
        if "loop_type" in expression:
            return [self.evaluate(expression["config"], {**local, **scope})
                    for scope in self._loop_scopes(expression["loop_type"], local)]
        return {key: self.evaluate(value, local) for key, value in expression.items()}

    def _name(self, text: str, local: Mapping[str, Any]) -> Any:
        """A name in scope, or else the string literal it is (pycep gives both as ``str``)."""
        if text in local:
            return local[text]
        if text in self.scope:
            return self.scope[text]
        variables = self.tree.get("variables", {})
        if text in variables:
            self.scope[text] = self.evaluate(variables[text]["value"])
            return self.scope[text]
        return self._interpolate(text, local) if "${" in text else text

    def _interpolate(self, text: str, local: Mapping[str, Any]) -> str:
        """A string literal with each ``${expression}`` replaced by its value."""
        parts, start = [], 0
        while (opening := text.find("${", start)) >= 0:
            closing = _closing_brace(text, opening + 2)
            inner = self.evaluate(_expression(text[opening + 2:closing]), local)
            parts += [text[start:opening], _as_text(inner)]
            start = closing + 1
        return "".join([*parts, text[start:]])

    def _operator(self, operator: dict[str, Any], local: Mapping[str, Any]) -> Any:
        kind, operands = operator["type"], operator["operands"]
        if kind == "conditional":
            chosen = "true_value" if self._decide(operands["condition"], local) else "false_value"
            return self.evaluate(operands[chosen], local)
        if kind in ("and", "or", "not"):
            return self._logical(kind, operands, local)
        if kind == "property_accessor":
            return self._property(operands["operand_1"], operands["operand_2"], local)
        if kind == "index_accessor" or kind in _BINARY:
            return self._binary(kind, operands, local)
        return Ref(repr(operator))

    def _binary(self, kind: str, operands: dict[str, Any], local: Mapping[str, Any]) -> Any:
        """``a[b]``, ``a == b``, ``a + b``, ...; a comparison with a ``Ref`` stays a ``Ref``."""
        first, second = (self.evaluate(operands[key], local) for key in ("operand_1", "operand_2"))
        if kind == "index_accessor":
            return _index(first, second)
        if isinstance(first, Ref) or isinstance(second, Ref):
            return Ref(f"{kind}(...)")
        return _BINARY[kind](first, second)

    def _logical(self, kind: str, operands: dict[str, Any], local: Mapping[str, Any]) -> bool:
        """``!a``, ``a && b``, ``a || b``, short-circuited as Bicep does."""
        if kind == "not":
            return not self._decide(operands["bool_value"], local)
        first = self._decide(operands["operand_1"], local)
        if kind == "and":
            return first and self._decide(operands["operand_2"], local)
        return first or self._decide(operands["operand_2"], local)

    def _decide(self, expression: Any, local: Mapping[str, Any]) -> bool:
        value = self.evaluate(expression, local)
        assert isinstance(value, bool), f"{self}: cannot decide {expression!r} (it is {value!r})"
        return value

    def _property(self, owner: Any, member: Any, local: Mapping[str, Any]) -> Any:
        """``owner.member``, where member may itself be a chain (pycep nests them to the right)."""
        chain = _chain(member)
        is_module = isinstance(owner, str) and owner in self.tree.get("modules", {})
        if is_module and chain[0] == "outputs":
            module = self.module(owner)
            assert module is not None, f"{self}: reads {owner}.outputs but does not deploy {owner}"
            return _walk(module.output(chain[1]), chain[2:])
        item = self._module_item(owner, local)
        if item is not None and chain[0] == "outputs":
            return _walk(item.output(chain[1]), chain[2:])
        return _walk(self.evaluate(owner, local), chain)

    def _module_item(self, owner: Any, local: Mapping[str, Any]) -> Deployment | None:
        """The deployment ``name[i]`` names when ``owner`` indexes a module loop."""
        operator = owner.get("operator", {}) if isinstance(owner, dict) else {}
        if operator.get("type") != "index_accessor":
            return None
        name = operator["operands"]["operand_1"]
        if not (isinstance(name, str) and name in self.tree.get("modules", {})):
            return None
        index = self.evaluate(operator["operands"]["operand_2"], local)
        return self.module_items(name)[index]

    def _function(self, function: dict[str, Any], local: Mapping[str, Any]) -> Any:
        if function["type"] == "empty":
            value = self.evaluate(function["parameters"]["item_to_test"], local)
            assert not isinstance(value, Ref), f"{self}: cannot tell whether {value} is empty"
            return len(value) == 0
        if function["type"] == "environment":
            return self.cloud
        if function["type"] == "load_json_content":
            loaded = self.path.parent / function["parameters"]["file_path"]
            return json.loads(loaded.read_text(encoding="utf-8"))
        known = _FUNCTIONS.get(function["type"])
        arguments = [self.evaluate(a, local) for a in function.get("parameters", {}).values()]
        if known is None or any(isinstance(a, Ref) for a in arguments):
            return Ref(f"{function['type']}(...)")
        return known(*arguments)

    def _loop_scopes(self, loop: dict[str, Any],
                     local: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """One scope per item of a ``for`` loop: the item's name, and the index's if named."""
        detail = loop["detail"]
        items = self.evaluate(detail["array_name"], local)
        assert isinstance(items, list), f"{self}: loops over {items!r}"
        scopes = []
        for index, item in enumerate(items):
            scope = {detail["item_name"]: item}
            if detail.get("index_name"):
                scope[detail["index_name"]] = index
            scopes.append(scope)
        return scopes


def _union(*values: Any) -> Any:
    """``union()`` of objects: later members win, as in Bicep (shallow, enough here)."""
    assert all(isinstance(v, dict) for v in values), f"union of {values!r}"
    return {key: value for v in values for key, value in v.items()}


def _split(text: str, delimiters: str | list[str]) -> list[str]:
    """``split()``: at any one of the delimiters when given an array."""
    pattern = "|".join(re.escape(d) for d in ([delimiters] if isinstance(delimiters, str)
                                               else delimiters))
    return re.split(pattern, text)


def _int(value: Any) -> int:
    """``int()``: ARM fails the deployment on a text that is no integer."""
    try:
        return int(value)
    except ValueError:
        raise DeploymentFailed(f"int() cannot convert {value!r}") from None


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "union": _union,
    "join": lambda items, delimiter: delimiter.join(items),
    "replace": lambda text, old, new: text.replace(old, new),
    "json": json.loads,
    "length": len,
    "contains": lambda container, item: item in container,
    "first": lambda value: value[0] if value else "",
    "last": lambda value: value[-1] if value else "",
    "split": _split,
    "skip": lambda value, count: value[count:],
    "int": _int,
}

_BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "equals": lambda a, b: a == b,
    "not_equals": lambda a, b: a != b,
    "greater_than": lambda a, b: a > b,
    "greater_than_or_equals": lambda a, b: a >= b,
    "less_than": lambda a, b: a < b,
    "less_than_or_equals": lambda a, b: a <= b,
    "add": lambda a, b: a + b,
}


@functools.cache
def _expression(text: str) -> Any:
    """The tree of one Bicep expression, e.g. the inside of ``${...}``."""
    tree = BicepParser().parse(text=f"var expression = {text}\n")
    return tree["variables"]["expression"]["value"]


def _closing_brace(text: str, start: int) -> int:
    """Index of the ``}`` that closes an interpolation whose expression starts at ``start``."""
    depth, quoted = 0, False
    for index in range(start, len(text)):
        char = text[index]
        if char == "'":
            quoted = not quoted
        elif not quoted and char == "{":
            depth += 1
        elif not quoted and char == "}":
            if depth == 0:
                return index
            depth -= 1
    raise AssertionError(f"unclosed interpolation in {text!r}")


def _as_text(value: Any) -> str:
    """A value as interpolation writes it; what only Azure knows stays ``${expression}``."""
    if isinstance(value, Ref):
        return f"${{{value.text}}}"
    if isinstance(value, bool):
        return str(value).lower()
    return value if isinstance(value, str) else json.dumps(value)


def _chain(member: Any) -> list[Any]:
    """``a.b.c`` as pycep nests it to the right of the first dot: ["a", "b", "c"]."""
    if isinstance(member, dict) and member.get("operator", {}).get("type") == "property_accessor":
        operands = member["operator"]["operands"]
        return [operands["operand_1"], *_chain(operands["operand_2"])]
    return [member]


def _walk(value: Any, chain: list[Any]) -> Any:
    """Follow property names (``subnets[1]`` included) into an object; past what is known, a Ref."""
    for member in chain:
        value = _step(value, member)
    return value


def _step(value: Any, member: Any) -> Any:
    """``value.member``, or ``value.name[index]`` when pycep nests an index in the member."""
    if isinstance(member, dict) and member.get("operator", {}).get("type") == "index_accessor":
        operands = member["operator"]["operands"]
        return _index(_step(value, operands["operand_1"]), operands["operand_2"])
    if isinstance(value, dict) and member in value:
        return value[member]
    return Ref(f"{_text(value)}.{_text(member)}")


def _index(base: Any, index: Any) -> Any:
    if isinstance(base, list) and isinstance(index, int):
        return base[index]
    if isinstance(base, dict) and isinstance(index, str) and index in base:
        return base[index]
    return Ref(f"{_text(base)}[{_text(index)}]")


def _text(value: Any) -> str:
    return value.text if isinstance(value, Ref) else str(value)


# --- main.bicep, deployed

def deploy(cloud: Mapping[str, Any] = PUBLIC_CLOUD, **given: Any) -> Deployment:
    """main.bicep, in a cloud, with the required parameters and the given ones."""
    return Deployment(MAIN, {**REQUIRED, **given}, cloud)


def created(deployment: Deployment) -> dict[str, list[dict[str, Any]]]:
    """Evaluated bodies of everything the deployment creates, by resource type."""
    found: dict[str, list[dict[str, Any]]] = {}
    for owner, resource in deployment.everything():
        found.setdefault(resource.type, []).extend(owner.bodies(resource))
    return found


def only(deployment: Deployment, resource_type: str) -> dict[str, Any]:
    bodies = created(deployment).get(resource_type, [])
    assert len(bodies) == 1, f"{len(bodies)} of {resource_type}"
    return bodies[0]
