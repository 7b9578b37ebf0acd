"""Index function_app.py the way the Python worker does, and read host.json's queue options."""

from __future__ import annotations

import importlib.util
import inspect
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

_SETTING_REF: Final = re.compile(r"%([^%]+)%")


@dataclass(frozen=True, slots=True)
class IndexedFunction:
    """One function of the app, with its trigger's settings resolved."""

    name: str
    trigger_type: str
    binding_name: str
    call: Callable[..., Any]
    queue_name: str = ""
    connection: str = ""
    schedule: str = ""


@dataclass(frozen=True, slots=True)
class QueueOptions:
    """host.json ``extensions.queues``, with the host's documented defaults."""

    batch_size: int = 16
    new_batch_threshold: int = 8
    max_dequeue_count: int = 5
    visibility_timeout_s: float = 0.0
    max_polling_interval_s: float = 60.0
    message_encoding: str = "base64"

    @classmethod
    def from_host_json(cls, path: Path) -> QueueOptions:
        queues = json.loads(path.read_text()).get("extensions", {}).get("queues", {})
        batch_size = int(queues.get("batchSize", 16))
        return cls(batch_size=batch_size,
                   new_batch_threshold=int(queues.get("newBatchThreshold", batch_size // 2)),
                   max_dequeue_count=int(queues.get("maxDequeueCount", 5)),
                   visibility_timeout_s=timespan_s(queues.get("visibilityTimeout", "00:00:00")),
                   max_polling_interval_s=timespan_s(queues.get("maxPollingInterval",
                                                                "00:01:00")),
                   message_encoding=str(queues.get("messageEncoding", "base64")).lower())


def timespan_s(value: str) -> float:
    """Seconds in a host.json timespan ``hh:mm:ss[.fff]``."""
    hours, minutes, seconds = value.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def resolve(expression: str, environ: Mapping[str, str]) -> str:
    """Replace ``%SETTING%`` references as the host does; a missing setting is an error."""
    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            raise KeyError(f"binding expression refers to app setting {name}, which is not set")
        return environ[name]

    return _SETTING_REF.sub(lookup, expression)


def load_app(path: Path) -> Any:
    """Import ``path`` as the module ``function_app`` and answer its ``app``."""
    spec = importlib.util.spec_from_file_location("function_app", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.app


def index(app: Any, environ: Mapping[str, str]) -> list[IndexedFunction]:
    """The app's functions, checked as the worker checks them at load time."""
    return [_indexed(function, environ) for function in app.get_functions()]


def _indexed(function: Any, environ: Mapping[str, str]) -> IndexedFunction:
    trigger = function.get_trigger()
    call = function.get_user_function()
    binding_names = {binding.name for binding in function.get_bindings()}
    params = set(inspect.signature(call).parameters)
    if params != binding_names:
        raise ValueError(f"function {function.get_function_name()}: parameters {sorted(params)} "
                         f"differ from bindings {sorted(binding_names)}")
    data = trigger.get_dict_repr()
    return IndexedFunction(
        name=function.get_function_name(), trigger_type=data["type"], binding_name=data["name"],
        call=call, queue_name=resolve(data.get("queueName", ""), environ),
        connection=data.get("connection", ""),
        schedule=resolve(data.get("schedule", ""), environ))
