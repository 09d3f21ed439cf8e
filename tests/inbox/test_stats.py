"""GET /api/v1/stats as staff and integrators use it: counts, times, deadlines, scope, errors.

Every test runs on SQLite and on PostgreSQL (the ``database`` fixture).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import col

from inbox.stats import percentile
from store.db import Database
from store.models import Ticket, utcnow
from tests.inbox.conftest import Api, MakeTicket, Seeded

# A period of two ISO weeks: 2026-W45 (2 to 8 November) and 2026-W46 (9 to 15 November).
PERIOD = {"from": "2026-11-02", "to": "2026-11-16"}


def at(day: int, hour: int = 12, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


async def update(database: Database, ticket: Seeded, **values: Any) -> None:
    async with database.session() as session:
        await session.execute(
            sa.update(Ticket).where(col(Ticket.id) == ticket.ticket_id).values(**values)
        )


def counts(items: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [(item["key"], item["count"]) for item in items]


async def stats(api: Api, who: str = "admin", **params: Any) -> dict[str, Any]:
    status, body = await api.get("/stats", who, params=params)
    assert status == 200, body
    return body  # type: ignore[no-any-return]


# Counts


async def test_counts_only_tickets_created_in_the_period(api: Api, make_ticket: MakeTicket) -> None:
    # Just outside the period on either side: 'from' is included, 'to' is not.
    await make_ticket(created_at=at(1, 23, 59), channel="email")
    await make_ticket(created_at=at(16, 0, 0), channel="email")
    # Week 45.
    await make_ticket(created_at=at(2, 0, 0), channel="sms", kind="report")
    await make_ticket(created_at=at(3), channel="email", kind="question", department="environment")
    await make_ticket(created_at=at(4), channel="whatsapp", kind="suggestion", status="open")
    # Week 46; a compliment is closed the moment it arrives and still counts.
    await make_ticket(
        created_at=at(10), channel="webform", kind="compliment", status="closed",
        department="environment",
    )  # fmt: skip
    await make_ticket(created_at=at(12), channel="email", kind="report", status="resolved")
    await make_ticket(
        created_at=at(15, 23, 59), channel="sms", kind="complaint", department="front-desk"
    )

    body = await stats(api, **PERIOD)

    assert body["period"] == {
        "from": "2026-11-02T00:00:00+00:00",
        "to": "2026-11-16T00:00:00+00:00",
    }
    assert body["total"] == 6
    # Most first; equal counts by key.
    assert counts(body["by_channel"]) == [("email", 2), ("sms", 2), ("webform", 1), ("whatsapp", 1)]
    assert counts(body["by_kind"]) == [
        ("report", 2), ("complaint", 1), ("compliment", 1), ("question", 1), ("suggestion", 1),
    ]  # fmt: skip
    assert counts(body["by_department"]) == [
        ("technical", 3), ("environment", 2), ("front-desk", 1),
    ]  # fmt: skip
    assert counts(body["by_status"]) == [("new", 3), ("closed", 1), ("open", 1), ("resolved", 1)]
    assert counts(body["by_week"]) == [("2026-W45", 3), ("2026-W46", 3)]


async def test_weeks_without_tickets_are_listed_between_busy_weeks(
    api: Api, make_ticket: MakeTicket
) -> None:
    await make_ticket(created_at=at(3))
    await make_ticket(created_at=at(18))
    await make_ticket(created_at=at(19))
    body = await stats(api, **{"from": "2026-10-01", "to": "2027-01-01"})
    assert counts(body["by_week"]) == [("2026-W45", 1), ("2026-W46", 0), ("2026-W47", 2)]


async def test_iso_weeks_cross_the_year_boundary(api: Api, make_ticket: MakeTicket) -> None:
    # 3 January 2027 is a Sunday and still in 2026's week 53.
    await make_ticket(created_at=datetime(2027, 1, 3, 10, tzinfo=UTC))
    await make_ticket(created_at=datetime(2027, 1, 4, 10, tzinfo=UTC))
    body = await stats(api, **{"from": "2026-12-01", "to": "2027-02-01"})
    assert counts(body["by_week"]) == [("2026-W53", 1), ("2027-W01", 1)]


async def test_filters_by_channel_kind_and_department(api: Api, make_ticket: MakeTicket) -> None:
    await make_ticket(created_at=at(3), channel="sms", kind="report")
    await make_ticket(created_at=at(4), channel="sms", kind="question")
    await make_ticket(created_at=at(5), channel="sms", kind="complaint")
    await make_ticket(created_at=at(6), channel="email", kind="report")
    await make_ticket(created_at=at(7), channel="sms", kind="report", department="environment")

    # Repeated and comma-separated values both work, as on GET /tickets.
    body = await stats(
        api, **PERIOD, channel="sms", kind=["report", "question"], department="technical"
    )
    assert body["total"] == 2
    assert counts(body["by_kind"]) == [("question", 1), ("report", 1)]

    body = await stats(api, **PERIOD, department="technical,environment", kind="report")
    assert counts(body["by_department"]) == [("technical", 2), ("environment", 1)]


async def test_default_period_is_the_last_30_days(api: Api, make_ticket: MakeTicket) -> None:
    await make_ticket(created_at=utcnow() - timedelta(days=31))
    await make_ticket(created_at=utcnow() - timedelta(days=29))
    await make_ticket(created_at=utcnow() - timedelta(minutes=1))
    before = utcnow()
    body = await stats(api)
    assert body["total"] == 2
    start = datetime.fromisoformat(body["period"]["from"])
    end = datetime.fromisoformat(body["period"]["to"])
    assert end - start == timedelta(days=30)
    assert before <= end <= utcnow()


async def test_a_date_time_with_an_offset_is_a_moment(api: Api, make_ticket: MakeTicket) -> None:
    # Midnight in Brussels on 2 November is 23:00 UTC on the 1st.
    await make_ticket(created_at=at(1, 23, 30))
    await make_ticket(created_at=at(1, 22, 30))
    body = await stats(api, **{"from": "2026-11-02T00:00:00+01:00", "to": "2026-11-03T00:00:00Z"})
    assert body["total"] == 1
    assert body["period"]["from"] == "2026-11-01T23:00:00+00:00"


async def test_nothing_in_the_period(api: Api, make_ticket: MakeTicket) -> None:
    await make_ticket(created_at=at(20))
    body = await stats(api, **PERIOD)
    assert body["total"] == 0
    for key in ("by_channel", "by_kind", "by_department", "by_status", "by_week"):
        assert body[key] == []
    assert body["response_times"] == {
        "first_answer": {"count": 0, "median_seconds": None, "p90_seconds": None},
        "resolution": {"count": 0, "median_seconds": None, "p90_seconds": None},
    }
    assert body["deadlines"] == {"first_answer_missed": 0, "overdue_now": 0, "escalated": 0}
    assert body["satisfaction"] == {
        "asked": 0,
        "answered": 0,
        "average": None,
        "distribution": {"1": 0, "2": 0, "3": 0, "4": 0, "5": 0},
    }
    assert body["transfers"] == {"count": 0, "tickets": 0}


# Response times


def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([7.0], 0.9) == 7.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0, 10.0], 0.9) == pytest.approx(7.6)


async def test_response_times_median_and_90th_percentile(
    api: Api, make_ticket: MakeTicket, database: Database
) -> None:
    hour = timedelta(hours=1)
    for n, hours in enumerate((4, 1, 10, 3, 2)):
        ticket = await make_ticket(created_at=at(3 + n))
        await update(database, ticket, first_answered_at=at(3 + n) + hours * hour)
    for n, days in enumerate((1, 3)):
        ticket = await make_ticket(created_at=at(9 + n), status="resolved")
        await update(
            database,
            ticket,
            first_answered_at=at(9 + n) + 6 * hour,
            resolved_at=at(9 + n) + timedelta(days=days),
        )
    # Closed as it arrived: left out of both, or it would pull the times towards zero.
    compliment = await make_ticket(created_at=at(12), kind="compliment", status="closed")
    await update(database, compliment, first_answered_at=at(12), resolved_at=at(12))
    # Not answered yet: not measured.
    await make_ticket(created_at=at(13))

    body = await stats(api, **PERIOD)

    # First answers 1, 2, 3, 4, 6, 6, 10 hours: median 4 h; p90 at rank 5.4 = 6 h + 0.4 × 4 h.
    assert body["response_times"]["first_answer"] == {
        "count": 7,
        "median_seconds": 4 * 3600,
        "p90_seconds": round(7.6 * 3600),
    }
    # Resolutions 1 and 3 days: median 2 days; p90 1 day + 0.9 × 2 days.
    assert body["response_times"]["resolution"] == {
        "count": 2,
        "median_seconds": 2 * 86400,
        "p90_seconds": round(2.8 * 86400),
    }
    assert body["total"] == 9

    body = await stats(api, **PERIOD, kind="compliment")
    assert body["response_times"]["resolution"]["median_seconds"] is None


# Deadlines


async def test_deadlines_missed_overdue_and_escalated(
    api: Api, make_ticket: MakeTicket, database: Database
) -> None:
    now = utcnow()
    created = now - timedelta(days=5)
    past, future = now - timedelta(days=1), now + timedelta(days=1)

    async def ticket(status: str = "open", **values: Any) -> None:
        seeded = await make_ticket(created_at=created, status=status)
        if values:
            await update(database, seeded, **values)

    # Answered late, then escalated: missed.
    await ticket(
        first_answer_due=past, first_answered_at=now - timedelta(hours=1), escalated_at=past
    )
    # Answered in time, resolution not yet due: nothing.
    await ticket(
        first_answer_due=past, first_answered_at=past - timedelta(hours=1), resolution_due=future
    )
    # Never answered and past due, escalated: missed and overdue.
    await ticket(first_answer_due=past, escalated_at=now)
    # Not answered, not due yet: nothing.
    await ticket(status="new", first_answer_due=future)
    # Answered in time but not resolved by its deadline: overdue.
    await ticket(first_answer_due=past, first_answered_at=created, resolution_due=past)
    # The same, waiting for the citizen: the clock stands still, so not overdue.
    await ticket(
        status="pending", first_answer_due=past, first_answered_at=created, resolution_due=past
    )
    # Resolved after its resolution deadline: late, but no longer overdue.
    await ticket(
        status="resolved", first_answer_due=past, first_answered_at=created,
        resolution_due=past - timedelta(hours=1), resolved_at=past,
    )  # fmt: skip
    # Closed without an answer after the deadline: missed, not overdue.
    await ticket(status="closed", first_answer_due=past, resolved_at=now)
    # No deadlines at all.
    await ticket()

    body = await stats(api)
    assert body["total"] == 9
    assert body["deadlines"] == {"first_answer_missed": 3, "overdue_now": 2, "escalated": 2}


# Satisfaction


async def test_satisfaction_average_and_distribution(
    api: Api, make_ticket: MakeTicket, database: Database
) -> None:
    for score in (5, 4, 4, 2, 1, 1):
        ticket = await make_ticket(created_at=at(4), status="closed")
        await update(database, ticket, survey_state="answered", satisfaction=score)
    asked = await make_ticket(created_at=at(5), status="closed")
    await update(database, asked, survey_state="asked")
    await make_ticket(created_at=at(6), status="closed")

    body = await stats(api, **PERIOD)
    assert body["satisfaction"] == {
        "asked": 7,
        "answered": 6,
        # 17 / 6 = 2.8333…
        "average": 2.83,
        "distribution": {"1": 2, "2": 1, "3": 0, "4": 2, "5": 1},
    }


# Transfers


async def test_transfers_count_moves_and_tickets_moved(api: Api, make_ticket: MakeTicket) -> None:
    recent = utcnow() - timedelta(days=1)
    twice = await make_ticket(created_at=recent, department="front-desk")
    once = await make_ticket(created_at=recent, department="front-desk")
    await make_ticket(created_at=recent, department="front-desk")
    # Created before the period: its transfer does not count.
    old = await make_ticket(created_at=utcnow() - timedelta(days=60), department="front-desk")
    for ticket, department in (
        (twice, "technical"),
        (twice, "environment"),
        (once, "technical"),
        (old, "technical"),
    ):
        status, _ = await api.post(
            f"/tickets/{ticket.reference}/transfer",
            {"department": department, "reason": "hoort daar"},
        )
        assert status == 200

    body = await stats(api)
    assert body["total"] == 3
    assert body["transfers"] == {"count": 3, "tickets": 2}
    # Departments are where the tickets are now.
    assert counts(body["by_department"]) == [
        ("environment", 1), ("front-desk", 1), ("technical", 1),
    ]  # fmt: skip


# Department scope


async def test_agent_gets_statistics_of_own_departments_only(
    api: Api, make_ticket: MakeTicket
) -> None:
    await make_ticket(created_at=at(3), department="technical")
    await make_ticket(created_at=at(4), department="technical")
    await make_ticket(created_at=at(5), department="environment")
    await make_ticket(created_at=at(6), department="front-desk")

    body = await stats(api, "agent", **PERIOD)
    assert body["total"] == 2
    assert counts(body["by_department"]) == [("technical", 2)]
    body = await stats(api, "agent", **PERIOD, department="technical")
    assert body["total"] == 2

    for who in ("admin", "operator"):
        assert (await stats(api, who, **PERIOD))["total"] == 4


async def test_agent_asking_for_another_department_gets_403(
    api: Api, make_ticket: MakeTicket
) -> None:
    await make_ticket(created_at=at(3), department="environment")
    status, body = await api.get(
        "/stats", "agent", params={**PERIOD, "department": "technical,environment"}
    )
    assert status == 403
    assert body["error"]["code"] == "forbidden"
    assert "environment" in body["error"]["message"]
    assert body["error"]["details"] == {"departments": ["environment"], "yours": ["technical"]}


# Bad parameters


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"from": "gisteren"}, "from"),
        ({"to": "2026-13-01"}, "to"),
        ({"from": ""}, "from"),
        # A time without an offset is ambiguous.
        ({"from": "2026-11-02T08:00:00"}, "from"),
        ({"from": "2026-11-10", "to": "2026-11-02"}, "from"),
        # 'to' is not included: this period would be empty.
        ({"from": "2026-11-02", "to": "2026-11-02"}, "from"),
        # Defaults to now for 'to'.
        ({"from": "2999-01-01"}, "from"),
        ({"to": "0001-01-01"}, "to"),
        ({"from": "0001-01-01T00:00:00+01:00"}, "from"),
        ({"department": "police"}, "department"),
        ({"channel": "pigeon"}, "channel"),
        ({"kind": "sms"}, "kind"),
        ({"since": "2026-11-01"}, "since"),
    ],
)
async def test_bad_parameters_are_400_naming_the_parameter(
    api: Api, params: dict[str, str], parameter: str
) -> None:
    status, body = await api.get("/stats", params=params)
    assert status == 400, body
    assert body["error"]["code"] == "invalid_parameter"
    assert body["error"]["details"]["parameter"] == parameter
    assert parameter in body["error"]["message"]


async def test_needs_a_token(api: Api) -> None:
    status, body = await api.get("/stats", None)
    assert (status, body["error"]["code"]) == (401, "unauthorized")
