"""The web inbox: registering a ticket by hand: a desk visit, a phone call, a field report.

Staff type in what a citizen told them at the desk or on the phone, or what they saw themselves
in the street, and hand it to intake exactly as a connector hands over a message: the same
contact matching, routing, deadlines, acknowledgement and follow-up. The form carries a one-time
token that becomes the message's external id, so a double click or a repeated POST finds the
ticket intake already made instead of making a second one. Who registered it is a ``registered``
event on the ticket, with that staff member as its actor.
"""

from __future__ import annotations

import asyncio
import enum
import io
import json
import math
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from aiohttp import web
from multidict import MultiDictProxy
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from inbox.auth import Staff
from inbox.schemas import TicketDetail
from inbox.web.pages import Part
from inbox.web.sessions import COOKIE, SignedIn
from inbox.web.texts import LANGUAGES, texts
from ingest.files import AttachmentStore, media_type, safe_filename, size_in_words
from ingest.identity import InvalidIdentity, normalise_email, normalise_phone
from ingest.model import (
    Attachment,
    Channel,
    ContactRef,
    Identity,
    IdentityKind,
    InboundMessage,
    IntakeUnavailable,
    Kind,
    Location,
    RawPayload,
)
from store.models import Ticket, TicketEvent

if TYPE_CHECKING:
    from inbox.web.pages import WebInbox


class Way(enum.StrEnum):
    """How a ticket registered by hand came in."""

    DESK = "desk"
    PHONE = "phone"
    FIELD = "field"


# The channel each way is recorded on; statistics per channel and the follow-up go by it.
CHANNEL_OF: Mapping[Way, Channel] = {
    # Staff wrote it down themselves: the follow-up asks no satisfaction question of desk
    # tickets (ingest.followup), and routing rules can single them out with "channel: desk".
    Way.DESK: Channel.DESK,
    # The citizen chose the phone, whoever answered it: counted with the voicemails as "phone",
    # found by the operators' "channel: voice" rules, and made the same way as a ticket of a
    # call the front desk answered through Twilio (inbox.contact_events). Unlike the desk, a
    # caller gets the satisfaction question afterwards (by e-mail or SMS, if they gave one).
    Way.PHONE: Channel.VOICE,
    # No citizen asked anything: like the desk, staff's own record, without a survey.
    Way.FIELD: Channel.DESK,
}

EVENT = "registered"
MAX_FILES = 5  # as on the citizens' web form
MAX_NAME = 200  # contacts.display_name
MAX_FIELD = 300  # tickets.subject, tickets.location_address
MAX_TEXT = 10_000
_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,64}")
_TYPED = (
    "way", "name", "email", "phone", "language", "kind", "subject", "text", "address",
    "latitude", "longitude",
)  # fmt: skip

Form = MultiDictProxy[str | bytes | bytearray | web.FileField]
# A problem with one field: the word's key and the values it names.
Problem = tuple[str, dict[str, object]]


@dataclass(slots=True)
class _Entry:
    """What staff typed (files aside), and what is wrong with it, field by field."""

    values: dict[str, str]
    confirm: bool
    token: str
    problems: dict[str, Problem] = field(default_factory=dict)
    # Files were chosen: a form shown again must say to choose them again (no browser keeps
    # them, and no page may fill in a file field).
    had_files: bool = False


@dataclass(frozen=True, slots=True)
class _Upload:
    filename: str
    content_type: str
    data: bytes


