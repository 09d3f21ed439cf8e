"""The web inbox: the conversation on the ticket page: sanitised HTML mail, attachments, routing,
the citizen's other tickets, and settling an answer whose delivery is uncertain.

Citizen HTML was cleaned at intake, but the stored HTML may predate today's rules, so it is
cleaned again, more strictly, each time it is shown: nothing in it may run or load anything from
outside, even without the page's Content-Security-Policy. Files are served only to staff who may
see their ticket, as downloads, with headers that keep a browser from running them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from html import escape
from html.parser import HTMLParser
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit

import nh3
import sqlalchemy as sa
from aiohttp import web
from markupsafe import Markup
from markupsafe import escape as markup_escape
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from inbox import tickets, uncertain
from inbox.auth import Staff
from inbox.errors import ConflictError, NotFoundError
from inbox.schemas import AttachmentOut, EventOut, MessageOut, OutboxState, TicketDetail
from inbox.web.pages import SECURITY_HEADERS, Part
from inbox.web.sessions import SignedIn
from inbox.web.texts import texts
from ingest.files import size_in_words
from ingest.model import Channel, DeliveryStatus, Direction, Kind, TicketStatus
from store.models import AttachmentRow, Message, Ticket

if TYPE_CHECKING:
    from router.rules import Rule

log = logging.getLogger(__name__)

# Image types a browser shows without running anything, with the bytes each file must start with.
# SVG is left out on purpose: it is a document that can carry script.
PREVIEW_TYPES: Mapping[str, tuple[bytes, ...]] = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "image/webp": (b"RIFF",),
}
FILE_CSP = "default-src 'none'; sandbox"
# How many of the citizen's other tickets the page lists; the rest are counted.
OTHER_TICKETS = 20


# Sanitising HTML mail


_TAGS = frozenset(
    {
        "a", "abbr", "b", "big", "blockquote", "br", "caption", "center", "cite", "code", "col",
        "colgroup", "dd", "del", "div", "dl", "dt", "em", "font", "h1", "h2", "h3", "h4", "h5",
        "h6", "hr", "i", "img", "ins", "kbd", "li", "mark", "ol", "p", "pre", "q", "s", "small",
        "span", "strike", "strong", "sub", "sup", "table", "tbody", "td", "tfoot", "th", "thead",
        "tr", "tt", "u", "ul",
    }
)  # fmt: skip
_ATTRIBUTES: Mapping[str, set[str]] = {
    "*": {"lang", "dir", "title"},
    "a": {"href"},
    "img": {"src", "alt"},
    "td": {"colspan", "rowspan", "align", "valign"},
    "th": {"colspan", "rowspan", "align", "valign", "scope"},
    "ol": {"start"},
}
# Removed with everything in them: what runs, what embeds, what asks for input.
_DROPPED_WHOLE = frozenset(
    {
        "script", "style", "svg", "math", "template", "noscript", "iframe", "frame", "frameset",
        "object", "embed", "applet", "textarea", "select", "title", "audio", "video",
    }
)  # fmt: skip
_LINK_SCHEMES = frozenset({"http", "https", "mailto", "tel"})
LINK_REL = "noopener noreferrer nofollow"
BLOCKED_CLASS = "conv-blocked"
INLINE_CLASS = "conv-inline"
# The only image address left in the end: a file of a ticket, served by this inbox.
_OWN_IMAGE = re.compile(r"/tickets/[A-Za-z0-9_.~-]+/files/[0-9]+\?view=1")


def _link_allowed(value: str) -> bool:
    # Browsers ignore tabs, line breaks and leading spaces in a scheme ("java\tscript:").
    squeezed = re.sub(r"[\x00-\x20]", "", value)
    return urlsplit(squeezed).scheme.lower() in _LINK_SCHEMES


def cid_key(value: str) -> str:
    """The Content-ID a ``cid:`` address names, as compared: unquoted, without brackets, lower."""
    return content_id_key(unquote(value.strip()[4:]))


def content_id_key(content_id: str) -> str:
    """A Content-ID as ``cid_key`` compares it."""
    return content_id.strip().strip("<>").strip().lower()


def _first_pass_filter(tag: str, attribute: str, value: str) -> str | None:
    if tag == "img" and attribute == "src":
        # Only the mail's own images may stay; the second pass resolves or replaces them.
        return "cid:" + cid_key(value) if value.strip().lower().startswith("cid:") else None
    if tag == "a" and attribute == "href":
        return value if _link_allowed(value) else None
    return value


def _last_pass_filter(tag: str, attribute: str, value: str) -> str | None:
    if tag == "img" and attribute == "src":
        return value if _OWN_IMAGE.fullmatch(value) else None
    if tag == "a" and attribute == "href":
        return value if _link_allowed(value) else None
    return value


_FIRST_PASS = nh3.Cleaner(
    tags=set(_TAGS),
    clean_content_tags=set(_DROPPED_WHOLE),
    attributes={k: set(v) for k, v in _ATTRIBUTES.items()},
    attribute_filter=_first_pass_filter,
    url_schemes={*_LINK_SCHEMES, "cid"},
    url_relative="deny",
    link_rel=LINK_REL,
    set_tag_attribute_values={"a": {"target": "_blank"}},
    strip_comments=True,
)
# The same rules once more over what the second pass wrote, which only it may add: the marker
# of a refused image, and images that point at this inbox.
_LAST_PASS = nh3.Cleaner(
    tags=set(_TAGS),
    clean_content_tags=set(_DROPPED_WHOLE),
    attributes={k: set(v) for k, v in _ATTRIBUTES.items()},
    attribute_filter=_last_pass_filter,
    url_schemes=set(_LINK_SCHEMES),
    url_relative="pass_through",
    link_rel=LINK_REL,
    set_tag_attribute_values={"a": {"target": "_blank"}},
    allowed_classes={"span": {BLOCKED_CLASS}, "img": {INLINE_CLASS}},
    strip_comments=True,
)


class _ImageRewriter(HTMLParser):
    """Rewrites the first pass's output: a ``cid:`` image of the message becomes its file's
    address; every other image becomes a visible marker, so staff know something was left out."""

    def __init__(
        self, images: Mapping[str, str], marker: str, content_ids: Mapping[str, str]
    ) -> None:
        super().__init__(convert_charrefs=True)
        self.images = images
        self.content_ids = content_ids
        self.marker = marker
        self.out: list[str] = []

    def _image(self, attrs: list[tuple[str, str | None]]) -> str:
        found = dict(attrs)
        src = found.get("src") or ""
        key = cid_key(src) if src.startswith("cid:") else ""
        # The file whose Content-ID it names; files stored without one (before intake kept it)
        # by name, as mail programs often name an inline image "photo.jpg@01DA..." after it.
        url = (
            self.content_ids.get(key)
            or self.images.get(key)
            or self.images.get(key.partition("@")[0])
            if key
            else None
        )
        if url is None:
            return f'<span class="{BLOCKED_CLASS}">{escape(self.marker)}</span>'
        alt = escape(found.get("alt") or "")
        return f'<img src="{escape(url)}" alt="{alt}" class="{INLINE_CLASS}">'

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.out.append(self._image(attrs))
            return
        written = "".join(f' {name}="{escape(value or "")}"' for name, value in attrs)
        self.out.append(f"<{tag}{written}>")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag != "img":
            self.out.append(f"</{tag}>")

    def handle_data(self, data: str) -> None:
        self.out.append(escape(data, quote=False))


def sanitise_html(
    html: str,
    images: Mapping[str, str],
    marker: str,
    content_ids: Mapping[str, str] | None = None,
) -> Markup:
    """Citizen HTML made safe to show: markup for layout and links only.

    No script, event handler, style, form or frame survives; links open in a new tab without
    telling the other site where they came from; an image shows only when it is one of the
    message's own files (``content_ids`` maps a Content-ID as ``content_id_key`` writes it, and
    ``images`` a lower-case file name, to its address here), every other image becomes ``marker``.
    """
    rewriter = _ImageRewriter(images, marker, content_ids or {})
    rewriter.feed(_FIRST_PASS.clean(html))
    rewriter.close()
    return Markup(_LAST_PASS.clean("".join(rewriter.out)))  # noqa: S704 - cleaned just now


# What the page shows


def file_url(reference: str, attachment_id: int, *, view: bool = False) -> str:
    """The address of a ticket's file: a download, or with ``view`` the image by itself."""
    path = f"/tickets/{quote(reference, safe='')}/files/{attachment_id}"
    return f"{path}?view=1" if view else path


