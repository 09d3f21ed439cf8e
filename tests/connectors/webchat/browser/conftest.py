"""The web chat as a visitor meets it: meldpunt itself, the town's website on another origin, and
headless Chromium.

``meldpunt`` is the whole service (the sample configuration with the chat allowed on the town's
site, fast dispatch) served on a real port, so the widget's WebSocket and uploads go over the
network as in production; the town's site is a separate small server whose page carries the one
script tag, so everything the widget does is cross-origin.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from aiohttp import web
from playwright.async_api import Locator, Page, expect

from ingest.hours import WEEKDAYS
from meldpunt.app import RUNTIME, create_app
from meldpunt.config import LoadedConfig, load_config
from store.db import Database
from tests.browser import (  # noqa: F401 - fixtures and the hook they need, for this folder
    NewContext,
    browser_fixture,
    chromium_fixture,
    new_context_fixture,
    page_fixture,
    pytest_runtest_makereport,
)
from tests.conftest import free_port
from tests.service import ServiceProbe, sample_config, until

TIMEZONE = "Europe/Brussels"
ALWAYS_OPEN: dict[str, Any] = {day: ["00:00-24:00"] for day in WEEKDAYS} | {"closed_days": []}


def closed_today() -> dict[str, Any]:
    """Office hours that are closed all of today (a closing day) and open tomorrow at 08:30."""
    today = datetime.now(ZoneInfo(TIMEZONE)).date().isoformat()
    return {day: ["08:30-12:00"] for day in WEEKDAYS} | {"closed_days": [today]}


def tomorrow_at(hour: int, minute: int) -> datetime:
    now = datetime.now(ZoneInfo(TIMEZONE))
    return (now + timedelta(days=1)).replace(hour=hour, minute=minute, second=0, microsecond=0)


@dataclass
class TownSite:
    """The town's own website: pages that embed the widget with its one script tag."""

    meldpunt_base: str = ""
    port: int = 0

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "/", **query: str) -> str:
        suffix = "?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else ""
        return f"{self.origin}{path}{suffix}"


# The town's stylesheet is hostile on purpose: the widget must look the same inside it.
PAGE = """<!doctype html>
<html lang="nl">
<head>
<meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Gemeente Wingene – {title}</title>
<style>
  * {{ color: #c0f !important; font-family: serif !important; }}
  button {{ background: yellow !important; font-size: 40px; border: 5px dotted red; }}
  textarea, input {{ display: block; width: 10px; }}
  html {{ font-size: 62.5%; }}
</style>
</head>
<body>
<header><a href="/">Home</a> <a href="/afval">Afval</a></header>
<main><h1>{title}</h1><p>Welkom op de website van de gemeente.</p>
<label>Zoeken <input name="q"></label></main>
<script src="{base}/chat/widget.js"{lang} defer></script>
</body>
</html>
"""


@pytest.fixture
async def town_site() -> AsyncIterator[TownSite]:
    site_state = TownSite()

    async def page_of(request: web.Request) -> web.Response:
        title = {"/": "Home", "/afval": "Afval"}.get(request.path, "Pagina")
        lang = request.query.get("lang", "nl")
        tag = f' data-lang="{lang}"' if lang != "none" else ""
        html = PAGE.format(title=title, base=site_state.meldpunt_base, lang=tag)
        return web.Response(text=html, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page_of)
    app.router.add_get("/afval", page_of)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None and server.sockets  # type: ignore[attr-defined]
    site_state.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    try:
        yield site_state
    finally:
        await runner.cleanup()


@dataclass
class Meldpunt(ServiceProbe):
    """The whole service on a real port; can be stopped and started again on the same port."""

    config: LoadedConfig
    port: int
    runner: web.AppRunner | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def db(self) -> Database:
        assert self.runner is not None, "meldpunt is not running"
        return self.runner.app[RUNTIME].db

    async def start(self) -> None:
        # A short shutdown timeout: open chat sockets must not hold up a stop for a minute.
        self.runner = web.AppRunner(create_app(self.config, migrate=True), shutdown_timeout=2)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            runner, self.runner = self.runner, None
            await runner.cleanup()

    async def reply(self, reference: str, text: str) -> None:
        """A member of staff answers through the REST API, as the inbox does."""
        await self.reply_over_http(self.base, reference, text)


