"""The dispatcher: hands outbox rows to their channel's connector, retries, never sends twice.

A pass claims up to ``batch`` due rows (``sending``, committed, ``SKIP LOCKED`` so no two workers
take the same row) and sends them one by one. Just before its own provider call a row's attempt is
marked started (``attempt_started_at``, one small commit); it is settled after. If the process
dies, nobody knows whether the provider got a row whose call had started: it turns ``uncertain``
after twice the send time-out, for staff to look at, instead of being sent a second time. Rows of
the batch whose call had not started go back to ``pending`` at that moment and are sent as usual.

A send that fails by a time-out may have reached the provider too (the request went out, the
answer did not come back), so it also turns ``uncertain`` rather than being retried. The exception
is a time-out while connecting: nothing was sent, so it is retried like a refused connection.
Connectors wrap their client library's error in a ``SendError``; the dispatcher reads the chain
of causes (see ``maybe_delivered``). Every other failure is retried with back-off.

An ``uncertain`` row is then reconciled with the provider (``_reconcile``): the channel's
connector is asked once whether the message is there (``find_sent``). Found: the row is ``sent``
with the provider's id, so later delivery reports match. Safe to send again (the provider shows
no such message, or a second copy is harmless, as e-mail's is with the same Message-ID): back to
``pending``. The provider gives no way to ask: it stays ``uncertain`` and staff decide in the
inbox. A look-up that fails is tried again with back-off, ``lookup_attempts`` times at most. A
row that timed out is first looked up a send time-out later, so a request still on its way is
not taken for one that never left.

Rows for a channel that has no working connector stay ``pending`` with a reason that says so;
they go out once the channel is configured.

A channel that only takes free-form answers shortly after the citizen last wrote (WhatsApp's
24-hour window) is told when that was; when the connector says the window is closed, the row
moves to a fallback channel the citizen can be reached on, or waits for the citizen to write.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, cast

import sqlalchemy as sa
import structlog
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ingest.model import (
    REPLY_IDENTITY,
    Channel,
    OutboundAttachment,
    OutboundMessage,
    SendResult,
)
from store.models import (
    AttachmentRow,
    ContactIdentity,
    Message,
    OutboxRow,
    Ticket,
    TicketEvent,
    table_of,
)
from store.outbox import (
    FAILED,
    PENDING,
    SENDING,
    SENT,
    STAFF_PURPOSES,
    UNCERTAIN,
    WAITING,
    backoff,
)

log = structlog.get_logger("meldpunt.dispatch")

OUTBOX = table_of(OutboxRow)
MESSAGES = table_of(Message)
TICKETS = table_of(Ticket)
ATTACHMENTS = table_of(AttachmentRow)
IDENTITIES = table_of(ContactIdentity)
EVENTS = table_of(TicketEvent)
# Kept on a row once it is sent, so staff still see why it went by another channel.
_REROUTED = " window closed: sent by "

DISPATCHED = Counter(
    "meldpunt_outbox_sends_total",
    "Outbound send attempts by channel and outcome.",
    ["channel", "outcome"],
)
RECONCILED = Counter(
    "meldpunt_outbox_reconciliations_total",
    "Uncertain sends settled, by channel and outcome: found, not_sent (sent again), "
    "cannot_tell, lookup_failed (asked again later), resent_by_staff, confirmed_by_staff.",
    ["channel", "outcome"],
)


class Sender(Protocol):
    """What the dispatcher needs of a connector."""

    async def send(self, message: OutboundMessage) -> SendResult: ...


class Reconciler(Protocol):
    """What the dispatcher asks of a connector about an uncertain send (``connectors.base``)."""

    async def find_sent(
        self, message: OutboundMessage, attempt_started_at: datetime
    ) -> SendResult | None: ...


class _WindowClosed(Protocol):
    """What ``connectors.base.WindowClosed`` carries (ingest does not import connectors)."""

    template_sent_at: datetime | None
    template_provider_id: str | None
    fallback: tuple[Channel, ...]
    waiting_for: str | None


def _window_closed(exc: Exception) -> _WindowClosed | None:
    if isinstance(getattr(exc, "fallback", None), tuple) and hasattr(exc, "template_sent_at"):
        return cast(_WindowClosed, exc)
    return None


@dataclass(frozen=True, slots=True)
class DispatchPolicy:
    max_attempts: int = 8
    backoff_seconds: float = 30.0
    backoff_max_seconds: float = 3600.0
    send_timeout_seconds: float = 60.0
    batch: int = 50
    # How often the provider is asked about an uncertain send when the look-up itself fails.
    lookup_attempts: int = 4


# Client-library errors that mean no connection was ever made, so no request can have gone out.
# Matched by class name (and base class names), so ingest needs none of those libraries.
_NEVER_CONNECTED = frozenset(
    {
        "ClientConnectorError",  # aiohttp: refused, unreachable, DNS, TLS handshake
        "ConnectionTimeoutError",  # aiohttp: connecting took too long
        "SMTPConnectError",  # aiosmtplib (also its SMTPConnectTimeoutError)
        "ConnectError",  # httpx, under python-telegram-bot's NetworkError
        "ConnectTimeout",  # httpx, under python-telegram-bot's TimedOut
        "PoolTimeout",  # httpx: no free connection to send on
    }
)
# python-telegram-bot's time-out is no ``TimeoutError``.
_TIMEOUT_NAMES = frozenset({"TimedOut"})


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it was raised from (or while handling), outermost first."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain and len(chain) < 16:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def maybe_delivered(exc: BaseException) -> bool:
    """Whether a failed send may still have reached the provider: it timed out after connecting.

    A time-out anywhere in the chain of causes counts (the dispatcher's own send time-out, a
    connector's, or its client library's), unless the chain shows the connection itself was
    never made (refused, or timed out while connecting). Such a send is not retried blindly.
    """
    chain = _causes(exc)
    if any(
        isinstance(e, ConnectionRefusedError)
        or any(k.__name__ in _NEVER_CONNECTED for k in type(e).__mro__)
        for e in chain
    ):
        return False
    return any(isinstance(e, TimeoutError) or type(e).__name__ in _TIMEOUT_NAMES for e in chain)


def no_connector_reason(channel: str) -> str:
    return (
        f"no connector is configured for the {channel} channel yet; "
        "the message waits here and goes out once it is"
    )


def _window_event(
    r: sa.RowMapping, channel: Channel, now: datetime, **data: object
) -> dict[str, object]:
    """The ticket event saying what happened to an answer the channel would not take now."""
    return {
        "ticket_id": r["ticket_id"],
        "type": "reply_window_closed",
        "actor_user_id": None,
        "data": {
            "channel": channel.value,
            "message_id": r["message_id"],
            "outbox_id": r["id"],
            **data,
        },
        "created_at": now,
    }


def channel_name(channel: Channel) -> str:
    """How staff read a channel's name in a reason."""
    return _CHANNEL_NAMES.get(channel, channel.value)


