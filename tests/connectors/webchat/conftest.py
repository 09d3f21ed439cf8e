"""The web chat as a browser's widget sees it: the whole service, WebSocket frames, HTTP uploads.

``Visitor`` is one open widget (aiohttp's WebSocket client with the town site's ``Origin``);
frames it did not ask for yet are kept, so a test can wait for the one it expects while acks
and queue updates arrive in between. Answers that leave by e-mail reach a real SMTP server
(aiosmtpd, the e-mail tests' ``Recorder``).
"""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from connectors.webchat.connector import WebChatConnector
from ingest.model import Channel
from meldpunt.app import RUNTIME, create_app
from tests.connectors.email.conftest import Recorder, Start, start_smtp
from tests.service import RunningService, sample_config, until

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[[web.Application], Awaitable[Client]]

PUBLIC_URL = "https://meldpunt.wingene.example"
SITE = "https://www.wingene.example"
TOWN_ADDRESS = "contactpunt@wingene.example"
FAST = {
    "routing:\n  file:": "dispatch: {interval_seconds: 0.05, backoff_seconds: 0.1, "
    "backoff_max_seconds: 0.2}\nrouting:\n  file:",
    "queue_refresh_seconds: 5 ": "queue_refresh_seconds: 0.1 ",
    "grace_seconds: 30 ": "grace_seconds: 0 ",
}

__all__ = ["Recorder", "start_smtp"]


@dataclass
class Visitor:
    """One open widget: the frames it received, in order, and what it can send."""

    ws: aiohttp.ClientWebSocketResponse
    welcome: dict[str, Any]
    backlog: list[dict[str, Any]] = field(default_factory=list)

    @property
    def token(self) -> str:
        return str(self.welcome["visitor"])

    @property
    def id(self) -> str:
        return self.token.split(".", 1)[0]

    async def send(self, **frame: Any) -> None:
        await self.ws.send_str(json.dumps(frame))

    async def frame(
        self,
        kind: str,
        where: Callable[[dict[str, Any]], bool] = lambda _: True,
        within: float = 10.0,
    ) -> dict[str, Any]:
        """The first frame of ``kind`` matching ``where``, received or still to come."""
        for n, seen in enumerate(self.backlog):
            if seen["type"] == kind and where(seen):
                return self.backlog.pop(n)
        async with asyncio.timeout(within):
            while True:
                message = await self.ws.receive()
                assert message.type is aiohttp.WSMsgType.TEXT, f"socket ended: {message}"
                frame: dict[str, Any] = json.loads(message.data)
                if frame["type"] == kind and where(frame):
                    return frame
                self.backlog.append(frame)

    async def say(self, text: str, client_id: str | None = None) -> dict[str, Any]:
        """Send a message; its ``received`` or ``error`` frame."""
        client_id = client_id or str(uuid.uuid4())
        await self.send(type="message", client_id=client_id, text=text)
        return await self.answer(client_id)

    async def answer(self, client_id: str) -> dict[str, Any]:
        def about(frame: dict[str, Any]) -> bool:
            return frame.get("client_id") == client_id

        for n, seen in enumerate(self.backlog):
            if seen["type"] in ("received", "error") and about(seen):
                return self.backlog.pop(n)
        async with asyncio.timeout(10):
            while True:
                message = await self.ws.receive()
                assert message.type is aiohttp.WSMsgType.TEXT, f"socket ended: {message}"
                frame: dict[str, Any] = json.loads(message.data)
                if frame["type"] in ("received", "error") and about(frame):
                    return frame
                self.backlog.append(frame)

    async def close(self) -> None:
        await self.ws.close()


@dataclass
class Town(RunningService):
    """The running service and the SMTP server its e-mail answers reach."""

    smtp: Recorder

    @property
    def chat(self) -> WebChatConnector:
        connector = self.client.app[RUNTIME].connectors[Channel.WEBCHAT]
        assert isinstance(connector, WebChatConnector)
        return connector

    async def connect(
        self, origin: str | None = SITE, headers: dict[str, str] | None = None
    ) -> aiohttp.ClientWebSocketResponse:
        sent = dict(headers or {})
        if origin is not None:
            sent["Origin"] = origin
        return await self.client.ws_connect("/chat/ws", headers=sent)

    async def open_chat(
        self, token: str | None = None, lang: str = "nl", origin: str = SITE
    ) -> Visitor:
        ws = await self.connect(origin)
        await ws.send_str(json.dumps({"type": "hello", "visitor": token, "lang": lang}))
        welcome = json.loads((await ws.receive(timeout=10)).data)
        assert welcome["type"] == "welcome", welcome
        return Visitor(ws, welcome)

    async def reply(self, reference: str, text: str, **extra: Any) -> dict[str, Any]:
        response = await self.client.post(
            f"/api/v1/tickets/{reference}/replies",
            json={"text": text, **extra},
            headers={"Authorization": f"Bearer {await self.staff_token()}"},
        )
        assert response.status == 201, await response.text()
        body: dict[str, Any] = await response.json()
        return body

    async def upload(
        self,
        token: str | None,
        data: bytes,
        *,
        filename: str = "foto.jpg",
        content_type: str = "image/jpeg",
        client_id: str | None = None,
        text: str | None = None,
        origin: str | None = SITE,
    ) -> aiohttp.ClientResponse:
        form = aiohttp.FormData()
        if token is not None:
            form.add_field("visitor", token)
        form.add_field("client_id", client_id or str(uuid.uuid4()))
        if text is not None:
            form.add_field("text", text)
        form.add_field("file", io.BytesIO(data), filename=filename, content_type=content_type)
        headers = {"Origin": origin} if origin else {}
        return await self.client.post("/chat/upload", data=form, headers=headers)

    async def wait_for_mail(self, count: int) -> None:
        async def enough() -> bool:
            return len(self.smtp.received) >= count

        await until(enough, f"{count} mail(s) received by the SMTP server")


StartTown = Callable[..., Awaitable[Town]]


@pytest.fixture
def start_town(
    tmp_path: Path,
    database_url: str,
    aiohttp_client: ClientFactory,
    monkeypatch: pytest.MonkeyPatch,
    start_smtp: Start,
) -> StartTown:
    """Starts the service; keyword arguments replace text in the sample configuration."""

    async def start(**replace: str) -> Town:
        recorder = Recorder()
        port = await start_smtp(recorder)
        for name, value in {
            "MELDPUNT_PUBLIC_URL": PUBLIC_URL,
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(port),
            "SMTP_TLS": "none",
            "SMTP_FROM": TOWN_ADDRESS,
        }.items():
            monkeypatch.setenv(name, value)
        for name in ("IMAP_HOST", "IMAP_USER"):
            monkeypatch.delenv(name, raising=False)
        config = sample_config(tmp_path, database_url, monkeypatch, replace=FAST | replace)
        client = await aiohttp_client(create_app(config, migrate=True))
        return Town(client, recorder)

    return start


@pytest.fixture
async def town(start_town: StartTown) -> Town:
    return await start_town()
