"""Office hours: open or not at a moment, read in the town's time zone."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from meldpunt.hours import OfficeHours

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
