"""A local stand-in for Twilio's REST API, and Twilio's way of signing webhooks.

The fake answers ``POST /2010-04-01/Accounts/{sid}/Messages.json`` as Twilio does (201 with the
message resource as JSON, or Twilio's error JSON), records every call, serves media files and
call recordings only to the account's credentials, and can be told to fail or hang a number of
times.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import pytest
from aiohttp import web
from twilio.request_validator import RequestValidator

from ingest.sms import sms_segments

ACCOUNT_SID = "AC0123456789abcdef0123456789abcdef"
AUTH_TOKEN = "0123456789abcdef0123456789abcdef"
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "twilio"


def fixture(name: str, **fields: str) -> dict[str, str]:
    """A recorded Twilio payload with some fields replaced (e.g. MessageSid)."""
    text = (FIXTURES / f"{name}.urlencoded").read_text(encoding="utf-8").strip()
    form = dict(parse_qsl(text, keep_blank_values=True))
    form.update(fields)
    return form


def signed(url: str, form: dict[str, str], token: str = AUTH_TOKEN) -> tuple[bytes, dict[str, str]]:
    """The body and headers of a webhook Twilio would post to ``url``."""
    signature = RequestValidator(token).compute_signature(url, form)
    return urlencode(form).encode(), {
        "X-Twilio-Signature": signature,
        "Content-Type": "application/x-www-form-urlencoded",
    }


@dataclass
class FakeTwilio:
    """The fake's state: calls received, media to serve, failures to inject."""

    port: int = 0
    calls: list[dict[str, str]] = field(default_factory=list)
    media: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    media_requests: int = 0
    fail_next: int = 0
    hang_next: int = 0
    refuse: dict[str, int] = field(default_factory=dict)
    # Set when the test ends: requests told to hang return then, so shutdown does not wait.
    released: asyncio.Event = field(default_factory=asyncio.Event)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def media_url(self, name: str) -> str:
        return f"{self.base}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/MM1/Media/{name}"

    def recording_url(self, sid: str) -> str:
        """A ``RecordingUrl`` as Twilio posts it: without extension (``.mp3`` is added)."""
        return f"{self.base}/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/{sid}"

    def sent(self) -> list[dict[str, str]]:
        """The messages Twilio accepted, in order."""
        return [c for c in self.calls if c.get("_answer") == "201"]


def _authorised(request: web.Request) -> bool:
    expected = base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
    return request.headers.get("Authorization") == f"Basic {expected}"


def _error(status: int, code: int, message: str) -> web.Response:
    return web.json_response(
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
        status=status,
    )


def fake_app(state: FakeTwilio) -> web.Application:
    async def create(request: web.Request) -> web.Response:
        if request.match_info["sid"] != ACCOUNT_SID or not _authorised(request):
            return _error(401, 20003, "Authenticate")
        form = {k: str(v) for k, v in (await request.post()).items()}
        state.calls.append(form)
        if state.hang_next > 0:
            state.hang_next -= 1
            form["_answer"] = "hung"
            await state.released.wait()
            return _error(504, 20504, "Gateway Timeout")
        if state.fail_next > 0:
            state.fail_next -= 1
            form["_answer"] = "500"
            return _error(500, 20500, "Internal Server Error")
        if (code := state.refuse.get(form.get("To", ""))) is not None:
            form["_answer"] = "400"
            return _error(400, code, "Attempt to send to unsubscribed recipient")
        form["_answer"] = "201"
        sid = f"SM{next(state._ids):032x}"
        body = form.get("Body", "")
        return web.json_response(
            {
                "account_sid": ACCOUNT_SID,
                "api_version": "2010-04-01",
                "body": body,
                "date_created": "Mon, 16 Nov 2026 10:00:00 +0000",
                "direction": "outbound-api",
                "error_code": None,
                "error_message": None,
                "from": form.get("From"),
                "messaging_service_sid": None,
                "num_media": "0",
                "num_segments": str(sms_segments(body)),
                "price": None,
                "sid": sid,
                "status": "queued",
                "to": form.get("To"),
                "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}.json",
            },
            status=201,
        )

    async def media(request: web.Request) -> web.Response:
        state.media_requests += 1
        if not _authorised(request):
            return web.Response(status=401)
        found = state.media.get(request.match_info["name"])
        if found is None:
            return web.Response(status=404)
        content_type, data = found
        return web.Response(body=data, content_type=content_type)

    app = web.Application()
    app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", create)
    app.router.add_get("/2010-04-01/Accounts/{sid}/Messages/{mm}/Media/{name}", media)
    app.router.add_get("/2010-04-01/Accounts/{sid}/Recordings/{name}", media)
    return app


@pytest.fixture
async def fake_twilio() -> AsyncIterator[FakeTwilio]:
    state = FakeTwilio()
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
        state.released.set()
        await runner.cleanup()
