"""The contract every channel connector keeps, checked over the whole registry.

A new channel is added to ``connectors.REGISTRY`` and is then held to these rules without a
line here changing: it is configured under its own section, says why it is off, serves its
routes under unique absolute paths, refuses any POST that carries no proof of where it came
from (signature, shared secret, CSRF or visitor token) without storing anything, and turns an
unreachable provider into a retryable ``SendError`` instead of an exception the dispatcher
does not know.
"""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from connectors import REGISTRY
from connectors.base import Connector, ConnectorContext, SendError, WindowClosed
from ingest.model import REPLY_IDENTITY, Channel, IdentityKind, OutboundMessage
from meldpunt.app import RUNTIME, create_app, unique
from meldpunt.config import Channels, LoadedConfig
from store.models import JournalEntry, Message
from tests.conftest import free_port, rows
from tests.connectors.conftest import ClientFactory
from tests.service import sample_config

CLASSES = sorted(set(REGISTRY.values()), key=lambda cls: cls.__name__)

# An address of each kind, as a sender would be stored.
ADDRESS = {
    IdentityKind.EMAIL: "burger@example.org",
    IdentityKind.PHONE: "+32470123456",
    IdentityKind.TELEGRAM: "123456789",
    IdentityKind.MESSENGER: "6543210987654321",
    IdentityKind.WEBCHAT: "v-contract-test",
}


