"""Full-text search over tickets (``inbox.tickets.list_tickets`` with ``search``), on SQLite (FTS5)
and PostgreSQL (GIN), through the indexes of migration 0006 and its triggers.
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import col

from inbox import tickets
from inbox.auth import Staff
from store.db import Database
from store.models import Message, Ticket, utcnow
from store.users import Role
from tests.inbox.conftest import DEPARTMENTS, Api, MakeTicket

ADMIN = Staff(1, "admin@town.test", "Admin", Role.ADMIN, frozenset())
TECHNICAL = Staff(3, "tech@town.test", "Tech", Role.AGENT, frozenset({"technical"}))
ENVIRONMENT = Staff(4, "env@town.test", "Env", Role.AGENT, frozenset({"environment"}))


async def found(database: Database, text: str, staff: Staff = ADMIN) -> set[str]:
    async with database.session() as session:
        page = await tickets.list_tickets(
            session, staff, DEPARTMENTS, tickets.TicketFilter(search=text), 50
        )
    return {t.reference for t in page.items}


async def add_message(database: Database, ticket_id: int, text: str, direction: str = "in") -> None:
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


async def test_a_word_of_the_subject_or_of_any_later_message_finds_the_ticket(
    database: Database, make_ticket: MakeTicket
) -> None:
    lamp = await make_ticket(subject="Lamp stuk", text="Hij brandt niet.")
    bin_ = await make_ticket(subject="Afvalbak vol", text="Al drie dagen.")
    await add_message(database, bin_.ticket_id, "Nu ligt er ook glas naast de container.")
    await add_message(database, lamp.ticket_id, "We sturen morgen een ploeg.", "out")

    assert await found(database, "lamp") == {lamp.reference}
    assert await found(database, "LAMP") == {lamp.reference}
    # Only in the citizen's second message, not in the subject nor the first.
    assert await found(database, "container") == {bin_.reference}
    # Staff's own answers count too.
    assert await found(database, "ploeg") == {lamp.reference}
    # The start of a word (three letters or more) finds the longer word.
    assert await found(database, "contain") == {bin_.reference}
    assert await found(database, "zebrapad") == set()


async def test_internal_notes_are_searched_too(database: Database, make_ticket: MakeTicket) -> None:
    ticket = await make_ticket(subject="Lamp stuk")
    await add_message(database, ticket.ticket_id, "Aannemer Vermeulen komt donderdag.", "note")
    assert await found(database, "vermeulen") == {ticket.reference}


async def test_accents_and_case_do_not_matter_either_way(
    database: Database, make_ticket: MakeTicket
) -> None:
    school = await make_ticket(subject="Verkeer aan de école", text="Te snel rijden.")
    cafe = await make_ticket(subject="Terras", text="Het terras van het cafe is te groot.")

    assert await found(database, "ecole") == {school.reference}
    assert await found(database, "École") == {school.reference}
    assert await found(database, "café") == {cafe.reference}


async def test_all_words_must_be_in_the_subject_or_in_one_message(
    database: Database, make_ticket: MakeTicket
) -> None:
    both = await make_ticket(subject="Put", text="Diepe put in de Kerkstraat.")
    one = await make_ticket(subject="Put", text="Diepe put in de Molenstraat.")
    assert await found(database, "put kerkstraat") == {both.reference}
    assert await found(database, "diepe put") == {both.reference, one.reference}


@pytest.mark.parametrize(
    "typed",
    [
        '"straat',
        'straat"',
        "straat OR",
        "OR",
        "*",
        "straat*",
        "-straat",
        "NEAR(straat lamp)",
        "straat AND NOT",
        "^straat",
        "text:straat",
        "'straat",
        "st(r)aat",
        "straat & | ! :*",
        "\\",
        "%_",
        "e\u0301cole",
        "🚧 straat",
    ],
)
async def test_search_syntax_typed_by_staff_is_plain_text_never_an_error(
    database: Database, make_ticket: MakeTicket, typed: str
) -> None:
    street = await make_ticket(subject="Straatlamp stuk", text="De straatlamp brandt niet.")
    result = await found(database, typed)
    # Whatever it finds, it only ever finds through the words in it.
    assert result <= {street.reference}


async def test_punctuation_alone_finds_nothing(database: Database, make_ticket: MakeTicket) -> None:
    await make_ticket(subject="Afvalbak 100% vol_")
    assert await found(database, "%_ *") == set()
    assert await found(database, "100") != set()


async def test_search_never_reveals_another_departments_ticket(
    database: Database, make_ticket: MakeTicket
) -> None:
    technical = await make_ticket(department="technical", subject="Wegdek kapot")
    environment = await make_ticket(department="environment", subject="Wegdek vuil")
    await add_message(database, technical.ticket_id, "Geheim: bouwvergunning Vandenberghe.")

    assert await found(database, "wegdek", TECHNICAL) == {technical.reference}
    assert await found(database, "wegdek", ENVIRONMENT) == {environment.reference}
    assert await found(database, "vandenberghe", ENVIRONMENT) == set()
    assert await found(database, "vandenberghe", ADMIN) == {technical.reference}


async def test_the_index_follows_changed_and_deleted_rows(
    database: Database, make_ticket: MakeTicket
) -> None:
    ticket = await make_ticket(subject="Lamp stuk", text="Eerste versie.")
    async with database.session() as session:
        await session.execute(
            sa.update(Ticket).where(col(Ticket.id) == ticket.ticket_id).values(subject="Boom")
        )
        await session.execute(
            sa.update(Message)
            .where(col(Message.ticket_id) == ticket.ticket_id)
            .values(text="Tweede versie.")
        )
    assert await found(database, "lamp") == set()
    assert await found(database, "boom") == {ticket.reference}
    assert await found(database, "eerste") == set()
    assert await found(database, "tweede") == {ticket.reference}

    async with database.session() as session:
        await session.execute(sa.delete(Message).where(col(Message.ticket_id) == ticket.ticket_id))
    assert await found(database, "tweede") == set()


async def test_a_common_word_pages_like_a_rare_one(
    database: Database, make_ticket: MakeTicket, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On SQLite a word in many messages is looked up another way (ticket by ticket in the list's
    # order); the answer must be the same, page after page.
    made = [
        await make_ticket(subject=f"Melding {n}", text="De straatlamp is stuk.") for n in range(7)
    ]
    await make_ticket(subject="Iets anders", text="Niets over verlichting.")
    pages: dict[int, list[str]] = {}
    for threshold in (tickets.COMMON_TERM, 0):
        monkeypatch.setattr(tickets, "COMMON_TERM", threshold)
        seen: list[str] = []
        cursor = None
        async with database.session() as session:
            while True:
                page = await tickets.list_tickets(
                    session,
                    ADMIN,
                    DEPARTMENTS,
                    tickets.TicketFilter(search="straatlamp"),
                    3,
                    cursor,
                )
                seen += [t.reference for t in page.items]
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
        pages[threshold] = seen
    assert pages[0] == pages[tickets.COMMON_TERM]
    assert sorted(pages[0]) == sorted(m.reference for m in made)


async def test_the_api_searches_the_same_way(api: Api, make_ticket: MakeTicket) -> None:
    lamp = await make_ticket(subject="Lamp stuk", text="Ook de école heeft geen licht.")
    await make_ticket(department="environment", subject="Afval", text="Ook bij de ecole.")

    async def refs(params: Any, who: str = "agent") -> set[str]:
        status, body = await api.get("/tickets", who, params=params)
        assert status == 200, body
        return {t["reference"] for t in body["items"]}

    assert await refs({"q": "licht"}) == {lamp.reference}
    # The technical agent does not see the environment ticket with the same word.
    assert await refs({"q": "ecole"}) == {lamp.reference}
    assert await refs({"q": '"ecole OR *'}, "admin") == set()
