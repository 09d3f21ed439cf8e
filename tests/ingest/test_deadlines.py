"""Deadlines across weekends, Belgian public holidays, closing days and pauses."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from ingest.deadlines import Calendar, Duration, Unit
from ingest.hours import OfficeHours

BRUSSELS = ZoneInfo("Europe/Brussels")
HOURS = OfficeHours.model_validate(
    {
        "monday": ["08:30-12:00", "13:30-16:30"],
        "tuesday": ["08:30-12:00", "13:30-16:30"],
        "wednesday": ["08:30-12:00", "13:30-19:00"],
        "thursday": ["08:30-12:00", "13:30-16:30"],
        "friday": ["08:30-12:00"],
        "saturday": ["09:00-11:30"],
        "closed_days": ["2026-12-24"],
    }
)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=BRUSSELS)


@pytest.fixture
def town() -> Calendar:
    return Calendar(HOURS, "Europe/Brussels", closed_days=["07-11", "12-26"])


@pytest.mark.parametrize(
    ("start", "duration", "due"),
    [
        # Office hours: a Friday-morning question runs over the weekend's Saturday morning.
        ("2026-11-27 11:00", "2 office_hours", "2026-11-28 10:00"),
        ("2026-11-27 11:00", "4 office_hours", "2026-11-30 09:00"),
        # Arrived at night: counting starts when the office opens.
        ("2026-11-30 22:00", "1 office_hours", "2026-12-01 09:30"),
        # The lunch break does not count.
        ("2026-12-02 11:30", "1 office_hours", "2026-12-02 14:00"),
        # Christmas Eve is a closing day, Christmas a public holiday, 26 December closed yearly.
        ("2026-12-23 19:30", "1 office_hours", "2026-12-28 09:30"),
        # Working days: the day of arrival does not count; the weekend does not either.
        ("2026-11-27 10:00", "3 working_days", "2026-12-03 00:00"),
        ("2026-11-30 15:00", "1 working_days", "2026-12-02 00:00"),
        # Easter Monday 2027 (29 March) is a Belgian public holiday.
        ("2027-03-26 09:00", "1 working_days", "2027-03-31 00:00"),
        # Ascension (6 May 2027) and 11 July (the town's own closing day, a Sunday here).
        ("2027-05-05 09:00", "1 working_days", "2027-05-08 00:00"),
        # Calendar days count weekends, but a last day on a Sunday runs on to Monday's end.
        ("2026-11-27 10:00", "2 days", "2026-12-01 00:00"),
        ("2026-11-27 10:00", "2 calendar_days", "2026-12-01 00:00"),
        ("2026-11-24 10:00", "2 days", "2026-11-27 00:00"),
        ("2026-11-26 10:00", "3 days", "2026-12-01 00:00"),
        # 45 days for a complaint, ending on 11 November (Armistice) → 12 November.
        ("2026-09-27 10:00", "45 days", "2026-11-13 00:00"),
    ],
)
def test_a_deadline_skips_time_that_does_not_count(
    town: Calendar, start: str, duration: str, due: str
) -> None:
    assert town.due(at(start), Duration.parse(duration)) == at(due)


def test_a_paused_clock_moves_the_deadline_by_the_counted_time_it_was_paused(
    town: Calendar,
) -> None:
    start = at("2026-11-30 09:00")  # Monday
    eight = Duration.parse("8 office_hours")
    plain = town.due(start, eight)
    assert plain == at("2026-12-01 10:30")
    # Pending from Monday 11:00 to Tuesday 09:00: only Monday 09:00-11:00 counted so far, so
    # the remaining 6 hours are Tuesday 09:00-12:00 and 13:30-16:30.
    paused = [(at("2026-11-30 11:00"), at("2026-12-01 09:00"))]
    assert town.counted(start, at("2026-12-01 09:00"), Unit.OFFICE_HOURS, paused) == 2 * 3600
    assert town.due(start, eight, paused) == at("2026-12-01 16:30")
    # A pause still open at the deadline pushes it past the pause's end.
    assert town.due(start, eight, [(at("2026-11-30 11:00"), at("2026-12-09 08:00"))]) > at(
        "2026-12-09 08:00"
    )


def test_counted_time_measures_how_much_of_a_deadline_is_used(town: Calendar) -> None:
    start = at("2026-11-27 10:00")  # Friday
    used = town.counted(start, at("2026-12-01 12:00"), Unit.WORKING_DAYS)
    assert used == 86400 + 12 * 3600  # Monday whole, Tuesday until noon
    assert town.counted(start, at("2026-11-27 11:00"), Unit.OFFICE_HOURS) == 3600


def test_next_opening_skips_holidays(town: Calendar) -> None:
    assert town.next_open(at("2026-12-24 10:00")) == at("2026-12-28 08:30")
    assert town.next_open(at("2026-11-30 10:00")) == at("2026-11-30 10:00")


def test_a_calendar_without_a_country_has_only_the_towns_closing_days() -> None:
    plain = Calendar(HOURS, "Europe/Brussels", country=None)
    assert plain.is_working_day(at("2026-12-25 10:00").date())


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("3 weeks", "is not a duration"),
        ("three days", "is not a duration"),
        ("0 days", "more than zero"),
        ("1.5 working_days", "whole days"),
    ],
)
def test_a_wrong_duration_says_how_to_write_it(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        Duration.parse(text)


def test_a_town_without_office_hours_gets_a_clear_error() -> None:
    closed = Calendar(OfficeHours.model_validate({}), "Europe/Brussels")
    with pytest.raises(ValueError, match="office_hours"):
        closed.due(at("2026-11-30 10:00"), Duration.parse("1 office_hours"))
