"""The web chat's read side: a visitor's conversation, where they are in the queue, their files.

The web chat connector shows a returning visitor what was said and answered, and tells waiting
visitors their place in the queue; it never opens a session itself, so it reads through
``DatabaseChats``. A visitor's conversation is every ticket opened from their chat (the
ticket's ``conversation`` is ``webchat:<visitor id>``), never the rest of their contact: someone
who types another person's e-mail address must not read that person's chats. Everything here
reads with Core statements on indexed columns, as the intake path does.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ingest.chat import (
    FILES_PATH,
    ChatAttachment,
    ChatFile,
    ChatLine,
    Reachability,
    Speaker,
    Transcript,
    conversation_key,
    inbound_line_id,
    outbound_line_id,
)
from ingest.model import Channel, DeliveryStatus, IdentityKind, TicketStatus
from store.models import AttachmentRow, ContactIdentity, Message, OutboxRow, Ticket, table_of
from store.outbox import SENT

TICKETS = table_of(Ticket)
MESSAGES = table_of(Message)
OUTBOX = table_of(OutboxRow)
ATTACHMENTS = table_of(AttachmentRow)
IDENTITIES = table_of(ContactIdentity)

WEBCHAT = Channel.WEBCHAT.value
# Not resolved or closed: a member of staff may still answer.
_UNRESOLVED = (TicketStatus.NEW.value, TicketStatus.OPEN.value, TicketStatus.PENDING.value)
REPLY_PURPOSE = "reply"
# Delivery states past "sent": the visitor has it (``ingest.model.DeliveryStatus``).
_DELIVERED = frozenset({DeliveryStatus.DELIVERED.value, DeliveryStatus.READ.value})


class DatabaseChats:
    """The ``ChatReader`` the wiring gives the web chat connector."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def transcript(self, visitor_id: str, limit: int = 200) -> Transcript:
        """The newest ``limit`` lines of the visitor's conversation, oldest first.

        What the visitor wrote in the chat, and every answer on their chat tickets whatever
        its state (queued, parked until they came back, sent, or sent by e-mail instead), so a
        returning visitor reads the answer they missed. Internal notes are never shown; the
        automatic acknowledgement is a ``system`` line.
        """
        key = conversation_key(visitor_id)
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    _line_columns()
                    .where(
                        TICKETS.c.conversation == key,
                        sa.or_(
                            sa.and_(MESSAGES.c.direction == "in", MESSAGES.c.channel == WEBCHAT),
                            MESSAGES.c.direction == "out",
                        ),
                    )
                    .order_by(MESSAGES.c.created_at.desc(), MESSAGES.c.id.desc())
                    .limit(limit)
                )
            ).all()
            files = await _attachments(conn, [row.id for row in rows])
            reference = (
                await conn.execute(
                    sa.select(TICKETS.c.reference)
                    .where(TICKETS.c.conversation == key, TICKETS.c.status.in_(_UNRESOLVED))
                    .order_by(TICKETS.c.updated_at.desc(), TICKETS.c.id.desc())
                    .limit(1)
                )
            ).scalar_one_or_none()
            reachable = await _reachability(conn, visitor_id)
        lines = tuple(_line(row, visitor_id, files.get(row.id, ())) for row in reversed(rows))
        return Transcript(lines, reference, reachable)

    async def outbound_line(self, outbox_id: int, visitor_id: str) -> ChatLine | None:
        """The line of one outbound message, as the transcript shows it, to push it live."""
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    _line_columns().where(
                        OUTBOX.c.id == outbox_id,
                        TICKETS.c.conversation == conversation_key(visitor_id),
                    )
                )
            ).first()
            if row is None:
                return None
            files = await _attachments(conn, [row.id])
        return _line(row, visitor_id, files.get(row.id, ()))

    async def inbound_line(self, visitor_id: str, client_id: str) -> ChatLine | None:
        """The line of one message the visitor sent (with its files), found by its client id."""
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    _line_columns().where(
                        MESSAGES.c.channel == WEBCHAT,
                        MESSAGES.c.external_id == f"{visitor_id}:{client_id}",
                        MESSAGES.c.direction == "in",
                    )
                )
            ).first()
            if row is None:
                return None
            files = await _attachments(conn, [row.id])
        return _line(row, visitor_id, files.get(row.id, ()))

    async def reachable(self, visitor_id: str) -> Reachability:
        """Whether the visitor's contact has an e-mail address or phone number on file."""
        async with self._engine.connect() as conn:
            return await _reachability(conn, visitor_id)

    async def queue_positions(self, visitor_ids: Collection[str]) -> dict[str, int | None]:
        """Each visitor's place in the web chat queue, or None when they are not waiting.

        A chat ticket waits from the visitor's first message until staff queue a reply on it
        (or resolve it); its place is 1 + the number of waiting chat tickets whose first
        message is older. One query for all visitors: the waiting tickets are few (open chat
        tickets without a reply), found through the status and origin channel indexes.
        """
        keys = {conversation_key(v): v for v in visitor_ids}
        positions: dict[str, int | None] = dict.fromkeys(visitor_ids)
        if not keys:
            return positions
        answered = sa.exists().where(
            OUTBOX.c.ticket_id == TICKETS.c.id, OUTBOX.c.purpose == REPLY_PURPOSE
        )
        waiting = (
            sa.select(
                TICKETS.c.id.label("ticket_id"),
                TICKETS.c.conversation.label("conversation"),
                sa.func.min(MESSAGES.c.created_at).label("since"),
            )
            .join(MESSAGES, MESSAGES.c.ticket_id == TICKETS.c.id)
            .where(
                TICKETS.c.origin_channel == WEBCHAT,
                TICKETS.c.status.in_(_UNRESOLVED),
                MESSAGES.c.direction == "in",
                MESSAGES.c.channel == WEBCHAT,
                ~answered,
            )
            .group_by(TICKETS.c.id, TICKETS.c.conversation)
            .subquery("waiting")
        )
        ranked = sa.select(
            waiting.c.conversation,
            sa.func.row_number()
            .over(order_by=(waiting.c.since, waiting.c.ticket_id))
            .label("position"),
        ).subquery("ranked")
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                sa.select(ranked.c.conversation, ranked.c.position).where(
                    ranked.c.conversation.in_(keys)
                )
            )
            for conversation, position in rows:
                visitor = keys[conversation]
                # A visitor with two waiting tickets (the first one older than the conversation
                # window) is as far as the older one.
                current = positions[visitor]
                positions[visitor] = int(position) if current is None else min(current, position)
        return positions

    async def sent_since(
        self, visitor_ids: Collection[str], since: datetime
    ) -> list[tuple[str, int, bool]]:
        """Chat answers sent to these visitors at ``since`` or later, oldest first.

        Each as (visitor, outbox id, delivered): a web process reads it for the visitors whose
        sockets it holds, to push what another process sent and it missed the notice of, and to
        mark delivered what it pushed. Only rows the dispatcher finished (``sent``) count.
        """
        keys = {conversation_key(v): v for v in visitor_ids}
        if not keys:
            return []
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                sa.select(TICKETS.c.conversation, OUTBOX.c.id, MESSAGES.c.delivery_status)
                .join(TICKETS, TICKETS.c.id == OUTBOX.c.ticket_id)
                .join(MESSAGES, MESSAGES.c.id == OUTBOX.c.message_id)
                .where(
                    TICKETS.c.conversation.in_(keys),
                    OUTBOX.c.channel == WEBCHAT,
                    OUTBOX.c.state == SENT,
                    OUTBOX.c.sent_at >= since,
                )
                .order_by(OUTBOX.c.sent_at, OUTBOX.c.id)
            )
            return [
                (keys[conversation], int(outbox_id), status in _DELIVERED)
                for conversation, outbox_id, status in rows
            ]

    async def attachment(self, visitor_id: str, attachment_id: int) -> ChatFile | None:
        """A file of the visitor's conversation (theirs or staff's), or None when it is not."""
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(
                        ATTACHMENTS.c.filename, ATTACHMENTS.c.content_type, ATTACHMENTS.c.sha256
                    )
                    .join(MESSAGES, MESSAGES.c.id == ATTACHMENTS.c.message_id)
                    .join(TICKETS, TICKETS.c.id == MESSAGES.c.ticket_id)
                    .where(
                        ATTACHMENTS.c.id == attachment_id,
                        ATTACHMENTS.c.sha256.is_not(None),
                        TICKETS.c.conversation == conversation_key(visitor_id),
                        sa.or_(
                            sa.and_(MESSAGES.c.direction == "in", MESSAGES.c.channel == WEBCHAT),
                            MESSAGES.c.direction == "out",
                        ),
                    )
                )
            ).first()
        if row is None:
            return None
        return ChatFile(str(row.filename), str(row.content_type), str(row.sha256))


