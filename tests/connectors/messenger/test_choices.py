"""Answers offered as quick replies on Messenger: what goes to the Send API, and a tap coming back.

Meta posts a tapped quick reply as a message whose text is the button's title, with the button's
payload under ``quick_reply``; meldpunt's payloads are ``choice:<label>``, never read as a kind.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connectors.messenger.parse import Incoming, parse_webhook
from connectors.messenger.send import quick_replies
from ingest.followup import SURVEY_CHOICES
from ingest.model import Channel, Kind, OutboundMessage
from meldpunt.app import RUNTIME, create_app
from store.models import Ticket
from tests.connectors.messenger.conftest import PSID, FakeGraph, message
from tests.connectors.messenger.test_connector import (
    FAST_DISPATCH,
    ClientFactory,
    Town,
    messenger_env,
)
from tests.service import sample_config

FIRST = "1750-000001"
# The test runs the timers; the survey is due as soon as the ticket is resolved.
SURVEY_AT_ONCE = {
    FAST_DISPATCH[0]: FAST_DISPATCH[1],
    "interval_seconds: 30 ": "interval_seconds: 3600 ",
    "delay_hours: 24 ": "delay_hours: 0 ",
}
OFFERED = [
    {"content_type": "text", "title": label, "payload": f"choice:{label}"}
    for label in SURVEY_CHOICES
]


@pytest.fixture
async def town(
    tmp_path: Path,
    database_url: str,
    aiohttp_client: ClientFactory,
    monkeypatch: pytest.MonkeyPatch,
    fake_graph: FakeGraph,
) -> Town:
    messenger_env(monkeypatch, fake_graph)
    config = sample_config(tmp_path, database_url, monkeypatch, replace=SURVEY_AT_ONCE)
    return Town(await aiohttp_client(create_app(config, migrate=True)), fake_graph)


def body(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False).encode()


def tapped(label: str, mid: str, payload: str | None = None) -> dict[str, Any]:
    """The webhook of a tapped quick reply, as Meta posts it."""
    webhook = message(label, mid)
    event = webhook["entry"][0]["messaging"][0]
    event["message"]["quick_reply"] = {"payload": payload or f"choice:{label}"}
    return webhook


def test_the_survey_s_answers_become_quick_replies() -> None:
    assert quick_replies(SURVEY_CHOICES) == OFFERED
    assert quick_replies([" Ja ", "Nee"]) == [
        {"content_type": "text", "title": "Ja", "payload": "choice:Ja"},
        {"content_type": "text", "title": "Nee", "payload": "choice:Nee"},
    ]


@pytest.mark.parametrize(
    "choices",
    [
        (),
        tuple(str(n) for n in range(14)),  # Meta shows 13 at most
        ("Ja", "Nee, helemaal niet tevreden"),  # Meta would cut the title after 20 characters
        ("😀" * 11,),  # an emoji counts twice in Meta's 20
        ("Ja", " "),
    ],
)
def test_answers_meta_cannot_show_whole_are_not_offered_at_all(choices: tuple[str, ...]) -> None:
    assert quick_replies(choices) == []


@pytest.mark.parametrize("label", SURVEY_CHOICES)
def test_a_tapped_answer_reads_as_its_text_and_chooses_no_kind(label: str) -> None:
    [found] = parse_webhook(body(tapped(label, "m_tap")))
    assert isinstance(found, Incoming)
    assert (found.text, found.kind) == (label, None)


def test_a_tapped_answer_without_its_text_is_read_from_the_payload() -> None:
    webhook = tapped("4 🙂", "m_tap")
    del webhook["entry"][0]["messaging"][0]["message"]["text"]
    [found] = parse_webhook(body(webhook))
    assert isinstance(found, Incoming)
    assert (found.text, found.kind) == ("4 🙂", None)


def test_a_kind_button_still_chooses_its_kind() -> None:
    [found] = parse_webhook(body(tapped("Klacht", "m_kind", payload="kind:complaint")))
    assert isinstance(found, Incoming)
    assert (found.text, found.kind) == ("Klacht", Kind.COMPLAINT)


async def test_the_survey_offers_quick_replies_and_a_tap_is_recorded_as_the_score(
    town: Town,
) -> None:
    assert (
        await town.post(message("De straatlamp in de Kerkstraat is kapot.", "m_1"))
    ).status == 200
    [ack] = await town.wait_for_sent(1)
    assert "quick_replies" not in ack.body["message"]
    response = await town.client.post(
        f"/api/v1/tickets/{FIRST}/status",
        json={"status": "resolved", "answer": "De lamp is vervangen."},
        headers={"Authorization": f"Bearer {await town.staff_token()}"},
    )
    assert response.status == 200, await response.text()
    await town.wait_for_sent(2)
    assert await town.client.app[RUNTIME].timers.run_once() == 1
    survey = (await town.wait_for_sent(3))[2]
    assert survey.body["recipient"] == {"id": PSID}
    assert FIRST in survey.body["message"]["text"]
    assert survey.body["message"]["quick_replies"] == OFFERED

    assert (await town.post(tapped("4 🙂", "m_2"))).status == 200
    ticket = await town.ticket_detail(FIRST)
    assert (ticket["survey"], ticket["satisfaction"]) == ("answered", 4)
    assert ticket["satisfaction_comment"] is None
    # The tap neither reopened the matter, nor changed its kind, nor opened a new one.
    assert (ticket["status"], ticket["kind"]) == ("resolved", "report")
    assert len(await town.rows(Ticket)) == 1
    thanks = (await town.wait_for_sent(4))[3]
    assert thanks.body["message"]["text"].startswith("Bedankt")
    assert "quick_replies" not in thanks.body["message"]


async def test_quick_replies_go_on_the_last_part_of_a_long_answer(town: Town) -> None:
    connector = town.client.app[RUNTIME].connectors[Channel.MESSENGER]
    await connector.send(
        OutboundMessage(
            outbox_id=1,
            channel=Channel.MESSENGER,
            recipient=PSID,
            # Two paragraphs of 1,500 characters: more than Messenger's 2,000 in one message.
            text="a" * 1500 + "\n\n" + "b" * 1500,
            choices=SURVEY_CHOICES,
            last_inbound_at=datetime.now(UTC),
        )
    )
    first, last = town.graph.sent()
    assert (first.body["message"]["text"][0], last.body["message"]["text"][0]) == ("a", "b")
    assert "quick_replies" not in first.body["message"]
    assert last.body["message"]["quick_replies"] == OFFERED