_CHANNEL_NAMES = {
    Channel.SMS: "SMS",
    Channel.WHATSAPP: "WhatsApp",
    Channel.EMAIL: "e-mail",
    Channel.MESSENGER: "Messenger",
    Channel.TELEGRAM: "Telegram",
    Channel.WEBCHAT: "web chat",
}


class Dispatcher:
    """Sends due outbox rows with the connectors in ``senders``."""

    def __init__(
        self,
        engine: AsyncEngine,
        senders: Mapping[Channel, Sender],
        policy: DispatchPolicy,
        clock: Callable[[], datetime] | None = None,
        windowed: Collection[Channel] = (),
    ) -> None:
        self._engine = engine
        self._senders = dict(senders)
        # Channels with a reply window (WhatsApp): only their sends need the citizen's last
        # message time and a look for answers already waiting on that citizen.
        self._windowed = frozenset(windowed)
        self._policy = policy
        self._clock = clock or (lambda: datetime.now(UTC))

    async def run_once(self) -> int:
        """One pass: settle stale claims, reconcile uncertain sends, explain waiting rows, send
        what is due. Returns sends."""
        now = self._clock()
        await self._settle_interrupted(now)
        await self._reconcile(now)
        await self._explain_waiting()
        claimed = await self._claim(now)
        for row in claimed:
            await self._send(row)
        return len(claimed)

    async def _settle_interrupted(self, now: datetime) -> None:
        """Settle rows a stopped worker left ``sending``, once twice the send time-out passed.

        A row whose provider call had started may have arrived: ``uncertain``. A row that was
        only claimed never left: ``pending`` again. A live worker that is that slow to reach a
        claimed row finds it taken back and skips it (``_start_attempt``).
        """
        stale = now - timedelta(seconds=self._policy.send_timeout_seconds * 2)
        reason = (
            "sending was interrupted (the service stopped while the provider was called); "
            "it may or may not have arrived, so it is not sent again automatically"
        )
        async with self._engine.begin() as conn:
            uncertain = (
                (
                    await conn.execute(
                        sa.update(OUTBOX)
                        .where(
                            OUTBOX.c.state == SENDING,
                            OUTBOX.c.attempt_started_at.is_not(None),
                            OUTBOX.c.attempt_started_at < stale,
                        )
                        # Stale already: the provider can be asked right away.
                        .values(state=UNCERTAIN, reason=reason, lookups=0, next_attempt_at=now)
                        .returning(OUTBOX.c.message_id)
                    )
                )
                .scalars()
                .all()
            )
            if uncertain:
                await _set_delivery(conn, uncertain, delivery_status=UNCERTAIN)
            released = (
                (
                    await conn.execute(
                        sa.update(OUTBOX)
                        .where(
                            OUTBOX.c.state == SENDING,
                            OUTBOX.c.attempt_started_at.is_(None),
                            OUTBOX.c.claimed_at < stale,
                        )
                        .values(state=PENDING, claimed_at=None)
                        .returning(OUTBOX.c.id)
                    )
                )
                .scalars()
                .all()
            )
        if uncertain:
            log.warning("outbox rows marked uncertain", count=len(uncertain))
        if released:
            log.info("claimed outbox rows never sent, pending again", count=len(released))

    async def _reconcile(self, now: datetime) -> None:
        """Ask the provider about each due ``uncertain`` row, and settle what it answers."""
        if not self._senders:
            return
        # Held by this worker while it asks; another worker leaves the row alone meanwhile.
        lease = now + timedelta(seconds=self._policy.send_timeout_seconds * 2)
        async with self._engine.begin() as conn:
            due = await self._due(
                conn, UNCERTAIN, now, OUTBOX.c.lookups < self._policy.lookup_attempts
            )
            if not due:
                return
            await conn.execute(
                sa.update(OUTBOX).where(OUTBOX.c.id.in_(due)).values(next_attempt_at=lease)
            )
            rows = await _with_ticket(conn, OUTBOX.c.id.in_(due))
        for row in rows:
            await self._look_up(row._mapping, lease)

    async def _look_up(self, r: sa.RowMapping, lease: datetime) -> None:
        channel = Channel(str(r["channel"]))
        name = channel_name(channel)
        started = r["attempt_started_at"] or r["claimed_at"] or r["created_at"]
        message = _outbound(r, channel)
        finder = getattr(self._senders[channel], "find_sent", None)
        outcome: str
        values: dict[str, object]
        delivery: str | None = None
        external_id: str | None = None
        try:
            if finder is None:
                raise _NoLookup
            async with asyncio.timeout(self._policy.send_timeout_seconds):
                found = await cast(Reconciler, self._senders[channel]).find_sent(message, started)
        except Exception as exc:
            if isinstance(exc, _NoLookup) or getattr(exc, "cannot_tell", False):
                outcome = "cannot_tell"
                values = {
                    "lookups": self._policy.lookup_attempts,
                    "reason": (
                        f"{str(r['reason'] or 'the send was interrupted').rstrip('.')}. {name} "
                        "gives no way to check whether it arrived: ask the citizen if needed, "
                        "then choose 'send again' or 'it arrived'"
                    )[-2000:],
                }
            else:
                lookups = int(r["lookups"]) + 1
                error = _describe(exc)
                outcome = "lookup_failed"
                if lookups >= self._policy.lookup_attempts:
                    values = {
                        "lookups": lookups,
                        "reason": (
                            f"{name} could not be asked whether the message arrived "
                            f"({lookups} tries, last: {error}); ask the citizen if needed, "
                            "then choose 'send again' or 'it arrived'"
                        )[:2000],
                    }
                else:
                    when = self._clock() + backoff(
                        lookups, self._policy.backoff_seconds, self._policy.backoff_max_seconds
                    )
                    values = {
                        "lookups": lookups,
                        "next_attempt_at": when,
                        "reason": (
                            f"delivery uncertain; asking {name} whether it arrived failed "
                            f"({error}), asking again at {when.isoformat(timespec='minutes')}"
                        )[:2000],
                    }
        else:
            now = self._clock()
            if found is not None:
                outcome = "found"
                values = {
                    "state": SENT,
                    "provider_id": found.provider_id,
                    "sent_at": now,
                    "reason": None,
                }
                delivery, external_id = found.status.value, found.provider_id
            else:
                outcome = "not_sent"
                values = {
                    "state": PENDING,
                    "next_attempt_at": now,
                    "claimed_at": None,
                    "attempt_started_at": None,
                    "lookups": 0,
                    "reason": f"checked after the send in doubt: safe to send again by {name}",
                }
                delivery = PENDING
        async with self._engine.begin() as conn:
            settled = await conn.execute(
                sa.update(OUTBOX)
                # Staff may have settled it meanwhile: then theirs stands.
                .where(
                    OUTBOX.c.id == r["id"],
                    OUTBOX.c.state == UNCERTAIN,
                    OUTBOX.c.next_attempt_at == lease,
                )
                .values(**values)
            )
            if settled.rowcount != 1:
                return
            if delivery is not None:
                await _set_delivery(
                    conn,
                    [r["message_id"]],
                    delivery_status=delivery,
                    **({"external_id": external_id} if external_id else {}),
                )
        RECONCILED.labels(channel.value, outcome).inc()
        log.info(
            "uncertain send looked up", outbox_id=r["id"], channel=channel.value, outcome=outcome
        )

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

    async def _due(
        self, conn: AsyncConnection, state: str, now: datetime, *more: sa.ColumnElement[bool]
    ) -> list[int]:
        """Ids of rows in ``state`` due now on a configured channel, oldest first, locked for
        this transaction (other workers skip them)."""
        ids = await conn.execute(
            sa.select(OUTBOX.c.id)
            .where(
                OUTBOX.c.state == state,
                OUTBOX.c.recipient.is_not(None),
                OUTBOX.c.channel.in_([c.value for c in self._senders]),
                OUTBOX.c.next_attempt_at <= now,
                *more,
            )
            .order_by(OUTBOX.c.next_attempt_at, OUTBOX.c.id)
            .limit(self._policy.batch)
            .with_for_update(skip_locked=True)
        )
        return [int(i) for i in ids.scalars()]

    async def _claim(self, now: datetime) -> list[sa.RowMapping]:
        if not self._senders:
            return []
        async with self._engine.begin() as conn:
            due = await self._due(conn, PENDING, now)
            if not due:
                return []
            # Only claimed: the attempt (and the message's "sending") starts just before its call.
            await conn.execute(
                sa.update(OUTBOX)
                .where(OUTBOX.c.id.in_(due), OUTBOX.c.state == PENDING)
                .values(state=SENDING, claimed_at=now, attempt_started_at=None)
            )
            rows = await _with_ticket(conn, OUTBOX.c.id.in_(due), OUTBOX.c.claimed_at == now)
        return [row._mapping for row in rows]

    async def _send(self, r: sa.RowMapping) -> None:
        channel = Channel(str(r["channel"]))
        attempts = int(r["attempts"]) + 1
        try:
            in_reply_to, references = (
                ((), ())
                if r["purpose"] in STAFF_PURPOSES
                else await self._thread_of(int(r["ticket_id"]), channel)
            )
            attachments = await self._attachments_of(int(r["message_id"]))
            last_inbound_at = None
            if channel in self._windowed:
                last_inbound_at = await self._last_inbound_at(int(r["ticket_id"]), channel)
                if await self._park_behind_waiting(r, channel):
                    return
        except Exception as exc:
            await self._failed(r, exc, attempts)
            return
        message = _outbound(
            r,
            channel,
            in_reply_to=in_reply_to,
            references=references,
            attachments=attachments,
            last_inbound_at=last_inbound_at,
        )
        if not await self._start_attempt(r):
            return
        try:
            async with asyncio.timeout(self._policy.send_timeout_seconds):
                result = await self._senders[channel].send(message)
        except Exception as exc:
            if (closed := _window_closed(exc)) is not None:
                await self._reroute_or_wait(r, channel, closed)
            elif maybe_delivered(exc):
                await self._uncertain(r, exc)
            else:
                await self._failed(r, exc, attempts)
            return
        now = self._clock()
        reason = r["reason"] if r["reason"] and _REROUTED in str(r["reason"]) else None
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.update(OUTBOX)
                .where(OUTBOX.c.id == r["id"])
                .values(state=SENT, provider_id=result.provider_id, sent_at=now, reason=reason)
            )
            await _set_delivery(
                conn,
                [r["message_id"]],
                delivery_status=result.status.value,
                external_id=result.provider_id,
            )
        DISPATCHED.labels(channel.value, "sent").inc()

    async def _start_attempt(self, r: sa.RowMapping) -> bool:
        """Record that this row's provider call starts now; False when the claim was lost.

        Committed before the call, so after a crash only this row can be in doubt, not the
        rest of the batch. The claim is lost when the row waited so long in a slow batch that
        ``_settle_interrupted`` gave it back (and maybe another worker took it): skip it then.
        """
        async with self._engine.begin() as conn:
            started = await conn.execute(
                sa.update(OUTBOX)
                .where(
                    OUTBOX.c.id == r["id"],
                    OUTBOX.c.state == SENDING,
                    OUTBOX.c.claimed_at == r["claimed_at"],
                    OUTBOX.c.attempt_started_at.is_(None),
                )
                .values(attempt_started_at=self._clock(), attempts=OUTBOX.c.attempts + 1)
            )
            if started.rowcount != 1:
                return False
            await _set_delivery(conn, [r["message_id"]], delivery_status=SENDING)
        return True

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

    async def _last_inbound_at(self, ticket_id: int, channel: Channel) -> datetime | None:
        """When the ticket's citizen last wrote on ``channel``, on this ticket or any other."""
        contact = sa.select(TICKETS.c.contact_id).where(TICKETS.c.id == ticket_id)
        async with self._engine.connect() as conn:
            last: datetime | None = (
                await conn.execute(
                    sa.select(sa.func.max(MESSAGES.c.created_at))
                    .join(TICKETS, TICKETS.c.id == MESSAGES.c.ticket_id)
                    .where(
                        TICKETS.c.contact_id == contact.scalar_subquery(),
                        MESSAGES.c.channel == channel.value,
                        MESSAGES.c.direction == "in",
                    )
                )
            ).scalar_one_or_none()
        if last is not None and last.tzinfo is None:
            # max() bypasses the column type on SQLite, which hands back a naive UTC value.
            last = last.replace(tzinfo=UTC)
        return last

    async def _park_behind_waiting(self, r: sa.RowMapping, channel: Channel) -> bool:
        """Park a row when an earlier one to the same citizen already waits on this channel.

        The citizen was sent the template once; a second template for each further answer
        would only nag. Both go out when the citizen writes.
        """
        now = self._clock()
        contact = sa.select(TICKETS.c.contact_id).where(TICKETS.c.id == r["ticket_id"])
        async with self._engine.begin() as conn:
            earlier = (
                await conn.execute(
                    sa.select(OUTBOX.c.id)
                    .join(TICKETS, TICKETS.c.id == OUTBOX.c.ticket_id)
                    .where(
                        OUTBOX.c.state == WAITING,
                        OUTBOX.c.channel == channel.value,
                        TICKETS.c.contact_id == contact.scalar_subquery(),
                    )
                    .limit(1)
                )
            ).scalar_one_or_none()
            if earlier is None:
                return False
            reason = (
                f"waiting for the citizen to write on {channel_name(channel)}, "
                "like the answer queued before it"
            )
            parked = await conn.execute(
                sa.update(OUTBOX)
                .where(
                    OUTBOX.c.id == r["id"],
                    OUTBOX.c.state == SENDING,
                    OUTBOX.c.claimed_at == r["claimed_at"],
                )
                .values(state=WAITING, reason=reason)
            )
            if parked.rowcount != 1:
                return True  # the claim was given back meanwhile: not this worker's row now
            await _set_delivery(conn, [r["message_id"]], delivery_status=PENDING)
            await conn.execute(
                sa.insert(EVENTS),
                [
                    _window_event(
                        r, channel, now, action="waiting", behind_outbox_id=earlier, reason=reason
                    )
                ],
            )
        return True

    async def _reroute_or_wait(
        self, r: sa.RowMapping, channel: Channel, closed: _WindowClosed
    ) -> None:
        """Move a row the channel would not take now to a fallback channel, or park it.

        The fallback is the first channel in the connector's list that has a working sender
        and an address of this citizen; without one the row waits for the citizen to write.
        """
        now = self._clock()
        sent_at = closed.template_sent_at
        template = closed.waiting_for or (
            f"to answer the WhatsApp template sent at {sent_at.isoformat(timespec='minutes')}"
            if sent_at
            else "to send a new message (no WhatsApp template is configured)"
        )
        name = channel_name(channel)
        async with self._engine.begin() as conn:
            identities = {
                str(kind): str(value)
                for kind, value in await conn.execute(
                    sa.select(IDENTITIES.c.kind, IDENTITIES.c.value)
                    .join(TICKETS, TICKETS.c.contact_id == IDENTITIES.c.contact_id)
                    .where(TICKETS.c.id == r["ticket_id"])
                    .order_by(IDENTITIES.c.id)
                )
            }
            target: tuple[Channel, str] | None = None
            for candidate in closed.fallback:
                kind = REPLY_IDENTITY.get(candidate)
                if candidate in self._senders and kind and (address := identities.get(kind)):
                    target = (candidate, address)
                    break
            values: dict[str, object]
            if target is not None:
                to_channel, address = target
                values = {
                    "state": PENDING,
                    "channel": to_channel.value,
                    "recipient": address,
                    "next_attempt_at": now,
                    "reason": f"{name}{_REROUTED}{channel_name(to_channel)} instead",
                }
                event = {"action": "rerouted", "to_channel": to_channel.value}
            else:
                values = {
                    "state": WAITING,
                    "reason": f"waiting for the citizen {template}",
                }
                event = {"action": "waiting"}
            await conn.execute(sa.update(OUTBOX).where(OUTBOX.c.id == r["id"]).values(**values))
            await _set_delivery(
                conn,
                [r["message_id"]],
                delivery_status=PENDING,
                **({"channel": target[0].value} if target is not None else {}),
            )
            await conn.execute(
                sa.insert(EVENTS),
                [
                    _window_event(
                        r,
                        channel,
                        now,
                        template_provider_id=closed.template_provider_id,
                        template_sent_at=sent_at.isoformat() if sent_at else None,
                        reason=values["reason"],
                        **event,
                    )
                ],
            )
        DISPATCHED.labels(channel.value, str(event["action"])).inc()
        log.info("reply window closed", outbox_id=r["id"], channel=channel.value, **event)

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

    async def _uncertain(self, r: sa.RowMapping, exc: Exception) -> None:
        """A send that timed out once the request may have gone out: not retried blindly."""
        error = _describe(exc)
        reason = (
            f"the provider did not answer in time ({error}); the message may or may not have "
            "arrived, so it is not sent again automatically"
        )
        # Asked about only a send time-out later: a request still under way may yet arrive.
        check_at = self._clock() + timedelta(seconds=self._policy.send_timeout_seconds)
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.update(OUTBOX)
                .where(OUTBOX.c.id == r["id"])
                .values(state=UNCERTAIN, reason=reason[:2000], lookups=0, next_attempt_at=check_at)
            )
            await _set_delivery(conn, [r["message_id"]], delivery_status=UNCERTAIN)
        DISPATCHED.labels(r["channel"], "uncertain").inc()
        log.warning("send timed out, delivery uncertain", outbox_id=r["id"], channel=r["channel"])

    async def _failed(self, r: sa.RowMapping, exc: Exception, attempts: int) -> None:
        permanent = bool(getattr(exc, "permanent", False))
        error = _describe(exc)
        final = permanent or attempts >= self._policy.max_attempts
        now = self._clock()
        values: dict[str, object] = {"attempts": attempts, "attempt_started_at": None}
        if final:
            values |= {"state": FAILED, "reason": f"failed after {attempts} attempt(s): {error}"}
        else:
            delay = backoff(
                attempts, self._policy.backoff_seconds, self._policy.backoff_max_seconds
            )
            values |= {
                "state": PENDING,
                "next_attempt_at": now + delay,
                "reason": f"attempt {attempts} failed, retrying at {(now + delay).isoformat()}: "
                f"{error}",
            }
        async with self._engine.begin() as conn:
            await conn.execute(sa.update(OUTBOX).where(OUTBOX.c.id == r["id"]).values(**values))
            await _set_delivery(
                conn, [r["message_id"]], delivery_status=FAILED if final else PENDING
            )
        DISPATCHED.labels(r["channel"], "failed" if final else "retry").inc()
        log.warning(
            "send failed", outbox_id=r["id"], channel=r["channel"], final=final, error=error
        )


