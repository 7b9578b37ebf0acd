"""How `make scan` (checkov over infra/) may be quieted: inline, one check at a time, with a reason.

checkov itself runs in `make scan`, from its own environment; these tests hold its skips to the
rule: each one inside the resource it is about, naming one check and saying why, and the test
it names existing. No skip on the command line, no config file that skips, no soft fail.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.infra.bicep import INFRA, bicep_files

ROOT = INFRA.parent
SKIP = re.compile(r"checkov:skip=")
INLINE_SKIP = re.compile(r"^  // checkov:skip=(CKV2?_[A-Z]+_\d+): (?P<reason>\S.{40,})$")
NAMED_TEST = re.compile(r"(tests/infra/\w+\.py)::(\w+)")
RESOURCE_START = re.compile(r"^resource \w+ '[^']+' = ")
MIN_REASON_WORDS = 8


@dataclass(frozen=True)
class Skip:
    file: Path
    line: int
    text: str
    resource: str | None


def skips() -> list[Skip]:
    """Every checkov skip comment under infra/, with the resource whose body holds it."""
    found = []
    for path in bicep_files():
        resource = None
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if RESOURCE_START.match(line):
                resource = line.split()[1]
            elif line in ("}", "}]"):
                resource = None
            if SKIP.search(line):
                found.append(Skip(path, number, line, resource))
    return found


def label(skip: Skip) -> str:
    return f"{skip.file.relative_to(INFRA)}:{skip.line}"


def test_there_are_skips_to_check() -> None:
    assert skips(), "the template's skips moved or the pattern no longer finds them"


@pytest.mark.parametrize("skip", skips(), ids=label)
def test_skip_is_inside_a_resource_and_names_one_check_with_a_reason(skip: Skip) -> None:
    assert skip.resource, "a skip outside a resource body would not be tied to one resource"
    match = INLINE_SKIP.match(skip.text)
    assert match, "one check per comment: // checkov:skip=CKV_AZURE_N: reason"
    assert len(match["reason"].split()) >= MIN_REASON_WORDS, "say why it does not apply"


@pytest.mark.parametrize("skip", skips(), ids=label)
def test_a_test_a_skip_relies_on_exists(skip: Skip) -> None:
    for file, name in NAMED_TEST.findall(skip.text):
        tree = ast.parse((ROOT / file).read_text(encoding="utf-8"))
        functions = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
        assert name in functions, f"{file} has no {name}"


def test_each_check_is_skipped_once_per_resource() -> None:
    seen = [(skip.file, skip.resource, match[1]) for skip in skips()
            if (match := INLINE_SKIP.match(skip.text))]
    assert len(seen) == len(set(seen))


def scan_recipe() -> str:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = re.search(r"^scan:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert recipe, "the Makefile has no scan target"
    return recipe.group(1)


def test_make_test_runs_the_scan() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    test_target = re.search(r"^test: (.*)$", makefile, re.MULTILINE)
    assert test_target
    assert "scan" in test_target.group(1).split()


def test_scan_is_offline_over_infra_and_fails_on_any_failed_check() -> None:
    recipe = scan_recipe()
    assert "--directory infra" in recipe
    assert "--skip-download" in recipe
    assert "BC_SKIP_MAPPING=TRUE" in recipe
    assert "CKV_SKIP_PACKAGE_UPDATE_CHECK=TRUE" in recipe
    for loosening in ("--skip-check", "--skip-framework", "--soft-fail", "--baseline",
                      "--config-file", "--hard-fail-on", "||"):
        assert loosening not in recipe, loosening
    assert not re.search(r"^\t[-@]*-", recipe, re.MULTILINE), "make must not ignore its failure"


def test_no_checkov_config_file_skips_anything() -> None:
    for folder in (ROOT, INFRA):
        for name in (".checkov.yaml", ".checkov.yml"):
            assert not (folder / name).exists(), f"{folder / name}: skips belong inline"


def test_checkov_is_locked_with_hashes_in_its_own_environment() -> None:
    lock = (ROOT / "requirements-checkov.txt").read_text(encoding="utf-8")
    pins = re.findall(r"^([A-Za-z0-9_.-]+)==\S+ \\$", lock, re.MULTILINE)
    assert "checkov" in pins
    assert lock.count("--hash=sha256:") >= len(pins), "every pin carries its hashes"
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "--require-hashes" in makefile
    assert ".venv-checkov" in (ROOT / ".gitignore").read_text(encoding="utf-8")
