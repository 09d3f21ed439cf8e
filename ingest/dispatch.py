"""The dispatcher: hands outbox rows to their channel's connector, retries, never sends twice.

A row is claimed (``sending``, committed) before the provider is called, and settled after. If the
process dies in between, nobody knows whether the provider got it: such a row turns ``uncertain``
after the send time-out, for staff to look at, instead of being sent a second time. Rows for a
channel that has no working connector stay ``pending`` with a reason that says so; they go out once
the channel is configured.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

import sqlalchemy as sa
import structlog
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncEngine

from ingest.model import Channel, OutboundAttachment, OutboundMessage, SendResult
from store.models import AttachmentRow, Message, OutboxRow, Ticket, table_of
from store.outbox import FAILED, PENDING, SENDING, SENT, UNCERTAIN, backoff

log = structlog.get_logger("meldpunt.dispatch")

OUTBOX = table_of(OutboxRow)
MESSAGES = table_of(Message)
TICKETS = table_of(Ticket)
ATTACHMENTS = table_of(AttachmentRow)

DISPATCHED = Counter(
    "meldpunt_outbox_sends_total",
    "Outbound send attempts by channel and outcome.",
    ["channel", "outcome"],
)


class Sender(Protocol):
    """What the dispatcher needs of a connector."""

    async def send(self, message: OutboundMessage) -> SendResult: ...


@dataclass(frozen=True, slots=True)
class DispatchPolicy:
    max_attempts: int = 8
    backoff_seconds: float = 30.0
    backoff_max_seconds: float = 3600.0
    send_timeout_seconds: float = 60.0
    batch: int = 50


def no_connector_reason(channel: str) -> str:
    return (
        f"no connector is configured for the {channel} channel yet; "
        "the message waits here and goes out once it is"
    )


class Dispatcher:
    """Sends due outbox rows with the connectors in ``senders``."""

    def __init__(
        self,
        engine: AsyncEngine,
        senders: Mapping[Channel, Sender],
        policy: DispatchPolicy,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._engine = engine
        self._senders = dict(senders)
        self._policy = policy
        self._clock = clock or (lambda: datetime.now(UTC))

    async def run_once(self) -> int:
        """One pass: settle stale claims, explain waiting rows, send what is due. Returns sends."""
        now = self._clock()
        await self._mark_uncertain(now)
        await self._explain_waiting()
        claimed = await self._claim(now)
        for row in claimed:
            await self._send(row)
        return len(claimed)

    async def _mark_uncertain(self, now: datetime) -> None:
        stale = now - timedelta(seconds=self._policy.send_timeout_seconds * 2)
        reason = (
            "sending was interrupted (the service stopped while the provider was called); "
            "it may or may not have arrived, so it is not sent again automatically"
        )
        async with self._engine.begin() as conn:
            ids = (
                await conn.execute(
                    sa.select(OUTBOX.c.id, OUTBOX.c.message_id).where(
                        OUTBOX.c.state == SENDING, OUTBOX.c.claimed_at < stale
                    )
                )
            ).all()
            if not ids:
                return
            await conn.execute(
                sa.update(OUTBOX)
                .where(OUTBOX.c.id.in_([i for i, _ in ids]), OUTBOX.c.state == SENDING)
                .values(state=UNCERTAIN, reason=reason)
            )
            await conn.execute(
                sa.update(MESSAGES)
                .where(MESSAGES.c.id.in_([m for _, m in ids]))
                .values(delivery_status=UNCERTAIN)
            )
        log.warning("outbox rows marked uncertain", count=len(ids))

    async def _explain_waiting(self) -> None:
        configured = [c.value for c in self._senders]
        async with self._engine.begin() as conn:
            channels = (
                await conn.execute(
                    sa.select(OUTBOX.c.channel)
                    .where(
                        OUTBOX.c.state == PENDING,
                        OUTBOX.c.recipient.is_not(None),
                        OUTBOX.c.channel.not_in(configured),
                    )
                    .distinct()
                )
            ).scalars()
            for channel in list(channels):
                reason = no_connector_reason(channel)
                await conn.execute(
                    sa.update(OUTBOX)
                    .where(
                        OUTBOX.c.state == PENDING,
                        OUTBOX.c.channel == channel,
                        OUTBOX.c.recipient.is_not(None),
                        sa.or_(OUTBOX.c.reason.is_(None), OUTBOX.c.reason != reason),
                    )
                    .values(reason=reason)
                )

    async def _claim(self, now: datetime) -> list[sa.Row[tuple[object, ...]]]:
        if not self._senders:
            return []
        async with self._engine.begin() as conn:
            due = (
                (
                    await conn.execute(
                        sa.select(OUTBOX.c.id)
                        .where(
                            OUTBOX.c.state == PENDING,
                            OUTBOX.c.recipient.is_not(None),
                            OUTBOX.c.channel.in_([c.value for c in self._senders]),
                            OUTBOX.c.next_attempt_at <= now,
                        )
                        .order_by(OUTBOX.c.next_attempt_at, OUTBOX.c.id)
                        .limit(self._policy.batch)
                        .with_for_update(skip_locked=True)
                    )
                )
                .scalars()
                .all()
            )
            if not due:
                return []
            await conn.execute(
                sa.update(OUTBOX)
                .where(OUTBOX.c.id.in_(due), OUTBOX.c.state == PENDING)
                .values(state=SENDING, claimed_at=now, attempts=OUTBOX.c.attempts + 1)
            )
            await conn.execute(
                sa.update(MESSAGES)
                .where(
                    MESSAGES.c.id.in_(sa.select(OUTBOX.c.message_id).where(OUTBOX.c.id.in_(due)))
                )
                .values(delivery_status=SENDING)
            )
            rows = (
                await conn.execute(
                    sa.select(OUTBOX, TICKETS.c.reference, TICKETS.c.department)
                    .join(TICKETS, TICKETS.c.id == OUTBOX.c.ticket_id)
                    .where(OUTBOX.c.id.in_(due), OUTBOX.c.claimed_at == now)
                    .order_by(OUTBOX.c.id)
                )
            ).all()
        return list(rows)

    async def _send(self, row: sa.Row[tuple[object, ...]]) -> None:
        r = row._mapping
        channel = Channel(str(r["channel"]))
        try:
            in_reply_to, references = await self._thread_of(int(r["ticket_id"]), channel)
            attachments = await self._attachments_of(int(r["message_id"]))
        except Exception as exc:
            await self._failed(r, exc)
            return
        message = OutboundMessage(
            outbox_id=int(r["id"]),
            channel=channel,
            recipient=str(r["recipient"]),
            text=str(r["body"]),
            subject=r["subject"],
            ticket_reference=r["reference"],
            in_reply_to=in_reply_to,
            references=references,
            department=r["department"],
            automatic=r["purpose"] != "reply",
            attachments=attachments,
        )
        try:
            async with asyncio.timeout(self._policy.send_timeout_seconds):
                result = await self._senders[channel].send(message)
        except Exception as exc:
            await self._failed(r, exc)
            return
        now = self._clock()
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.update(OUTBOX)
                .where(OUTBOX.c.id == r["id"])
                .values(state=SENT, provider_id=result.provider_id, sent_at=now, reason=None)
            )
            await conn.execute(
                sa.update(MESSAGES)
                .where(MESSAGES.c.id == r["message_id"])
                .values(delivery_status=result.status.value, external_id=result.provider_id)
            )
        DISPATCHED.labels(channel.value, "sent").inc()

    async def _thread_of(
        self, ticket_id: int, channel: Channel
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The provider ids this message answers: the citizen's last one, and the whole chain.

        E-mail clients thread on them (In-Reply-To, References); other channels ignore them.
        """
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(MESSAGES.c.direction, MESSAGES.c.external_id)
                    .where(
                        MESSAGES.c.ticket_id == ticket_id,
                        MESSAGES.c.channel == channel.value,
                        MESSAGES.c.external_id.is_not(None),
                    )
                    .order_by(MESSAGES.c.id)
                )
            ).all()
        chain = tuple(str(external_id) for _, external_id in rows)
        last_in = next((str(e) for d, e in reversed(rows) if d == "in"), None)
        return ((last_in,) if last_in else ()), chain

    async def _attachments_of(self, message_id: int) -> tuple[OutboundAttachment, ...]:
        """The files of the outbound message, in the order they were attached."""
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(
                        ATTACHMENTS.c.filename,
                        ATTACHMENTS.c.content_type,
                        ATTACHMENTS.c.size,
                        ATTACHMENTS.c.sha256,
                    )
                    # A file recorded as removed has no bytes to send.
                    .where(
                        ATTACHMENTS.c.message_id == message_id, ATTACHMENTS.c.sha256.is_not(None)
                    )
                    .order_by(ATTACHMENTS.c.id)
                )
            ).all()
        return tuple(
            OutboundAttachment(
                filename=str(filename),
                content_type=str(content_type),
                size=int(size),
                sha256=str(digest),
            )
            for filename, content_type, size, digest in rows
        )

    async def _failed(self, r: sa.RowMapping, exc: Exception) -> None:
        attempts = int(r["attempts"])
        permanent = bool(getattr(exc, "permanent", False))
        error = f"{type(exc).__name__}: {exc}"[:2000] if str(exc) else type(exc).__name__
        final = permanent or attempts >= self._policy.max_attempts
        now = self._clock()
        values: dict[str, object]
        if final:
            values = {"state": FAILED, "reason": f"failed after {attempts} attempt(s): {error}"}
        else:
            delay = backoff(
                attempts, self._policy.backoff_seconds, self._policy.backoff_max_seconds
            )
            values = {
                "state": PENDING,
                "next_attempt_at": now + delay,
                "reason": f"attempt {attempts} failed, retrying at {(now + delay).isoformat()}: "
                f"{error}",
            }
        async with self._engine.begin() as conn:
            await conn.execute(sa.update(OUTBOX).where(OUTBOX.c.id == r["id"]).values(**values))
            await conn.execute(
                sa.update(MESSAGES)
                .where(MESSAGES.c.id == r["message_id"])
                .values(delivery_status=FAILED if final else PENDING)
            )
        DISPATCHED.labels(r["channel"], "failed" if final else "retry").inc()
        log.warning(
            "send failed", outbox_id=r["id"], channel=r["channel"], final=final, error=error
        )
