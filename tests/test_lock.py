"""The locked dependency trees: requirements.txt (runtime) and requirements-dev.txt (runtime and
development), compiled by `make lock` from requirements.in and requirements-dev.in.

Offline: no resolver runs here. A lock is up to date when every pin of its inputs is in it at the
same version, every package it holds for an input is pinned in that input (its ``# via -r``
annotation), every package is pinned with its hashes, and the development lock keeps every
runtime package at the runtime lock's version.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LOCKS = {"requirements.txt": "requirements.in", "requirements-dev.txt": "requirements-dev.in"}

ENTRY = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)")
VIA_INPUT = re.compile(r"^\s+#\s+(?:via\s+)?-r (\S+)$")
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>\S+)$")


def canonical(name: str) -> str:
    """A package name as PEP 503 compares them: ``PowerPlatform_Dataverse.Client`` is
    ``powerplatform-dataverse-client``."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class Locked:
    version: str
    hashes: int = 0
    inputs: set[str] = field(default_factory=set)


def read_lock(name: str) -> dict[str, Locked]:
    """Each package of a lock: its version, how many hashes, the input files that ask for it."""
    found: dict[str, Locked] = {}
    current: Locked | None = None
    for line in (ROOT / name).read_text(encoding="utf-8").splitlines():
        if entry := ENTRY.match(line):
            current = found.setdefault(canonical(entry["name"]), Locked(entry["version"]))
        elif line.strip() and not line.startswith((" ", "#")):
            pytest.fail(f"{name}: not a pinned entry: {line!r}")
        elif current is not None and "--hash=sha256:" in line:
            current.hashes += 1
        elif current is not None and (via := VIA_INPUT.match(line)):
            current.inputs.add(via[1])
    return found


def read_pins(name: str) -> dict[str, str]:
    """The direct pins of an input file and of the inputs it includes with ``-r``."""
    pins: dict[str, str] = {}
    for raw in (ROOT / name).read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-c "):
            continue
        if line.startswith("-r "):
            pins.update(read_pins(line[3:]))
            continue
        pin = PIN.match(line)
        assert pin, f"{name}: {line!r} is not pinned with =="
        pins[canonical(pin["name"])] = pin["version"]
    return pins


def own_pins(name: str) -> set[str]:
    """The packages an input file pins itself (not through ``-r``)."""
    text = (ROOT / name).read_text(encoding="utf-8")
    return {canonical(m["name"]) for line in text.splitlines() if (m := PIN.match(line.strip()))}


@pytest.mark.parametrize(("lock", "source"), LOCKS.items())
def test_every_input_pin_is_locked_at_its_version(lock: str, source: str) -> None:
    locked = read_lock(lock)
    for name, version in read_pins(source).items():
        assert name in locked, f"{name} is in {source} but not in {lock}: run `make lock`"
        assert locked[name].version == version, f"{name}: {source} pins {version}, " \
            f"{lock} has {locked[name].version}: run `make lock`"


@pytest.mark.parametrize(("lock", "source"), LOCKS.items())
def test_every_package_locked_for_an_input_is_pinned_there(lock: str, source: str) -> None:
    """A pin dropped from an input leaves its package annotated ``via -r`` that input."""
    inputs = {path for package in read_lock(lock).values() for path in package.inputs}
    assert inputs <= {"requirements.in", "requirements-dev.in"}, inputs
    for name, package in read_lock(lock).items():
        for path in package.inputs:
            assert name in own_pins(path), f"{lock} keeps {name} for {path}: run `make lock`"


@pytest.mark.parametrize("lock", LOCKS)
def test_every_package_is_pinned_with_its_hashes(lock: str) -> None:
    locked = read_lock(lock)
    assert locked, f"{lock} is empty"
    for name, package in locked.items():
        assert package.hashes >= 1, f"{lock}: {name} has no hash"


def test_the_development_lock_holds_the_runtime_tree_at_its_versions() -> None:
    runtime, development = read_lock("requirements.txt"), read_lock("requirements-dev.txt")
    for name, package in runtime.items():
        assert name in development, f"requirements-dev.txt lacks the runtime {name}"
        assert development[name].version == package.version, name


def test_development_input_builds_on_the_runtime_lock() -> None:
    lines = (ROOT / "requirements-dev.in").read_text(encoding="utf-8").splitlines()
    assert "-r requirements.in" in lines
    assert "-c requirements.txt" in lines, "the runtime packages keep their locked versions"
    assert "uv" in own_pins("requirements-dev.in"), "the locking tool is pinned too"


def makefile() -> str:
    return (ROOT / "Makefile").read_text(encoding="utf-8")


def test_make_installs_the_development_lock_with_hashes_and_again_when_it_changes() -> None:
    rule = re.search(r"^\$\(VENV\)/\.installed: (.*)\n((?:\t.*\n)+)", makefile(), re.MULTILINE)
    assert rule, "the Makefile has no rule for the Python environment"
    assert set(rule[1].split()) >= set(LOCKS), "a changed lock reinstalls"
    recipe = rule[2].replace("\\\n", " ")
    assert re.search(r"pip install .*--require-hashes.*-r requirements-dev\.txt", recipe)


def test_make_lock_compiles_both_for_python_3_11_with_hashes() -> None:
    variables = re.search(r"^UV_COMPILE = (.*(?:\\\n.*)*)", makefile(), re.MULTILINE)
    assert variables
    compile_command = variables[1].replace("\\\n", " ")
    assert "uv pip compile" in compile_command
    assert "--generate-hashes" in compile_command
    assert "--python-version 3.11" in compile_command
    recipe = re.search(r"^lock: .*\n((?:\t.*\n)+)", makefile(), re.MULTILINE)
    assert recipe
    for lock, source in LOCKS.items():
        assert f"$(UV_COMPILE) {source} -o {lock}" in recipe[1]
    order = recipe[1].index("requirements.in"), recipe[1].index("requirements-dev.in")
    assert order[0] < order[1], "the runtime lock first: the development one is constrained by it"
