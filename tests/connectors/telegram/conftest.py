"""A local stand-in for Telegram's Bot API, and the whole service wired to it.

The fake answers ``/bot<token>/<method>`` as Telegram does (``{"ok": true, "result": ...}`` or
``{"ok": false, "error_code": ..., "description": ...}``), records every call with its fields (the
JSON-encoded ones decoded, uploads kept), serves files under ``/file/bot<token>/<path>``, and can
be told to refuse a chat (403 blocked, 400 chat not found), to ask for patience (429 with
``retry_after``), to fail outright, or to hang a number of sends (no answer until the test ends).
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from meldpunt.app import create_app
from tests.service import RunningService, sample_config, until

TOKEN = "7012345678:AAHk3xQ9vWingene_test-token_0123456789"
SECRET = "wingene-webhook-secret_0123456789"
PUBLIC_URL = "https://meldpunt.wingene.example"
WEBHOOK = "/webhooks/telegram"
CITIZEN = 123456789
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "telegram"
BOT_USER = {
    "id": 7012345678,
    "is_bot": True,
    "first_name": "Contactpunt 1750 Wingene",
    "username": "wingene_meldpunt_bot",
    "can_join_groups": False,
    "can_read_all_group_messages": False,
    "supports_inline_queries": False,
}
# Fields PTB sends JSON-encoded inside the form.
_JSON_FIELDS = {"reply_markup", "allowed_updates", "entities", "reply_parameters"}
# Methods that deliver something to a chat: the ones a refusal or flood control applies to.
_SENDS = {"sendMessage", "sendPhoto", "sendDocument"}
FAST_DISPATCH = (
    "routing:\n  file:",
    "dispatch: {interval_seconds: 0.05, backoff_seconds: 0.1, backoff_max_seconds: 0.2}\n"
    "routing:\n  file:",
)

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[[web.Application], Awaitable[Client]]


def fixture(name: str) -> dict[str, Any]:
    """A recorded update (a fresh copy: tests change ids and texts)."""
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    return copy.deepcopy(data)


def text_update(update_id: int, message_id: int, text: str, **message: Any) -> dict[str, Any]:
    """The text fixture as another message of the same chat."""
    data = fixture("text")
    data["update_id"] = update_id
    data["message"].update(message_id=message_id, text=text, **message)
    return data


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    uploads: dict[str, tuple[str, bytes]]
    status: int = 200
    result: Any = None


@dataclass
class FakeTelegram:
    """The fake's state: calls received, files to serve, failures to inject."""

    port: int = 0
    calls: list[Call] = field(default_factory=list)
    # file_id -> (file_path, bytes)
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    downloads: list[str] = field(default_factory=list)
    # chat id -> (HTTP status, description)
    refuse: dict[int, tuple[int, str]] = field(default_factory=dict)
    retry_after_next: int = 0
    fail_next: int = 0
    # Sends that get no answer until ``released`` is set (the fixture sets it at the end).
    hang_next: int = 0
    released: asyncio.Event = field(default_factory=asyncio.Event)
    token: str = TOKEN
    webhook: dict[str, Any] = field(default_factory=dict)
    pending_updates: int = 0
    last_error: tuple[int, str] | None = None
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(101))

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def sent(self, method: str | None = None) -> list[Call]:
        """Successful calls, in order, of one method or of every method that sends."""
        wanted = {method} if method else _SENDS
        return [c for c in self.calls if c.method in wanted and c.status == 200]


def _error(status: int, description: str, **parameters: int) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if parameters:
        body["parameters"] = parameters
    return web.json_response(body, status=status)


async def _read(request: web.Request) -> tuple[dict[str, Any], dict[str, tuple[str, bytes]]]:
    params: dict[str, Any] = {}
    uploads: dict[str, tuple[str, bytes]] = {}
    if request.content_type == "application/json":
        return dict(await request.json()), uploads
    for key, value in (await request.post()).items():
        if isinstance(value, web.FileField):
            uploads[key] = (value.filename, value.file.read())
        elif key in _JSON_FIELDS:
            params[key] = json.loads(value)
        else:
            params[key] = value
    return params, uploads