@dataclass(frozen=True, slots=True)
class FileView:
    id: int
    filename: str
    content_type: str
    size: str
    removed_reason: str | None
    download: str | None
    preview: str | None


@dataclass(frozen=True, slots=True)
class MessageView:
    """What the page adds to a message: its HTML (cleaned when asked for, in the page's
    language), its files with their addresses, and where our answer is."""

    html: str | None
    images: Mapping[str, str]
    files: Sequence[FileView]
    delivery: str
    delivery_reason: str | None
    content_ids: Mapping[str, str] = field(default_factory=dict)

    def safe_html(self, marker: str) -> Markup | None:
        return (
            sanitise_html(self.html, self.images, marker, self.content_ids) if self.html else None
        )


@dataclass(frozen=True, slots=True)
class RuleView:
    id: str
    description: str
    # What a rule that did not choose the department did: tags and priority.
    tags: tuple[str, ...] = ()
    priority: str | None = None


@dataclass(frozen=True, slots=True)
class RoutingView:
    """One routing decision or transfer, as the page tells it."""

    type: str  # routed, defaulted, transferred
    at: datetime
    to: str
    source: str | None = None
    deciding: RuleView | None = None
    also: Sequence[RuleView] = ()
    actor: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class OtherTicket:
    reference: str
    subject: str | None
    status: str
    kind: str
    channel: str
    department: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ConversationView:
    messages: Mapping[int, MessageView]
    routing: Sequence[RoutingView]
    others: Sequence[OtherTicket]
    others_hidden: int
    others_more: int
    departments: Mapping[str, str] = field(default_factory=dict)

    def department(self, ident: object) -> str:
        return self.departments.get(str(ident), str(ident))


