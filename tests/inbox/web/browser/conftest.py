"""The staff web inbox as staff meet it: the whole service on a real port, and headless Chromium.

``inbox`` is meldpunt with the sample configuration, served by ``aiohttp.test_utils.TestServer``
in the test's own event loop; tests add staff and tickets to it directly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from ingest.model import Channel, ContactRef, Identity, IdentityKind, Kind
from meldpunt.app import RUNTIME, create_app
from store.db import Database
from store.users import create_user
from tests.browser import (  # noqa: F401 - fixtures and the hook they need, for this folder
    ARTEFACTS,
    browser_fixture,
    chromium_fixture,
    new_context_fixture,
    page_fixture,
    pytest_runtest_makereport,
)
from tests.inbox.web.conftest import PASSWORD
from tests.messages import inbound
from tests.service import sample_config

# Screenshots kept after every run, so anyone can see what staff see.
INBOX_ARTEFACTS = ARTEFACTS / "inbox"


@dataclass
class Inbox:
    """The running service, and what tests put into it."""

    server: TestServer

    @property
    def app(self) -> web.Application:
        return self.server.app

    @property
    def db(self) -> Database:
        return self.app[RUNTIME].db

    def url(self, path: str = "/") -> str:
        return str(self.server.make_url(path))

    async def add_user(
        self,
        email: str,
        role: str = "agent",
        departments: tuple[str, ...] = ("front-desk",),
        name: str | None = None,
        password: str = PASSWORD,
    ) -> None:
        async with self.db.session() as session:
            await create_user(session, email, role, departments, password, name)

    async def submit(
        self,
        text: str,
        subject: str,
        *,
        name: str = "An Peeters",
        email: str = "burger@example.be",
        channel: Channel = Channel.WEBFORM,
        kind: Kind = Kind.REPORT,
    ) -> str:
        """A citizen's message through intake, as a connector hands it over; its reference."""
        message = dataclasses.replace(
            inbound(text, subject=subject, email=email, channel=channel, kind=kind),
            sender=ContactRef((Identity(IdentityKind.EMAIL, email),), display_name=name),
        )
        result = await self.app[RUNTIME].intake.submit(message)
        assert result.ticket_reference is not None
        return result.ticket_reference


@pytest.fixture
async def inbox(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Inbox]:
    config = sample_config(tmp_path, database_url, monkeypatch)
    server = TestServer(create_app(config, migrate=True), host="127.0.0.1")
    await server.start_server()
    try:
        yield Inbox(server)
    finally:
        await server.close()


@pytest.fixture
def artefacts() -> Path:
    INBOX_ARTEFACTS.mkdir(parents=True, exist_ok=True)
    return INBOX_ARTEFACTS