class _NoLookup(Exception):
    """The sender has no ``find_sent`` at all."""


async def _set_delivery(
    conn: AsyncConnection, message_ids: Collection[int], delivery_status: str, **more: object
) -> None:
    """The delivery state staff see on the messages of outbox rows (and what else changed)."""
    await conn.execute(
        sa.update(MESSAGES)
        .where(MESSAGES.c.id.in_(message_ids))
        .values(delivery_status=delivery_status, **more)
    )


async def _with_ticket(conn: AsyncConnection, *where: sa.ColumnElement[bool]) -> list[sa.Row[Any]]:
    """Outbox rows with their ticket's reference and department, in id order."""
    result = await conn.execute(
        sa.select(OUTBOX, TICKETS.c.reference, TICKETS.c.department)
        .join(TICKETS, TICKETS.c.id == OUTBOX.c.ticket_id)
        .where(*where)
        .order_by(OUTBOX.c.id)
    )
    return list(result.all())


def _outbound(r: sa.RowMapping, channel: Channel, **more: Any) -> OutboundMessage:
    """The message a connector gets for an outbox row (``more``: what only sending needs)."""
    return OutboundMessage(
        outbox_id=int(r["id"]),
        channel=channel,
        recipient=str(r["recipient"]),
        text=str(r["body"]),
        subject=r["subject"],
        ticket_reference=r["reference"],
        department=r["department"],
        automatic=r["purpose"] != "reply",
        choices=tuple(r["choices"] or ()),
        **more,
    )


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000] if str(exc) else type(exc).__name__