def _line_columns() -> sa.Select[tuple[object, ...]]:
    return (
        sa.select(
            MESSAGES.c.id,
            MESSAGES.c.direction,
            MESSAGES.c.external_id,
            MESSAGES.c.text,
            MESSAGES.c.created_at,
            OUTBOX.c.id.label("outbox_id"),
            OUTBOX.c.purpose,
        )
        .join(TICKETS, TICKETS.c.id == MESSAGES.c.ticket_id)
        .outerjoin(OUTBOX, OUTBOX.c.message_id == MESSAGES.c.id)
    )


def _line(
    row: sa.Row[tuple[object, ...]], visitor_id: str, files: tuple[ChatAttachment, ...]
) -> ChatLine:
    at = row.created_at
    assert isinstance(at, datetime)
    if row.direction == "in":
        external = str(row.external_id or "")
        visitor, _, client_id = external.partition(":")
        if visitor == visitor_id and client_id:
            return ChatLine(
                inbound_line_id(client_id), "visitor", str(row.text), at, files, client_id
            )
        return ChatLine(f"m-{row.id}", "visitor", str(row.text), at, files)
    line_id = outbound_line_id(int(row.outbox_id)) if row.outbox_id is not None else f"m-{row.id}"
    speaker: Speaker = "staff" if row.purpose == REPLY_PURPOSE else "system"
    return ChatLine(line_id, speaker, str(row.text), at, files)


