"""How ``inbox.tickets.list_tickets`` reads a big store: every search plan finds the same tickets
in the same order, scope included, and SQLite reads a filtered list in the order of an index
instead of sorting every matching ticket (issue 8: the list on 200,000 tickets).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from inbox import tickets
from inbox.auth import Staff
from store.db import Database
from store.models import Message, Ticket, utcnow
from store.users import Role
from tests.inbox.conftest import DEPARTMENTS, MakeTicket

ADMIN = Staff(1, "admin@town.test", "Admin", Role.ADMIN, frozenset())
# An agent of two departments: the scope is a list of values, as for the web list's default view.
AGENT = Staff(3, "tech@town.test", "Tech", Role.AGENT, frozenset({"technical", "front-desk"}))

# Each plan of the search, forced by its thresholds: the matching tickets found first and
# passed as ids; the list walked and each ticket checked (on SQLite first within a window of
# the list's first tickets, then over all of it when that window holds no full page); the ids
# plan giving up on too many tickets.
PLANS = {
    "ids": {"COMMON_TERM": 10**6},
    "walk": {"COMMON_TERM": 0},
    "walk, window too small": {"COMMON_TERM": 0, "SEARCH_WINDOW_PAGES": 1},
    # PostgreSQL only; SQLite keeps the ids inside the statement and has no such limit.
    "too many ids": {"COMMON_TERM": 10**6, "MAX_MATCHED": 1},
}


async def add_message(database: Database, ticket_id: int, text: str, direction: str) -> None:
    async with database.session() as session:
        session.add(
            Message(
                ticket_id=ticket_id,
                direction=direction,
                channel="sms",
                text=text,
                delivery_status="received",
                created_at=utcnow(),
            )
        )


async def seed(database: Database, make_ticket: MakeTicket) -> dict[str, set[str]]:
    """Twenty-four tickets, one an hour; "glasbak" is in some of them, in the subject, the first
    message, a note or a message added after every ticket was made. The newest eight hold it
    nowhere, so a small window at the top of the list finds no page.

    Returns the references holding the word, in all and per kind of place.
    """
    start = utcnow() - timedelta(days=2)
    holders: dict[str, set[str]] = {"all": set(), "late": set()}
    late: list[int] = []
    for n in range(24):
        department = ("technical", "environment", "front-desk")[n % 3]
        status = ("new", "open", "pending", "closed")[n % 4]
        where = n % 4 if n < 16 else None
        seeded = await make_ticket(
            department=department,
            status=status,
            channel=("sms", "email")[n % 2],
            subject="Glasbak vol" if where == 0 else f"Melding {n}",
            text="De glasbakken zijn vol." if where == 1 else "Er ligt afval op de stoep.",
            created_at=start + timedelta(hours=n),
        )
        if where is not None:
            holders["all"].add(seeded.reference)
        if where == 2:
            await add_message(database, seeded.ticket_id, "Ploeg glasbak gebeld.", "note")
        if where == 3:
            late.append(seeded.ticket_id)
            holders["late"].add(seeded.reference)
    # Messages with ids above those of every ticket's first message: an old ticket found through
    # its newest message.
    for ticket_id in late:
        await add_message(database, ticket_id, "Nog steeds een volle glasbak.", "in")
    return holders


async def every_page(
    database: Database, staff: Staff, filters: tickets.TicketFilter, sort: str
) -> list[str]:
    """The references of every page of three, in order, following the cursors."""
    seen: list[str] = []
    cursor = None
    async with database.session() as session:
        while True:
            page = await tickets.list_tickets(session, staff, DEPARTMENTS, filters, 3, cursor, sort)
            seen += [t.reference for t in page.items]
            if page.next_cursor is None:
                return seen
            cursor = page.next_cursor


@pytest.mark.parametrize(
    ("staff", "filters"),
    [
        (ADMIN, tickets.TicketFilter(search="glasbak")),
        (ADMIN, tickets.TicketFilter(search="glasbak", statuses=("new", "open", "pending"))),
        (ADMIN, tickets.TicketFilter(search="glasbak", departments=("technical",))),
        (ADMIN, tickets.TicketFilter(search="glasbak", channels=("email",), statuses=("open",))),
        (AGENT, tickets.TicketFilter(search="glasbak")),
        (AGENT, tickets.TicketFilter(search="glas", view="departments")),
    ],
    ids=["all", "open work", "one department", "channel and status", "agent", "agent view"],
)
async def test_every_search_plan_finds_the_same_tickets_in_the_same_order(
    database: Database,
    make_ticket: MakeTicket,
    monkeypatch: pytest.MonkeyPatch,
    staff: Staff,
    filters: tickets.TicketFilter,
) -> None:
    holders = await seed(database, make_ticket)
    async with database.session() as session:
        rows = (await session.execute(sa.select(Ticket))).scalars().all()
    by_reference = {t.reference: t for t in rows}
    for sort in tickets.SORTS:
        found: dict[str, list[str]] = {}
        for plan, thresholds in PLANS.items():
            with monkeypatch.context() as patch:
                for name, value in thresholds.items():
                    patch.setattr(tickets, name, value)
                found[plan] = await every_page(database, staff, filters, sort)
        expected = {
            reference
            for reference in holders["all"]
            if (staff.sees_all or by_reference[reference].department in staff.departments)
            and (not filters.statuses or by_reference[reference].status in filters.statuses)
            and (
                not filters.departments or by_reference[reference].department in filters.departments
            )
            and (not filters.channels or by_reference[reference].origin_channel in filters.channels)
        }
        assert expected, "the case must find something to compare"
        assert len(found["ids"]) == len(set(found["ids"])), f"{sort}: a ticket listed twice"
        assert set(found["ids"]) == expected, sort
        for plan, seen in found.items():
            assert seen == found["ids"], f"{sort}, {plan}"
    if staff is ADMIN and filters == tickets.TicketFilter(search="glasbak"):
        # Found only through a message newer than every ticket: the walk's window saw it.
        assert holders["late"] <= set(found["walk"])


@contextmanager
def statements(database: Database) -> Iterator[list[tuple[str, Any]]]:
    """The SQL statements (with their parameters) the database runs meanwhile."""
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        seen.append((statement, parameters))

    sa.event.listen(database.engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(database.engine.sync_engine, "before_cursor_execute", record)


async def page_statement(
    database: Database, staff: Staff, filters: tickets.TicketFilter, sort: str = "newest"
) -> tuple[str, Any]:
    """The statement that reads a page of the list (the page's ids, then their rows)."""
    with statements(database) as seen:
        async with database.session() as session:
            await tickets.list_tickets(session, staff, DEPARTMENTS, filters, 3, None, sort)
    [found] = [s for s in seen if "JOIN contacts" in s[0]]
    return found


async def page_plan(
    database: Database, staff: Staff, filters: tickets.TicketFilter, sort: str = "newest"
) -> list[str]:
    """SQLite's plan for finding the page's ids: the lines under the statement's list subquery."""
    statement, parameters = await page_statement(database, staff, filters, sort)
    async with database.engine.connect() as conn:
        found = await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
        plan: list[tuple[int, int, int, str]] = [tuple(row) for row in found]
    children: dict[int, list[int]] = {}
    for node, parent, _unused, _detail in plan:
        children.setdefault(parent, []).append(node)
    detail = {node: text for node, _parent, _unused, text in plan}
    # The page's ids: the list subquery of the statement itself.
    [subquery] = [n for n in children[0] if detail[n].startswith("LIST SUBQUERY")]
    inner, todo = [], list(children.get(subquery, []))
    while todo:
        node = todo.pop()
        inner.append(detail[node])
        todo += children.get(node, [])
    return inner


# SQLite's planner only; PostgreSQL keeps statistics and plans this itself.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("staff", "filters", "sort"),
    [
        (ADMIN, tickets.TicketFilter(), "newest"),
        (ADMIN, tickets.TicketFilter(statuses=("open",)), "newest"),
        (ADMIN, tickets.TicketFilter(statuses=tickets.OPEN_STATUSES, view="all"), "newest"),
        (ADMIN, tickets.TicketFilter(departments=("environment",)), "newest"),
        (ADMIN, tickets.TicketFilter(departments=("environment", "technical")), "newest"),
        (ADMIN, tickets.TicketFilter(channels=("sms",)), "oldest"),
        (ADMIN, tickets.TicketFilter(kinds=("report",), channels=("sms",)), "newest"),
        (
            ADMIN,
            tickets.TicketFilter(statuses=("open",), departments=("technical",), channels=("sms",)),
            "newest",
        ),
        (AGENT, tickets.TicketFilter(statuses=tickets.OPEN_STATUSES), "newest"),
        (AGENT, tickets.TicketFilter(view="departments"), "activity"),
        (ADMIN, tickets.TicketFilter(departments=("environment",)), "activity"),
        (ADMIN, tickets.TicketFilter(view="overdue", statuses=tickets.OPEN_STATUSES), "newest"),
        (ADMIN, tickets.TicketFilter(view="unassigned", statuses=tickets.OPEN_STATUSES), "newest"),
        (ADMIN, tickets.TicketFilter(overdue=True, unassigned=True), "oldest"),
    ],
)
async def test_sqlite_reads_a_filtered_page_in_index_order_without_sorting_all_matches(
    database: Database,
    make_ticket: MakeTicket,
    staff: Staff,
    filters: tickets.TicketFilter,
    sort: str,
) -> None:
    # SQLite has no statistics here, as on a town's database: without care it picks the filter
    # column's index and sorts every matching ticket for one page (0.1 s at 200,000 tickets).
    await make_ticket()
    inner = await page_plan(database, staff, filters, sort)
    assert not any("TEMP B-TREE" in text for text in inner), inner
    assert any(text.startswith(("SCAN tickets USING", "SEARCH tickets USING")) for text in inner)


async def test_a_rare_words_tickets_are_found_first_and_read_by_key(
    database: Database, make_ticket: MakeTicket
) -> None:
    # PostgreSQL planned the search inside the list as a hash of the matches joined to a scan of
    # every ticket (0.1 s at 200,000): the list gets the few ids as a value instead. SQLite
    # keeps the matches as a list and reads those tickets by rowid.
    found = await make_ticket(subject="Zwaluwnest onder de dakgoot")
    await make_ticket(subject="Lamp stuk")
    search = tickets.TicketFilter(search="zwaluwnest")
    if database.dialect == "postgresql":
        statement, _parameters = await page_statement(database, ADMIN, search)
        assert "to_tsquery" not in statement and "ANY" in statement
    else:
        plan = await page_plan(database, ADMIN, search)
        assert "SEARCH tickets USING INTEGER PRIMARY KEY (rowid=?)" in plan, plan
        assert not any(line.startswith("SCAN tickets") for line in plan), plan
    assert await every_page(database, ADMIN, tickets.TicketFilter(search="zwaluw"), "newest") == [
        found.reference
    ]
