"""NCRONTAB schedules as the Functions host reads them (NCrontab's ``CrontabSchedule``, which the
timer trigger uses): when a schedule next occurs, and whether it occurred between two instants.

Six fields, ``second minute hour day month weekday``, each parsed as NCrontab parses it:

- ``*``, a number, a range ``a-b``, a list ``a,b,c``, and steps: ``*/n``, ``a-b/n`` and ``a/n``,
  which runs from ``a`` to the field's end (``5/15`` minutes are 5, 20, 35 and 50);
- month and weekday names in any case, as any prefix of the English name (``Jan``, ``janu``,
  ``MON``, ``thursday``; the first name the prefix fits wins: ``J`` is January);
- weekdays 0-6 with Sunday 0 (7 is refused, as NCrontab refuses it); no ``?``, ``L``, ``W``
  or ``#``;
- what NCrontab reads leniently is read the same way: a reversed range is read low to high
  (``10-5`` is ``5-10``) and a step below 1 is 1;
- the day and the weekday must both match (``0 0 9 1 * Mon``: a 1st that is a Monday).

Every value is checked against its field's range when the schedule is read, and a schedule that
never occurs (``0 0 0 30 2 *``) is refused: the host would load it and never fire. The host also
takes five fields (no second); the product asks for six, so that one string means one thing in
``SYNC_SCHEDULE`` and in a definition. Times are UTC, the host's default.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Final

from sync.failures.errors import ConfigError

MONTHS: Final = ("January", "February", "March", "April", "May", "June", "July", "August",
                 "September", "October", "November", "December")
WEEKDAYS: Final = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
SEARCH_DAYS: Final = 146_097 + 1
"""How far ahead the next occurrence is looked for: 400 Gregorian years, after which the
calendar and the weekdays repeat (146,097 days are whole weeks), so a schedule with no
occurrence in them has none at all."""
REFERENCE: Final = datetime(2000, 1, 1, tzinfo=UTC)
_NUMBER: Final = re.compile(r"[0-9]+")
_STEP: Final = re.compile(r"[+-]?[0-9]{1,9}")


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One of the six fields: its name, its range and the names its values may take."""

    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()


FIELDS: Final = (FieldSpec("second", 0, 59), FieldSpec("minute", 0, 59),
                 FieldSpec("hour", 0, 23), FieldSpec("day", 1, 31),
                 FieldSpec("month", 1, 12, MONTHS), FieldSpec("weekday", 0, 6, WEEKDAYS))


class _Refused(ValueError):
    """A field value NCrontab refuses; the message says why."""