class Registration(Part):
    """``GET/POST /tickets/new``, and what the ticket page shows of a registration."""

    def __init__(self, inbox: WebInbox) -> None:
        super().__init__(inbox)
        self._register = inbox.staff_only(self.register)

    def routes(self) -> list[web.AbstractRouteDef]:
        return [
            web.get("/tickets/new", self.inbox.staff_only(self.form)),
            web.post("/tickets/new", self._post),
        ]

    @property
    def files(self) -> AttachmentStore:
        return self.inbox.context.files

    @property
    def max_file_bytes(self) -> int:
        # The inbox's limit for one file (also what a reply may carry).
        return self.inbox.context.max_attachment_bytes

    # Pages

    async def form(self, request: web.Request, signed_in: SignedIn) -> web.Response:
        """An empty form."""
        return self._show(request, signed_in, self._blank())

    async def _post(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._register(request)
        except web.HTTPRequestEntityTooLarge:
            # More than the service reads in one request: nothing was read, so nothing can be
            # shown again, but the desk gets the form and a reason instead of a bare 413.
            signed_in = await self.inbox.sessions.find(request.cookies.get(COOKIE))
            if signed_in is None:
                raise web.HTTPForbidden(text="not signed in") from None
            t = texts(self.inbox.lang(request))
            return self._show(
                request,
                signed_in,
                self._blank(),
                status=413,
                error=t["register_error_upload_big"],
            )

    async def register(self, request: web.Request, signed_in: SignedIn) -> web.StreamResponse:
        """Check the form, store the files, have intake make the ticket, record who did it."""
        form = await request.post()
        t = texts(self.inbox.lang(request))
        entry = self._entry(form)
        uploads = await self._uploads(form, entry)
        if entry.problems:
            error = t["register_fix"] + (" " + t["register_files_again"] if entry.had_files else "")
            return self._show(request, signed_in, entry, status=422, error=error)
        # On disk before intake names them, as the connectors do it.
        stored = [
            Attachment(u.filename, u.content_type, len(u.data), await self.files.put(u.data))
            for u in uploads
        ]
        message = self._message(entry, stored, signed_in.staff)
        submit = self.inbox.context.submit
        try:
            if submit is None:
                raise IntakeUnavailable("this server cannot make tickets")
            result = await submit(message)
        except IntakeUnavailable:
            result = None
        reference = result.ticket_reference if result else None
        if reference is None:  # nothing stored, or quarantined (journalled with its error)
            error = t["register_unavailable"]
            error += " " + t["register_files_again"] if entry.had_files else ""
            return self._show(request, signed_in, entry, status=503, error=error)
        department = await self._record(signed_in.staff, reference, entry)
        if signed_in.staff.can_see(department):
            # The number to give the citizen, at the top of the new ticket's page.
            raise self.inbox.after_post(
                f"/tickets/{reference}", t["register_done"].format(reference=reference)
            )
        # Routed to a department this agent does not see: its page would be "not found", so
        # back to an empty form (the desk's next visitor), with the number and where it went.
        raise self.inbox.after_post(
            "/tickets/new",
            t["register_done_elsewhere"].format(
                reference=reference, department=self.inbox.departments.get(department, department)
            ),
        )

    async def ticket_context(
        self,
        request: web.Request,
        session: AsyncSession,
        signed_in: SignedIn,
        detail: TicketDetail,
    ) -> dict[str, Any]:
        """``registration``: who registered the ticket by hand and how (None when it came in
        on a channel by itself)."""
        event = next((e for e in detail.events if e.type == EVENT), None)
        if event is None or event.actor is None:
            return {"registration": None}
        way = str(event.data.get("way", ""))
        values: dict[str, Any] = {
            "registration": {
                "by": event.actor.name or event.actor.email,
                "way": way if way in set(Way) else Way.DESK.value,
            }
        }
        return values

    # Reading the form

    def _blank(self) -> _Entry:
        values = dict.fromkeys(_TYPED, "")
        values.update(way=Way.DESK.value, language=self.inbox.language, kind=Kind.REPORT.value)
        return _Entry(values, confirm=True, token=secrets.token_urlsafe(24))

    def _entry(self, form: Form) -> _Entry:
        values = {name: _text(form.get(name)).strip() for name in _TYPED}
        token = _text(form.get("form_token"))
        # A form without its checkbox field on it (an old page) sends a confirmation, as the
        # form proposes by default.
        confirm = bool(form.get("confirm")) or not form.get("confirm_shown")
        entry = _Entry(
            values, confirm, token if _TOKEN.fullmatch(token) else secrets.token_urlsafe(24)
        )
        self._check(entry)
        return entry

    def _check(self, entry: _Entry) -> None:
        values, problems = entry.values, entry.problems
        choices: dict[str, tuple[str, ...]] = {
            "way": tuple(Way),
            "language": LANGUAGES,
            "kind": tuple(Kind),
        }
        for name, allowed in choices.items():
            if values[name] not in allowed:
                problems[name] = ("register_error_choice", {})
        for name, limit in (("name", MAX_NAME), ("subject", MAX_FIELD), ("address", MAX_FIELD)):
            if len(values[name]) > limit:
                problems[name] = ("register_error_long", {"max": limit})
        if values["email"]:
            try:
                values["email_normalised"] = normalise_email(values["email"])
            except InvalidIdentity:
                problems["email"] = ("register_error_email", {})
        if values["phone"]:
            try:
                values["phone_normalised"] = normalise_phone(values["phone"])
            except InvalidIdentity:
                problems["phone"] = ("register_error_phone", {})
        # At the desk and on the phone there is a citizen, and staff know something of them.
        if values["way"] in (Way.DESK, Way.PHONE) and not (
            values["name"] or values["email"] or values["phone"]
        ):
            problems["name"] = ("register_error_who", {})
        if not values["text"]:
            problems["text"] = ("register_error_text", {})
        elif len(values["text"]) > MAX_TEXT:
            problems["text"] = ("register_error_long", {"max": MAX_TEXT})
        try:
            _point(values["latitude"], values["longitude"])
        except ValueError:
            problems["latitude"] = ("register_error_coordinates", {})

    async def _uploads(self, form: Form, entry: _Entry) -> list[_Upload]:
        """The chosen files within the limits; a file past them is a problem of the entry."""
        files = [f for f in form.getall("files", []) if isinstance(f, web.FileField) and f.filename]
        entry.had_files = bool(files)
        if len(files) > MAX_FILES:
            entry.problems["files"] = ("register_error_file_count", {"count": MAX_FILES})
            return []
        uploads: list[_Upload] = []
        for file in files:
            name = safe_filename(file.filename) or "bijlage"
            size = file.file.seek(0, io.SEEK_END)
            if size > self.max_file_bytes:
                entry.problems["files"] = (
                    "register_error_file_big",
                    {"name": name, "size": size_in_words(self.max_file_bytes)},
                )
                continue
            file.file.seek(0)
            data = await asyncio.to_thread(file.file.read)
            if data:
                kind = media_type(file.content_type or "") or "application/octet-stream"
                uploads.append(_Upload(name, kind, data))
        return uploads

    def _message(
        self, entry: _Entry, attachments: list[Attachment], staff: Staff
    ) -> InboundMessage:
        values = entry.values
        way = Way(values["way"])
        email, phone = values.get("email_normalised"), values.get("phone_normalised")
        identities = [Identity(IdentityKind.EMAIL, email)] if email else []
        identities += [Identity(IdentityKind.PHONE, phone)] if phone else []
        address = email or phone
        point = _point(values["latitude"], values["longitude"])
        latitude, longitude = point if point else (None, None)
        acknowledge = entry.confirm and address is not None
        # What staff sent, as a connector keeps a provider's payload: for audit and reprocessing.
        raw = {
            **{k: values[k] for k in _TYPED},
            "confirm": entry.confirm,
            "registered_by": staff.id,
            "files": [a.sha256 for a in attachments],
        }
        return InboundMessage(
            channel=CHANNEL_OF[way],
            # Per staff member, so nobody else's token can ever land on their ticket.
            external_id=f"register:{staff.id}:{entry.token}",
            sender=ContactRef(
                tuple(identities), display_name=values["name"] or None, language=values["language"]
            ),
            received_at=self.inbox.clock(),
            text=values["text"],
            raw=RawPayload("application/json", json.dumps(raw).encode()),
            subject=values["subject"] or None,
            kind=Kind(values["kind"]),
            location=(
                Location(latitude, longitude, values["address"] or None)
                if point or values["address"]
                else None
            ),
            attachments=tuple(attachments),
            language=values["language"],
            # Answers (and the acknowledgement) by e-mail when there is an address, else by SMS.
            reply_channel=(Channel.EMAIL if email else Channel.SMS) if address else None,
            reply_address=address,
            # Intake's one way to leave out the acknowledgement: staff did not want it, or there
            # is nobody to send it to (a queued one would wait in the outbox for ever).
            automatic=not acknowledge,
        )

    # After intake

    async def _record(self, staff: Staff, reference: str, entry: _Entry) -> str:
        """Write the ``registered`` event once (a repeated POST finds it) and return the
        ticket's department."""
        async with self.inbox.db.session() as session:
            # Locked: two POSTs of one form at once must not both find no event and add one.
            ticket = (
                await session.scalars(
                    sa.select(Ticket).where(col(Ticket.reference) == reference).with_for_update()
                )
            ).one()
            assert ticket.id is not None
            done = await session.scalar(
                sa.select(col(TicketEvent.id)).where(
                    col(TicketEvent.ticket_id) == ticket.id, col(TicketEvent.type) == EVENT
                )
            )
            if done is None:
                address = entry.values.get("email_normalised") or entry.values.get(
                    "phone_normalised"
                )
                session.add(
                    TicketEvent(
                        ticket_id=ticket.id,
                        type=EVENT,
                        actor_user_id=staff.id,
                        data={
                            "way": entry.values["way"],
                            "acknowledgement": entry.confirm and address is not None,
                        },
                        created_at=self.inbox.clock(),
                    )
                )
            return ticket.department

    # Showing the form

    def _show(
        self,
        request: web.Request,
        signed_in: SignedIn,
        entry: _Entry,
        *,
        status: int = 200,
        error: str | None = None,
        notice: str | None = None,
    ) -> web.Response:
        return self.inbox.render(
            request,
            "web/register.html",
            signed_in=signed_in,
            status=status,
            error=error,
            notice=notice,
            entry=entry,
            ways=[w.value for w in Way],
            kinds=[k.value for k in Kind],
            languages=LANGUAGES,
            max_files=MAX_FILES,
            max_file_bytes=self.max_file_bytes,
            max_file_size=size_in_words(self.max_file_bytes),
        )


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _number(value: str) -> float:
    # Belgian keyboards and habits write a decimal comma.
    number = float(value.replace(",", ".").strip())
    if not math.isfinite(number):
        raise ValueError(f"not a finite number: {value!r}")
    return number


def _point(latitude: str, longitude: str) -> tuple[float, float] | None:
    """The point typed, or None when nothing was typed.

    Raises:
        ValueError: only one of the two, or not a point on Earth.
    """
    if not latitude and not longitude:
        return None
    lat, lon = _number(latitude), _number(longitude)
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise ValueError(f"not a point on Earth: {lat}, {lon}")
    return lat, lon
