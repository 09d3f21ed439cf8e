"""Office hours: open or not at a moment, read in the town's time zone."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from ingest.deadlines import Calendar
from ingest.hours import OfficeHours

HOURS = OfficeHours.model_validate(
    {
        "monday": ["08:30-12:00", "13:30-16:30"],
        "saturday": ["09:00-24:00"],
        "closed_days": ["2026-12-24"],
    }
)
ZONE = "Europe/Brussels"


@pytest.mark.parametrize(
    ("moment", "is_open"),
    [
        (datetime(2026, 11, 16, 7, 30, tzinfo=UTC), True),  # Monday 08:30 in Brussels (UTC+1)
        (datetime(2026, 11, 16, 7, 29, tzinfo=UTC), False),
        (datetime(2026, 11, 16, 11, 0, tzinfo=UTC), False),  # 12:00: the span's end is out
        (datetime(2026, 11, 16, 12, 30, tzinfo=UTC), True),
        # Summer time (UTC+2): 08:30 in Brussels is 06:30 UTC.
        (datetime(2026, 6, 15, 6, 30, tzinfo=UTC), True),
        (datetime(2026, 11, 17, 9, 0, tzinfo=UTC), False),  # Tuesday: no hours given
        (datetime(2026, 11, 21, 22, 30, tzinfo=UTC), True),  # Saturday 23:30, open to 24:00
        (datetime(2026, 12, 21, 9, 0, tzinfo=UTC), True),
        (datetime(2026, 12, 24, 9, 0, tzinfo=UTC), False),  # a closed day (a Thursday)
    ],
)
def test_open_is_read_in_the_towns_time_zone(moment: datetime, is_open: bool) -> None:
    assert HOURS.is_open(moment, ZONE) is is_open


def test_a_closed_day_must_be_a_date() -> None:
    with pytest.raises(ValidationError, match="'24/12' is not a date"):
        OfficeHours.model_validate({"closed_days": ["24/12"]})


WEEK = OfficeHours.model_validate(
    {
        "monday": ["13:30-16:30", "08:30-12:00"],  # out of order on purpose
        "tuesday": ["08:30-12:00"],
        "friday": ["08:30-12:00"],
        "saturday": ["09:00-11:30"],
        "closed_days": ["2026-11-17", "2026-12-25"],
    }
)


def brussels(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(ZONE))


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        # Open now: that moment itself.
        (brussels("2026-11-16T09:00"), brussels("2026-11-16T09:00")),
        # Before the first span, over the lunch break, after the last one.
        (brussels("2026-11-16T07:00"), brussels("2026-11-16T08:30")),
        (brussels("2026-11-16T12:00"), brussels("2026-11-16T13:30")),
        # Monday evening: Tuesday 17 November is a closing day, Wednesday and Thursday have no
        # hours, so Friday morning.
        (brussels("2026-11-16T16:30"), brussels("2026-11-20T08:30")),
        # Across the weekend: Saturday after closing, then Sunday, to Monday morning.
        (brussels("2026-11-21T11:30"), brussels("2026-11-23T08:30")),
        (brussels("2026-11-22T15:00"), brussels("2026-11-23T08:30")),
        # Christmas on a Friday is closed: Saturday morning instead.
        (brussels("2026-12-24T18:00"), brussels("2026-12-26T09:00")),
        # Read in the town's zone whatever zone the moment is given in (UTC+1 in November).
        (datetime(2026, 11, 22, 23, 0, tzinfo=UTC), brussels("2026-11-23T08:30")),
    ],
)
def test_next_open_skips_closing_days_and_the_weekend(moment: datetime, expected: datetime) -> None:
    found = Calendar(WEEK, ZONE, country=None).next_open(moment)
    assert found == expected
    assert found is not None and found.utcoffset() == expected.utcoffset()
    assert WEEK.is_open(found, ZONE)


def test_next_open_crosses_into_summer_time() -> None:
    # Saturday 28 March 2026 evening (UTC+1) to Monday 30 March 08:30 (UTC+2).
    found = Calendar(WEEK, ZONE, country=None).next_open(datetime(2026, 3, 28, 18, 0, tzinfo=UTC))
    assert found is not None
    assert found.astimezone(UTC) == datetime(2026, 3, 30, 6, 30, tzinfo=UTC)


def test_without_any_hours_it_never_opens() -> None:
    never = OfficeHours.model_validate({"closed_days": ["2026-11-16"]})
    assert (
        Calendar(never, ZONE, country=None).next_open(datetime(2026, 11, 16, 9, 0, tzinfo=UTC))
        is None
    )
    only_closed = OfficeHours.model_validate(
        {"monday": ["08:00-09:00"], "closed_days": ["2026-11-16", "2026-11-23"]}
    )
    found = Calendar(only_closed, ZONE, country=None).next_open(brussels("2026-11-16T07:00"))
    assert found == brussels("2026-11-30T08:00")


def test_the_schedule_is_written_as_in_the_configuration() -> None:
    schedule = dict(HOURS.schedule())
    assert list(schedule) == [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ]
    assert schedule["monday"] == ["08:30-12:00", "13:30-16:30"]
    assert schedule["saturday"] == ["09:00-24:00"]
    assert schedule["sunday"] == []
