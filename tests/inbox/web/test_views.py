"""The ticket list's views and their counts, the rows fragment and the changes the page polls.

The whole service in-process (``town`` from tests/inbox/web/conftest.py), SQLite and PostgreSQL.
"""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from sqlmodel import col

from inbox import tickets
from store.models import Ticket
from tests.inbox.web.conftest import Town, Visitor
from tests.inbox.web.test_ticket_list import change, references, user_id


def counts(page: str) -> dict[str, int]:
    """The number of open tickets each view in the navigation shows."""
    return {
        view: int(number) for view, number in re.findall(r'data-view="(\w+)">(\d+)</span>', page)
    }


def current_view(page: str) -> str:
    found = re.search(r'href="/\?view=(\w+)" aria-current="page"', page)
    assert found
    return found.group(1)


async def technical_tickets(town: Town, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Tom's and Els's technical service with four tickets; a fifth for the environment."""
    # The list reads the time the tickets came in: none is late yet.
    came_in = town.clock.now
    monkeypatch.setattr(tickets, "utcnow", lambda: came_in)
    await town.add_user("td@wingene.example", "agent", ("technical-service",), name="Tom D")
    await town.add_user("els@wingene.example", "agent", ("technical-service",), name="Els C")
    await town.add_user("beheer@wingene.example", "operator", (), name="Beheer")
    tom, els = await user_id(town, "td@wingene.example"), await user_id(town, "els@wingene.example")
    made = {
        "toms": await town.submit("De straatlamp is stuk.", "Lamp", "a@example.be"),
        "nobodys": await town.submit("Een put in de weg.", "Put", "b@example.be"),
        "els_done": await town.submit("Het bord is scheef.", "Bord", "c@example.be"),
        "late": await town.submit("De paal is omver gereden.", "Paal", "d@example.be"),
        "waste": await town.submit("Het afval is niet opgehaald.", "Afval", "e@example.be"),
    }
    for name in ("toms", "nobodys", "els_done", "late"):
        await change(town, made[name], department="technical-service")
    await change(town, made["waste"], department="environment")
    await change(town, made["toms"], assignee_id=tom)
    await change(town, made["els_done"], assignee_id=els, status="resolved")
    await change(town, made["late"], first_answer_due=came_in - timedelta(hours=1))
    return made


async def test_an_agents_views_and_their_counts_of_open_work(
    town: Town, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = await technical_tickets(town, monkeypatch)
    tom = await town.signed_in("td@wingene.example")

    # My departments first, with open work only; no view of all tickets for an agent.
    assert current_view(tom.html) == "departments"
    assert counts(tom.html) == {"mine": 1, "departments": 3, "unassigned": 2, "overdue": 1}
    assert "?view=all" not in tom.html
    assert set(references(tom.html)) == {made["toms"], made["nobodys"], made["late"]}

    await tom.get("/?view=mine")
    assert references(tom.html) == [made["toms"]]
    assert current_view(tom.html) == "mine"
    await tom.get("/?view=unassigned")
    assert set(references(tom.html)) == {made["nobodys"], made["late"]}
    await tom.get("/?view=overdue")
    assert references(tom.html) == [made["late"]]
    # Resolved work shows when asked for.
    await tom.get("/?view=departments&status=all")
    assert made["els_done"] in references(tom.html)
    # The filter form stays within the view.
    await tom.get("/?view=unassigned&q=put")
    assert references(tom.html) == [made["nobodys"]]
    assert '<input type="hidden" name="view" value="unassigned">' in tom.html

    # Asking for everything does not widen an agent's sight.
    await tom.get("/?view=all&status=all")
    assert current_view(tom.html) == "departments"
    assert made["waste"] not in tom.html


async def test_an_operator_sees_the_view_of_all_tickets(
    town: Town, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = await technical_tickets(town, monkeypatch)
    operator = await town.signed_in("beheer@wingene.example")
    # Without departments of their own, all tickets is where an operator starts.
    assert current_view(operator.html) == "all"
    assert counts(operator.html) == {"mine": 0, "unassigned": 3, "overdue": 1, "all": 4}
    assert set(references(operator.html)) == {
        made["toms"],
        made["nobodys"],
        made["late"],
        made["waste"],
    }


async def changes(visitor: Visitor, since: str) -> dict[str, object]:
    response = await visitor.get(f"/inbox/changes?since={quote(since)}")
    assert response.status == 200
    assert response.content_type == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    answer = await response.json()
    assert isinstance(answer, dict)
    return answer


async def test_the_changes_endpoint_tells_when_something_visible_changed(
    town: Town, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = await technical_tickets(town, monkeypatch)
    tom = await town.signed_in("td@wingene.example")
    marker = re.search(r'data-marker="([^"]*)"', tom.html)
    assert marker and marker.group(1)
    since = marker.group(1)

    # Nothing changed since the page was made: no counts asked, nothing to fetch.
    assert await changes(tom, since) == {"marker": since, "changed": False, "counts": None}

    # A new ticket for the environment is none of Tom's business.
    town.clock.now += timedelta(minutes=1)
    await change(town, made["waste"], updated_at=town.clock.now)
    assert (await changes(tom, since))["changed"] is False

    # A new ticket for the technical service: changed, with the new counts.
    town.clock.now += timedelta(minutes=1)
    await town.submit("Nog een put, verderop.", "Tweede put", "f@example.be")
    async with town.db.session() as session:
        newest = await session.scalar(sa.select(sa.func.max(col(Ticket.id))))
        await session.execute(
            sa.update(Ticket)
            .where(col(Ticket.id) == newest)
            .values(department="technical-service", updated_at=town.clock.now)
        )
    answer = await changes(tom, since)
    assert answer["changed"] is True
    assert answer["marker"] != since
    assert answer["counts"] == {"mine": 1, "departments": 4, "unassigned": 3, "overdue": 1}
    assert (await changes(tom, str(answer["marker"])))["changed"] is False


async def test_the_rows_fragment_is_the_lists_results_with_its_filters(
    town: Town, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = await technical_tickets(town, monkeypatch)
    tom = await town.signed_in("td@wingene.example")
    response = await tom.get("/inbox/rows?view=unassigned&sort=oldest")
    assert response.status == 200
    assert response.content_type == "text/html"
    assert "<html" not in tom.html and "<form" not in tom.html
    assert references(tom.html) == [made["nobodys"], made["late"]]
    await tom.get("/inbox/rows?view=all&status=all")
    assert made["waste"] not in tom.html


async def test_without_a_session_the_live_endpoints_send_to_sign_in(town: Town) -> None:
    stranger = town.visitor()
    for path in ("/inbox/changes?since=", "/inbox/rows"):
        response = await stranger.get(path)
        assert response.status == 303
        assert response.headers["Location"].startswith("/login?next=")
