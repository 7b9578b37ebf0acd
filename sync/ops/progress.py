"""A one-line progress report for long operator commands (replay, scan, rollback).

Drawn on stderr only when it is a terminal, redrawn in place (carriage return, erase to the
end of the line) and cut to one column less than the terminal's width, read at each redraw:
a line that fits never wraps, so nothing is left behind when it is redrawn or erased.
"""

from __future__ import annotations

import shutil
import sys
from typing import Final, TextIO

from sync.clock import SYSTEM_CLOCK, Clock

REDRAW_S: Final = 0.1
"""At most this often, except the last count."""
ERASE: Final = "\r\x1b[K"


def fit(text: str, columns: int) -> str:
    """``text`` cut to fit ``columns`` with the last column left free (an ellipsis marks it)."""
    room = max(columns - 1, 1)
    return text if len(text) <= room else text[:room - 1] + "…"


def progress_text(label: str, done: int, total: int | None) -> str:
    """``replaying: 40/120 messages (33%)`` or ``scanning: 40 messages``."""
    if total:
        return f"{label}: {done:,}/{total:,} ({100 * done // total}%)"
    return f"{label}: {done:,}"


class ProgressLine:
    """One line that shows how far a command is; silent when ``out`` is not a terminal."""

    __slots__ = ("_clock", "_drawn_s", "_out", "label", "shown", "total")

    def __init__(self, label: str, total: int | None = None, *, out: TextIO | None = None,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        self.label, self.total = label, total
        self._out = out or sys.stderr
        self._clock = clock
        self._drawn_s = float("-inf")
        self.shown = False

    def __repr__(self) -> str:
        return f"ProgressLine({self.label!r}, total={self.total})"

    def update(self, done: int) -> None:
        """Show ``done`` (throttled to one redraw each ``REDRAW_S``, the last one always)."""
        if not self._out.isatty():
            return
        now_s = self._clock.monotonic_s()
        if now_s - self._drawn_s < REDRAW_S and done != self.total:
            return
        self._drawn_s = now_s
        columns = shutil.get_terminal_size(fallback=(80, 24)).columns
        self._out.write(ERASE + fit(progress_text(self.label, done, self.total), columns))
        self._out.flush()
        self.shown = True

    def count(self, done: int, total: int) -> None:
        """``update`` when the total is learnt as the work goes (a hook's two numbers)."""
        self.total = total
        self.update(done)

    def close(self) -> None:
        """Erase the line (the command's result follows on a clean line)."""
        if self.shown:
            self._out.write(ERASE)
            self._out.flush()
            self.shown = False
