"""The web inbox: the reply box: answer on a channel of the contact, canned answers, notes, resolve
with an answer.

Plain forms that work without JavaScript; ``replybox.js`` only fills in a canned answer, counts
SMS parts while typing (asking the server, which owns the rule) and shows the warning of the
channel chosen. Every action goes through ``inbox.tickets`` (reply, add_note), which enforces
department scope and queues what the citizen gets in the outbox.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from aiohttp import web
from multidict import MultiDictProxy
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from inbox import tickets
from inbox.answers import CannedAnswer, CannedAnswers, placeholder_values
from inbox.errors import ApiError, NotFoundError
from inbox.schemas import MAX_REPLY_ATTACHMENTS, NoteRequest, ReplyRequest, TicketDetail
from inbox.web.pages import SECURITY_HEADERS, Part
from inbox.web.sessions import COOKIE, SignedIn
from inbox.web.texts import texts
from ingest.files import media_type, safe_filename, size_in_words
from ingest.model import REPLY_IDENTITY, Channel, Direction, TicketStatus
from ingest.sms import sms_segments
from store.models import Message, Ticket

if TYPE_CHECKING:
    from connectors.base import Connector
    from inbox.web.pages import WebInbox

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# What the counter shows while typing: SMS parts on SMS, characters only on WhatsApp.
COUNTERS: Mapping[Channel, str] = {Channel.SMS: "sms", Channel.WHATSAPP: "chars"}
# Messenger takes a person's answer with the HUMAN_AGENT tag up to 7 days after the citizen last
# wrote, when the operator switched that on (channels.messenger.human_agent_tag).
HUMAN_AGENT_WINDOW = timedelta(days=7)
MAX_TEXT = 20_000
# Room for the form's text fields beside the files.
FORM_ROOM = 1024 * 1024
# Where a refused form leaves what was typed, for the ticket page shown again.
KEPT = web.RequestKey("replybox_kept", dict[str, Any])


@dataclass(frozen=True, slots=True)
class Window:
    """A channel's reply window that has closed, and what happens to an answer instead."""

    hours: int
    last_at: datetime | None
    # Messenger: a person's answer still goes, with a tag (the free window is over, though).
    human_agent: bool = False
    # WhatsApp: an approved template asks the citizen to write back first.
    template: bool = False
    # The channel and address the answer moves to, or None: it waits for the citizen.
    fallback: tuple[Channel, str] | None = None


@dataclass(frozen=True, slots=True)
class Choice:
    """A channel the answer may go on, or one shown disabled with why."""

    channel: Channel
    address: str | None
    default: bool
    available: bool
    # Why it is not offered ("no_connector"), or why the answer will wait ("not_replyable",
    # "no_connector", "no_address") on the ticket's own channel, which is always offered.
    why: str | None = None
    window: Window | None = None
    counter: str | None = None
    files: bool = True


@dataclass(frozen=True, slots=True)
class ReplyBoxState:
    """What the template shows: the choices, the form's values, the canned answers."""

    reference: str
    choices: tuple[Choice, ...]
    chosen: Channel
    answers: tuple[tuple[CannedAnswer, str], ...]
    text: str = ""
    note: str = ""
    resolve: bool = False
    answer_id: str = ""
    closed: bool = False
    can_resolve: bool = True
    max_bytes: int = 0
    max_size: str = ""
    max_files: int = MAX_REPLY_ATTACHMENTS
    error_in: str = ""  # "reply" or "note": the form the error belongs to
    count: dict[str, int] = field(default_factory=dict)

    @property
    def chosen_choice(self) -> Choice:
        return next(c for c in self.choices if c.channel == self.chosen)


def count(text: str) -> dict[str, int]:
    """Characters and SMS parts of ``text``, as the counter shows them."""
    return {"characters": len(text), "parts": sms_segments(text)}


