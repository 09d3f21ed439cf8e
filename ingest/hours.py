"""The town's office hours (``office_hours`` in meldpunt.yaml) and whether they are open now.

It lives in ingest/ beside the deadline calendar, so connectors can ask the question (the phone
line dials the front desk only while it is staffed) without importing the wiring package.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time
from typing import Annotated
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_SPAN = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TimeSpan(_Strict):
    start: time
    end: time


def _parse_spans(value: object) -> object:
    if not isinstance(value, list):
        return value
    spans: list[object] = []
    for item in value:
        if isinstance(item, str):
            m = _SPAN.match(item.strip())
            if not m:
                raise ValueError(f"'{item}' is not a time span like '08:30-12:00'")
            start = time(int(m.group(1)), int(m.group(2)))
            end_h, end_m = int(m.group(3)), int(m.group(4))
            end = time(23, 59, 59) if end_h == 24 else time(end_h, end_m)
            if end <= start:
                raise ValueError(f"'{item}' ends before it starts")
            spans.append({"start": start, "end": end})
        else:
            spans.append(item)
    return spans


Spans = Annotated[list[TimeSpan], Field(default_factory=list)]


class OfficeHours(_Strict):
    monday: Spans
    tuesday: Spans
    wednesday: Spans
    thursday: Spans
    friday: Spans
    saturday: Spans
    sunday: Spans
    closed_days: list[str] = Field(default_factory=list)

    @field_validator(*WEEKDAYS, mode="before")
    @classmethod
    def _spans(cls, value: object) -> object:
        return _parse_spans(value)

    @field_validator("closed_days")
    @classmethod
    def _dates(cls, value: list[str]) -> list[str]:
        for day in value:
            try:
                date.fromisoformat(day)
            except ValueError:
                raise ValueError(f"'{day}' is not a date like '2026-12-24'") from None
        return value

    def is_open(self, moment: datetime, timezone: str) -> bool:
        """Whether ``moment`` (aware) falls within the office hours, read in the town's zone."""
        local = moment.astimezone(ZoneInfo(timezone))
        if local.date().isoformat() in self.closed_days:
            return False
        spans: list[TimeSpan] = getattr(self, WEEKDAYS[local.weekday()])
        now = local.time().replace(tzinfo=None)
        return any(span.start <= now < span.end for span in spans)

    def schedule(self) -> list[tuple[str, list[str]]]:
        """Each weekday with its spans written as in meldpunt.yaml ("08:30-12:00", "…-24:00")."""

        def clock(moment: time) -> str:
            return "24:00" if moment == time(23, 59, 59) else moment.strftime("%H:%M")

        return [
            (day, [f"{clock(s.start)}-{clock(s.end)}" for s in getattr(self, day)])
            for day in WEEKDAYS
        ]
