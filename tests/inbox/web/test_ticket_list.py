"""The ticket list's filters and sorting in the web inbox: a GET form, so a filtered list is a link.

The whole service in-process (``town`` from tests/inbox/web/conftest.py), SQLite and PostgreSQL.
"""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import col

from inbox import tickets
from inbox.web import views
from store.models import Ticket, User
from tests.inbox.web.conftest import Town, Visitor


async def three_tickets(town: Town) -> tuple[str, str, str]:
    light = await town.submit(
        "De straatlamp voor nummer 12 brandt niet.", "Straatlamp", "mie@example.be"
    )
    pothole = await town.submit(
        "Er zit een diep put in de straatlamp-zone.", "Put in de weg", "jan@example.be"
    )
    waste = await town.submit("De vuilniszakken zijn niet opgehaald.", "Afval", "lies@example.be")
    await town.add_user("beheer@wingene.example", "operator", ())
    return light, pothole, waste


def references(page: str) -> list[str]:
    """The tickets in the list, in the list's order."""
    return re.findall(r'<tr data-reference="(1750-\d{6})"', page)


async def change(town: Town, reference: str, **values: Any) -> None:
    async with town.db.session() as session:
        await session.execute(
            sa.update(Ticket).where(col(Ticket.reference) == reference).values(**values)
        )


async def user_id(town: Town, email: str) -> int:
    async with town.db.session() as session:
        found = await session.scalar(sa.select(col(User.id)).where(col(User.email) == email))
    assert found is not None
    return found


async def test_filters_narrow_the_list_and_the_form_keeps_them(town: Town) -> None:
    light, pothole, waste = await three_tickets(town)
    staff = await town.signed_in("beheer@wingene.example")
    assert set(references(staff.html)) == {light, pothole, waste}

    await staff.get("/?department=environment")
    assert references(staff.html) == [waste]
    assert '<option value="environment" selected>' in staff.html

    # The search reads the messages too: the pothole's message mentions the street light.
    await staff.get("/?q=straatlamp")
    assert set(references(staff.html)) == {light, pothole}
    assert 'value="straatlamp"' in staff.html
    await staff.get("/?q=opgehaald")
    assert references(staff.html) == [waste]

    await staff.get("/?status=closed")
    assert references(staff.html) == []

    # A value the form does not offer is ignored, not an error page.
    response = await staff.get("/?status=bogus&kind=%3Cscript%3E&sort=x&from=gisteren")
    assert response.status == 200
    assert set(references(staff.html)) == {light, pothole, waste}
    assert "<script>" not in staff.html


async def test_only_overdue_shows_the_tickets_past_their_first_answer_deadline(
    town: Town, monkeypatch: pytest.MonkeyPatch
) -> None:
    light, pothole, waste = await three_tickets(town)
    # The list reads the time as the tickets came in, then a month later, nobody having answered
    # (the service's clock stays put, so the session does not expire).
    came_in = town.clock.now
    monkeypatch.setattr(tickets, "utcnow", lambda: came_in)
    staff = await town.signed_in("beheer@wingene.example")
    await staff.get("/?overdue=1")
    assert references(staff.html) == []
    monkeypatch.setattr(tickets, "utcnow", lambda: came_in + timedelta(days=30))
    await staff.get("/?overdue=1")
    assert set(references(staff.html)) == {light, pothole, waste}
    assert 'id="f-overdue" name="overdue" type="checkbox" value="1" checked' in staff.html


async def test_an_agent_can_filter_only_within_their_own_departments(town: Town) -> None:
    _, _, waste = await three_tickets(town)
    await town.add_user("td@wingene.example", "agent", ("technical-service",))
    staff = await town.signed_in("td@wingene.example")
    # The form offers only their own department, and asking for another shows nothing of it.
    assert '<option value="environment"' not in staff.html
    await staff.get("/?department=environment")
    assert waste not in staff.html
    await staff.get("/?view=all&status=all&q=vuilniszakken")
    assert waste not in staff.html


async def test_assignee_filter_offers_colleagues_and_finds_their_tickets(town: Town) -> None:
    light, pothole, waste = await three_tickets(town)
    await town.add_user("td@wingene.example", "agent", ("technical-service",), name="Tom D")
    await town.add_user("els@wingene.example", "agent", ("technical-service",), name="Els C")
    await town.add_user("milieu@wingene.example", "agent", ("environment",), name="Mo M")
    tom, els = await user_id(town, "td@wingene.example"), await user_id(town, "els@wingene.example")
    for reference in (light, pothole):
        await change(town, reference, department="technical-service")
    await change(town, light, assignee_id=tom)
    await change(town, pothole, assignee_id=els)

    staff = await town.signed_in("td@wingene.example")
    # Colleagues of their own departments only.
    assert f'<option value="{els}">Els C</option>' in staff.html
    assert "Mo M" not in staff.html
    await staff.get(f"/?assignee={els}")
    assert references(staff.html) == [pothole]
    assert f'<option value="{els}" selected>' in staff.html
    await staff.get("/?assignee=me")
    assert references(staff.html) == [light]
    await staff.get("/?assignee=none")
    assert references(staff.html) == []
    await change(town, pothole, assignee_id=None)
    await staff.get("/?assignee=none")
    assert references(staff.html) == [pothole]
    # Someone the form does not offer is ignored.
    await staff.get("/?assignee=99999")
    assert set(references(staff.html)) == {light, pothole}
    assert waste not in staff.html


