"""Statistics for staff and integrators over the tickets created in a period (GET /stats).

Counts are aggregated in SQL. Percentiles of response times are computed here from the selected
durations, because SQLite has no percentile function; a town's volume makes that cheap.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from inbox.auth import Staff
from inbox.errors import BadRequestError, ForbiddenError
from inbox.schemas import (
    Stats,
    StatsCount,
    StatsDeadlines,
    StatsDurations,
    StatsPeriod,
    StatsResponseTimes,
    StatsSatisfaction,
    StatsTransfers,
)
from inbox.tickets import overdue_clause
from ingest.model import Kind
from store.models import Ticket, TicketEvent

DEFAULT_PERIOD = timedelta(days=30)
# Compliments are closed the moment they arrive: their zero seconds would pull the response
# times towards a speed nobody delivered.
NOT_TIMED = (Kind.COMPLIMENT,)
SCORES = range(1, 6)
TRANSFERRED = "transferred"


@dataclass(frozen=True, slots=True)
class StatsQuery:
    """Which tickets to count: created in [start, end); an empty collection means no filter."""

    start: datetime
    end: datetime
    departments: Collection[str] = ()
    channels: Collection[str] = ()
    kinds: Collection[str] = ()


# The period


def _invalid(parameter: str, message: str) -> BadRequestError:
    return BadRequestError("invalid_parameter", message, {"parameter": parameter})


def _moment(parameter: str, text: str) -> datetime:
    """A date (midnight UTC) or a date-time with an offset."""
    text = text.strip()
    try:
        return datetime.combine(date.fromisoformat(text), time(), tzinfo=UTC)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _invalid(
            parameter,
            f"{parameter} '{text}' is not a date such as 2026-11-01 or a date-time with an "
            "offset such as 2026-11-01T08:00:00Z",
        ) from None
    if moment.tzinfo is None:
        raise _invalid(
            parameter,
            f"{parameter} '{text}' has a time but no offset: add Z for UTC, or +01:00 "
            "(written %2B01:00 in a URL)",
        )
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise _invalid(parameter, f"{parameter} '{text}' lies outside the calendar") from None


def parse_period(start: str | None, end: str | None, now: datetime) -> tuple[datetime, datetime]:
    """The period the ``from`` and ``to`` parameters ask for; by default the last 30 days.

    Raises:
        BadRequestError: a value does not parse, or ``from`` is not before ``to``.
    """
    until = _moment("to", end) if end is not None else now
    try:
        since = _moment("from", start) if start is not None else until - DEFAULT_PERIOD
    except OverflowError:
        raise _invalid("to", "to lies too early for a period of 30 days before it") from None
    if since >= until:
        raise _invalid(
            "from",
            f"from ({since.isoformat()}) must be before to ({until.isoformat()}"
            f"{'' if end is not None else ', now'}); to is not included, so one day is "
            "from=2026-11-02&to=2026-11-03",
        )
    return since, until


# Scope


def _scope(staff: Staff, asked: Collection[str]) -> list[str] | None:
    """The departments to count, or None for all of them.

    Raises:
        ForbiddenError: an agent asked for a department outside their own.
    """
    if staff.sees_all:
        return sorted(asked) or None
    outside = sorted(set(asked) - staff.departments)
    if outside:
        yours = sorted(staff.departments)
        raise ForbiddenError(
            "forbidden",
            f"you may only see statistics of your own departments "
            f"({', '.join(yours) or 'none'}), not of {', '.join(outside)}",
            {"departments": outside, "yours": yours},
        )
    return sorted(asked or staff.departments)


def _selection(staff: Staff, query: StatsQuery) -> list[sa.ColumnElement[bool]]:
    conditions = [
        col(Ticket.created_at) >= query.start,
        col(Ticket.created_at) < query.end,
    ]
    departments = _scope(staff, query.departments)
    if departments is not None:
        # An agent without departments gets an empty list here, and so counts nothing.
        conditions.append(col(Ticket.department).in_(departments))
    for column, values in ((Ticket.origin_channel, query.channels), (Ticket.kind, query.kinds)):
        if values:
            conditions.append(col(column).in_(sorted(values)))
    return conditions


# Computation


def _count_where(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
    return sa.func.count(sa.case((condition, 1)))


def _ranked(counts: Counter[str]) -> list[StatsCount]:
    """Most first, then by key, so equal counts come out in a stable order."""
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [StatsCount(key=key, count=count) for key, count in ordered]


def _weeks(created: Iterable[datetime]) -> list[StatsCount]:
    """Tickets per ISO week, oldest first, with the empty weeks between the first and last."""
    days = (moment.astimezone(UTC).date() for moment in created)
    per_monday = Counter(day - timedelta(days=day.weekday()) for day in days)
    if not per_monday:
        return []
    weeks = []
    monday, last = min(per_monday), max(per_monday)
    while monday <= last:
        year, week, _ = monday.isocalendar()
        weeks.append(StatsCount(key=f"{year}-W{week:02d}", count=per_monday[monday]))
        monday += timedelta(weeks=1)
    return weeks


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """Interpolated between the nearest ranks, as PostgreSQL's ``percentile_cont`` does.

    Args:
        ordered: the values, sorted, at least one.
        fraction: 0.5 for the median, 0.9 for the 90th percentile.
    """
    position = (len(ordered) - 1) * fraction
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _durations(seconds: Iterable[float]) -> StatsDurations:
    ordered = sorted(seconds)
    if not ordered:
        return StatsDurations(count=0, median_seconds=None, p90_seconds=None)
    return StatsDurations(
        count=len(ordered),
        median_seconds=round(percentile(ordered, 0.5)),
        p90_seconds=round(percentile(ordered, 0.9)),
    )


async def ticket_stats(
    session: AsyncSession, staff: Staff, query: StatsQuery, now: datetime
) -> Stats:
    """Statistics over the tickets of ``query`` that ``staff`` may see, as of ``now``.

    Raises:
        ForbiddenError: an agent asked for a department outside their own.
    """
    selected = _selection(staff, query)

    breakdown = (
        await session.execute(
            sa.select(
                col(Ticket.origin_channel),
                col(Ticket.kind),
                col(Ticket.department),
                col(Ticket.status),
                sa.func.count(),
            )
            .where(*selected)
            .group_by(
                col(Ticket.origin_channel),
                col(Ticket.kind),
                col(Ticket.department),
                col(Ticket.status),
            )
        )
    ).all()
    by_channel: Counter[str] = Counter()
    by_kind: Counter[str] = Counter()
    by_department: Counter[str] = Counter()
    by_status: Counter[str] = Counter()
    for channel, kind, department, status, count in breakdown:
        by_channel[channel] += count
        by_kind[kind] += count
        by_department[department] += count
        by_status[status] += count

    answered_at, answer_due = col(Ticket.first_answered_at), col(Ticket.first_answer_due)
    unanswered_past_due = sa.and_(answered_at.is_(None), answer_due < now)
    score = col(Ticket.satisfaction)
    totals = (
        await session.execute(
            sa.select(
                _count_where(sa.or_(answered_at > answer_due, unanswered_past_due)),
                # The same test as the ticket list's overdue filter: a pending ticket's clock
                # stands still, so it is not overdue.
                _count_where(overdue_clause(now)),
                _count_where(col(Ticket.escalated_at).is_not(None)),
                sa.func.count(col(Ticket.survey_state)),
                sa.func.count(score),
                sa.func.avg(score),
                *(_count_where(score == n) for n in SCORES),
            ).where(*selected)
        )
    ).one()
    missed, overdue, escalated, asked, answered, average, *distribution = totals

    timed = (
        await session.execute(
            sa.select(
                col(Ticket.kind),
                col(Ticket.created_at),
                col(Ticket.first_answered_at),
                col(Ticket.resolved_at),
            ).where(*selected)
        )
    ).all()
    first_answers = [
        (answered - created).total_seconds()
        for kind, created, answered, _ in timed
        if answered is not None and kind not in NOT_TIMED
    ]
    resolutions = [
        (resolved - created).total_seconds()
        for kind, created, _, resolved in timed
        if resolved is not None and kind not in NOT_TIMED
    ]

    transfers, transferred_tickets = (
        await session.execute(
            sa.select(sa.func.count(), sa.func.count(sa.distinct(col(TicketEvent.ticket_id))))
            .where(col(TicketEvent.type) == TRANSFERRED)
            .where(col(TicketEvent.ticket_id).in_(sa.select(col(Ticket.id)).where(*selected)))
        )
    ).one()

    return Stats(
        period=StatsPeriod(start=query.start, end=query.end),
        total=sum(by_status.values()),
        by_channel=_ranked(by_channel),
        by_kind=_ranked(by_kind),
        by_department=_ranked(by_department),
        by_status=_ranked(by_status),
        by_week=_weeks(created for _, created, _, _ in timed),
        response_times=StatsResponseTimes(
            first_answer=_durations(first_answers), resolution=_durations(resolutions)
        ),
        deadlines=StatsDeadlines(
            first_answer_missed=missed, overdue_now=overdue, escalated=escalated
        ),
        satisfaction=StatsSatisfaction(
            asked=asked,
            answered=answered,
            # PostgreSQL's avg of integers is a Decimal.
            average=None if average is None else round(float(average), 2),
            distribution={str(n): count for n, count in zip(SCORES, distribution, strict=True)},
        ),
        transfers=StatsTransfers(count=transfers, tickets=transferred_tickets),
    )
