"""How `make scan` (checkov over infra/) may be quieted: inline, one check at a time, with a reason;
and what it counts as a failure besides a failed check.

checkov itself runs in `make scan`, from its own environment, through tests/infra/scan.py; these
tests hold its skips to the rule: each one inside the resource it is about, naming one check and
saying why, and the test it names existing. No skip on the command line, no config file that
skips, no soft fail. They also hold scan.py to checkov's own messages: a check that could not run
(outside a resource that skips it), a file it could not parse, a scan of nothing fail the scan.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.infra.bicep import INFRA, bicep_files
from tests.infra.scan import Skip, problems, skips_in

ROOT = INFRA.parent
INLINE_SKIP = re.compile(r"^  // checkov:skip=(CKV2?_[A-Z]+_\d+): (?P<reason>\S.{40,})$")
NAMED_TEST = re.compile(r"(tests/infra/\w+\.py)::(\w+)")
MIN_REASON_WORDS = 8


def skips() -> list[Skip]:
    """Every checkov skip comment under infra/, with the resource whose body holds it."""
    return [skip for path in bicep_files() for skip in skips_in(path)]


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


def test_scan_goes_through_the_wrapper_that_fails_on_what_checkov_lets_through() -> None:
    recipe = scan_recipe()
    assert re.search(r"\$\(CHECKOV_VENV\)/bin/python tests/infra/scan\.py "
                     r"\$\(CHECKOV_VENV\)/bin/checkov ", recipe)


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


# --- what scan.py makes of checkov's output (its messages as checkov 3 prints them)

SUMMARY = "bicep scan results:\n\nPassed checks: 34, Failed checks: 0, Skipped checks: 16\n"
FAILED_TO_RUN = ("2026-12-04 23:35:21,793 [MainThread  ] [ERROR]  Failed to run check {check} on "
                 "infra/modules/keyvault.bicep:Microsoft.KeyVault/vaults.vault\n"
                 "Traceback (most recent call last):\n"
                 "AttributeError: 'dict' object has no attribute 'lower'\n")


def test_a_clean_scan_passes() -> None:
    assert problems(SUMMARY, 0) == []


def test_a_failed_check_fails_through_the_exit_code() -> None:
    assert problems(SUMMARY.replace("Failed checks: 0", "Failed checks: 1"), 1) == [
        "checkov exited 1"]


def test_a_check_that_cannot_run_fails_the_scan() -> None:
    output = FAILED_TO_RUN.format(check="CKV_AZURE_42") + SUMMARY
    [problem] = problems(output, 0)
    assert problem.startswith("CKV_AZURE_42 could not run on infra/modules/keyvault.bicep:vault")


def test_a_check_that_cannot_run_where_it_is_skipped_inline_is_the_skip() -> None:
    """checkov's Bicep runner runs a skipped check and then discards its result for the skip."""
    vault_skips = {s.check for s in skips_in(INFRA / "modules" / "keyvault.bicep")
                   if s.resource == "vault"}
    assert "CKV_AZURE_189" in vault_skips
    assert problems(FAILED_TO_RUN.format(check="CKV_AZURE_189") + SUMMARY, 0) == []


def test_a_check_that_cannot_run_on_a_file_not_in_the_tree_fails(tmp_path: Path) -> None:
    output = FAILED_TO_RUN.format(check="CKV_AZURE_189") + SUMMARY
    assert len(problems(output, 0, root=tmp_path)) == 1


@pytest.mark.parametrize(("output", "expected"), [
    ("bicep scan results:\n\nPassed checks: 0, Failed checks: 0, Skipped checks: 0, "
     "Parsing errors: 1\n", ["checkov passed no check: it scanned nothing",
                             "checkov could not parse 1 file(s)"]),
    (SUMMARY.replace("16", "16, Parsing errors: 2"), ["checkov could not parse 2 file(s)"]),
    ("", ["checkov printed no summary: it scanned nothing"]),
], ids=["a file it cannot parse and nothing else", "a file it cannot parse", "no summary"])
def test_what_checkov_exits_0_for_is_not_a_pass(output: str, expected: list[str]) -> None:
    assert problems(output, 0) == expected