class ReplyBox(Part):
    """The reply box's pages and its part of the ticket page."""

    def __init__(self, inbox: WebInbox) -> None:
        super().__init__(inbox)
        # Read with the configuration: a broken file stops the start with its problems.
        self.answers: CannedAnswers = inbox.answers

    def routes(self) -> list[web.AbstractRouteDef]:
        staff_only = self.inbox.staff_only
        return [
            web.get("/tickets/{reference}/reply", staff_only(self.reply_page)),
            web.post("/tickets/{reference}/reply", self._roomy(staff_only(self.send_reply))),
            web.post("/tickets/{reference}/note", staff_only(self.add_note)),
            web.post("/inbox/sms-parts", staff_only(self.sms_parts)),
        ]

    async def ticket_context(
        self,
        request: web.Request,
        session: AsyncSession,
        signed_in: SignedIn,
        detail: TicketDetail,
    ) -> dict[str, Any]:
        """``replybox``: the box's state, with a canned answer filled in (``?answer=``), a
        channel chosen (``?channel=``), or what a refused form had (``request[KEPT]``)."""
        state = await self._state(session, signed_in, detail)
        changes: dict[str, Any] = {
            "chosen": _channel(request.query.get("channel")),
            "answer": self.answers.get(request.query.get("answer", "")),
            **request.get(KEPT, {}),
        }
        chosen = changes.pop("chosen", None)
        if chosen is not None and any(c.channel == chosen and c.available for c in state.choices):
            state = replace(state, chosen=chosen)
        if (answer := changes.pop("answer", None)) is not None:
            # Filled in for this ticket, in its language, like the list the box offers.
            text = next(filled for a, filled in state.answers if a.id == answer.id)
            state = replace(state, text=text, answer_id=answer.id)
        state = replace(state, **changes)
        return {"replybox": replace(state, count=count(state.text))}

    # The state of the box

    async def _state(
        self, session: AsyncSession, signed_in: SignedIn, detail: TicketDetail
    ) -> ReplyBoxState:
        now = self.inbox.clock()
        default = Channel(detail.reply_channel or detail.channel)
        by_kind: dict[str, str] = {}
        for identity in detail.contact.identities:
            by_kind.setdefault(identity.kind.value, identity.value)
        last_in = await _last_inbound(session, detail.contact.id)
        choices = [self._choice(default, detail, by_kind, last_in, now, default=True)]
        for channel, kind in REPLY_IDENTITY.items():
            if channel != default and kind.value in by_kind:
                choices.append(self._choice(channel, detail, by_kind, last_in, now, default=False))
        language = detail.language or detail.contact.language or self.inbox.language
        filled = []
        for answer in self.answers.items:
            written_in = answer.language_for([language, self.inbox.language])
            values = placeholder_values(
                citizen_name=detail.contact.name,
                language=written_in,
                reference=detail.reference,
                subject=detail.subject,
                department=detail.department_name or detail.department,
                staff_name=signed_in.staff.name or signed_in.staff.email,
                town=self.inbox.town,
            )
            filled.append((answer, answer.fill(written_in, values)))
        return ReplyBoxState(
            reference=detail.reference,
            choices=tuple(choices),
            chosen=default,
            answers=tuple(filled),
            closed=detail.status == TicketStatus.CLOSED,
            can_resolve=detail.status not in (TicketStatus.RESOLVED, TicketStatus.CLOSED),
            max_bytes=self.inbox.context.max_attachment_bytes,
            max_size=size_in_words(self.inbox.context.max_attachment_bytes),
            count=count(""),
        )

    def _connector(self, channel: Channel) -> Connector | None:
        connector = self.inbox.connectors.get(channel)
        return connector if connector is not None and connector.sends(channel) else None

    def _choice(
        self,
        channel: Channel,
        detail: TicketDetail,
        by_kind: Mapping[str, str],
        last_in: Mapping[str, datetime],
        now: datetime,
        *,
        default: bool,
    ) -> Choice:
        kind = REPLY_IDENTITY.get(channel)
        address = (
            detail.reply_address
            if default and detail.reply_channel == channel and detail.reply_address
            else (by_kind.get(kind.value) if kind else None)
        )
        connector = self._connector(channel)
        why = None
        if kind is None:
            why = "not_replyable"
        elif connector is None:
            why = "no_connector"
        elif address is None:
            why = "no_address"
        window = None
        if connector is not None and address is not None:
            window = self._window(connector, channel, by_kind, last_in.get(channel.value), now)
        return Choice(
            channel=channel,
            address=address,
            default=default,
            # The ticket's own channel is always offered: without a connector or an address
            # the answer waits in the outbox, which says why.
            available=default or connector is not None,
            why=why,
            window=window,
            counter=COUNTERS.get(channel),
            files=connector is None or connector.capabilities.attachments_out,
        )

    def _window(
        self,
        connector: Connector,
        channel: Channel,
        by_kind: Mapping[str, str],
        last_at: datetime | None,
        now: datetime,
    ) -> Window | None:
        """The closed window of ``channel``, as the dispatcher and the connector will treat it.

        Mirrors ``ingest.dispatch``: the connector's fallback channels, in order, the first with
        a working connector and an address of this citizen; otherwise the answer waits.
        """
        span = connector.reply_window(channel)
        if span is None or (last_at is not None and now - last_at < span):
            return None
        options = getattr(connector, "options", None)
        if (
            channel == Channel.MESSENGER
            and getattr(options, "human_agent_tag", False)
            and last_at is not None
            and now - last_at < HUMAN_AGENT_WINDOW
        ):
            return Window(int(span.total_seconds() // 3600), last_at, human_agent=True)
        fallback_names: Sequence[str] = (
            getattr(options, f"{channel.value}_fallback", None)
            or getattr(options, "fallback", None)
            or ()
        )
        fallback = None
        for name in fallback_names:
            candidate = Channel(name)
            kind = REPLY_IDENTITY.get(candidate)
            address = by_kind.get(kind.value) if kind else None
            if address and self._connector(candidate) is not None:
                fallback = (candidate, address)
                break
        return Window(
            hours=int(span.total_seconds() // 3600),
            last_at=last_at,
            template=channel == Channel.WHATSAPP
            and bool(getattr(options, "whatsapp_template_sid", "")),
            fallback=fallback,
        )

    # Pages

    async def reply_page(self, request: web.Request, signed_in: SignedIn) -> web.Response:
        """The ticket page with a canned answer filled in (``?answer=``) or a channel chosen
        (``?channel=``): the canned-answer form's address when JavaScript is off."""
        return await self.inbox.ticket_page(request, signed_in)

    async def send_reply(self, request: web.Request, signed_in: SignedIn) -> web.StreamResponse:
        """Queue the answer (with its files, resolving if asked), then back to the ticket."""
        form = await request.post()
        t = texts(self.inbox.lang(request))
        text = _text(form, "text")
        resolve = form.get("resolve") == "1"
        asked = _text(form, "channel")
        wanted = _channel(asked)
        kept: dict[str, Any] = {"text": text, "resolve": resolve, "error_in": "reply"}
        if wanted is not None:
            kept["chosen"] = wanted

        async def again(error: str, status: int = 422) -> web.Response:
            request[KEPT] = kept
            return await self.inbox.ticket_page(request, signed_in, status=status, error=error)

        if not text.strip():
            return await again(t["replybox_error_empty"])
        if len(text) > MAX_TEXT:
            return await again(t["replybox_error_long"].format(limit=MAX_TEXT))
        files, problem = _files(form, self.inbox.context.max_attachment_bytes, t)
        if problem:
            return await again(problem)
        async with self.inbox.db.session() as session:
            try:
                detail = await tickets.ticket_detail(
                    session,
                    signed_in.staff,
                    self.inbox.departments,
                    request.match_info["reference"],
                )
            except NotFoundError:
                raise self.inbox.not_found() from None
            state = await self._state(session, signed_in, detail)
        # No choice sent: the ticket's own channel; one that is not a channel: refused.
        choice = next(
            (c for c in state.choices if c.channel == (wanted or state.chosen) and c.available),
            None,
        )
        if choice is None or (asked and wanted is None):
            kept.pop("chosen", None)
            return await again(t["replybox_error_channel"])
        try:
            body = ReplyRequest(
                text=text,
                # The ticket's own channel goes to its reply address, as every answer did.
                channel=None if choice.default else choice.channel,
                status=TicketStatus.RESOLVED if resolve else None,
            )
        except ValidationError:
            return await again(t["replybox_error_empty"])
        async with self.inbox.db.session() as session:
            try:
                await tickets.reply(
                    session,
                    signed_in.staff,
                    state.reference,
                    body,
                    store=self.inbox.context.files,
                    attachments=files,
                    followup=self.inbox.context.followup,
                )
            except NotFoundError:
                raise self.inbox.not_found() from None
            except ApiError as exc:
                return await again(_api_problem(exc, t), exc.status)
        done = "resolved" if resolve else "sent"
        raise self.inbox.after_post(f"/tickets/{state.reference}", t[f"replybox_done_{done}"])

    async def add_note(self, request: web.Request, signed_in: SignedIn) -> web.StreamResponse:
        """Keep an internal note on the ticket; it is never sent to the citizen."""
        form = await request.post()
        t = texts(self.inbox.lang(request))
        note = _text(form, "note")
        try:
            body = NoteRequest(text=note[: MAX_TEXT + 1])
        except ValidationError:
            body = None
        if body is None or len(note) > MAX_TEXT:
            request[KEPT] = {"note": note, "error_in": "note"}
            error = t["replybox_error_note"].format(limit=MAX_TEXT)
            return await self.inbox.ticket_page(request, signed_in, status=422, error=error)
        reference = request.match_info["reference"]
        async with self.inbox.db.session() as session:
            try:
                await tickets.add_note(session, signed_in.staff, reference, body)
            except NotFoundError:
                raise self.inbox.not_found() from None
        raise self.inbox.after_post(f"/tickets/{reference}", t["replybox_done_note"])

    async def sms_parts(self, request: web.Request, signed_in: SignedIn) -> web.Response:
        """Characters and SMS parts of the text typed so far (the rule is ``sms_segments``)."""
        text = _text(await request.post(), "text")[: MAX_TEXT + 1]
        return web.Response(
            text=json.dumps(count(text)),
            content_type="application/json",
            headers=SECURITY_HEADERS,
        )

    def _roomy(self, handler: Handler) -> Handler:
        """``handler`` with a body limit that fits a reply's files, so a file over the limit
        gets a clear error on the page (and the text is kept) instead of a bare 413."""
        limit = MAX_REPLY_ATTACHMENTS * self.inbox.context.max_attachment_bytes + FORM_ROOM

        async def roomy(request: web.Request) -> web.StreamResponse:
            roomier = request.clone(client_max_size=limit)
            try:
                return await handler(roomier)
            except web.HTTPRequestEntityTooLarge:
                signed_in = await self.inbox.sessions.find(request.cookies.get(COOKIE))
                t = texts(self.inbox.lang(request))
                return self.inbox.render(
                    request,
                    "web/message.html",
                    signed_in=signed_in,
                    status=413,
                    error=t["replybox_error_body"].format(
                        files=MAX_REPLY_ATTACHMENTS,
                        size=size_in_words(self.inbox.context.max_attachment_bytes),
                    ),
                )
            finally:
                # aiohttp spools uploads to temporary files and leaves them open; the form it
                # parsed (once, whichever handler asked) is kept on the request.
                form = getattr(roomier, "_post", None)
                for value in form.values() if form is not None else ():
                    if isinstance(value, web.FileField):
                        value.file.close()

        return roomy


async def _last_inbound(session: AsyncSession, contact_id: int) -> dict[str, datetime]:
    """When the contact last wrote on each channel, on any of their tickets (as the dispatcher
    tells the connector)."""
    rows = await session.execute(
        sa.select(col(Message.channel), sa.func.max(col(Message.created_at)))
        .join(Ticket, col(Ticket.id) == col(Message.ticket_id))
        .where(col(Ticket.contact_id) == contact_id, col(Message.direction) == Direction.IN.value)
        .group_by(col(Message.channel))
    )
    found: dict[str, datetime] = {}
    for channel, last in rows.all():
        if last is not None:
            # max() bypasses the column type on SQLite, which hands back a naive UTC value.
            found[str(channel)] = last if last.tzinfo else last.replace(tzinfo=UTC)
    return found


def _text(form: MultiDictProxy[Any], name: str) -> str:
    value = form.get(name)
    # Browsers send line ends as CRLF; the answer keeps the plain ones.
    return value.replace("\r\n", "\n") if isinstance(value, str) else ""


def _channel(value: str | None) -> Channel | None:
    try:
        return Channel(value) if value else None
    except ValueError:
        return None


def _files(
    form: MultiDictProxy[Any], max_bytes: int, t: Mapping[str, str]
) -> tuple[list[tickets.ReplyFile], str | None]:
    """The files chosen in the form, or why they cannot go (too many, one too big)."""
    chosen = [
        f
        for f in form.getall("files", [])
        # A file field left empty still comes, without a name.
        if isinstance(f, web.FileField) and f.filename
    ]
    if len(chosen) > MAX_REPLY_ATTACHMENTS:
        return [], t["replybox_error_files"].format(count=MAX_REPLY_ATTACHMENTS)
    files: list[tickets.ReplyFile] = []
    for upload in chosen:
        upload.file.seek(0)
        data = upload.file.read(max_bytes + 1)
        name = safe_filename(upload.filename or "") or "bijlage"
        if len(data) > max_bytes:
            return [], t["replybox_error_big"].format(name=name, size=size_in_words(max_bytes))
        if not data:
            return [], t["replybox_error_empty_file"].format(name=name)
        kind = media_type(upload.content_type or "") or "application/octet-stream"
        files.append(tickets.ReplyFile(name, kind, data))
    return files, None


def _api_problem(exc: ApiError, t: Mapping[str, str]) -> str:
    """What staff read when the ticket refuses the answer."""
    known = {
        "ticket_closed": "replybox_error_closed",
        "no_address": "replybox_error_channel",
        "channel_not_replyable": "replybox_error_channel",
        "invalid_transition": "replybox_error_status",
    }
    key = known.get(exc.code)
    return t[key] if key else f"{t['replybox_error_other']} ({exc.message})"
