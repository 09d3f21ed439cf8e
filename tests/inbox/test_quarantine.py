"""The quarantine in the staff API: what did not become a ticket, read and retried by operators."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import col

from inbox import ApiContext
from ingest.files import AttachmentStore
from ingest.model import Channel, IntakeResult, RawPayload
from ingest.pipeline import Intake, IntakePolicy
from ingest.quarantine import retry_quarantined
from router.rules import Decision, RoutingInput, RuleSet
from store.db import Database
from store.models import JournalEntry
from tests.inbox.conftest import DEPARTMENTS, PREFIX, Api, MakeApi
from tests.messages import inbound, sample_rules

MAIL = (
    b"From: An Peeters <an@example.be>\r\n"
    b"Subject: =?x-unknown?Q?Lamp?=\r\n"
    b"Content-Type: multipart/mixed\r\n\r\n"
    b"no boundary, so no parts\r\n"
)
RFC822 = "message/rfc822"


class FixableRules(RuleSet):
    """The sample rules with a bug on messages that say BOOM, until ``fixed`` is set."""

    def __init__(self) -> None:
        good = sample_rules()
        super().__init__(
            good.rules, default_department=good.default_department, departments=good.departments
        )
        self.fixed = False

    def route(self, msg: RoutingInput) -> Decision:
        if not self.fixed and "BOOM" in msg.text:
            raise RuntimeError("rule engine exploded\nTraceback line 2")
        return super().route(msg)


@dataclass
class FakeConnectors:
    """Stands in for the running connectors: records what was handed back to each channel."""

    enabled: set[Channel] = field(default_factory=lambda: {Channel.EMAIL})
    cannot_reread: set[Channel] = field(default_factory=set)
    received: list[tuple[Channel, RawPayload]] = field(default_factory=list)

    async def redeliver(self, channel: Channel, raw: RawPayload) -> None:
        # The same refusals as the service's wiring (meldpunt.app.redeliver_to) and connectors.
        if channel not in self.enabled:
            raise LookupError(f"the {channel.value} channel is not enabled")
        if channel in self.cannot_reread:
            raise NotImplementedError(f"the {channel.value} channel cannot re-read its input")
        self.received.append((channel, raw))


@dataclass
class Service:
    """The parts of the running service a retry goes through."""

    database: Database
    rules: FixableRules
    intake: Intake
    connectors: FakeConnectors

    async def retry(self, journal_id: int) -> IntakeResult | None:
        return await retry_quarantined(
            self.database.engine, self.intake, journal_id, self.connectors.redeliver
        )

    async def unparsed(
        self,
        external_id: str,
        *,
        channel: Channel = Channel.EMAIL,
        body: bytes = MAIL,
        content_type: str = RFC822,
        error: str = "MIME: multipart without a boundary",
    ) -> int:
        """Quarantine input the connector could not parse, as a connector does."""
        await self.intake.quarantine(channel, external_id, RawPayload(content_type, body), error)
        return await self.latest_id()

    async def parsed(self, text: str = "BOOM: de straatlamp is stuk", **kw: Any) -> int:
        """Quarantine a parsed message the pipeline failed on (the rules raise)."""
        result = await self.intake.submit(inbound(text, **kw))
        assert result.quarantined
        return await self.latest_id()

    async def latest_id(self) -> int:
        async with self.database.session() as session:
            found = await session.scalar(sa.select(sa.func.max(col(JournalEntry.id))))
        assert found is not None
        return int(found)

    async def state_of(self, journal_id: int) -> str:
        async with self.database.session() as session:
            entry = await session.get_one(JournalEntry, journal_id)
            return entry.state


@pytest.fixture
async def service(database: Database) -> AsyncIterator[Service]:
    rules = FixableRules()
    intake = Intake(database.engine, lambda: rules, IntakePolicy(reference_prefix="Q"))
    await intake.start()
    try:
        yield Service(database, rules, intake, FakeConnectors())
    finally:
        await intake.stop()


@pytest.fixture
async def retrying_api(
    database: Database, files: AttachmentStore, service: Service, make_api: MakeApi
) -> Api:
    """The API as the service mounts it: with a retry through intake and the connectors."""
    return await make_api(ApiContext(database, DEPARTMENTS, files, retry_quarantined=service.retry))


# Who may look


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/quarantine"), ("GET", "/quarantine/{id}/raw"), ("POST", "/quarantine/{id}/retry")],
)
async def test_agents_may_not_touch_the_quarantine(
    retrying_api: Api, service: Service, method: str, path: str
) -> None:
    entry = await service.unparsed("mail-1")
    status, body = await retrying_api.call(method, path.format(id=entry), "agent")
    assert (status, body["error"]["code"]) == (403, "forbidden")
    # Refused before anything happened.
    assert await service.state_of(entry) == "quarantined"
    assert service.connectors.received == []


async def test_operators_see_what_did_not_become_a_ticket(api: Api, service: Service) -> None:
    mail = await service.unparsed("mail-1")
    form = await service.parsed(external_id="form-1")
    await service.intake.ignore(
        Channel.EMAIL, "own-1", RawPayload(RFC822, b"From: meldpunt@town.test\r\n\r\nhi"), "our own"
    )

    status, body = await api.get("/quarantine", "operator")
    assert status == 200
    assert body["next_cursor"] is None
    newest, oldest = body["items"]
    assert newest == {
        "id": form,
        "state": "quarantined",
        "channel": "webform",
        "external_id": "form-1",
        "received_at": newest["received_at"],
        # The whole error, not its first line: it is what the operator needs to fix the cause.
        "error": "RuntimeError: rule engine exploded\nTraceback line 2",
        "content_type": "application/json",
        "size": len(b'{"sample": true}'),
        "parsed": True,
    }
    assert newest["received_at"].endswith("+00:00")
    assert oldest["id"] == mail
    assert oldest["external_id"] == "mail-1"
    assert (oldest["channel"], oldest["content_type"]) == ("email", RFC822)
    assert oldest["error"] == "MIME: multipart without a boundary"
    assert (oldest["size"], oldest["parsed"]) == (len(MAIL), False)


async def test_ignored_and_replayed_entries_are_shown_when_asked(
    retrying_api: Api, service: Service
) -> None:
    retried = await service.unparsed("mail-1")
    await service.intake.ignore(
        Channel.EMAIL, "loop-1", RawPayload(RFC822, b"Subject: auto\r\n\r\n"), "a mail loop"
    )
    waiting = await service.unparsed("mail-2")
    assert (await retrying_api.post(f"/quarantine/{retried}/retry", None))[0] == 200

    async def listed(params: Any) -> list[tuple[str, str]]:
        status, body = await retrying_api.get("/quarantine", params=params)
        assert status == 200, body
        return [(item["external_id"], item["state"]) for item in body["items"]]

    assert await listed({}) == [("mail-2", "quarantined")]
    assert await listed({"state": "ignored"}) == [("loop-1", "ignored")]
    assert await listed({"state": "replayed"}) == [("mail-1", "replayed")]
    assert await listed({"state": "quarantined,ignored,replayed"}) == [
        ("mail-2", "quarantined"),
        ("loop-1", "ignored"),
        ("mail-1", "replayed"),
    ]
    assert waiting > retried


async def test_the_list_pages_newest_first(api: Api, service: Service) -> None:
    ids = [await service.unparsed(f"mail-{n}") for n in range(5)]
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        status, body = await api.get("/quarantine", params=params)
        assert status == 200, body
        seen += [item["id"] for item in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]
    assert pages == 3


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"state": "processed"}, "state"),
        ({"limit": "0"}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"channel": "email"}, "channel"),
    ],
)
async def test_bad_list_parameters_are_400(api: Api, params: Any, parameter: str) -> None:
    status, body = await api.get("/quarantine", params=params)
    assert status == 400
    assert body["error"]["details"]["parameter"] == parameter


# The raw payload


async def test_the_raw_payload_downloads_as_received(api: Api, service: Service) -> None:
    entry = await service.unparsed("mail-1")
    response = await api.client.get(
        f"{PREFIX}/quarantine/{entry}/raw",
        headers={"Authorization": f"Bearer {api.tokens['operator']}"},
    )
    assert response.status == 200
    assert await response.read() == MAIL
    assert response.headers["Content-Type"] == RFC822
    assert response.headers["Content-Disposition"] == f'attachment; filename="email-{entry}.eml"'
    assert response.headers["X-Content-Type-Options"] == "nosniff"


async def test_an_ignored_entry_can_be_downloaded_too(api: Api, service: Service) -> None:
    await service.intake.ignore(
        Channel.WEBFORM, "form-9", RawPayload("application/json", b'{"x": 1}'), "a test"
    )
    entry = await service.latest_id()
    response = await api.client.get(
        f"{PREFIX}/quarantine/{entry}/raw",
        headers={"Authorization": f"Bearer {api.tokens['admin']}"},
    )
    assert response.status == 200
    assert await response.read() == b'{"x": 1}'
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Content-Disposition"].endswith(f'filename="webform-{entry}.json"')


async def test_processed_and_unknown_entries_are_not_in_the_quarantine(
    api: Api, service: Service
) -> None:
    result = await service.intake.submit(inbound("De straatlamp is stuk."))
    assert result.new_ticket
    processed = await service.latest_id()
    for entry in (processed, processed + 100, 2**40):
        for method, suffix in (("GET", "raw"), ("POST", "retry")):
            status, body = await api.call(method, f"/quarantine/{entry}/{suffix}")
            assert (status, body["error"]["code"]) == (404, "not_found"), (entry, suffix)
    status, _ = await api.get("/quarantine/latest/raw")
    assert status == 404


# Retrying


async def test_a_parsed_entry_becomes_a_ticket_once_the_cause_is_fixed(
    retrying_api: Api, service: Service
) -> None:
    entry = await service.parsed(external_id="form-1")
    service.rules.fixed = True

    status, body = await retrying_api.post(f"/quarantine/{entry}/retry", None, "operator")
    assert status == 200
    assert body == {"outcome": "ticket", "ticket_reference": "Q-000001"}
    status, ticket = await retrying_api.get("/tickets/Q-000001")
    assert status == 200
    assert ticket["messages"][0]["text"] == "BOOM: de straatlamp is stuk"
    assert await service.state_of(entry) == "replayed"
    assert (await retrying_api.get("/quarantine"))[1]["items"] == []
    # Retried once: it is no longer quarantined.
    status, body = await retrying_api.post(f"/quarantine/{entry}/retry", None)
    assert (status, body["error"]["code"]) == (404, "not_found")


async def test_a_retry_that_fails_again_leaves_a_new_entry(
    retrying_api: Api, service: Service
) -> None:
    entry = await service.parsed(external_id="form-1")

    status, body = await retrying_api.post(f"/quarantine/{entry}/retry", None)
    assert status == 200
    assert body == {"outcome": "still_quarantined", "ticket_reference": None}
    [again] = (await retrying_api.get("/quarantine"))[1]["items"]
    assert again["id"] != entry
    assert again["external_id"] == "form-1"


async def test_a_message_that_arrived_again_meanwhile_is_a_duplicate(
    retrying_api: Api, service: Service
) -> None:
    entry = await service.parsed(external_id="form-1")
    service.rules.fixed = True
    # The provider delivered it again once the rules were fixed.
    redelivered = await service.intake.submit(
        inbound("BOOM: de straatlamp is stuk", external_id="form-1")
    )

    status, body = await retrying_api.post(f"/quarantine/{entry}/retry", None)
    assert status == 200
    assert body == {"outcome": "duplicate", "ticket_reference": redelivered.ticket_reference}


async def test_an_unparsed_entry_goes_back_to_its_connector(
    retrying_api: Api, service: Service
) -> None:
    entry = await service.unparsed("mail-1")

    status, body = await retrying_api.post(f"/quarantine/{entry}/retry", None, "operator")
    assert status == 200
    assert body == {"outcome": "handed_to_connector", "ticket_reference": None}
    assert service.connectors.received == [(Channel.EMAIL, RawPayload(RFC822, MAIL))]
    assert await service.state_of(entry) == "replayed"


@pytest.mark.parametrize(
    ("channel", "words"),
    [
        (Channel.SMS, "the sms channel is not enabled"),
        (Channel.WEBFORM, "the webform channel cannot re-read its input"),
    ],
)
async def test_a_channel_that_cannot_take_its_input_back_is_a_clear_409(
    retrying_api: Api, service: Service, channel: Channel, words: str
) -> None:
    service.connectors.enabled.add(Channel.WEBFORM)
    service.connectors.cannot_reread.add(Channel.WEBFORM)
    entry = await service.unparsed("in-1", channel=channel, content_type="application/json")

    status, body = await retrying_api.post(f"/quarantine/{entry}/retry", None)
    assert status == 409
    assert body["error"] == {"code": "cannot_retry", "message": words, "details": {"id": entry}}
    # Nothing changed: it can be retried once the channel is set up.
    assert await service.state_of(entry) == "quarantined"
    assert service.connectors.received == []


async def test_without_a_retry_hook_the_api_says_where_to_retry(api: Api, service: Service) -> None:
    entry = await service.unparsed("mail-1")

    status, body = await api.post(f"/quarantine/{entry}/retry", None)
    assert status == 409
    assert body["error"]["code"] == "retry_unavailable"
    assert f"meldpunt quarantine --retry {entry}" in body["error"]["message"]
    assert await service.state_of(entry) == "quarantined"


async def test_a_retry_while_intake_is_stopped_is_503_and_changes_nothing(
    retrying_api: Api, service: Service
) -> None:
    entry = await service.parsed(external_id="form-1")
    await service.intake.stop()

    status, body = await retrying_api.post(f"/quarantine/{entry}/retry", None)
    assert (status, body["error"]["code"]) == (503, "intake_unavailable")
    assert await service.state_of(entry) == "quarantined"
