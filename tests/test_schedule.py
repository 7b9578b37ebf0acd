"""Schedules mean what the Functions host's NCrontab makes of them.

The occurrences are NCrontab's own test cases (atifaziz/NCrontab, NCrontab.Tests/
CrontabScheduleTests.cs, the six-field ones as they are and the five-field ones with a second
``0`` in front), the examples of its README and of the Azure Functions timer trigger docs
("NCRONTAB expressions"); the refusals are NCrontab's bad-field cases and its ranges.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sync.config.schedule import parse_schedule
from sync.config.settings import Settings
from sync.failures.errors import ConfigError


def at(text: str) -> datetime:
    """``dd/MM/yyyy HH:mm:ss`` as NCrontab's tests write times, in UTC."""
    return datetime.strptime(text, "%d/%m/%Y %H:%M:%S").replace(tzinfo=UTC)


NEXT = [  # (after, schedule, next occurrence)
    ("01/01/2003 00:00:00", "45 * * * * *", "01/01/2003 00:00:45"),
    ("01/01/2003 00:00:49", "45-47,48,49 * * * * *", "01/01/2003 00:01:45"),
    ("01/01/2003 00:00:00", "2/5 * * * * *", "01/01/2003 00:00:02"),
    ("01/01/2003 00:00:02", "2/5 * * * * *", "01/01/2003 00:00:07"),
    ("01/01/2003 00:00:57", "2/5 * * * * *", "01/01/2003 00:01:02"),
    ("24/02/2021 09:50:35", "* 0-1 10 * * *", "24/02/2021 10:00:00"),
    ("24/02/2021 09:50:35", "* * 10 * * *", "24/02/2021 10:00:00"),
    ("24/02/2021 09:50:35", "* 55 * * * *", "24/02/2021 09:55:00"),
    ("01/01/2003 00:00:30", "3 45 * * * *", "01/01/2003 00:45:03"),
    ("01/01/2003 00:49:30", "6 45-47,48,49 * * * *", "01/01/2003 01:45:06"),
    ("01/01/2003 00:57:30", "9 2/5 * * * *", "01/01/2003 01:02:09"),
    ("01/01/2003 00:57:00", "0 2/5 * * * *", "01/01/2003 01:02:00"),
    ("20/12/2003 10:00:00", "0 * 3/4 * * *", "20/12/2003 11:00:00"),
    ("20/12/2003 01:45:00", "0 30 3 * * *", "20/12/2003 03:30:00"),
    ("07/01/2003 00:00:00", "0 30 * 1 * *", "01/02/2003 00:30:00"),
    ("10/07/2003 00:00:00", "0 * * 30,31 * *", "30/07/2003 00:00:00"),
    ("31/01/2000 00:00:00", "0 0 0 15,30,31 * *", "15/02/2000 00:00:00"),
    ("30/04/2000 00:00:00", "0 0 0 15,30,31 * *", "15/05/2000 00:00:00"),
    ("31/12/2000 00:00:00", "0 0 0 15,30,31 * *", "15/01/2001 00:00:00"),
    ("28/02/2002 23:59:59", "0 * * * 3 *", "01/03/2002 00:00:00"),
    ("01/12/2003 05:00:00", "0 10 * * 6 *", "01/06/2004 00:10:00"),
    ("01/07/2002 05:00:00", "0 10 * * February,April-Jun *", "01/02/2003 00:10:00"),
    ("11/03/1988 14:23:00", "0 20 * * january,FeB,Mar,april,May,JuNE,July,Augu,SEPT-October,"
                            "Nov,DECEM *", "11/03/1988 15:20:00"),
    ("26/06/2003 10:00:00", "0 30 6 * * 0", "29/06/2003 06:30:00"),
    ("26/06/2003 10:00:00", "0 30 6 * * sunday", "29/06/2003 06:30:00"),
    ("26/06/2003 10:00:00", "0 30 6 * * SUNDAY", "29/06/2003 06:30:00"),
    ("24/06/2003 12:01:00", "0 1 12 * * 2", "01/07/2003 12:01:00"),
    ("30/06/2003 18:15:00", "0 15 18 * * Mon", "07/07/2003 18:15:00"),
    ("01/01/2003 12:00:00", "0 45 16 1 * Mon", "01/09/2003 16:45:00"),  # day AND weekday
    ("01/09/2003 23:45:00", "0 45 16 1 * Mon", "01/12/2003 16:45:00"),
    ("29/02/2000 12:01:00", "0 1 12 29 2 *", "29/02/2004 12:01:00"),
    ("29/02/2004 12:01:00", "0 1 12 28 2 *", "28/02/2005 12:01:00"),
    ("01/01/2000 14:40:00", "0 40 14/1 * * *", "01/01/2000 15:40:00"),
    ("31/12/2002 23:59:59", "* * * * * Mon", "06/01/2003 00:00:00"),
    ("01/01/2003 00:00:00", "10 30 12 * * Mon", "06/01/2003 12:30:10"),
    # the README: noon on a Monday of every other month, from January
    ("01/01/2000 00:00:00", "0 0 12 * */2 Mon", "03/01/2000 12:00:00"),
    ("31/01/2000 12:00:00", "0 0 12 * */2 Mon", "06/03/2000 12:00:00"),
    # the Azure Functions docs
    ("01/12/2026 18:55:00", "0 */5 * * * *", "01/12/2026 19:00:00"),
    ("01/12/2026 18:55:00", "0 0 */2 * * *", "01/12/2026 20:00:00"),
    ("01/12/2026 17:00:00", "0 0 9-17 * * *", "02/12/2026 09:00:00"),
    ("04/12/2026 09:30:00", "0 30 9 * * 1-5", "07/12/2026 09:30:00"),  # Friday to Monday
    ("01/12/2026 00:00:00", "0 30 9 * Jan Mon", "04/01/2027 09:30:00"),
    ("01/12/2026 00:00:00", "5/15 * * * * *", "01/12/2026 00:00:05"),
    ("01/12/2026 00:00:05", "5/15 * * * * *", "01/12/2026 00:00:20"),
    ("01/12/2026 00:00:50", "5/15 * * * * *", "01/12/2026 00:01:05"),
]


