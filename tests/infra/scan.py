"""`make scan`: run checkov and fail on what its exit code lets through.

Usage: ``python tests/infra/scan.py CHECKOV_COMMAND...`` (the Makefile's scan target). It runs the
command, passes its output on, and then fails (exit 1, each reason on stderr) when checkov:

- exited non-zero (a failed check, or checkov itself failed);
- could not run a check on a resource (``Failed to run check CKV_... on FILE:TYPE.NAME``: checkov
  logs the error and counts the check nowhere, so the summary still says 0 failed), unless that
  resource skips that check inline: checkov's Bicep runner runs skipped checks too and then
  replaces their result with the skip, so what one would have said is discarded either way;
- could not parse a file (``Parsing errors: N``, which leaves its exit code 0);
- printed no summary, or passed no check.

Standard library only: it runs with the checkov environment's Python, which has no project.
tests/infra/test_scan.py tests ``problems`` on checkov's own messages and the inline skips.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FAILED_TO_RUN = re.compile(r"Failed to run check (?P<check>CKV2?_\w+) on "
                           r"(?P<file>\S+\.bicep):(?P<type>[\w./-]+)\.(?P<symbol>\w+)")
SUMMARY = re.compile(r"Passed checks: (?P<passed>\d+), Failed checks: (?P<failed>\d+), "
                     r"Skipped checks: (?P<skipped>\d+)(?:, Parsing errors: (?P<parsing>\d+))?")
SKIP = re.compile(r"^  // checkov:skip=(?P<check>CKV2?_[A-Z]+_\d+): (?P<reason>\S.*)$")
RESOURCE_START = re.compile(r"^resource (?P<symbol>\w+) '[^']+' = ")


@dataclass(frozen=True)
class Skip:
    """An inline skip: a check, the resource whose body holds it, where and why."""

    file: Path
    line: int
    resource: str | None
    check: str | None
    text: str


def skips_in(path: Path) -> list[Skip]:
    """Every ``checkov:skip`` comment of a Bicep file, with the resource whose body holds it."""
    found, resource = [], None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if start := RESOURCE_START.match(line):
            resource = start["symbol"]
        elif line in ("}", "}]"):
            resource = None
        if "checkov:skip=" in line:
            match = SKIP.match(line)
            found.append(Skip(path, number, resource, match["check"] if match else None, line))
    return found


def skipped_inline(root: Path, file: str, symbol: str, check: str) -> bool:
    """Whether resource ``symbol`` of ``file`` (relative to ``root``) skips ``check`` inline."""
    path = root / file
    return path.is_file() and any(s.resource == symbol and s.check == check
                                  for s in skips_in(path))


def problems(output: str, exit_code: int, root: Path = ROOT) -> list[str]:
    """Why a checkov run with this output (stdout and stderr together) is not a pass."""
    found = [] if exit_code == 0 else [f"checkov exited {exit_code}"]
    for failure in FAILED_TO_RUN.finditer(output):
        if not skipped_inline(root, failure["file"], failure["symbol"], failure["check"]):
            found.append(f"{failure['check']} could not run on {failure['file']}:"
                         f"{failure['symbol']}, which does not skip it: fix the template so "
                         "checkov can read it, or skip it there with the reason")
    summaries = list(SUMMARY.finditer(output))
    if not summaries:
        found.append("checkov printed no summary: it scanned nothing")
    for summary in summaries:
        if int(summary["passed"]) == 0:
            found.append("checkov passed no check: it scanned nothing")
        if int(summary["parsing"] or 0):
            found.append(f"checkov could not parse {summary['parsing']} file(s)")
    return found


def main(command: list[str]) -> int:
    run = subprocess.run(command, capture_output=True, text=True, check=False)
    sys.stdout.write(run.stdout)
    sys.stderr.write(run.stderr)
    found = problems(run.stdout + run.stderr, run.returncode)
    sys.stderr.writelines(f"scan: {problem}\n" for problem in found)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
