"""Six-field NCRONTAB schedules (second minute hour day month weekday), as the Functions host
reads them: whether a schedule had an occurrence between two instants.

Each field is ``*``, a number, a range ``a-b``, a list ``a,b`` or a step ``*/n`` / ``a-b/n``;
weekday 0 (or 7) is Sunday. Month and weekday names are not accepted (the settings check says
so at start). Used to plan each sync definition on its own schedule from one timer tick.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from sync.failures.errors import ConfigError

_BOUNDS: Final = ((0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_NAMES: Final = ("second", "minute", "hour", "day", "month", "weekday")
MAX_SCAN: Final = timedelta(days=366)
"""A gap longer than this is due whatever the schedule (every valid schedule fires in a year)."""


@dataclass(frozen=True, slots=True)
class Schedule:
    """A parsed schedule: the allowed values of each field."""

    text: str
    fields: tuple[frozenset[int], ...]

    def matches_minute(self, at: datetime) -> bool:
        minute, hour, day, month, weekday = self.fields[1:]
        sunday_first = (at.weekday() + 1) % 7
        return (at.minute in minute and at.hour in hour and at.day in day
                and at.month in month and (sunday_first in weekday
                                           or (sunday_first == 0 and 7 in weekday)))

    def due(self, since: datetime, now: datetime) -> bool:
        """True when an occurrence falls in ``(since, now]``."""
        since, now = since.astimezone(UTC), now.astimezone(UTC)
        if now <= since:
            return False
        if now - since > MAX_SCAN:
            return True
        minute = since.replace(second=0, microsecond=0)
        while minute <= now:
            if self.matches_minute(minute) and any(
                    since < minute.replace(second=s) <= now for s in self.fields[0]):
                return True
            minute += timedelta(minutes=1)
        return False


def parse_schedule(text: str, where: str) -> Schedule:
    """A schedule from its six fields; ConfigError naming ``where`` when it is not one."""
    parts = text.split()
    if len(parts) != 6:
        raise ConfigError(f"{where} must be six NCRONTAB fields (second minute hour day month "
                          f"weekday), e.g. '0 0 2 * * *', got {text[:60]!r}")
    return Schedule(text, tuple(_field(part, low, high, f"{where} ({name})")
                                for part, (low, high), name in zip(parts, _BOUNDS, _NAMES,
                                                                    strict=True)))


def _field(text: str, low: int, high: int, where: str) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        values |= _item(item, low, high, where)
    return frozenset(values)


def _item(item: str, low: int, high: int, where: str) -> set[int]:
    span, _, step_text = item.partition("/")
    try:
        step = int(step_text) if step_text else 1
        if span in ("*", "?"):
            first, last = low, high
        elif "-" in span:
            first_text, last_text = span.split("-", 1)
            first, last = int(first_text), int(last_text)
        else:
            first = last = int(span)
    except ValueError:
        raise ConfigError(f"{where}: {item!r} is not a number, range, list or step") from None
    if step < 1 or not low <= first <= last <= high:
        raise ConfigError(f"{where}: {item!r} is outside {low}-{high}")
    return set(range(first, last + 1, step))
