"""The survey's web page: the link in a survey message answers for that ticket only.

The whole service runs in-process with the sample configuration; the ticket is resolved and
surveyed through the timers, and the answer given on the page is read back from the ticket and
the outbox, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestClient

from ingest.followup import reschedule
from ingest.model import TicketStatus
from meldpunt.app import RUNTIME, create_app
from store.models import OutboxRow, Ticket, table_of
from tests.conftest import Clock, rows
from tests.messages import inbound
from tests.service import sample_config

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[[web.Application], Awaitable[Client]]
TICKETS = table_of(Ticket)


@pytest.fixture
async def client(
    aiohttp_client: ClientFactory,
    tmp_path: Path,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    clock: Clock,
) -> Client:
    config = sample_config(
        tmp_path,
        database_url,
        monkeypatch,
        replace={"interval_seconds: 30": "interval_seconds: 3600"},
    )
    return await aiohttp_client(create_app(config, migrate=True, clock=clock))


async def surveyed(client: Client, clock: Clock) -> tuple[str, str]:
    """A report resolved a day ago and surveyed by e-mail: its reference and survey link."""
    runtime = client.app[RUNTIME]
    result = await runtime.intake.submit(inbound(received_at=clock.now))
    reference = result.ticket_reference
    assert reference is not None
    # Resolved in the database as staff would in the API, timers brought in line the same way.
    async with runtime.db.engine.begin() as conn:
        ticket_id = await conn.scalar(
            sa.update(TICKETS)
            .where(TICKETS.c.reference == reference)
            .values(status=TicketStatus.RESOLVED.value, resolved_at=clock.now)
            .returning(TICKETS.c.id)
        )
        assert ticket_id is not None
        await reschedule(conn, runtime.followup, ticket_id, clock.now)
    clock.now += timedelta(days=2)
    assert await runtime.timers.run_once() >= 1
    [survey] = [r for r in await rows(runtime.db, OutboxRow) if r["purpose"] == "survey"]
    link = re.search(r"https?://\S+/survey/\S+", str(survey["body"]))
    assert link is not None, survey["body"]
    return reference, "/" + link.group(0).split("/", 3)[3]


async def test_the_link_in_the_survey_opens_the_question_in_the_citizens_language(
    client: Client, clock: Clock
) -> None:
    reference, path = await surveyed(client, clock)
    assert path.startswith(f"/survey/{reference}/")
    response = await client.get(path)
    assert response.status == 200
    html = await response.text()
    assert "Hoe tevreden bent u over onze hulp?" in html
    assert reference in html
    assert html.count('type="radio"') == 5
    assert "no-store" in response.headers["Cache-Control"]
    french = await (await client.get(path + "?lang=fr")).text()
    assert "Êtes-vous satisfait de notre aide ?" in french


async def test_a_wrong_or_borrowed_link_finds_nothing(client: Client, clock: Clock) -> None:
    reference, path = await surveyed(client, clock)
    token = path.rsplit("/", 1)[1]
    assert (await client.get(f"/survey/{reference}/{token[:-1]}x")).status == 404
    # The token of one ticket does not open another.
    assert (await client.get(f"/survey/1750-999999/{token}")).status == 404
    assert (await client.post(f"/survey/{reference}/wrong", data={"score": "5"})).status == 404
    [ticket] = await rows(client.app[RUNTIME].db, Ticket)
    assert ticket["satisfaction"] is None


async def test_a_score_given_on_the_page_is_recorded_and_thanked(
    client: Client, clock: Clock
) -> None:
    _, path = await surveyed(client, clock)
    response = await client.post(path, data={"score": "5", "comment": "Snel <b>geholpen</b>"})
    assert response.status == 200
    html = await response.text()
    assert "Bedankt voor uw antwoord!" in html
    assert "<b>geholpen" not in html  # nothing the citizen typed becomes markup
    db = client.app[RUNTIME].db
    [ticket] = await rows(db, Ticket)
    assert (ticket["satisfaction"], ticket["satisfaction_comment"]) == (5, "Snel <b>geholpen</b>")
    assert [r["purpose"] for r in await rows(db, OutboxRow)].count("survey_thanks") == 1
    # Opening the link again shows the thanks, not the question.
    assert "Bedankt voor uw antwoord!" in await (await client.get(path)).text()


async def test_a_low_score_on_the_page_shows_and_sends_the_ombudsman_once(
    client: Client, clock: Clock
) -> None:
    _, path = await surveyed(client, clock)
    html = await (await client.post(path, data={"score": "1"})).text()
    assert "ombudsdienst@wingene.example" in html
    await client.post(path, data={"score": "1"})  # a second click
    purposes = [r["purpose"] for r in await rows(client.app[RUNTIME].db, OutboxRow)]
    assert purposes.count("ombudsman") == 1
    assert purposes.count("low_score") == 1


async def test_no_score_gets_the_question_again_with_a_clear_error(
    client: Client, clock: Clock
) -> None:
    _, path = await surveyed(client, clock)
    response = await client.post(path, data={"score": "9", "comment": "hm"})
    assert response.status == 422
    html = await response.text()
    assert "Kies een cijfer van 1 tot 5." in html
    assert ">hm</textarea>" in html  # what they typed is kept
    [ticket] = await rows(client.app[RUNTIME].db, Ticket)
    assert ticket["satisfaction"] is None