def _delivery(message: MessageOut) -> tuple[str, str | None]:
    """The delivery state of our message, and why it waits or failed when that is known."""
    status = message.delivery_status.value
    box = message.outbox
    if box is None or status in (DeliveryStatus.DELIVERED, DeliveryStatus.READ):
        return status, None
    if box.state == OutboxState.WAITING:
        # Parked until the citizen writes again (a closed WhatsApp window).
        return box.state.value, box.reason
    if box.state in (OutboxState.PENDING, OutboxState.FAILED, OutboxState.UNCERTAIN):
        return status, box.reason
    return status, None


def _actor(event: EventOut) -> str | None:
    return (event.actor.name or event.actor.email) if event.actor else None


def explain_routing(
    events: Sequence[EventOut], rules: Sequence[Rule], departments: Mapping[str, str]
) -> list[RoutingView]:
    """Routing decisions and transfers in plain terms: which rule chose the department, which
    others added tags or a priority, and who moved the ticket on and why."""
    known = {rule.id: rule for rule in rules}

    def name(ident: object) -> str:
        return departments.get(str(ident), str(ident))

    def view(rule_id: str) -> RuleView:
        rule = known.get(rule_id)
        if rule is None:
            return RuleView(rule_id, "")
        return RuleView(rule_id, rule.description, tuple(rule.tags), rule.priority)

    found: list[RoutingView] = []
    for event in events:
        data = event.data
        if event.type == "routed":
            fired = [str(r) for r in data.get("rules", [])]
            department = str(data.get("department", ""))
            deciding = None
            if not data.get("defaulted"):
                # The first fired rule that names this department chose it; the rules may have
                # changed since, and then the ids alone are told.
                deciding = next(
                    (r for r in fired if r in known and known[r].department == department), None
                )
            found.append(
                RoutingView(
                    type="defaulted" if data.get("defaulted") else "routed",
                    at=event.created_at,
                    to=name(department),
                    deciding=view(deciding) if deciding else None,
                    also=[view(r) for r in fired if r != deciding],
                )
            )
        elif event.type == "transferred":
            found.append(
                RoutingView(
                    type="transferred",
                    at=event.created_at,
                    to=name(data.get("to", "")),
                    source=name(data.get("from", "")),
                    actor=_actor(event),
                    reason=str(data["reason"]) if data.get("reason") else None,
                )
            )
    return found