def every_channel_configured(monkeypatch: pytest.MonkeyPatch, provider: str) -> None:
    """Credentials for every provider, all provider APIs pointing at ``provider`` (closed)."""
    for name, value in {
        "MELDPUNT_PUBLIC_URL": "https://meldpunt.example",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": provider.rsplit(":", 1)[1],
        "SMTP_TLS": "none",
        "SMTP_FROM": "contactpunt@wingene.example",
        "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
        "TWILIO_AUTH_TOKEN": "contract-auth-token",
        "TWILIO_API_BASE": provider,
        "TWILIO_SMS_NUMBER": "+3250123456",
        "TWILIO_WHATSAPP_SENDER": "+3250123457",
        "FACEBOOK_APP_SECRET": "contract-app-secret",
        "FACEBOOK_VERIFY_TOKEN": "contract-verify-token",
        "FACEBOOK_PAGE_TOKEN": "contract-page-token",
        "FACEBOOK_GRAPH_BASE": provider,
        "TELEGRAM_BOT_TOKEN": "123456:contract-bot-token",
        "TELEGRAM_WEBHOOK_SECRET": "contract-webhook-secret",
        "TELEGRAM_API_BASE": provider,
    }.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def closed_port() -> str:
    """A provider base URL on which nothing listens: every call is refused at once."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def configured(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch, closed_port: str
) -> LoadedConfig:
    every_channel_configured(monkeypatch, closed_port)
    return sample_config(tmp_path, database_url, monkeypatch)


@pytest.fixture
async def town(configured: LoadedConfig, aiohttp_client: ClientFactory) -> TestClient:  # type: ignore[type-arg]
    # The database comes first so that it is dropped only after the app has stopped.
    return await aiohttp_client(create_app(configured, migrate=True))


def connectors_of(client: TestClient) -> dict[Channel, Connector]:  # type: ignore[type-arg]
    app: web.Application = client.app
    return app[RUNTIME].connectors


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.__name__)
def test_each_connector_is_registered_under_its_own_channel_and_options(
    cls: type[Connector],
) -> None:
    assert REGISTRY[cls.channel] is cls, f"{cls.__name__}.channel is not registered to it"
    key = cls.options_key()
    assert key in Channels.model_fields, f"channels.{key} is not in the configuration"
    # The defaults alone must be a valid section: a town may leave it out entirely.
    Channels.model_fields[key].default_factory()  # type: ignore[misc, call-arg]
    for channel, registered in REGISTRY.items():
        if registered is cls and channel in REPLY_IDENTITY:
            assert cls.capabilities.can_send, f"{channel} answers citizens but cannot send"


async def test_without_credentials_a_channel_is_off_and_says_which_setting_is_missing(
    aiohttp_client: ClientFactory,
    tmp_path: Path,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = await aiohttp_client(
        create_app(sample_config(tmp_path, database_url, monkeypatch), migrate=True)
    )
    live = connectors_of(client)
    ready = await (await client.get("/readyz")).json()
    for channel in REGISTRY:
        state = ready["channels"][channel.value]
        assert state == ("enabled" if channel in live else "disabled")
    # The sample config runs with no provider account: the town's own channels are live.
    assert {Channel.WEBFORM, Channel.WEBCHAT} & set(REGISTRY) <= set(live)
    for cls in CLASSES:
        if cls.channel in live:
            continue
        reason = cls(live_context(client), None).disabled_reason
        assert reason, f"{cls.__name__} is off without saying why"
        # An operator fixes it by name: the reason names an environment variable or a setting.
        assert re.search(r"[A-Z][A-Z0-9]+_[A-Z0-9_]+|channels\.", reason), reason


def live_context(client: TestClient) -> ConnectorContext:  # type: ignore[type-arg]
    webform = connectors_of(client)[Channel.WEBFORM]
    return webform.context


async def test_all_channels_come_up_with_credentials_and_routes_do_not_collide(
    town: TestClient,  # type: ignore[type-arg]
) -> None:
    live = connectors_of(town)
    assert set(live) == set(REGISTRY), f"off: {sorted(set(REGISTRY) - set(live))}"
    seen: dict[tuple[str, str], str] = {}
    for connector in unique(live):
        for route in connector.routes():
            assert isinstance(route, web.RouteDef)
            assert route.path.startswith("/"), route.path
            key = (route.method, route.path)
            assert key not in seen, f"{key} served by {seen[key]} and {type(connector).__name__}"
            seen[key] = type(connector).__name__
        health = connector.health()
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in health.items())
        for channel in live:
            window = connector.reply_window(channel)
            assert window is None or window > timedelta(0)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.__name__)
async def test_every_post_route_refuses_a_request_without_proof_and_stores_nothing(
    town: TestClient,  # type: ignore[type-arg]
    cls: type[Connector],
) -> None:
    db = town.app[RUNTIME].db
    [connector] = [c for c in unique(connectors_of(town)) if type(c) is cls]
    posts = sorted(
        {
            re.sub(r"\{[^}]+\}", "x", route.path)
            for route in connector.routes()
            if route.method == "POST"
        }
    )
    bodies: list[dict[str, object]] = [
        {"data": b""},
        {"json": {"object": "page", "update_id": 1, "Body": "hallo", "text": "hallo"}},
        {"data": {"From": "+32470123456", "Body": "hallo", "MessageSid": "SM1"}},
    ]
    for path in posts:
        for body in bodies:
            response = await town.post(path, **body)  # type: ignore[arg-type]
            assert 400 <= response.status < 500, f"POST {path} {body}: {response.status}"
    assert await rows(db, JournalEntry) == []
    assert await rows(db, Message) == []


@pytest.mark.parametrize("channel", list(REPLY_IDENTITY), ids=str)
async def test_an_unreachable_provider_is_a_retryable_send_error(
    town: TestClient,  # type: ignore[type-arg]
    channel: Channel,
) -> None:
    live = connectors_of(town)
    assert channel in live, f"citizens are answered on {channel}, but no connector sends it"
    message = OutboundMessage(
        outbox_id=1,
        channel=channel,
        recipient=ADDRESS[REPLY_IDENTITY[channel]],
        text="Uw melding is behandeld.",
        subject="Uw melding",
        ticket_reference="1750-000001",
    )
    with pytest.raises(SendError) as failed:
        async with asyncio.timeout(60):
            await live[channel].send(message)
    if isinstance(failed.value, WindowClosed):
        return  # the channel would not take it now: the dispatcher moves or parks it
    assert not failed.value.permanent, f"{channel}: {failed.value} was called permanent"
    assert str(failed.value), f"{channel}: a send error without words"
