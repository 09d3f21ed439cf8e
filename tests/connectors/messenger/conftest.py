"""A local stand-in for Meta's Graph API and CDN, and Meta's way of signing webhooks.

The fake answers ``POST /{version}/me/messages`` as the Send API does (``recipient_id`` and
``message_id``, or Graph's error JSON), only to the Page token with its app secret proof; it
records every call with its JSON body or multipart fields, can be told to fail the next calls
with given errors, and serves attachment files under ``/v/...`` as Meta's CDN does.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import BodyPartReader, web

# The e-mail tests' SMTP server, for answers that fall back to e-mail.
from tests.connectors.email.conftest import start_smtp  # noqa: F401

PAGE_ID = "104857600000001"
PSID = "6543210987654321"
APP_SECRET = "3f2a9c0d8b7e6f5a4b3c2d1e0f9a8b7c"
VERIFY_TOKEN = "wingene-meldpunt-verify"
PAGE_TOKEN = "EAAJZCtest0PageToken0Wingene0123456789"
GRAPH_VERSION = "v21.0"
META_CDN = "https://scontent.xx.fbcdn.net"
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "messenger"


def now_ms() -> int:
    return int(time.time() * 1000)


def fixture(name: str, *, cdn: str | None = None, at: int | None = None) -> dict[str, Any]:
    """A recorded Messenger webhook, its events dated now (or ``at``), files on ``cdn``."""
    text = (FIXTURES / f"{name}.json").read_text(encoding="utf-8")
    if cdn is not None:
        text = text.replace(META_CDN, cdn)
    payload: dict[str, Any] = json.loads(text)
    moment = at if at is not None else now_ms()
    for n, entry in enumerate(payload["entry"]):
        entry["time"] = moment
        for m, event in enumerate(entry.get("messaging", [])):
            # A batch keeps its order: each event a millisecond after the one before.
            event["timestamp"] = moment - 100 + 10 * n + m
            for receipt in ("delivery", "read"):
                if receipt in event:
                    event[receipt]["watermark"] = moment
    return payload


def message(text: str, mid: str, psid: str = PSID, at: int | None = None) -> dict[str, Any]:
    """A plain text message webhook."""
    payload = fixture("text", at=at)
    event = payload["entry"][0]["messaging"][0]
    event["sender"]["id"] = psid
    event["message"] = {"mid": mid, "text": text}
    return payload


def signed(body: bytes, secret: str = APP_SECRET) -> dict[str, str]:
    """The headers Meta sends with ``body``."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}", "Content-Type": "application/json"}


def graph_error(
    code: int, message: str, subcode: int | None = None, status: int = 400
) -> tuple[int, dict[str, Any]]:
    """An error answer as the Graph API writes it."""
    error: dict[str, Any] = {
        "message": message,
        "type": "OAuthException",
        "code": code,
        "fbtrace_id": "AbCdEfGh123",
    }
    if subcode is not None:
        error["error_subcode"] = subcode
    return status, {"error": error}


@dataclass
class Call:
    """One Send API request as the fake received it."""

    query: dict[str, str]
    body: dict[str, Any]
    files: dict[str, tuple[str, str, bytes]]
    answer: int
    message_id: str | None = None


@dataclass
class FakeGraph:
    """The fake's state: calls received, files to serve, failures to inject."""

    port: int = 0
    calls: list[Call] = field(default_factory=list)
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    file_requests: int = 0
    # Errors for the next calls, in order; and for the n-th call (counted from 1).
    fail: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    fail_at: dict[int, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def sent(self) -> list[Call]:
        """The messages Meta accepted, in order."""
        return [c for c in self.calls if c.answer == 200]

    def texts(self) -> list[str]:
        return [c.body["message"].get("text", "") for c in self.sent()]


def fake_app(state: FakeGraph) -> web.Application:
    proof = hmac.new(APP_SECRET.encode(), PAGE_TOKEN.encode(), hashlib.sha256).hexdigest()

    async def send(request: web.Request) -> web.Response:
        query = dict(request.query)
        if query.get("access_token") != PAGE_TOKEN or query.get("appsecret_proof") != proof:
            return web.json_response(graph_error(190, "Invalid OAuth access token.")[1], status=400)
        body: dict[str, Any] = {}
        files: dict[str, tuple[str, str, bytes]] = {}
        if request.content_type == "application/json":
            body = await request.json()
        else:
            async for part in await request.multipart():
                assert isinstance(part, BodyPartReader)
                name, data = part.name or "", bytes(await part.read())
                if part.filename:
                    files[name] = (part.filename, part.headers.get("Content-Type", ""), data)
                else:
                    text = data.decode()
                    body[name] = json.loads(text) if name in ("recipient", "message") else text
        call = Call(query, body, files, 200)
        state.calls.append(call)
        failure = state.fail_at.pop(len(state.calls), None)
        if failure is None and state.fail:
            failure = state.fail.pop(0)
        if failure is not None:
            call.answer, error = failure
            return web.json_response(error, status=call.answer)
        call.message_id = f"m_fake{next(state._ids):04d}"
        return web.json_response(
            {"recipient_id": body["recipient"]["id"], "message_id": call.message_id}
        )

    async def cdn(request: web.Request) -> web.Response:
        state.file_requests += 1
        found = state.files.get(request.path)
        if found is None:
            return web.Response(status=404)
        content_type, data = found
        return web.Response(body=data, content_type=content_type)

    app = web.Application()
    app.router.add_post(f"/{GRAPH_VERSION}/me/messages", send)
    app.router.add_get("/v/{path:.*}", cdn)
    return app


@pytest.fixture
async def fake_graph() -> AsyncIterator[FakeGraph]:
    state = FakeGraph()
    runner = web.AppRunner(fake_app(state))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None and server.sockets  # type: ignore[attr-defined]
    state.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    try:
        yield state
    finally:
        await runner.cleanup()