@dataclass(frozen=True, slots=True)
class Schedule:
    """A parsed schedule: the values each field allows, second first."""

    text: str
    fields: tuple[frozenset[int], ...]
    _sorted: tuple[tuple[int, ...], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_sorted", tuple(tuple(sorted(f)) for f in self.fields))

    def next_after(self, at: datetime) -> datetime | None:
        """The first occurrence strictly after ``at`` (UTC); None when there is none."""
        start = at.astimezone(UTC).replace(microsecond=0) + timedelta(seconds=1)
        day, earliest = start.date(), (start.hour, start.minute, start.second)
        try:
            for _ in range(SEARCH_DAYS):
                if self._on(day):
                    found = self._first_time(earliest)
                    if found is not None:
                        return datetime.combine(day, time(*found), UTC)
                day, earliest = self._next_day(day), (0, 0, 0)
        except OverflowError:  # past the year 9999
            return None
        return None

    def due(self, since: datetime, now: datetime) -> bool:
        """True when an occurrence falls in ``(since, now]``."""
        found = self.next_after(since)
        return found is not None and found <= now.astimezone(UTC)

    def _on(self, day: date) -> bool:
        """The day, the month and the weekday (Sunday 0) all match."""
        _, _, _, days, months, weekdays = self.fields
        return (day.day in days and day.month in months
                and (day.weekday() + 1) % 7 in weekdays)

    def _next_day(self, day: date) -> date:
        """The next day worth looking at: tomorrow, or the 1st of the next month when this
        month is not in the schedule."""
        if day.month in self.fields[4]:
            return day + timedelta(days=1)
        return date(day.year + day.month // 12, day.month % 12 + 1, 1)

    def _first_time(self, earliest: tuple[int, int, int]) -> tuple[int, int, int] | None:
        """The first (hour, minute, second) of the schedule at or after ``earliest``."""
        seconds, minutes, hours = self._sorted[0], self._sorted[1], self._sorted[2]
        hour0, minute0, second0 = earliest
        for hour in _from(hours, hour0):
            for minute in _from(minutes, minute0 if hour == hour0 else 0):
                low = second0 if (hour, minute) == (hour0, minute0) else 0
                second = next(_from(seconds, low), None)
                if second is not None:
                    return hour, minute, second
        return None


def _from(values: tuple[int, ...], low: int) -> Iterator[int]:
    """The sorted ``values`` from ``low`` on."""
    return iter(values[bisect_left(values, low):])


def parse_schedule(text: str, where: str) -> Schedule:
    """A schedule from its six fields; ConfigError naming ``where`` and the field at fault."""
    parts = [part for part in text.split(" ") if part]  # NCrontab splits on spaces only
    if len(parts) != len(FIELDS):
        raise ConfigError(f"{where} must be six NCRONTAB fields (second minute hour day month "
                          f"weekday), e.g. '0 0 2 * * *', got {text[:60]!r}")
    values = []
    for part, spec in zip(parts, FIELDS, strict=True):
        try:
            values.append(frozenset(field_values(part, spec)))
        except _Refused as error:
            raise ConfigError(f"{where} ({spec.name} field): {error}") from None
    schedule = Schedule(text, tuple(values))
    if schedule.next_after(REFERENCE) is None:
        raise ConfigError(f"{where}: {text!r} never occurs (no such day in those months)")
    return schedule


def field_values(text: str, spec: FieldSpec) -> set[int]:
    """The values one field allows, as NCrontab's ``CrontabFieldImpl`` reads it."""
    if text.find(",") > 0:
        return set().union(*(field_values(item, spec) for item in text.split(",")))
    if not text:
        raise _Refused("an empty value in a list")
    step: int | None = None
    slash = text.find("/")
    if slash > 0:
        step, text = max(_step(text[slash + 1:]), 1), text[:slash]
    if text == "*":
        return set(range(spec.low, spec.high + 1, step or 1))
    dash = text.find("-")
    if dash > 0:
        return _span(_value(text[:dash], spec), _value(text[dash + 1:], spec), step or 1, spec)
    value = _value(text, spec)
    return _span(value, value if step is None else max(value, spec.high), step or 1, spec)


def _span(first: int, last: int, step: int, spec: FieldSpec) -> set[int]:
    """``first`` to ``last`` by ``step``: reversed ends swapped, both within the field."""
    low, high = min(first, last), max(first, last)
    for value in (low, high):
        if not spec.low <= value <= spec.high:
            raise _Refused(f"{value} is outside {spec.low}-{spec.high}")
    return set(range(low, high + 1, step))


def _step(text: str) -> int:
    if not _STEP.fullmatch(text):
        raise _Refused(f"the step {text!r} is not a whole number")
    return int(text)


def _value(text: str, spec: FieldSpec) -> int:
    """A number, or (month, weekday) a name or any prefix of one."""
    if _NUMBER.fullmatch(text):
        return int(text)
    if text and not text[0].isdigit() and spec.names:
        wanted = text.lower()
        for index, name in enumerate(spec.names):
            if name.lower().startswith(wanted):
                return spec.low + index
        raise _Refused(f"{text!r} is not a {spec.name} name ({', '.join(spec.names)})")
    raise _Refused(f"{text!r} is not a number, range, list or step")