async def test_tag_filter_matches_whole_tags(town: Town) -> None:
    light, pothole, waste = await three_tickets(town)
    await change(town, light, tags=["straatverlichting", "dringend"])
    await change(town, pothole, tags=["wegen"])
    await change(town, waste, tags=["afval", "dringend"])
    staff = await town.signed_in("beheer@wingene.example")
    await staff.get("/?tag=dringend")
    assert set(references(staff.html)) == {light, waste}
    assert 'id="f-tag" name="tag" type="text" value="dringend"' in staff.html
    await staff.get("/?tag=weg")
    assert references(staff.html) == []
    await staff.get("/?tag=wegen")
    assert references(staff.html) == [pothole]


async def test_dates_are_whole_days_in_the_towns_time_zone(town: Town) -> None:
    # 16 November 23:30 UTC is already 17 November in Wingene (UTC+1).
    town.clock.now = datetime(2026, 11, 16, 12, 0, tzinfo=UTC)
    day_16 = await town.submit("De straatlamp brandt niet.", "Lamp", "a@example.be")
    town.clock.now = datetime(2026, 11, 16, 23, 30, tzinfo=UTC)
    night = await town.submit("Er ligt glas op de weg.", "Glas", "b@example.be")
    town.clock.now = datetime(2026, 11, 18, 9, 0, tzinfo=UTC)
    day_18 = await town.submit("Afval niet opgehaald.", "Afval", "c@example.be")
    await town.add_user("beheer@wingene.example", "operator", ())
    staff = await town.signed_in("beheer@wingene.example")

    async def between(start: str, end: str) -> set[str]:
        await staff.get(f"/?from={start}&to={end}")
        return set(references(staff.html))

    assert await between("2026-11-16", "2026-11-16") == {day_16}
    assert await between("2026-11-17", "2026-11-17") == {night}
    assert await between("2026-11-17", "") == {night, day_18}
    assert await between("", "2026-11-17") == {day_16, night}
    assert 'id="f-to" name="to" type="date" value="2026-11-17"' in staff.html
    # Dates at the edge of the calendar are no dates to filter on, not an error page.
    assert await between("0001-01-01", "9999-12-31") == {day_16, night, day_18}


async def walk(visitor: Visitor, start: str) -> list[list[str]]:
    """Every page of the list from ``start`` on, following the next-page link."""
    pages = []
    target: str | None = start
    while target is not None:
        response = await visitor.get(target)
        assert response.status == 200
        pages.append(references(visitor.html))
        found = re.search(r'<a href="([^"]+)">Volgende pagina</a>', visitor.html)
        target = html.unescape(found.group(1)) if found else None
        assert len(pages) < 20
    return pages


async def test_every_sort_pages_through_all_tickets_once_in_order(
    town: Town, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(views, "PAGE_SIZE", 3)
    start = town.clock.now
    made = []
    for n in range(8):
        # Two by two at the same moment: ties are broken by the ticket's id, across pages too.
        town.clock.now = start + timedelta(minutes=n // 2)
        made.append(await town.submit(f"Melding nummer {n}.", f"Melding {n}", f"b{n}@ex.be"))
    # Last activity in another order; due dates with one tie and two tickets without any.
    for n, reference in enumerate(made):
        activity = start + timedelta(hours=1, minutes=(n * 5) % 8)
        due = None if n in (2, 5) else start + timedelta(days=1, hours=(n * 3) % 4)
        await change(
            town,
            reference,
            updated_at=activity + timedelta(seconds=n),
            first_answer_due=due,
            first_answered_at=None,
            resolution_due=None,
        )
    await town.add_user("beheer@wingene.example", "operator", ())
    staff = await town.signed_in("beheer@wingene.example")

    async with town.db.session() as session:
        rows = (await session.scalars(sa.select(Ticket))).all()
    by_id = sorted(rows, key=lambda t: t.id or 0)
    expected = {
        "newest": [t.reference for t in sorted(by_id, key=lambda t: (t.created_at, t.id or 0))][
            ::-1
        ],
        "oldest": [t.reference for t in sorted(by_id, key=lambda t: (t.created_at, t.id or 0))],
        "activity": [t.reference for t in sorted(by_id, key=lambda t: (t.updated_at, t.id or 0))][
            ::-1
        ],
        "due": [
            t.reference
            for t in sorted(
                by_id,
                key=lambda t: (
                    t.first_answer_due is None,
                    t.first_answer_due or start,
                    t.id or 0,
                ),
            )
        ],
    }
    for sort, order in expected.items():
        pages = await walk(staff, f"/?sort={sort}")
        assert [len(p) for p in pages] == [3, 3, 2], sort
        assert [r for p in pages for r in p] == order, sort
        assert f'<option value="{sort}" selected>' in staff.html

    # A cursor of another sort, or a made-up one, starts again on the first page.
    first = await walk(staff, "/?sort=oldest")
    await staff.get("/?sort=oldest")
    cursor = re.search(r"cursor=([^&\"]+)", staff.html)
    assert cursor
    response = await staff.get(f"/?sort=newest&cursor={cursor.group(1)}")
    assert response.status == 303
    assert response.headers["Location"] == "/"
    for forged in (
        "bm9uc2Vuc2U",
        tickets.encode_cursor("newest", "0001-01-01T00:00:00+05:00", "1"),
        tickets.encode_cursor("newest", "2026-11-16T10:00:00", "1"),
        tickets.encode_cursor("due", "", "99999999999"),
    ):
        response = await staff.get(f"/?cursor={forged}")
        assert response.status == 303, forged
    assert first[0] == expected["oldest"][:3]