def fake_app(state: FakeTelegram) -> web.Application:
    def message(chat_id: int, **content: Any) -> dict[str, Any]:
        return {
            "message_id": next(state._ids),
            "from": BOT_USER,
            "chat": {"id": chat_id, "first_name": "Marie", "type": "private"},
            "date": 1794820400,
            **content,
        }

    def results(name: str, params: dict[str, Any], uploads: dict[str, Any]) -> Any:
        if name == "getMe":
            return BOT_USER
        if name == "sendMessage":
            return message(int(params["chat_id"]), text=params["text"])
        if name == "sendPhoto":
            size = len(uploads["photo"][1])
            photo = {"file_id": "AgAC-out", "file_unique_id": "AQAD-out", "width": 800}
            return message(
                int(params["chat_id"]), photo=[{**photo, "height": 600, "file_size": size}]
            )
        if name == "sendDocument":
            filename, data = uploads["document"]
            document = {"file_id": "BQAC-out", "file_unique_id": "AgAD-out", "file_size": len(data)}
            return message(int(params["chat_id"]), document={**document, "file_name": filename})
        if name == "answerCallbackQuery":
            return True
        if name == "setWebhook":
            state.webhook = params
            return True
        if name == "getWebhookInfo":
            info: dict[str, Any] = {
                "url": state.webhook.get("url", ""),
                "has_custom_certificate": False,
                "pending_update_count": state.pending_updates,
                "max_connections": 40,
                "ip_address": "149.154.167.220",
            }
            if "allowed_updates" in state.webhook:
                info["allowed_updates"] = state.webhook["allowed_updates"]
            if state.last_error:
                info["last_error_date"], info["last_error_message"] = state.last_error
            return info
        return None

    async def method(request: web.Request) -> web.Response:
        if request.match_info["token"] != state.token:
            return _error(401, "Unauthorized")
        name = request.match_info["method"]
        params, uploads = await _read(request)
        call = Call(name, params, uploads)
        state.calls.append(call)
        if state.fail_next > 0:
            state.fail_next -= 1
            call.status = 500
            return _error(500, "Internal Server Error")
        if name in _SENDS:
            if state.hang_next > 0:
                state.hang_next -= 1
                call.status = 504
                await state.released.wait()
                return _error(504, "Gateway Timeout")
            if state.retry_after_next > 0:
                state.retry_after_next -= 1
                call.status = 429
                return _error(429, "Too Many Requests: retry after 1", retry_after=1)
            refused = state.refuse.get(int(params["chat_id"]))
            if refused is not None:
                call.status = refused[0]
                return _error(*refused)
        if name == "getFile":
            found = state.files.get(str(params.get("file_id")))
            if found is None:
                call.status = 400
                return _error(400, "Bad Request: invalid file_id")
            path, data = found
            result = {
                "file_id": params["file_id"],
                "file_unique_id": f"u-{params['file_id']}",
                "file_size": len(data),
                "file_path": path,
            }
            return web.json_response({"ok": True, "result": result})
        call.result = results(name, params, uploads)
        if call.result is None:
            call.status = 404
            return _error(404, "Not Found")
        return web.json_response({"ok": True, "result": call.result})

    async def download(request: web.Request) -> web.Response:
        if request.match_info["token"] != state.token:
            return web.Response(status=401)
        path = request.match_info["path"]
        state.downloads.append(path)
        found = next((data for p, data in state.files.values() if p == path), None)
        if found is None:
            return web.Response(status=404)
        return web.Response(body=found, content_type="application/octet-stream")

    app = web.Application()
    app.router.add_route("*", "/bot{token}/{method}", method)
    app.router.add_get("/file/bot{token}/{path:.+}", download)
    return app


@pytest.fixture
async def fake_telegram() -> AsyncIterator[FakeTelegram]:
    state = FakeTelegram()
    # No access log: it would print the token in every path, which is the fake's doing.
    runner = web.AppRunner(fake_app(state), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None and server.sockets  # type: ignore[attr-defined]
    state.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    try:
        yield state
    finally:
        state.released.set()
        await runner.cleanup()


def telegram_env(monkeypatch: pytest.MonkeyPatch, fake: FakeTelegram) -> None:
    for name, value in {
        "MELDPUNT_PUBLIC_URL": PUBLIC_URL,
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_WEBHOOK_SECRET": SECRET,
        "TELEGRAM_API_BASE": fake.base,
    }.items():
        monkeypatch.setenv(name, value)


@dataclass
class Town(RunningService):
    """The running service with the fake Bot API its answers go to."""

    telegram: FakeTelegram

    async def post(self, update: dict[str, Any] | bytes, *, secret: str | None = SECRET) -> Any:
        body = update if isinstance(update, bytes) else json.dumps(update).encode()
        headers = {"Content-Type": "application/json"}
        if secret is not None:
            headers["X-Telegram-Bot-Api-Secret-Token"] = secret
        return await self.client.post(WEBHOOK, data=body, headers=headers)

    async def wait_for_calls(self, method: str, count: int) -> list[Call]:
        async def enough() -> bool:
            return len(self.telegram.sent(method)) >= count

        await until(enough, f"{count} {method} call(s) accepted by the fake Bot API")
        return self.telegram.sent(method)

    async def api(self, path: str) -> Any:
        response = await self.client.get(
            f"/api/v1{path}", headers={"Authorization": f"Bearer {await self.staff_token()}"}
        )
        assert response.status == 200, await response.text()
        return await response.json()

    async def reply(self, reference: str, text: str, **extra: Any) -> None:
        response = await self.client.post(
            f"/api/v1/tickets/{reference}/replies",
            json={"text": text, **extra},
            headers={"Authorization": f"Bearer {await self.staff_token()}"},
        )
        assert response.status == 201, await response.text()


StartTown = Callable[..., Awaitable[Town]]


@pytest.fixture
def start_town(
    tmp_path: Path,
    database_url: str,
    aiohttp_client: ClientFactory,
    monkeypatch: pytest.MonkeyPatch,
    fake_telegram: FakeTelegram,
) -> StartTown:
    async def start(**replace: str) -> Town:
        telegram_env(monkeypatch, fake_telegram)
        config = sample_config(
            tmp_path, database_url, monkeypatch, replace=dict([FAST_DISPATCH], **replace)
        )
        client = await aiohttp_client(create_app(config, migrate=True))
        return Town(client, fake_telegram)

    return start


@pytest.fixture
async def town(start_town: StartTown) -> Town:
    return await start_town()
