"""JSONPath-like paths into an enrichment answer: ``metrics.employees``, ``locations[0].country``.

A path is names separated by dots, each optionally followed by ``[index]`` (``[0]`` the first
item, ``[-1]`` the last); a leading ``$.`` is accepted and ignored. ``read_path`` answers the
value or ``MISSING`` (a name absent, an index out of range, a step into something that is not an
object or a list). Pure functions.
"""

from __future__ import annotations

import re
from typing import Any, Final

from sync.failures.errors import ConfigError

Step = str | int
MISSING: Final = object()
"""What ``read_path`` answers when the answer has nothing at the path."""
_STEP: Final = re.compile(r"([^.\[\]]+)((?:\[-?\d+\])*)")
_INDEX: Final = re.compile(r"\[(-?\d+)\]")


def parse_path(text: str, where: str) -> tuple[Step, ...]:
    """``a.b[0].c`` -> ``("a", "b", 0, "c")``; ConfigError naming ``where`` when malformed."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"{where} must be a path into the answer, e.g. metrics.employees")
    body = text.strip().removeprefix("$.")
    steps: list[Step] = []
    for part in body.split("."):
        match = _STEP.fullmatch(part)
        if match is None:
            raise ConfigError(f"{where}: {text!r} is not a path (names separated by dots, "
                              "each with optional [index])")
        steps.append(match.group(1))
        steps += [int(index) for index in _INDEX.findall(match.group(2))]
    return tuple(steps)


def read_path(data: Any, path: tuple[Step, ...]) -> Any:
    """The value at ``path``, or ``MISSING``."""
    found = data
    for step in path:
        if isinstance(step, int):
            if not isinstance(found, list) or not -len(found) <= step < len(found):
                return MISSING
            found = found[step]
        elif isinstance(found, dict) and step in found:
            found = found[step]
        else:
            return MISSING
    return found


def path_text(path: tuple[Step, ...]) -> str:
    """A path as written: ``("a", 0, "b")`` -> ``a[0].b``."""
    text = ""
    for step in path:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else step)
    return text