def _file_view(reference: str, row: AttachmentOut) -> FileView:
    stored = row.sha256 is not None and row.removed_reason is None
    return FileView(
        id=row.id,
        filename=row.filename,
        content_type=row.content_type,
        size=size_in_words(row.size),
        removed_reason=row.removed_reason,
        download=file_url(reference, row.id) if stored else None,
        preview=file_url(reference, row.id, view=True)
        if stored and row.content_type in PREVIEW_TYPES
        else None,
    )


async def other_tickets(
    session: AsyncSession, staff: Staff, contact_id: int, reference: str
) -> tuple[list[OtherTicket], int, int]:
    """The contact's other tickets this staff member may see (newest first, at most
    ``OTHER_TICKETS``), how many more of those there are, and how many they may not see."""
    others = sa.and_(col(Ticket.contact_id) == contact_id, col(Ticket.reference) != reference)
    mine = sa.true() if staff.sees_all else col(Ticket.department).in_(sorted(staff.departments))
    rows = (
        await session.scalars(
            sa.select(Ticket)
            .where(others, mine)
            .order_by(col(Ticket.created_at).desc(), col(Ticket.id).desc())
            .limit(OTHER_TICKETS)
        )
    ).all()
    total = await session.scalar(sa.select(sa.func.count()).select_from(Ticket).where(others))
    visible = await session.scalar(
        sa.select(sa.func.count()).select_from(Ticket).where(others, mine)
    )
    listed = [
        OtherTicket(
            reference=t.reference,
            subject=t.subject,
            status=TicketStatus(t.status).value,
            kind=Kind(t.kind).value,
            channel=Channel(t.origin_channel).value,
            department=t.department,
            created_at=t.created_at,
        )
        for t in rows
    ]
    return listed, (visible or 0) - len(listed), (total or 0) - (visible or 0)


def content_disposition(disposition: str, filename: str) -> str:
    """``attachment`` or ``inline`` with the file name twice: plain ASCII for old clients, and
    the real name in RFC 5987 form."""
    plain = re.sub(r"[^A-Za-z0-9._ -]", "_", filename).strip() or "bestand"
    return f"{disposition}; filename=\"{plain}\"; filename*=UTF-8''{quote(filename, safe='')}"


def previewable(content_type: str, data: bytes) -> bool:
    """Whether the bytes are the image their type says: a file named image/png that holds
    HTML is served as a download, never shown."""
    starts = PREVIEW_TYPES.get(content_type)
    if not starts or not data.startswith(starts):
        return False
    return content_type != "image/webp" or data[8:12] == b"WEBP"