async def _attachments(
    conn: AsyncConnection, message_ids: list[int]
) -> dict[int, tuple[ChatAttachment, ...]]:
    if not message_ids:
        return {}
    rows = await conn.execute(
        sa.select(
            ATTACHMENTS.c.id,
            ATTACHMENTS.c.message_id,
            ATTACHMENTS.c.filename,
            ATTACHMENTS.c.content_type,
        )
        # A file refused on the way in has no bytes to show.
        .where(ATTACHMENTS.c.message_id.in_(message_ids), ATTACHMENTS.c.sha256.is_not(None))
        .order_by(ATTACHMENTS.c.id)
    )
    found: dict[int, list[ChatAttachment]] = {}
    for attachment_id, message_id, filename, content_type in rows:
        found.setdefault(message_id, []).append(
            ChatAttachment(f"{FILES_PATH}/{attachment_id}", str(filename), str(content_type))
        )
    return {message_id: tuple(files) for message_id, files in found.items()}


async def _reachability(conn: AsyncConnection, visitor_id: str) -> Reachability:
    contact = (
        sa.select(IDENTITIES.c.contact_id)
        .where(IDENTITIES.c.kind == IdentityKind.WEBCHAT.value, IDENTITIES.c.value == visitor_id)
        .scalar_subquery()
    )
    kinds = set(
        (
            await conn.execute(
                sa.select(IDENTITIES.c.kind)
                .where(
                    IDENTITIES.c.contact_id == contact,
                    IDENTITIES.c.kind.in_((IdentityKind.EMAIL.value, IdentityKind.PHONE.value)),
                )
                .distinct()
            )
        ).scalars()
    )
    return Reachability(IdentityKind.EMAIL.value in kinds, IdentityKind.PHONE.value in kinds)


__all__ = [
    "ChatAttachment",
    "ChatFile",
    "ChatLine",
    "DatabaseChats",
    "Reachability",
    "Transcript",
    "conversation_key",
]
