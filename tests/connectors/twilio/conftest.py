"""A local stand-in for Twilio's REST API, and Twilio's way of signing webhooks.

The fake answers ``POST /2010-04-01/Accounts/{sid}/Messages.json`` as Twilio does (201 with the
message resource as JSON, or Twilio's error JSON), records every call, serves media files and
call recordings only to the account's credentials, and can be told to fail or hang a number of
times. It keeps the messages it accepted and answers ``GET .../Messages.json`` (the Messages list
resource) as Twilio documents it: filtered by ``To``, ``From`` and ``DateSent`` (``DateSent<``
and ``DateSent>`` for on/before and on/after; a day or a moment, GMT; a message not yet sent has no
``date_sent`` and matches no ``DateSent`` filter), newest first, paged with ``PageSize``/``Page``/
``PageToken`` and ``next_page_uri``.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
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
    # The message resources Twilio holds (accepted ones and those a test adds), and the list
    # queries it was asked, with failures to inject into those.
    messages: list[dict[str, object]] = field(default_factory=list)
    list_queries: list[dict[str, str]] = field(default_factory=list)
    fail_list_next: int = 0
    # Twilio's clock: the date_created of the messages it accepts.
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

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

    def add_message(
        self, to: str, from_: str, body: str, created: datetime, status: str = "delivered"
    ) -> str:
        """A message Twilio holds without this run having sent it (one sent before a crash)."""
        sid = f"SM{next(self._ids):032x}"
        self.messages.append(_resource(sid, to, from_, body, created, status, sent=created))
        return sid


def _rfc2822(moment: datetime | None) -> str | None:
    return format_datetime(moment) if moment is not None else None


def _resource(
    sid: str,
    to: str | None,
    from_: str | None,
    body: str,
    created: datetime,
    status: str,
    sent: datetime | None = None,
) -> dict[str, object]:
    """A Message resource as Twilio's JSON has it (dates in RFC 2822)."""
    return {
        "account_sid": ACCOUNT_SID,
        "api_version": "2010-04-01",
        "body": body,
        "date_created": _rfc2822(created),
        "date_sent": _rfc2822(sent),
        "date_updated": _rfc2822(sent or created),
        "direction": "outbound-api",
        "error_code": None,
        "error_message": None,
        "from": from_,
        "messaging_service_sid": None,
        "num_media": "0",
        "num_segments": str(sms_segments(body)),
        "price": None,
        "sid": sid,
        "status": status,
        "to": to,
        "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}.json",
        # Kept for filtering, left out of answers.
        "_sent": sent,
    }


def _date_bound(value: str, end: bool) -> datetime:
    """A ``DateSent`` value: a moment, or a day (GMT) taken from its first or last instant."""
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if end and len(value) == 10:
        moment = moment.replace(hour=23, minute=59, second=59, microsecond=999999)
    return moment


def _dated_match(sent: datetime | None, query: dict[str, str]) -> bool:
    """Whether a message sent at ``sent`` passes the query's ``DateSent`` filters."""
    day, before, after = (query.get(k) for k in ("DateSent", "DateSent<", "DateSent>"))
    if day is None and before is None and after is None:
        return True
    if sent is None:
        return False
    if day is not None and not _date_bound(day, False) <= sent <= _date_bound(day, True):
        return False
    if before is not None and sent > _date_bound(before, True):
        return False
    return after is None or sent >= _date_bound(after, False)


def _listed(state: FakeTwilio, query: dict[str, str]) -> list[dict[str, object]]:
    """The messages matching Twilio's list filters, newest first (unsent ones first of all)."""
    found = []
    for m in state.messages:
        sent = m["_sent"]
        assert sent is None or isinstance(sent, datetime)
        if "To" in query and m["to"] != query["To"]:
            continue
        if "From" in query and m["from"] != query["From"]:
            continue
        if not _dated_match(sent, query):
            continue
        found.append(m)
    never = datetime.max.replace(tzinfo=UTC)
    return sorted(found, key=lambda m: m["_sent"] or never, reverse=True)  # type: ignore[return-value, arg-type]


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
        created = state.now()
        state.messages.append(
            _resource(sid, form.get("To"), form.get("From"), body, created, "sent", created)
        )
        return web.json_response(
            {
                "account_sid": ACCOUNT_SID,
                "api_version": "2010-04-01",
                "body": body,
                "date_created": _rfc2822(created),
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

    async def list_messages(request: web.Request) -> web.Response:
        if request.match_info["sid"] != ACCOUNT_SID or not _authorised(request):
            return _error(401, 20003, "Authenticate")
        query = dict(request.query)
        state.list_queries.append(query)
        if state.fail_list_next > 0:
            state.fail_list_next -= 1
            return _error(500, 20500, "Internal Server Error")
        try:
            size = min(max(int(query.get("PageSize", "50")), 1), 1000)
            page = int(query.get("Page", "0"))
            start = int(query.get("PageToken", "PA0")[2:])
        except ValueError:
            return _error(400, 20001, "Invalid paging parameter")
        found = _listed(state, query)
        chunk = found[start : start + size]
        base = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
        filters = {k: v for k, v in query.items() if k not in ("Page", "PageToken", "PageSize")}

        def uri(**paging: object) -> str:
            return f"{base}?{urlencode({**filters, 'PageSize': size, **paging})}"

        more = start + size < len(found)
        return web.json_response(
            {
                "messages": [{k: v for k, v in m.items() if k != "_sent"} for m in chunk],
                "page": page,
                "page_size": size,
                "start": start,
                "end": start + len(chunk) - 1 if chunk else start,
                "uri": uri(Page=page, PageToken=f"PA{start}"),
                "first_page_uri": uri(Page=0),
                "next_page_uri": uri(Page=page + 1, PageToken=f"PA{start + size}")
                if more
                else None,
                "previous_page_uri": uri(Page=page - 1, PageToken=f"PA{max(0, start - size)}")
                if page > 0
                else None,
            }
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
    app.router.add_get("/2010-04-01/Accounts/{sid}/Messages.json", list_messages)
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