class Conversation(Part):
    def routes(self) -> list[web.AbstractRouteDef]:
        return [
            web.get(
                r"/tickets/{reference}/files/{attachment_id:[0-9]{1,12}}",
                self.inbox.staff_only(self.attachment),
            ),
            *(
                web.post(
                    rf"/tickets/{{reference}}/outbox/{{outbox_id:[0-9]{{1,12}}}}/{decision}",
                    self.inbox.staff_only(self._settler(decision)),
                )
                for decision in ("resend", "confirm")
            ),
        ]

    def _settler(
        self, decision: uncertain.Decision
    ) -> Callable[[web.Request, SignedIn], Awaitable[web.StreamResponse]]:
        async def settle(request: web.Request, signed_in: SignedIn) -> web.StreamResponse:
            return await self.settle(request, signed_in, decision)

        return settle

    async def settle(
        self, request: web.Request, signed_in: SignedIn, decision: uncertain.Decision
    ) -> web.StreamResponse:
        """Settle an answer whose delivery is uncertain: "send again" or "it arrived".

        The form is CSRF-checked by ``staff_only``; the answer goes back to the message with a
        notice. An outbox row of another ticket,
        or of a ticket the staff member may not see, is not found.
        """
        reference = request.match_info["reference"]
        t = texts(self.inbox.lang(request))
        try:
            async with self.inbox.db.session() as session:
                ticket = await tickets.visible_ticket(session, signed_in.staff, reference)
                outbox_id = int(request.match_info["outbox_id"])
                settled = await uncertain.settle_uncertain(
                    session, signed_in.staff, outbox_id, decision, self.inbox.clock(), ticket
                )
        except NotFoundError:
            raise self.inbox.not_found() from None
        except ConflictError:
            return await self.inbox.ticket_page(
                request, signed_in, status=409, error=t["conv_uncertain_not_uncertain"]
            )
        target = f"/tickets/{quote(reference, safe='')}#bericht-{settled.item.message_id}"
        raise self.inbox.after_post(target, t[f"conv_uncertain_done_{decision}"])

    async def ticket_context(
        self,
        request: web.Request,
        session: AsyncSession,
        signed_in: SignedIn,
        detail: TicketDetail,
    ) -> dict[str, Any]:
        reference = detail.reference
        messages: dict[int, MessageView] = {}
        for m in detail.messages:
            files = [_file_view(reference, a) for a in m.attachments]
            delivery, reason = (
                _delivery(m) if m.direction == Direction.OUT else (m.delivery_status.value, None)
            )
            messages[m.id] = MessageView(
                # Cleaned by the API already, with its inline images' cid: addresses kept; the
                # page cleans it once more, by its own stricter rules.
                html=m.html,
                images={f.filename.lower(): f.preview for f in files if f.preview},
                content_ids={
                    content_id_key(a.content_id): f.preview
                    for a, f in zip(m.attachments, files, strict=True)
                    if a.content_id and f.preview
                },
                files=files,
                delivery=delivery,
                delivery_reason=reason,
            )
        others, more, hidden = await other_tickets(
            session, signed_in.staff, detail.contact.id, reference
        )
        departments = self.inbox.departments
        return {
            "conv": ConversationView(
                messages=messages,
                routing=explain_routing(detail.events, self.inbox.rules().rules, departments),
                others=others,
                others_hidden=hidden,
                others_more=more,
                departments=departments,
            ),
            "conv_phrase": phrase,
        }

    async def attachment(self, request: web.Request, signed_in: SignedIn) -> web.StreamResponse:
        """One file of a ticket the staff member may see: a download, or with ``?view=1`` an
        image shown by itself. Anything else, including a file of another ticket, is not found.
        """
        reference = request.match_info["reference"]
        ident = int(request.match_info["attachment_id"])
        row = None
        if 0 < ident <= tickets.MAX_ROW_ID:
            async with self.inbox.db.session() as session:
                try:
                    ticket = await tickets.visible_ticket(session, signed_in.staff, reference)
                except NotFoundError:
                    ticket = None
                if ticket is not None:
                    row = await session.scalar(
                        sa.select(AttachmentRow)
                        .join(Message, col(Message.id) == col(AttachmentRow.message_id))
                        .where(col(AttachmentRow.id) == ident, col(Message.ticket_id) == ticket.id)
                    )
        data = None
        if row is not None and row.sha256 is not None and row.removed_reason is None:
            try:
                data = await self.inbox.context.files.get(row.sha256)
            except (OSError, ValueError):
                log.warning("attachment %s of %s is missing from the file store", ident, reference)
        if row is None or data is None:
            return self._not_found(request, signed_in)
        inline = request.query.get("view") == "1" and previewable(row.content_type, data)
        headers = {
            **SECURITY_HEADERS,
            "Content-Security-Policy": FILE_CSP,
            "Cache-Control": "private, no-store",
            "X-Content-Type-Options": "nosniff",
            "Cross-Origin-Resource-Policy": "same-origin",
            "Content-Disposition": content_disposition(
                "inline" if inline else "attachment", row.filename
            ),
        }
        return web.Response(
            body=data,
            content_type=row.content_type if inline else "application/octet-stream",
            headers=headers,
        )

    def _not_found(self, request: web.Request, signed_in: SignedIn) -> web.Response:
        return self.inbox.render(
            request, "web/file_not_found.html", signed_in=signed_in, status=404
        )


def phrase(text: str, **values: str | Markup) -> Markup:
    """One of the page's sentences with its blanks filled in; values are escaped unless they
    are markup already (a rule's id in ``<code>``)."""
    return markup_escape(text).format(**values)
