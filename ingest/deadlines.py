"""When an answer is due: durations counted in office hours, working days or calendar days.

A town promises "an answer within 3 working days" or "within 8 office hours", and its complaint
procedure "an answer within 45 days". ``Calendar`` knows which time counts: the office hours
(``office_hours`` in meldpunt.yaml), weekdays that are no public holiday (Belgian ones from the
``holidays`` package) and no closing day of the town. ``Calendar.due`` adds a ``Duration`` to the
moment a message arrived, skipping the time the clock was paused (a ticket waiting for the
citizen), and ``Calendar.counted`` says how much of a duration is used up, for warnings.

Day counts follow the usual rule for legal time limits: the day of arrival does not count, the
limit ends at midnight after its last day, and a limit in calendar days whose last day is not a
working day runs on to the end of the next working day.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays

from ingest.hours import WEEKDAYS, OfficeHours

Interval = tuple[datetime, datetime]

# The furthest a deadline may lie: beyond it the configuration is wrong (no office hours at all).
_HORIZON_DAYS = 3 * 366


class Unit(enum.StrEnum):
    OFFICE_HOURS = "office_hours"
    WORKING_DAYS = "working_days"
    CALENDAR_DAYS = "calendar_days"


_UNIT_WORDS = {
    "office_hour": Unit.OFFICE_HOURS,
    "office_hours": Unit.OFFICE_HOURS,
    "working_day": Unit.WORKING_DAYS,
    "working_days": Unit.WORKING_DAYS,
    "day": Unit.CALENDAR_DAYS,
    "days": Unit.CALENDAR_DAYS,
    "calendar_day": Unit.CALENDAR_DAYS,
    "calendar_days": Unit.CALENDAR_DAYS,
}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s+([a-z_ ]+?)\s*$")


@dataclass(frozen=True, slots=True)
class Duration:
    """An amount of counted time, written in meldpunt.yaml as e.g. ``3 working_days``."""

    amount: float
    unit: Unit

    @classmethod
    def parse(cls, text: str) -> Duration:
        m = _DURATION.match(text.lower())
        unit = _UNIT_WORDS.get(m.group(2).replace(" ", "_")) if m else None
        if m is None or unit is None:
            raise ValueError(
                f"'{text}' is not a duration like '8 office_hours', '3 working_days' or '45 days'"
            )
        amount = float(m.group(1))
        if amount <= 0:
            raise ValueError(f"'{text}': a duration must be more than zero")
        if unit is not Unit.OFFICE_HOURS and amount != int(amount):
            raise ValueError(f"'{text}': count days in whole days")
        return cls(amount, unit)

    def __str__(self) -> str:
        amount = int(self.amount) if self.amount == int(self.amount) else self.amount
        return f"{amount} {self.unit.value}"

    @property
    def seconds(self) -> float:
        per = 3600 if self.unit is Unit.OFFICE_HOURS else 86400
        return self.amount * per


class Calendar:
    """The town's counted time: office hours, working days, public holidays, closing days."""

    def __init__(
        self,
        office_hours: OfficeHours,
        timezone: str,
        *,
        country: str | None = "BE",
        closed_days: Sequence[str] = (),
    ) -> None:
        """``closed_days`` adds to the office hours' own: ISO dates, or ``MM-DD`` every year."""
        self.office_hours = office_hours
        self.zone = ZoneInfo(timezone)
        self.country = country
        self._dates = set(office_hours.closed_days) | {d for d in closed_days if len(d) == 10}
        self._yearly = {d for d in closed_days if len(d) == 5}
        # A limit in days depends only on the arrival day: counted once per day (intake asks for
        # every new ticket, and counting 30 days costs about 0.1 ms).
        self._by_day: dict[tuple[Duration, date], datetime] = {}

    def is_holiday(self, day: date) -> bool:
        """A public holiday or a closing day of the town."""
        if day.isoformat() in self._dates or day.strftime("%m-%d") in self._yearly:
            return True
        return self.country is not None and day in _public_holidays(self.country, day.year)

    def is_working_day(self, day: date) -> bool:
        return day.weekday() < 5 and not self.is_holiday(day)

    def due(self, start: datetime, duration: Duration, paused: Sequence[Interval] = ()) -> datetime:
        """When ``duration`` of counted time since ``start`` has passed, pauses left out."""
        origin = start
        if duration.unit is not Unit.OFFICE_HOURS:
            # The day of arrival does not count.
            origin = self._midnight(start.astimezone(self.zone).date() + timedelta(days=1))
        due = self._advance(origin, duration.seconds, duration.unit, paused)
        if duration.unit is Unit.CALENDAR_DAYS:
            last = (due - timedelta(seconds=1)).astimezone(self.zone).date()
            while not self.is_working_day(last):
                last += timedelta(days=1)
                due = self._midnight(last + timedelta(days=1))
        return due

    def deadline(
        self, start: datetime, duration: Duration, paused: Sequence[Interval] = ()
    ) -> datetime:
        """The last moment ``duration`` from ``start`` allows, in the town's zone: ``due``, less
        one second for a limit in days, so it reads as its last day ("woensdag 2 december")."""
        day_based = duration.unit is not Unit.OFFICE_HOURS
        key = (duration, start.astimezone(self.zone).date())
        if day_based and not paused and (cached := self._by_day.get(key)) is not None:
            return cached
        due = self.due(start, duration, paused)
        if day_based:
            due -= timedelta(seconds=1)
        due = due.astimezone(self.zone)
        if day_based and not paused:
            if len(self._by_day) > 4096:
                self._by_day.clear()
            self._by_day[key] = due
        return due

    def counted(
        self, start: datetime, end: datetime, unit: Unit, paused: Sequence[Interval] = ()
    ) -> float:
        """Seconds of counted time between ``start`` and ``end``, pauses left out."""
        if unit is not Unit.OFFICE_HOURS:
            start = max(start, self._midnight(start.astimezone(self.zone).date() + timedelta(1)))
        total = 0.0
        for a, b in self._spans(start, unit, paused):
            if a >= end:
                break
            total += (min(b, end) - a).total_seconds()
        return total

    def is_open(self, moment: datetime) -> bool:
        """Whether ``moment`` falls within office hours on a day that is no holiday."""
        local = moment.astimezone(self.zone)
        return not self.is_holiday(local.date()) and self.office_hours.is_open(local, self.zone.key)

    def next_open(self, moment: datetime) -> datetime | None:
        """The first moment at or after ``moment`` within office hours on a non-holiday, in the
        town's zone; ``moment`` itself while open, None when the office never opens."""
        for a, _ in self._spans(moment, Unit.OFFICE_HOURS, ()):
            return a.astimezone(self.zone)
        return None

    # --- internals ---------------------------------------------------------------------------

    def _midnight(self, day: date) -> datetime:
        return datetime.combine(day, time(0), self.zone)

    def _advance(
        self, start: datetime, seconds: float, unit: Unit, paused: Sequence[Interval]
    ) -> datetime:
        remaining = timedelta(seconds=seconds)
        for a, b in self._spans(start, unit, paused):
            if b - a >= remaining:
                return a + remaining
            remaining -= b - a
        raise ValueError(
            f"no counted time within {_HORIZON_DAYS} days: are office_hours all empty?"
        )

    def _spans(self, start: datetime, unit: Unit, paused: Sequence[Interval]) -> Iterator[Interval]:
        """The counted intervals from ``start`` on, in order, with the pauses cut out."""
        pauses = sorted(paused)
        day = start.astimezone(self.zone).date()
        for _ in range(_HORIZON_DAYS):
            for a, b in self._day_spans(day, unit):
                a = max(a, start)
                if a >= b:
                    continue
                yield from _cut(a, b, pauses)
            day += timedelta(days=1)

    def _day_spans(self, day: date, unit: Unit) -> list[Interval]:
        if unit is Unit.CALENDAR_DAYS or (unit is Unit.WORKING_DAYS and self.is_working_day(day)):
            return [(self._midnight(day), self._midnight(day + timedelta(days=1)))]
        if unit is Unit.WORKING_DAYS or self.is_holiday(day):
            return []
        spans = getattr(self.office_hours, WEEKDAYS[day.weekday()])
        return [
            (datetime.combine(day, s.start, self.zone), datetime.combine(day, s.end, self.zone))
            for s in sorted(spans, key=lambda s: s.start)  # written in any order in the config
        ]


def _cut(a: datetime, b: datetime, pauses: Sequence[Interval]) -> Iterator[Interval]:
    """``[a, b)`` without the (sorted) pauses."""
    for p, q in pauses:
        if q <= a or p >= b:
            continue
        if p > a:
            yield a, p
        a = max(a, q)
        if a >= b:
            return
    if a < b:
        yield a, b


@lru_cache(maxsize=64)
def _public_holidays(country: str, year: int) -> frozenset[date]:
    return frozenset(holidays.country_holidays(country, years=year))
