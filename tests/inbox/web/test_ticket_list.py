"""The ticket list's filters in the web inbox: a GET form, so a filtered list is a link.

The whole service in-process (``town`` from tests/inbox/web/conftest.py), SQLite and PostgreSQL.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from inbox import tickets
from tests.inbox.web.conftest import Town


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


def references(html: str) -> set[str]:
    return set(re.findall(r'href="/tickets/(1750-\d{6})"', html))


async def test_filters_narrow_the_list_and_the_form_keeps_them(town: Town) -> None:
    light, pothole, waste = await three_tickets(town)
    staff = await town.signed_in("beheer@wingene.example")
    assert references(staff.html) == {light, pothole, waste}

    await staff.get("/?department=environment")
    assert references(staff.html) == {waste}
    assert '<option value="environment" selected>' in staff.html

    await staff.get("/?q=straatlamp")
    assert references(staff.html) == {light}
    assert 'value="straatlamp"' in staff.html

    await staff.get("/?status=closed")
    assert references(staff.html) == set()

    # A value the form does not offer is ignored, not an error page.
    response = await staff.get("/?status=bogus&kind=%3Cscript%3E")
    assert response.status == 200
    assert references(staff.html) == {light, pothole, waste}
    assert "<script>" not in staff.html


async def test_only_overdue_shows_the_tickets_past_their_first_answer_deadline(
    town: Town, monkeypatch: pytest.MonkeyPatch
) -> None:
    light, pothole, waste = await three_tickets(town)
    staff = await town.signed_in("beheer@wingene.example")
    await staff.get("/?overdue=1")
    assert references(staff.html) == set()
    # Ten days later (as the inbox reads the time), nobody having answered, all three are late.
    later = datetime.now(UTC) + timedelta(days=10)
    monkeypatch.setattr(tickets, "utcnow", lambda: later)
    await staff.get("/?overdue=1")
    assert references(staff.html) == {light, pothole, waste}
    assert 'id="f-overdue" name="overdue" type="checkbox" value="1" checked' in staff.html


async def test_an_agent_can_filter_only_within_their_own_departments(town: Town) -> None:
    _, _, waste = await three_tickets(town)
    await town.add_user("td@wingene.example", "agent", ("technical-service",))
    staff = await town.signed_in("td@wingene.example")
    # The form offers only their own department, and asking for another shows nothing of it.
    assert '<option value="environment"' not in staff.html
    await staff.get("/?department=environment")
    assert waste not in staff.html