@pytest.mark.parametrize(("after", "schedule", "expected"), NEXT,
                         ids=[f"{s} after {a}" for a, s, _ in NEXT])
def test_the_next_occurrence_is_ncrontabs(after: str, schedule: str, expected: str) -> None:
    assert parse_schedule(schedule, "s").next_after(at(after)) == at(expected)


@pytest.mark.parametrize(("schedule", "values"), [
    pytest.param("5/15 * * * * *", {5, 20, 35, 50}, id="a-step-from-a-value-runs-to-the-end"),
    pytest.param("*/20 * * * * *", {0, 20, 40}, id="a-step-over-everything"),
    pytest.param("10-40/15 * * * * *", {10, 25, 40}, id="a-step-over-a-range"),
    pytest.param("40-10 * * * * *", set(range(10, 41)), id="a-reversed-range-reads-low-to-high"),
    pytest.param("*/0 * * * * *", set(range(60)), id="a-step-below-one-is-one"),
    pytest.param("59/15 * * * * *", {59}, id="a-step-from-the-last-value"),
])
def test_seconds_read_as_ncrontab_reads_them(schedule: str, values: set[int]) -> None:
    assert parse_schedule(schedule, "s").fields[0] == values


@pytest.mark.parametrize(("schedule", "months", "weekdays"), [
    ("0 0 0 * J *", {1}, set(range(7))),
    ("0 0 0 * ju-AUG *", {6, 7, 8}, set(range(7))),
    ("0 0 0 * * t,th", set(range(1, 13)), {2, 4}),
    ("0 0 0 * Mar,Jan,Aug Fri,Mon-Tue", {1, 3, 8}, {1, 2, 5}),
])
def test_names_are_any_prefix_of_the_english_name(schedule: str, months: set[int],
                                                  weekdays: set[int]) -> None:
    parsed = parse_schedule(schedule, "s")
    assert (parsed.fields[4], parsed.fields[5]) == (months, weekdays)