def chat_config(
    folder: Path,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    *,
    port: int,
    site_origin: str,
    office_hours: dict[str, Any],
    webchat: dict[str, Any],
) -> LoadedConfig:
    """The sample configuration with the chat allowed on ``site_origin`` and the given hours."""
    monkeypatch.setenv("MELDPUNT_PUBLIC_URL", f"http://127.0.0.1:{port}")
    main = sample_config(folder, database_url, monkeypatch).config_file
    data = yaml.safe_load(main.read_text(encoding="utf-8"))
    data["office_hours"] = office_hours
    data["dispatch"] = {
        "interval_seconds": 0.05,
        "backoff_seconds": 0.1,
        "backoff_max_seconds": 0.2,
    }
    section = data["channels"].get("webchat") or {}
    section.update({"allowed_origins": [site_origin], "queue_refresh_seconds": 0.2}, **webchat)
    data["channels"]["webchat"] = section
    main.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return load_config(main)


StartMeldpunt = Callable[..., Awaitable[Meldpunt]]


@pytest.fixture
async def start_meldpunt(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch, town_site: TownSite
) -> AsyncIterator[StartMeldpunt]:
    """Call it to start meldpunt: ``await start_meldpunt(office_hours=..., max_chars=...)``."""
    started: list[Meldpunt] = []

    async def start(office_hours: dict[str, Any] | None = None, **webchat: Any) -> Meldpunt:
        port = free_port()
        config = chat_config(
            tmp_path, database_url, monkeypatch,
            port=port, site_origin=town_site.origin,
            office_hours=office_hours or ALWAYS_OPEN, webchat=webchat,
        )  # fmt: skip
        service = Meldpunt(config, port)
        await service.start()
        started.append(service)
        town_site.meldpunt_base = service.base
        return service

    try:
        yield start
    finally:
        for service in started:
            await service.stop()


@pytest.fixture
async def meldpunt(start_meldpunt: StartMeldpunt) -> Meldpunt:
    """meldpunt with the chat staffed around the clock."""
    return await start_meldpunt()


@dataclass
class Visitor:
    """One visitor (a browser context of their own) on the town's site, and the widget's parts.

    Locators go by role and accessible name, as a screen reader user would find them.
    """

    page: Page
    site: TownSite
    strings: dict[str, str] = field(
        default_factory=lambda: {
            "launcher": "Chat met ons",
            "dialog": "Chat met ons",
            "message": "Uw bericht",
            "send": "Verzenden",
        }
    )

    @property
    def launcher(self) -> Locator:
        return self.page.get_by_role("button", name=self.strings["launcher"], exact=True)

    @property
    def dialog(self) -> Locator:
        return self.page.get_by_role("dialog", name=self.strings["dialog"])

    @property
    def message_box(self) -> Locator:
        return self.dialog.get_by_role("textbox", name=self.strings["message"])

    @property
    def log(self) -> Locator:
        return self.dialog.get_by_role("log")

    def lines(self, who: str = "") -> Locator:
        """The conversation's messages, or only ``visitor``'s / ``staff``'s."""
        return self.log.locator(f".msg{'.' + who if who else ''}")

    async def visit(self, path: str = "/", **query: str) -> None:
        await self.page.goto(self.site.url(path, **query))
        await expect(self.launcher).to_be_visible()

    async def open(self) -> None:
        await self.launcher.click()
        await expect(self.dialog).to_be_visible()

    async def write(self, text: str) -> None:
        await self.message_box.fill(text)
        await self.message_box.press("Enter")

    async def focused(self) -> str:
        """What has keyboard focus, inside the widget's shadow root too: role-ish and name."""
        return str(
            await self.page.evaluate(
                """() => {
                  let el = document.activeElement;
                  while (el && el.shadowRoot && el.shadowRoot.activeElement) {
                    el = el.shadowRoot.activeElement;
                  }
                  if (!el) return "";
                  const name = el.getAttribute("aria-label") || el.labels?.[0]?.textContent
                    || el.textContent || "";
                  return `${el.tagName.toLowerCase()}: ${name.trim()}`;
                }"""
            )
        )


NewVisitor = Callable[..., Awaitable[Visitor]]


@pytest.fixture
def new_visitor(new_context: NewContext, town_site: TownSite) -> NewVisitor:
    """A visitor in a fresh browser context (own storage); options go to ``new_context``."""

    async def make(**options: Any) -> Visitor:
        context = await new_context(**options)
        return Visitor(await context.new_page(), town_site)

    return make


@pytest.fixture
async def visitor(new_visitor: NewVisitor) -> Visitor:
    return await new_visitor()


REFERENCE = re.compile(r"1750-\d{6}")
WIDGET = Path(__file__).resolve().parents[4] / "connectors" / "webchat" / "static" / "widget.js"
FAKE_TOKEN = "visitor0123456789abcd.c2lnbmF0dXJl"


