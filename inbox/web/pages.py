"""The web inbox's pages: sign-in, sign-out, password change and the ticket view.

Server-rendered with Jinja2 (autoescaped); every form carries the session's CSRF token and every
POST checks it. Pages are never cached and may not be framed; the Content-Security-Policy allows
only meldpunt's own assets, so nothing a citizen wrote can load or run anything. A page for
staff only sends a visitor without a session to ``/login`` and back afterwards.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit
from zoneinfo import ZoneInfo

import jinja2
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from inbox import tickets
from inbox.answers import CannedAnswers
from inbox.api import ApiContext
from inbox.errors import NotFoundError
from inbox.schemas import TicketDetail
from inbox.web.sessions import COOKIE, Sessions, SignedIn
from inbox.web.texts import LANGUAGES, label, texts
from ingest.model import Channel
from store.users import MIN_PASSWORD_LENGTH

if TYPE_CHECKING:
    from connectors.base import Connector
    from router.rules import RuleSet


@dataclass(frozen=True, slots=True)
class Town:
    """What the inbox shows of the town: its name, and its language and time zone by default."""

    name: str
    language: str
    timezone: str


LANG_COOKIE = "meldpunt_lang"
# What a POST did, said on the page its redirect leads to (POST, redirect, GET). A cookie, so it
# reaches that page whichever process serves it; read once, then removed.
NOTICE_COOKIE = "meldpunt_notice"
NOTICE_SECONDS = 120
STATIC = Path(__file__).resolve().parent.parent / "static"
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}

Page = Callable[[web.Request, SignedIn], Awaitable[web.StreamResponse]]


class Part:
    """One piece of the inbox (the reply box, the work actions, ...): its own pages and what it
    adds to the ticket page's template values (nothing, unless it says otherwise).

    A part whose form was refused shows the ticket page again with ``WebInbox.ticket_page``,
    after leaving what was typed in the request (``request[<its key>]``) for its
    ``ticket_context`` to fill in again.
    """

    def __init__(self, inbox: WebInbox) -> None:
        self.inbox = inbox

    def routes(self) -> list[web.AbstractRouteDef]:
        return []

    async def ticket_context(
        self,
        request: web.Request,
        session: AsyncSession,
        signed_in: SignedIn,
        detail: TicketDetail,
    ) -> dict[str, Any]:
        return {}


class WebInbox:
    """The pages, bound to the service's database, sessions and settings.

    ``context`` is the one the API gets (database, departments, files, follow-up, intake);
    ``town`` gives the town's name, language and time zone; ``rules`` the routing rules in force
    (the ticket page explains routing with their descriptions); ``answers`` the canned answers;
    ``connectors`` are the enabled channels (the reply box asks them about reply windows).
    """

    def __init__(
        self,
        context: ApiContext,
        sessions: Sessions,
        *,
        town: Town,
        rules: Callable[[], RuleSet],
        answers: CannedAnswers,
        connectors: Mapping[Channel, Connector],
        clock: Callable[[], datetime] | None = None,
        secure_cookies: bool,
    ) -> None:
        self.context = context
        self.db = context.db
        self.sessions = sessions
        self.rules = rules
        self.answers = answers
        self.connectors = connectors
        self.clock = clock or (lambda: datetime.now(UTC))
        self.departments = context.departments
        self.town = town.name
        self.language = town.language
        self.zone = ZoneInfo(town.timezone)
        self.secure = secure_cookies
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("inbox", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.env.filters["local"] = self._local
        # Imported here: each part imports this module for its types.
        from inbox.web.actions import WorkActions
        from inbox.web.conversation import Conversation
        from inbox.web.register import Registration
        from inbox.web.replybox import ReplyBox
        from inbox.web.views import ListViews

        self.parts: list[Part] = [
            Conversation(self),
            ReplyBox(self),
            WorkActions(self),
            Registration(self),
            ListViews(self),
        ]

    def routes(self) -> list[web.AbstractRouteDef]:
        own = [
            web.get("/login", self.login_form),
            web.post("/login", self.login),
            web.post("/logout", self.staff_only(self.logout)),
            web.get("/account/password", self.staff_only(self.password_form)),
            web.post("/account/password", self.staff_only(self.change_password)),
            web.get("/tickets/{reference}", self.staff_only(self.ticket_view)),
            web.static("/inbox/static", STATIC, append_version=False),
        ]
        # The parts first: "/tickets/new" must not be read as a ticket's reference.
        return [route for part in self.parts for route in part.routes()] + own

    # Helpers

    def _local(self, value: datetime | None) -> str:
        return value.astimezone(self.zone).strftime("%d-%m-%Y %H:%M") if value else ""

    def lang(self, request: web.Request) -> str:
        wanted = request.query.get("lang") or request.cookies.get(LANG_COOKIE)
        return wanted if wanted in LANGUAGES else self.language

    def render(
        self,
        request: web.Request,
        template: str,
        *,
        signed_in: SignedIn | None = None,
        status: int = 200,
        **values: Any,
    ) -> web.Response:
        lang = self.lang(request)
        flashed = request.cookies.get(NOTICE_COOKIE)
        if flashed and values.get("notice") is None:
            values["notice"] = unquote(flashed)[:500]
        html = self.env.get_template(template).render(
            lang=lang,
            t=texts(lang),
            label=lambda value: label(lang, value),
            # Each keeps the rest of the address: "next" on the sign-in page, the list's page.
            language_links=[
                (code, str(request.rel_url.update_query(lang=code))) for code in LANGUAGES
            ],
            town=self.town,
            me=signed_in.staff if signed_in else None,
            csrf=signed_in.csrf if signed_in else "",
            **{"notice": None, "error": None, **values},
        )
        response = web.Response(
            text=html, status=status, content_type="text/html", headers=SECURITY_HEADERS
        )
        if "lang" in request.query and request.query["lang"] in LANGUAGES:
            response.set_cookie(
                LANG_COOKIE, lang, max_age=365 * 86400, httponly=True, samesite="Lax",
                secure=self.secure,
            )  # fmt: skip
        if flashed:
            response.del_cookie(NOTICE_COOKIE, path="/")
        return response

    def after_post(self, location: str, notice: str | None = None) -> web.HTTPSeeOther:
        """The redirect ending a POST that was done, with ``notice`` for the page it leads to."""
        response = web.HTTPSeeOther(location, headers=SECURITY_HEADERS)
        if notice:
            response.set_cookie(
                NOTICE_COOKIE, quote(notice, safe=""), max_age=NOTICE_SECONDS, httponly=True,
                samesite="Lax", secure=self.secure, path="/",
            )  # fmt: skip
        return response

    def staff_only(self, page: Page) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """``page`` for a signed-in staff member; POSTs must carry the session's CSRF token."""

        async def handler(request: web.Request) -> web.StreamResponse:
            signed_in = await self.sessions.find(request.cookies.get(COOKIE))
            if signed_in is None:
                if request.method != "GET":
                    raise web.HTTPForbidden(text="not signed in")
                raise web.HTTPSeeOther(f"/login?next={quote(request.path_qs, safe='')}")
            if request.method == "POST":
                form = await request.post()
                sent = form.get("csrf")
                if not signed_in.csrf_ok(sent if isinstance(sent, str) else None):
                    return self.render(
                        request,
                        "web/message.html",
                        signed_in=signed_in,
                        status=403,
                        error=texts(self.lang(request))["expired_form"],
                    )
            return await page(request, signed_in)

        return handler

    def _set_session(self, response: web.StreamResponse, token: str) -> None:
        response.set_cookie(
            COOKIE,
            token,
            httponly=True,
            samesite="Lax",
            secure=self.secure,
            path="/",
        )

    # Sign-in

    async def login_form(self, request: web.Request) -> web.Response:
        notice = texts(self.lang(request))["signed_out"] if "signed_out" in request.query else None
        return self.render(
            request, "web/login.html", next=_safe_next(request.query.get("next")), email="",
            notice=notice,
        )  # fmt: skip

    async def login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        email = str(form.get("email", "")).strip()
        password = str(form.get("password", ""))
        target = _safe_next(str(form.get("next", "")))
        t = texts(self.lang(request))
        result = await self.sessions.login(email, password)
        if result.user_id is None:
            error = (
                t["locked"].format(time=self._local(result.locked_until)[-5:])
                if result.locked_until
                else t["wrong_login"]
            )
            return self.render(
                request, "web/login.html", status=401, error=error, next=target, email=email
            )
        token = await self.sessions.start(result.user_id)
        response = web.HTTPSeeOther(target)
        self._set_session(response, token)
        raise response

    async def logout(self, request: web.Request, signed_in: SignedIn) -> web.StreamResponse:
        await self.sessions.end(signed_in.session_id)
        # To a page of its own (POST, then GET): links on the page shown, such as the language
        # links, must not lead back to /logout, which takes only a POST.
        response = web.HTTPSeeOther("/login?signed_out=1")
        response.del_cookie(COOKIE, path="/")
        raise response

    async def password_form(self, request: web.Request, signed_in: SignedIn) -> web.Response:
        return self.render(request, "web/password.html", signed_in=signed_in)

    async def change_password(self, request: web.Request, signed_in: SignedIn) -> web.Response:
        form = await request.post()
        current, new, repeat = (str(form.get(k, "")) for k in ("current", "new", "repeat"))
        t = texts(self.lang(request))
        error = None
        if len(new) < MIN_PASSWORD_LENGTH:
            error = t["password_short"]
        elif new != repeat:
            error = t["password_mismatch"]
        elif not await self.sessions.change_password(signed_in, current, new):
            error = t["password_wrong"]
        if error:
            return self.render(
                request, "web/password.html", signed_in=signed_in, status=422, error=error
            )
        return self.render(
            request, "web/password.html", signed_in=signed_in, notice=t["password_changed"]
        )

    # Tickets

    async def ticket_view(self, request: web.Request, signed_in: SignedIn) -> web.Response:
        return await self.ticket_page(request, signed_in)

    async def ticket_page(
        self,
        request: web.Request,
        signed_in: SignedIn,
        *,
        status: int = 200,
        error: str | None = None,
    ) -> web.Response:
        """The page of the ticket ``{reference}`` of the request: its facts, and what each part
        adds (conversation, work actions, reply box, ...); ``error`` says what a refused form
        got wrong.

        A ticket outside the staff member's departments is "not found", like one that does not
        exist, so its existence does not leak.
        """
        async with self.db.session() as session:
            try:
                detail = await tickets.ticket_detail(
                    session, signed_in.staff, self.departments, request.match_info["reference"]
                )
            except NotFoundError:
                raise self.not_found() from None
            values: dict[str, Any] = {}
            for part in self.parts:
                values.update(await part.ticket_context(request, session, signed_in, detail))
        return self.render(
            request,
            "web/ticket.html",
            signed_in=signed_in,
            status=status,
            ticket=detail,
            **{**values, "error": error},
        )

    @staticmethod
    def not_found() -> web.HTTPNotFound:
        """A ticket (or a file of one) that does not exist or is not the staff member's."""
        return web.HTTPNotFound(
            text="no such ticket", content_type="text/plain", headers=SECURITY_HEADERS
        )


def _safe_next(target: str | None) -> str:
    """Where to go after signing in: a path on this site only, never another host."""
    if not target:
        return "/"
    parts = urlsplit(target)
    if (
        parts.scheme
        or parts.netloc
        or not target.startswith("/")
        or target.startswith("//")
        or "\\" in target  # some browsers read "/\\host" as "//host"
        or any(ord(c) < 32 for c in target)
    ):
        return "/"
    return target