@pytest.mark.parametrize(("schedule", "message"), [
    pytest.param("99 99 99 * * *", r"\(second field\): 99 is outside 0-59", id="out-of-range"),
    pytest.param("* * 1,2,3,456,7,8,9 * * *", "456 is outside 0-23", id="one-of-a-list"),
    pytest.param("* * * 0 * *", "0 is outside 1-31", id="day-zero"),
    pytest.param("* * * * 13 *", "13 is outside 1-12", id="month-13"),
    pytest.param("* * * * * 7", "7 is outside 0-6", id="weekday-7"),
    pytest.param("* * * * * mon,bad,wed", "'bad' is not a weekday name", id="a-bad-name"),
    pytest.param("* * 1,Z,3,4 * * *", "'Z' is not a number", id="a-name-in-a-numeric-field"),
    pytest.param("* * 1/Z * * *", "the step 'Z'", id="a-step-that-is-not-a-number"),
    pytest.param("* * 3-l2 * * *", "'l2' is not a number", id="a-bad-range-end"),
    pytest.param("* * * ? * *", "'\\?' is not a number", id="question-mark"),
    pytest.param("* * * L * *", "'L' is not a number", id="last-day"),
    pytest.param("* * 1,,2 * * *", "an empty value", id="an-empty-list-item"),
    pytest.param("* * */ * * *", "the step ''", id="a-missing-step"),
    pytest.param("bad * * * * *", r"\(second field\)", id="a-bad-second"),
    pytest.param("0 2 * * *", "six NCRONTAB fields", id="five-fields"),
    pytest.param("0 0 0 30 2 *", "never occurs", id="february-30th"),
    pytest.param("* * * 31 Feb *", "never occurs", id="february-31st"),
])
def test_a_schedule_the_host_refuses_or_never_fires_is_refused(schedule: str,
                                                               message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_schedule(schedule, "SYNC_SCHEDULE")


def test_a_leap_day_on_a_weekday_is_years_apart_and_still_found() -> None:
    parsed = parse_schedule("0 0 0 29 Feb Mon", "s")
    assert parsed.next_after(at("01/01/2017 00:00:00")) == at("29/02/2044 00:00:00")
    assert parsed.next_after(at("01/01/9000 00:00:00")) == at("29/02/9008 00:00:00")


@pytest.mark.parametrize(("since", "now", "due"), [
    pytest.param("01/12/2026 01:59:59", "01/12/2026 02:00:00", True, id="up-to-now-inclusive"),
    pytest.param("01/12/2026 02:00:00", "02/12/2026 01:59:59", False, id="since-is-excluded"),
    pytest.param("01/12/2026 03:00:00", "01/12/2026 02:00:00", False, id="now-before-since"),
    pytest.param("01/12/2020 03:00:00", "01/12/2026 01:00:00", True, id="years-of-gap"),
])
def test_due_means_an_occurrence_in_the_half_open_interval(since: str, now: str,
                                                          due: bool) -> None:
    assert parse_schedule("0 0 2 * * *", "s").due(at(since), at(now)) is due


def test_a_fraction_of_a_second_after_an_occurrence_is_past_it() -> None:
    parsed = parse_schedule("* * * * * *", "s")
    moment = at("01/12/2026 02:00:00") + timedelta(milliseconds=400)
    assert parsed.next_after(moment) == at("01/12/2026 02:00:01")


@pytest.mark.parametrize("setting", ["SYNC_SCHEDULE", "SYNC_QUEUE_METRICS_SCHEDULE"])
def test_the_timers_schedules_are_read_in_full_at_load(setting: str) -> None:
    environ = {"AzureWebJobsStorage": "UseDevelopmentStorage=true",
               "DATAVERSE_URL": "https://contoso.crm.dynamics.com",
               "ENRICHMENT_URL": "https://enrich.example", "ENRICHMENT_API_KEY": "k",
               setting: "99 99 99 * * *"}
    with pytest.raises(ConfigError, match=f"{setting} \\(second field\\): 99 is outside"):
        Settings.from_env(environ)
    Settings.from_env({**environ, setting: "0 5/15 * * Jan-Mar Mon-Fri"})