def received(frame: dict[str, Any], number: int) -> dict[str, Any]:
    return {
        "type": "received",
        "client_id": frame["client_id"],
        "id": f"in-{number}",
        "reference": "1750-000042",
        "at": "2026-11-16T10:00:00Z",
    }


@dataclass
class FakeChat:
    """A scripted stand-in for meldpunt's chat endpoints, for what the real service will not do
    on demand (intake down, a frame twice, hours changing now).

    It serves the real widget.js, answers ``hello`` with ``welcome``, records every frame and
    upload, answers each one with what ``respond`` returns (by default as meldpunt would when
    all is well), and lets the test push frames of its own.
    """

    port: int = 0
    welcome: dict[str, Any] = field(
        default_factory=lambda: {
            "type": "welcome",
            "visitor": FAKE_TOKEN,
            "lang": "nl",
            "open": True,
            "next_open": None,
            "schedule": [],
            "timezone": "Europe/Brussels",
            "transcript": [],
            "queue": None,
            "reference": None,
            "contact": {"email": False, "phone": False},
            "limits": {
                "max_chars": 2000,
                "max_upload_bytes": 5 * 1024 * 1024,
                "upload_types": ["image/jpeg", "image/png", "image/webp", "image/gif"],
            },
        }
    )
    frames: list[dict[str, Any]] = field(default_factory=list)
    uploads: list[dict[str, str]] = field(default_factory=list)
    sockets: list[web.WebSocketResponse] = field(default_factory=list)
    respond: Callable[[dict[str, Any]], list[dict[str, Any]]] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def sent(self, kind: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f.get("type") == kind]

    async def wait_for(self, count: int, kind: str) -> list[dict[str, Any]]:
        async def enough() -> bool:
            return len(self.sent(kind)) >= count

        await until(enough, f"{count} '{kind}' frame(s) from the widget")
        return self.sent(kind)

    async def push(self, frame: dict[str, Any]) -> None:
        for ws in self.sockets:
            if not ws.closed:
                await ws.send_json(frame)

    def answer(self, frame: dict[str, Any]) -> list[dict[str, Any]]:
        return (self.respond or self.as_meldpunt)(frame)

    def as_meldpunt(self, frame: dict[str, Any]) -> list[dict[str, Any]]:
        """What meldpunt answers when all is well."""
        kind = frame.get("type")
        if kind == "hello":
            return [self.welcome]
        if kind in ("message", "offline_message"):
            return [received(frame, len(self.frames))]
        if kind == "contact":
            return [{"type": "contact_saved", "email": bool(frame["email"]), "phone": False}]
        return [{"type": "pong"}] if kind == "ping" else []


@pytest.fixture
async def fake_chat(town_site: TownSite) -> AsyncIterator[FakeChat]:
    fake = FakeChat()

    async def widget(request: web.Request) -> web.Response:
        return web.Response(body=WIDGET.read_bytes(), content_type="text/javascript")

    async def socket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        fake.sockets.append(ws)
        async for message in ws:
            frame = message.json()
            fake.frames.append(frame)
            for answer in fake.answer(frame):
                await ws.send_json(answer)
        return ws

    async def upload(request: web.Request) -> web.Response:
        form = await request.post()
        fake.uploads.append(
            {k: v.filename if isinstance(v, web.FileField) else str(v) for k, v in form.items()}
        )
        answer = received({"client_id": form["client_id"]}, len(fake.uploads))
        answer["attachments"] = [
            {"url": "/chat/files/9", "name": "put.png", "content_type": "image/png"}
        ]
        return web.json_response(answer, headers={"Access-Control-Allow-Origin": town_site.origin})

    async def photo(request: web.Request) -> web.Response:
        return web.Response(body=PNG, content_type="image/png")

    app = web.Application()
    app.router.add_get("/chat/widget.js", widget)
    app.router.add_get("/chat/ws", socket)
    app.router.add_post("/chat/upload", upload)
    app.router.add_get("/chat/files/{id}", photo)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None and server.sockets  # type: ignore[attr-defined]
    fake.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    town_site.meldpunt_base = fake.base
    try:
        yield fake
    finally:
        for ws in fake.sockets:
            await ws.close()
        await runner.cleanup()


def png(width: int = 3, height: int = 2) -> bytes:
    """A small, valid PNG image (red pixels)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    pixels = b"".join(b"\x00" + b"\xcc\x22\x22" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(pixels))
        + chunk(b"IEND", b"")
    )


PNG = png()
