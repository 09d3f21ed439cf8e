"""The intake pipeline: journal, dedupe, contact, thread, route, persist, acknowledge — batched.

Connectors call ``Intake.submit`` and answer their client only when it returns, that is when the
message is durable. One writer task per process takes whatever is waiting (up to ``max_batch``)
and does the whole pipeline for that batch in one transaction with Core statements: one commit
(one fsync) serves every message in the batch, which is what lets intake keep up with the HTTP
layer (see RECIPES.md's performance facts). Should a batch fail, each message is retried alone,
and one that still fails is journalled as quarantined with its error — never dropped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import nh3
import sqlalchemy as sa
import structlog
from prometheus_client import Counter, Histogram
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ingest.acknowledge import Acknowledgement, AckRequest, minimal_acknowledgement
from ingest.codec import message_to_envelope
from ingest.followup import (
    FollowUp,
    SurveyReply,
    TicketClock,
    clock_start,
    new_timer_rows,
    notify_staff,
    read_survey_reply,
    record_opt_out,
    record_survey_answer,
    record_unclear,
    reopen_values,
    reschedule,
    resume_values,
)
from ingest.identity import normalise_contact
from ingest.model import (
    REPLY_IDENTITY,
    Channel,
    ContactRef,
    DeliveryReport,
    DeliveryStatus,
    IdentityKind,
    InboundMessage,
    IntakeResult,
    IntakeUnavailable,
    Kind,
    RawPayload,
    TicketStatus,
)
from ingest.templates import Notice
from router.rules import Decision, RoutingInput, RuleSet
from store.batch import insert_many, insert_rows
from store.models import (
    REFERENCE_SEQUENCE,
    AttachmentRow,
    Contact,
    ContactEvent,
    ContactIdentity,
    JournalEntry,
    Message,
    OutboxRow,
    Ticket,
    TicketEvent,
    Timer,
    table_of,
)
from store.models import (
    Counter as CounterRow,
)
from store.outbox import FAILED, PENDING, WAITING, OutboundDraft, queue_outbound

log = structlog.get_logger("meldpunt.ingest")

# A contact as a batch knows it: an id, or a contact the batch is about to create.
_C = TypeVar("_C")

CONTACTS = table_of(Contact)
IDENTITIES = table_of(ContactIdentity)
TICKETS = table_of(Ticket)
MESSAGES = table_of(Message)
ATTACHMENTS = table_of(AttachmentRow)
EVENTS = table_of(TicketEvent)
JOURNAL = table_of(JournalEntry)
COUNTERS = table_of(CounterRow)
OUTBOX = table_of(OutboxRow)
CONTACT_EVENTS = table_of(ContactEvent)
TIMERS = table_of(Timer)

_FALLBACK_REPLY = ((IdentityKind.EMAIL, Channel.EMAIL), (IdentityKind.PHONE, Channel.SMS))
# Delivery only moves forward: sent < delivered < read.
_DELIVERY_RANK = {
    DeliveryStatus.PENDING.value: 0,
    DeliveryStatus.SENDING.value: 1,
    DeliveryStatus.SENT.value: 2,
    DeliveryStatus.UNCERTAIN.value: 2,
    DeliveryStatus.DELIVERED.value: 3,
    DeliveryStatus.READ.value: 4,
}
OPEN_STATES = (TicketStatus.NEW.value, TicketStatus.OPEN.value, TicketStatus.PENDING.value)
FINISHED_STATES = (TicketStatus.RESOLVED.value, TicketStatus.CLOSED.value)
REFERENCE_COUNTER = "ticket_reference"
# The event ``inbox.work.merge_tickets`` leaves on a ticket merged into another; its data names
# the other ticket's reference under "into".
MERGED_INTO = "merged_into"
# How many merges in a row (A into B, B into C, …) intake follows; a loop stops there too.
MERGE_HOPS = 10
# Intake keeps a mail's own inline images ("cid:" addresses): the inbox shows them from the
# message's files. Nothing else is let through that nh3's defaults would not allow.
HTML_URL_SCHEMES = nh3.ALLOWED_URL_SCHEMES | {"cid"}
# A citizen writing on a resolved ticket within this time reopens it (FollowUp.reopen_within
# when the town's follow-up is configured).
REOPEN_WITHIN = timedelta(days=14)
# Finished tickets of a chat or phone conversation older than this are not looked up to link a
# new ticket to: the link is for "the same matter again", not for every ticket of a citizen.
_LINK_WITHIN = timedelta(days=90)

INTAKE_MESSAGES = Counter(
    "meldpunt_intake_messages_total",
    "Inbound messages handled by ingest, by channel and outcome.",
    ["channel", "outcome"],
)
INTAKE_BATCH = Histogram(
    "meldpunt_intake_batch_size",
    "Messages committed together in one intake transaction.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
INTAKE_SECONDS = Histogram(
    "meldpunt_intake_commit_seconds",
    "Time to process and commit one intake batch.",
)


@dataclass(frozen=True, slots=True)
class IntakePolicy:
    reference_prefix: str
    conversation_window: timedelta = timedelta(hours=24)
    max_batch: int = 256
    default_kind: Kind = Kind.REPORT
    acknowledge: Callable[[AckRequest], Acknowledgement] = minimal_acknowledgement
    # At most this many acknowledgements to one address in an hour (None: no limit), so a
    # flood of mail from one sender, or a loop with another robot, does not answer each one.
    acknowledgements_per_hour: int | None = 3
    # Deadlines, timers, surveys and compliments (ingest.followup); None: none of these.
    followup: FollowUp | None = None

    @property
    def reopen_within(self) -> timedelta:
        return self.followup.reopen_within if self.followup else REOPEN_WITHIN


@dataclass(slots=True)
class _Item:
    msg: InboundMessage
    future: asyncio.Future[IntakeResult]


@dataclass(slots=True)
class _Plan:
    """What the batch decided for one message before anything is written."""

    msg: InboundMessage
    contact: int | tuple[str, int] = 0  # existing id, or ("new", index into new contacts)
    ticket: int | tuple[str, int] = 0  # existing id, or ("new", index into new tickets)
    duplicate_of: str | None = None
    duplicate: bool = False
    reopened_from: str | None = None
    # A finished ticket this message is about, too old to reopen: the new ticket links to it.
    follows: int | None = None
    # How the message answers the survey of its ticket, when it does.
    survey: SurveyReply | None = None


@dataclass(slots=True)
class _NewTicket:
    plan: _Plan
    decision: Decision
    reference: str = ""
    row_id: int = 0
    kind: str = ""
    language: str | None = None
    row: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class _Lookups:
    identities: dict[tuple[str, str], int] = field(default_factory=dict)
    by_message_id: dict[tuple[str, str], int] = field(default_factory=dict)
    tickets: dict[int, dict[str, Any]] = field(default_factory=dict)
    by_reference: dict[str, int] = field(default_factory=dict)
    by_conversation: dict[tuple[str, int], int] = field(default_factory=dict)
    existing: dict[tuple[str, str], str] = field(default_factory=dict)
    # Open surveys of known contacts, by (contact, channel the survey went out on).
    surveys: dict[tuple[int, str], int] = field(default_factory=dict)
    languages: dict[int, str | None] = field(default_factory=dict)
    # Closed tickets merged into another: id -> id of the ticket it was merged into.
    merged: dict[int, int] = field(default_factory=dict)


def routing_input(msg: InboundMessage) -> RoutingInput:
    sender = next(iter(msg.sender.identities), None)
    return RoutingInput(
        channel=msg.channel.value,
        kind=msg.kind.value if msg.kind else None,
        subject=msg.subject or "",
        text=msg.text,
        sender_address=sender.value if sender else None,
        has_location=msg.location is not None,
        has_attachment=any(a.sha256 for a in msg.attachments),
        language=msg.language or msg.sender.language,
    )


def _subject_of(msg: InboundMessage) -> str:
    if msg.subject and msg.subject.strip():
        return msg.subject.strip()[:300]
    first_line = next((ln.strip() for ln in msg.text.splitlines() if ln.strip()), "")
    return (first_line[:117] + "…") if len(first_line) > 120 else first_line


def _reply_route(msg: InboundMessage) -> tuple[str, str | None]:
    """Where answers go: the connector's choice, else the same channel, else an address given."""
    channel = msg.reply_channel or msg.channel
    if msg.reply_address:
        return channel.value, msg.reply_address
    kind = REPLY_IDENTITY.get(channel)
    address = msg.sender.first(kind) if kind else None
    if address is None and kind is None:
        # The channel cannot carry a reply (a voice message, a form): use what the citizen gave.
        for fallback_kind, fallback_channel in _FALLBACK_REPLY:
            if found := msg.sender.first(fallback_kind):
                return fallback_channel.value, found
    return channel.value, address


class Intake:
    """Turns inbound messages into tickets, durably and in batches; one per process."""

    def __init__(
        self,
        engine: AsyncEngine,
        rules: Callable[[], RuleSet],
        policy: IntakePolicy,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._engine = engine
        self._rules = rules
        self._policy = policy
        self._clock = clock or (lambda: datetime.now(UTC))
        self._queue: asyncio.Queue[_Item | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="meldpunt-intake-writer")

    async def stop(self) -> None:
        """Finish everything already submitted, then stop."""
        if self._task is None:
            return
        await self._queue.put(None)
        await self._task
        self._task = None

    async def submit(self, msg: InboundMessage) -> IntakeResult:
        """Store ``msg`` durably and return the ticket it landed on.

        Raises:
            InvalidIdentity: the sender's address cannot identify anyone.
            IntakeUnavailable: nothing was stored; the provider should retry.
        """
        if not self.running:
            raise IntakeUnavailable("intake is not running")
        msg = _normalised(msg, self._policy.reference_prefix)
        future: asyncio.Future[IntakeResult] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Item(msg, future))
        # Shielded: a client that hangs up must not cancel the write it is waiting for.
        return await asyncio.shield(future)

    async def _run(self) -> None:
        stopping = False
        while not stopping:
            first = await self._queue.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < self._policy.max_batch and not self._queue.empty():
                nxt = self._queue.get_nowait()
                if nxt is None:
                    stopping = True
                    break
                batch.append(nxt)
            await self._write(batch)

    async def _write(self, batch: list[_Item]) -> None:
        started = asyncio.get_running_loop().time()
        try:
            results = await self._commit([i.msg for i in batch])
        except Exception as exc:
            if len(batch) > 1:
                log.warning("intake batch failed; retrying messages one by one", error=str(exc))
            for item in batch:
                await self._write_alone(item)
        else:
            INTAKE_BATCH.observe(len(batch))
            INTAKE_SECONDS.observe(asyncio.get_running_loop().time() - started)
            for item, result in zip(batch, results, strict=True):
                self._settle(item, result)

    async def _write_alone(self, item: _Item) -> None:
        # A unique-key race with another process resolves itself on the next try: the other
        # copy is then visible and this one is recognised as a duplicate.
        for attempt in range(3):
            try:
                [result] = await self._commit([item.msg])
            except IntegrityError as exc:
                if attempt == 2:
                    await self._quarantine(item, exc)
                    return
            except Exception as exc:
                if _unavailable(exc):
                    # The database, not the message: the sender is told to try again (quarantine
                    # is for messages that cannot be stored, and could not be written either).
                    log.warning(
                        "intake could not reach the database",
                        channel=item.msg.channel.value,
                        error=f"{type(exc).__name__}: {exc}"[:500],
                    )
                    INTAKE_MESSAGES.labels(item.msg.channel.value, "unavailable").inc()
                    if not item.future.done():
                        item.future.set_exception(IntakeUnavailable(str(exc)))
                    return
                await self._quarantine(item, exc)
                return
            else:
                self._settle(item, result)
                return

    async def _quarantine(self, item: _Item, exc: Exception) -> None:
        msg = item.msg
        error = f"{type(exc).__name__}: {exc}"[:4000]
        log.error(
            "message quarantined",
            channel=msg.channel.value,
            external_id=msg.external_id,
            error=error,
        )
        try:
            async with self._engine.begin() as conn:
                await conn.execute(
                    sa.insert(JOURNAL),
                    [_journal_row(msg, "quarantined", None, error)],
                )
        except Exception as db_exc:
            INTAKE_MESSAGES.labels(msg.channel.value, "unavailable").inc()
            if not item.future.done():
                item.future.set_exception(IntakeUnavailable(str(db_exc)))
            return
        INTAKE_MESSAGES.labels(msg.channel.value, "quarantined").inc()
        self._settle(item, IntakeResult(None, new_ticket=False, quarantined=True))

    async def quarantine(
        self, channel: Channel, external_id: str, raw: RawPayload, error: str
    ) -> None:
        """Keep input a connector could not parse, with the reason, for staff and a retry."""
        await self._set_aside(channel, external_id, raw, "quarantined", error)
        INTAKE_MESSAGES.labels(channel.value, "quarantined").inc()
        log.error("input quarantined", channel=channel.value, external_id=external_id, error=error)

    async def ignore(
        self, channel: Channel, external_id: str, raw: RawPayload, reason: str
    ) -> None:
        """Journal input that is not a citizen writing (our own mail come back, a loop)."""
        await self._set_aside(channel, external_id, raw, "ignored", reason)
        INTAKE_MESSAGES.labels(channel.value, "ignored").inc()
        log.info("input ignored", channel=channel.value, external_id=external_id, reason=reason)

    async def record_contact_event(
        self,
        channel: Channel,
        external_id: str,
        sender: ContactRef,
        type: str,
        data: dict[str, Any],
        raw: RawPayload,
    ) -> bool:
        """Record something that happened with a citizen outside any ticket (a call answered).

        The contact is found, or created, by the sender's identities as for a message; a
        redelivered event (same channel and ``external_id``) is journalled but not recorded again.

        Returns:
            Whether the event is new.

        Raises:
            InvalidIdentity: the sender's address cannot identify anyone.
            IntakeUnavailable: nothing was stored; the provider should retry.
        """
        sender = normalise_contact(sender)
        now = self._clock()
        event = {
            "channel": channel.value,
            "type": type,
            "external_id": external_id[:255],
            "data": data,
            "created_at": now,
            "ticket_id": None,
        }
        # Two deliveries of one callback at once: the loser's insert breaks the unique key, and
        # on the second try it sees the winner's event and journals a duplicate.
        for attempt in range(2):
            try:
                async with self._engine.begin() as conn:
                    new = await _record_event(conn, sender, event, raw)
            except IntegrityError as exc:
                if attempt == 1:
                    raise IntakeUnavailable(str(exc)) from exc
            except Exception as exc:
                raise IntakeUnavailable(str(exc)) from exc
            else:
                break
        INTAKE_MESSAGES.labels(channel.value, "contact_event" if new else "duplicate").inc()
        log.info("contact event", channel=channel.value, type=type, new=new)
        return new

    async def _set_aside(
        self, channel: Channel, external_id: str, raw: RawPayload, state: str, why: str
    ) -> None:
        row: dict[str, Any] = {
            "channel": channel.value,
            "external_id": external_id[:255],
            "received_at": self._clock(),
            "content_type": raw.content_type[:127],
            "payload": raw.body,
            # No normalised form exists: a retry parses the payload again with the connector.
            "envelope": {},
            "state": state,
            "error": why[:4000],
            "message_id": None,
        }
        try:
            async with self._engine.begin() as conn:
                await conn.execute(sa.insert(JOURNAL), [row])
        except Exception as exc:
            raise IntakeUnavailable(str(exc)) from exc

    async def report_delivery(self, report: DeliveryReport) -> bool:
        """Record a provider's delivery update on the outbound message it names.

        A failure also fails the outbox row with the provider's words, and leaves an event on
        the ticket, so staff see that the citizen did not get the answer. A status never goes
        back (a late "delivered" does not undo "read").

        Returns:
            Whether an outbound message with that provider id exists.
        """
        failed = report.status in (DeliveryStatus.FAILED,)
        now = self._clock()
        try:
            async with self._engine.begin() as conn:
                found = (
                    await conn.execute(
                        sa.select(MESSAGES.c.id, MESSAGES.c.ticket_id, MESSAGES.c.delivery_status)
                        .where(
                            MESSAGES.c.channel == report.channel.value,
                            MESSAGES.c.external_id == report.provider_id,
                            MESSAGES.c.direction == "out",
                        )
                        .limit(1)
                    )
                ).first()
                raw = report.raw or RawPayload("application/json", b"")
                await conn.execute(
                    sa.insert(JOURNAL),
                    [
                        {
                            "channel": report.channel.value,
                            "external_id": f"delivery:{report.provider_id}"[:255],
                            "received_at": report.received_at,
                            "content_type": raw.content_type[:127],
                            "payload": raw.body,
                            "envelope": {
                                "provider_id": report.provider_id,
                                "status": report.status.value,
                                "detail": report.detail,
                            },
                            "state": "delivery",
                            "error": None if found else "no outbound message has this id",
                            "message_id": found.id if found else None,
                        }
                    ],
                )
                if found is None:
                    return False
                if _DELIVERY_RANK.get(report.status.value, 0) > _DELIVERY_RANK.get(
                    found.delivery_status, 0
                ) or (failed and found.delivery_status != DeliveryStatus.READ.value):
                    await conn.execute(
                        sa.update(MESSAGES)
                        .where(MESSAGES.c.id == found.id)
                        .values(delivery_status=report.status.value)
                    )
                if failed:
                    detail = report.detail or "the provider reported that delivery failed"
                    await conn.execute(
                        sa.update(OUTBOX)
                        .where(OUTBOX.c.message_id == found.id)
                        .values(state=FAILED, reason=f"not delivered: {detail}"[:4000])
                    )
                    await conn.execute(
                        sa.insert(EVENTS),
                        [
                            {
                                "ticket_id": found.ticket_id,
                                "type": "delivery_failed",
                                "actor_user_id": None,
                                "data": {
                                    "message_id": found.id,
                                    "channel": report.channel.value,
                                    "detail": detail,
                                },
                                "created_at": now,
                            }
                        ],
                    )
        except Exception as exc:
            raise IntakeUnavailable(str(exc)) from exc
        return True

    async def add_text(
        self,
        channel: Channel,
        external_id: str,
        text: str,
        note: str,
        raw: RawPayload,
        event: str = "text_added",
    ) -> bool:
        """Append text that arrived later (a voicemail's transcription) to a stored message.

        The first text stays where it was and ``note`` heads the addition, so staff see what
        was said and what a machine made of it. A redelivered addition is not appended twice.
        The payload is journalled either way, also when no message matches.

        Returns:
            Whether an inbound message on ``channel`` with ``external_id`` exists.
        """
        addition = f"{note}:\n{text.strip()}"
        now = self._clock()
        try:
            async with self._engine.begin() as conn:
                found = (
                    await conn.execute(
                        sa.select(MESSAGES.c.id, MESSAGES.c.ticket_id, MESSAGES.c.text)
                        .where(
                            MESSAGES.c.channel == channel.value,
                            MESSAGES.c.external_id == external_id,
                            MESSAGES.c.direction == "in",
                        )
                        .limit(1)
                    )
                ).first()
                await conn.execute(
                    sa.insert(JOURNAL),
                    [
                        {
                            "channel": channel.value,
                            "external_id": f"text:{external_id}"[:255],
                            "received_at": now,
                            "content_type": raw.content_type[:127],
                            "payload": raw.body,
                            "envelope": {"external_id": external_id, "note": note},
                            "state": "processed" if found else "ignored",
                            "error": None if found else "no inbound message has this id",
                            "message_id": found.id if found else None,
                        }
                    ],
                )
                if found is None or addition in found.text:
                    return found is not None
                await conn.execute(
                    sa.update(MESSAGES)
                    .where(MESSAGES.c.id == found.id)
                    .values(text=f"{found.text}\n\n{addition}")
                )
                await conn.execute(
                    sa.insert(EVENTS),
                    [
                        {
                            "ticket_id": found.ticket_id,
                            "type": event,
                            "actor_user_id": None,
                            "data": {"message_id": found.id, "note": note},
                            "created_at": now,
                        }
                    ],
                )
        except Exception as exc:
            raise IntakeUnavailable(str(exc)) from exc
        return True

    @staticmethod
    def _settle(item: _Item, result: IntakeResult) -> None:
        outcome = (
            "duplicate"
            if result.duplicate
            else "quarantined"
            if result.quarantined
            else "new_ticket"
            if result.new_ticket
            else "continued"
        )
        if not result.quarantined:
            INTAKE_MESSAGES.labels(item.msg.channel.value, outcome).inc()
        if not item.future.done():
            item.future.set_result(result)

    async def _commit(self, msgs: Sequence[InboundMessage]) -> list[IntakeResult]:
        now = self._clock()
        async with self._engine.begin() as conn:
            return await _persist(conn, msgs, now, self._rules(), self._policy)


def _unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database could not be used (down, restarting, locked, out of
    connections) rather than that this message could not be stored."""
    if isinstance(exc, OperationalError | InterfaceError | OSError | TimeoutError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def _normalised(msg: InboundMessage, prefix: str) -> InboundMessage:
    """The sender's identities normalised, and a quoted reference written as meldpunt writes it
    (a citizen typing "[mp-000123]" means "MP-000123")."""
    hints = msg.hints
    if hints.reference:
        quoted_prefix, dash, number = hints.reference.partition("-")
        if dash and quoted_prefix.casefold() == prefix.casefold():
            hints = replace(hints, reference=f"{prefix}-{number}")
    return replace(msg, sender=normalise_contact(msg.sender), hints=hints)


def _journal_row(
    msg: InboundMessage, state: str, message_id: int | None, error: str | None = None
) -> dict[str, Any]:
    return {
        "channel": msg.channel.value,
        "external_id": msg.external_id,
        "received_at": msg.received_at,
        "content_type": msg.raw.content_type[:127],
        "payload": msg.raw.body,
        "envelope": message_to_envelope(msg),
        "state": state,
        "error": error,
        "message_id": message_id,
    }


async def _lookup(
    conn: AsyncConnection, msgs: Sequence[InboundMessage], now: datetime, policy: IntakePolicy
) -> _Lookups:
    """Everything the batch needs from the database, in a handful of queries."""
    found = _Lookups()
    ext_ids = {m.external_id for m in msgs}
    rows = await conn.execute(
        sa.select(MESSAGES.c.channel, MESSAGES.c.external_id, TICKETS.c.reference)
        .join(TICKETS, TICKETS.c.id == MESSAGES.c.ticket_id)
        .where(MESSAGES.c.external_id.in_(ext_ids))
    )
    for channel, ext, ref in rows:
        found.existing[(channel, ext)] = ref

    values = {i.value for m in msgs for i in m.sender.identities}
    if values:
        rows = await conn.execute(
            sa.select(IDENTITIES.c.kind, IDENTITIES.c.value, IDENTITIES.c.contact_id).where(
                IDENTITIES.c.value.in_(values)
            )
        )
        for kind, value, contact_id in rows:
            found.identities[(kind, value)] = contact_id
    contacts = set(found.identities.values())
    if contacts:
        languages = await conn.execute(
            sa.select(CONTACTS.c.id, CONTACTS.c.language).where(CONTACTS.c.id.in_(contacts))
        )
        found.languages = {contact_id: language for contact_id, language in languages}

    hinted = {h for m in msgs for h in m.hints.message_ids}
    ticket_ids: set[int] = set()
    if hinted:
        rows = await conn.execute(
            sa.select(MESSAGES.c.channel, MESSAGES.c.external_id, MESSAGES.c.ticket_id).where(
                MESSAGES.c.external_id.in_(hinted)
            )
        )
        for channel, ext, ticket_id in rows:
            found.by_message_id[(channel, ext)] = ticket_id
            ticket_ids.add(ticket_id)

    refs = {m.hints.reference for m in msgs if m.hints.reference}
    convs = {m.hints.conversation for m in msgs if m.hints.conversation}
    conditions: list[sa.ColumnElement[bool]] = []
    if ticket_ids:
        conditions.append(TICKETS.c.id.in_(ticket_ids))
    if refs:
        conditions.append(TICKETS.c.reference.in_(refs))
    if convs:
        conditions.append(
            sa.and_(
                TICKETS.c.conversation.in_(convs),
                sa.or_(
                    TICKETS.c.status.in_(OPEN_STATES), TICKETS.c.updated_at >= now - _LINK_WITHIN
                ),
            )
        )
    followup = policy.followup
    if contacts and followup is not None and followup.survey.enabled:
        conditions.append(
            sa.and_(
                TICKETS.c.contact_id.in_(contacts),
                TICKETS.c.survey_state.in_(("asked", "unclear")),
                TICKETS.c.survey_sent_at >= now - followup.survey.answer_within,
            )
        )
    if conditions:
        rows = await conn.execute(
            sa.select(TICKETS).where(sa.or_(*conditions)).order_by(TICKETS.c.updated_at)
        )
        for row in rows.mappings():
            found.tickets[row["id"]] = dict(row)
            found.by_reference[row["reference"]] = row["id"]
            if row["conversation"]:
                # Ordered by updated_at, so the most recent ticket wins.
                found.by_conversation[(row["conversation"], row["contact_id"])] = row["id"]
            if row["survey_state"] in ("asked", "unclear") and row["survey_sent_at"] is not None:
                channel = row["reply_channel"] or row["origin_channel"]
                found.surveys[(row["contact_id"], channel)] = row["id"]
    await _lookup_merges(conn, found)
    return found


async def _lookup_merges(conn: AsyncConnection, found: _Lookups) -> None:
    """Where the batch's merged tickets went, with the tickets they went to.

    A merged ticket is closed, so a batch that meets no closed ticket asks nothing more.
    """
    asked: set[int] = set()
    for _ in range(MERGE_HOPS):
        closed = [
            ticket_id
            for ticket_id, ticket in found.tickets.items()
            if ticket["status"] == TicketStatus.CLOSED.value and ticket_id not in asked
        ]
        if not closed:
            return
        asked.update(closed)
        rows = await conn.execute(
            sa.select(EVENTS.c.ticket_id, EVENTS.c.data)
            .where(EVENTS.c.ticket_id.in_(closed), EVENTS.c.type == MERGED_INTO)
            .order_by(EVENTS.c.id)
        )
        # Ordered by id, so the latest merge of a ticket wins.
        into = {
            ticket_id: str(data["into"])
            for ticket_id, data in rows
            if isinstance(data, dict) and data.get("into")
        }
        if not into:
            return
        by_reference = {
            ticket["reference"]: ticket_id for ticket_id, ticket in found.tickets.items()
        }
        missing = set(into.values()) - by_reference.keys()
        if missing:
            targets = await conn.execute(sa.select(TICKETS).where(TICKETS.c.reference.in_(missing)))
            for row in targets.mappings():
                found.tickets[row["id"]] = dict(row)
                by_reference[row["reference"]] = row["id"]
        for source, reference in into.items():
            if reference in by_reference:
                found.merged[source] = by_reference[reference]


def _merge_target(ticket_id: int, found: _Lookups) -> int:
    """The ticket a message about ``ticket_id`` continues on: itself, or the end of the chain of
    merges it went through."""
    for _ in range(MERGE_HOPS):
        into = found.merged.get(ticket_id)
        if into is None:
            break
        ticket_id = into
    return ticket_id


async def _record_event(
    conn: AsyncConnection, sender: ContactRef, event: dict[str, Any], raw: RawPayload
) -> bool:
    """Insert ``event`` on the sender's contact unless it is there; journal ``raw`` either way."""
    seen = (
        await conn.execute(
            sa.select(CONTACT_EVENTS.c.id).where(
                CONTACT_EVENTS.c.channel == event["channel"],
                CONTACT_EVENTS.c.external_id == event["external_id"],
            )
        )
    ).first()
    if seen is None:
        contact_id = await _contact_for(conn, sender, event["created_at"])
        await conn.execute(sa.insert(CONTACT_EVENTS), [{**event, "contact_id": contact_id}])
    await conn.execute(
        sa.insert(JOURNAL),
        [
            {
                "channel": event["channel"],
                "external_id": event["external_id"],
                "received_at": event["created_at"],
                "content_type": raw.content_type[:127],
                "payload": raw.body,
                # Not a message: there is no normalised form to process again.
                "envelope": {},
                "state": "processed" if seen is None else "duplicate",
                "error": None,
                "message_id": None,
            }
        ],
    )
    return seen is None


def _identity_keys(sender: ContactRef) -> list[tuple[str, str]]:
    return [(i.kind.value, i.value) for i in sender.identities]


def _known_contact(
    ids: Sequence[tuple[str, str]], known: Mapping[tuple[str, str], _C]
) -> _C | None:
    """The contact of the first identity we know: it decides; unknown identities join it."""
    return next((known[i] for i in ids if i in known), None)


async def _contact_for(conn: AsyncConnection, sender: ContactRef, now: datetime) -> int:
    """The id of the contact ``sender`` (normalised) is, created with its identities if new."""
    ids = _identity_keys(sender)
    rows = await conn.execute(
        sa.select(IDENTITIES.c.kind, IDENTITIES.c.value, IDENTITIES.c.contact_id).where(
            IDENTITIES.c.value.in_({value for _, value in ids})
        )
    )
    known: dict[tuple[str, str], int] = {(kind, value): cid for kind, value, cid in rows}
    contact_id = _known_contact(ids, known)
    if contact_id is None:
        [contact_id] = await insert_rows(
            conn,
            CONTACTS,
            [
                {
                    "display_name": sender.display_name or None,
                    "language": sender.language,
                    "created_at": now,
                }
            ],
        )
    missing = [(kind, value) for kind, value in ids if (kind, value) not in known]
    if missing:
        await insert_many(
            conn,
            IDENTITIES,
            [{"kind": kind, "value": value, "contact_id": contact_id} for kind, value in missing],
        )
    return contact_id


async def _allocate_references(conn: AsyncConnection, prefix: str, count: int) -> list[str]:
    if count == 0:
        return []
    if conn.dialect.name == "postgresql":
        # From the sequence in one round trip, without a lock held until commit (see
        # store.models.REFERENCE_SEQUENCE). Another process's batch may take numbers at the same
        # moment, so this batch's need not be consecutive: sorted, they still follow arrival.
        taken = await conn.execute(
            sa.select(REFERENCE_SEQUENCE.next_value()).select_from(
                sa.func.generate_series(1, count)
            )
        )
        return [f"{prefix}-{n:06d}" for n in sorted(taken.scalars())]
    # SQLite has one writer at a time anyway: the counter row costs no waiting there.
    result = await conn.execute(
        sa.update(COUNTERS)
        .where(COUNTERS.c.name == REFERENCE_COUNTER)
        .values(value=COUNTERS.c.value + count)
        .returning(COUNTERS.c.value)
    )
    last = result.scalar_one_or_none()
    if last is None:
        await conn.execute(sa.insert(COUNTERS).values(name=REFERENCE_COUNTER, value=count))
        last = count
    return [f"{prefix}-{n:06d}" for n in range(last - count + 1, last + 1)]


def _thread(
    plan: _Plan, contact_id: int | None, found: _Lookups, now: datetime, window: timedelta
) -> tuple[int | None, bool]:
    """The ticket this message is about, if any (ingest owns threading), and whether the
    message said so itself (an e-mail header or the reference) rather than by being the next
    message of a conversation. The ticket may be finished: the caller decides to reopen it or
    to open a new one linked to it. A ticket merged into another continues on that one."""
    hints = plan.msg.hints
    channel = plan.msg.channel.value
    for mid in hints.message_ids:
        ticket_id = found.by_message_id.get((channel, mid))
        if ticket_id is not None and ticket_id in found.tickets:
            return _merge_target(ticket_id, found), True
    if hints.reference and contact_id is not None:
        ticket_id = found.by_reference.get(hints.reference)
        ticket = found.tickets.get(ticket_id) if ticket_id is not None else None
        # A quoted reference only joins a ticket of the same citizen: someone forwarding another
        # person's mail must not land in that person's ticket.
        if ticket and ticket["contact_id"] == contact_id:
            return _merge_target(int(ticket["id"]), found), True
    if hints.conversation and contact_id is not None:
        ticket_id = found.by_conversation.get((hints.conversation, contact_id))
        if ticket_id is not None:
            ticket_id = _merge_target(ticket_id, found)
        ticket = found.tickets.get(ticket_id) if ticket_id is not None else None
        if ticket is None:
            return None, False
        # A pending ticket waits for this citizen's answer, however long they take to write.
        waiting = ticket["status"] == TicketStatus.PENDING.value
        if waiting or ticket["status"] in FINISHED_STATES or now - ticket["updated_at"] <= window:
            return int(ticket["id"]), False
    return None, False


def _finished_too_long(ticket: Mapping[str, Any], now: datetime, reopen_within: timedelta) -> bool:
    """A closed ticket, or one resolved longer ago than it may be reopened."""
    if ticket["status"] == TicketStatus.CLOSED.value:
        return True
    resolved = ticket["resolved_at"]
    return bool(
        ticket["status"] == TicketStatus.RESOLVED.value
        and resolved is not None
        and now - resolved > reopen_within
    )


async def _persist(
    conn: AsyncConnection,
    msgs: Sequence[InboundMessage],
    now: datetime,
    rules: RuleSet,
    policy: IntakePolicy,
) -> list[IntakeResult]:
    found = await _lookup(conn, msgs, now, policy)
    plans = [_Plan(m) for m in msgs]
    seen: dict[tuple[str, str], _Plan] = {}
    new_contacts: list[InboundMessage] = []
    new_identities: list[tuple[str, str, int | tuple[str, int]]] = []
    known: dict[tuple[str, str], int | tuple[str, int]] = dict(found.identities)
    new_tickets: list[_NewTicket] = []
    batch_conversations: dict[tuple[str, int | tuple[str, int]], tuple[str, int]] = {}

    for plan in plans:
        msg = plan.msg
        key = (msg.channel.value, msg.external_id)
        if key in found.existing:
            plan.duplicate, plan.duplicate_of = True, found.existing[key]
            continue
        if key in seen:
            plan.duplicate = True
            continue
        seen[key] = plan

        ids = _identity_keys(msg.sender)
        contact = _known_contact(ids, known)
        if contact is None:
            contact = ("new", len(new_contacts))
            new_contacts.append(msg)
        for ident in ids:
            if ident not in known:
                known[ident] = contact
                new_identities.append((ident[0], ident[1], contact))
        plan.contact = contact

        existing_contact = contact if isinstance(contact, int) else None
        ticket_id, explicit = _thread(
            plan, existing_contact, found, now, policy.conversation_window
        )
        surveyed = (
            found.surveys.get((existing_contact, msg.channel.value))
            if existing_contact is not None
            else None
        )
        if surveyed is not None and (ticket_id in (None, surveyed) or not explicit):
            # The last thing we asked this citizen on this channel was how satisfied they are.
            reply = read_survey_reply(msg.text)
            unclear_again = (
                reply is not None
                and reply.unclear
                and (found.tickets[surveyed]["survey_state"] == "unclear")
            )
            if reply is not None and not unclear_again:
                plan.survey, plan.ticket = reply, surveyed
                continue
        if ticket_id is not None and _finished_too_long(
            found.tickets[ticket_id], now, policy.reopen_within
        ):
            plan.follows, ticket_id = ticket_id, None
        conv_key = (msg.hints.conversation, contact) if msg.hints.conversation else None
        if ticket_id is None and conv_key is not None and conv_key in batch_conversations:
            plan.ticket = batch_conversations[conv_key]
            continue
        if ticket_id is not None:
            plan.ticket = ticket_id
            continue
        plan.ticket = ("new", len(new_tickets))
        new_tickets.append(_NewTicket(plan, rules.route(routing_input(msg))))
        if conv_key is not None:
            batch_conversations[conv_key] = plan.ticket

    contact_ids: list[int] = []
    if new_contacts:
        contact_ids = await insert_rows(
            conn,
            CONTACTS,
            [
                {
                    "display_name": (m.sender.display_name or None),
                    "language": m.sender.language or m.language,
                    "created_at": now,
                }
                for m in new_contacts
            ],
        )

    def contact_of(ref: int | tuple[str, int]) -> int:
        return ref if isinstance(ref, int) else contact_ids[ref[1]]

    if new_identities:
        await insert_many(
            conn,
            IDENTITIES,
            [{"kind": k, "value": v, "contact_id": contact_of(c)} for k, v, c in new_identities],
        )

    # The citizen's language is remembered on the contact: the latest one a channel told us.
    language_of: dict[int, str | None] = {}
    for plan in plans:
        if plan.duplicate:
            continue
        cid = contact_of(plan.contact)
        said = plan.msg.language or plan.msg.sender.language
        if said:
            if isinstance(plan.contact, int) and found.languages.get(cid) != said:
                await conn.execute(
                    sa.update(CONTACTS).where(CONTACTS.c.id == cid).values(language=said)
                )
            found.languages[cid] = said
        language_of[id(plan)] = found.languages.get(cid)

    followup = policy.followup
    references = await _allocate_references(conn, policy.reference_prefix, len(new_tickets))
    if new_tickets:
        ticket_rows = []
        for nt, reference in zip(new_tickets, references, strict=True):
            msg, decision = nt.plan.msg, nt.decision
            nt.reference = reference
            nt.kind = decision.kind or (msg.kind or policy.default_kind).value
            nt.language = language_of[id(nt.plan)]
            reply_channel, reply_address = _reply_route(msg)
            loc = msg.location
            compliment = followup is not None and nt.kind == Kind.COMPLIMENT.value
            deadlines = (
                followup.deadlines(nt.kind, decision.department, msg.received_at)
                if followup is not None
                else None
            )
            ticket_rows.append(
                {
                    "reference": reference,
                    "kind": nt.kind,
                    # A compliment is thanked and passed on, and needs no further work.
                    "status": (TicketStatus.CLOSED if compliment else TicketStatus.NEW).value,
                    "department": decision.department,
                    "assignee_id": None,
                    "priority": decision.priority,
                    "tags": list(decision.tags),
                    "origin_channel": msg.channel.value,
                    "contact_id": contact_of(nt.plan.contact),
                    "reply_channel": reply_channel,
                    "reply_address": reply_address,
                    "subject": _subject_of(msg),
                    "language": nt.language,
                    "location_lat": loc.latitude if loc else None,
                    "location_lon": loc.longitude if loc else None,
                    "location_address": loc.address if loc else None,
                    "conversation": msg.hints.conversation,
                    "created_at": now,
                    "updated_at": now,
                    "resolved_at": now if compliment else None,
                    "deadline_policy": deadlines.policy if deadlines else None,
                    "first_answer_due": deadlines.first_answer if deadlines else None,
                    "resolution_due": deadlines.resolution if deadlines else None,
                    "follows_id": nt.plan.follows,
                }
            )
        ticket_ids = await insert_rows(conn, TICKETS, ticket_rows)
        timer_rows: list[dict[str, Any]] = []
        for nt, row_id, row in zip(new_tickets, ticket_ids, ticket_rows, strict=True):
            nt.row_id = row_id
            nt.row = {**row, "id": row_id, "survey_state": None, "first_answered_at": None}
            if followup is not None:
                wanted = followup.timers(TicketClock.of(nt.row), now)
                timer_rows.extend(new_timer_rows(row_id, wanted, now))
        await insert_many(conn, TIMERS, timer_rows)

    def ticket_of(ref: int | tuple[str, int]) -> int:
        return ref if isinstance(ref, int) else new_tickets[ref[1]].row_id

    stored = [p for p in plans if not p.duplicate]
    message_ids: list[int] = []
    if stored:
        message_ids = await insert_rows(
            conn,
            MESSAGES,
            [
                {
                    "ticket_id": ticket_of(p.ticket),
                    "direction": "in",
                    "channel": p.msg.channel.value,
                    "external_id": p.msg.external_id,
                    "author_user_id": None,
                    "sender": next(iter(p.msg.sender.identities)).value
                    if p.msg.sender.identities
                    else None,
                    "subject": p.msg.subject,
                    "text": p.msg.text,
                    "html": (
                        nh3.clean(p.msg.html, url_schemes=HTML_URL_SCHEMES) if p.msg.html else None
                    ),
                    "full_text": p.msg.full_text,
                    "delivery_status": "received",
                    "created_at": p.msg.received_at,
                }
                for p in stored
            ],
        )
    message_of = {id(p): mid for p, mid in zip(stored, message_ids, strict=True)}

    attachment_rows = [
        {
            "message_id": message_of[id(p)],
            "filename": a.filename[:255],
            "content_type": a.content_type[:127],
            "size": a.size,
            "sha256": a.sha256,
            "removed_reason": a.removed_reason,
            "content_id": a.content_id[:255] if a.content_id else None,
        }
        for p in stored
        for a in p.msg.attachments
    ]
    if attachment_rows:
        await insert_many(conn, ATTACHMENTS, attachment_rows)

    events: list[dict[str, Any]] = []
    for nt in new_tickets:
        msg = nt.plan.msg
        events.append(
            {
                "ticket_id": nt.row_id,
                "type": "created",
                "actor_user_id": None,
                "data": {"channel": msg.channel.value, "message_id": message_of[id(nt.plan)]},
                "created_at": now,
            }
        )
        events.append(
            {
                "ticket_id": nt.row_id,
                "type": "routed",
                "actor_user_id": None,
                "data": {
                    "department": nt.decision.department,
                    "kind": nt.decision.kind,
                    "priority": nt.decision.priority,
                    "tags": list(nt.decision.tags),
                    "rules": list(nt.decision.fired),
                    "defaulted": nt.decision.defaulted,
                },
                "created_at": now,
            }
        )
        if nt.plan.follows is not None:
            old = found.tickets[nt.plan.follows]
            events.append(
                {
                    "ticket_id": nt.row_id,
                    "type": "follows",
                    "actor_user_id": None,
                    "data": {"reference": old["reference"], "status": old["status"]},
                    "created_at": now,
                }
            )
            events.append(
                {
                    "ticket_id": nt.plan.follows,
                    "type": "followed_by",
                    "actor_user_id": None,
                    "data": {"reference": nt.reference},
                    "created_at": now,
                }
            )
    continued = [p for p in stored if isinstance(p.ticket, int)]
    for p in continued:
        events.append(
            {
                "ticket_id": p.ticket,
                "type": "message_received",
                "actor_user_id": None,
                "data": {"channel": p.msg.channel.value, "message_id": message_of[id(p)]},
                "created_at": now,
            }
        )
    # The citizen wrote again: a ticket waiting on them, or resolved a short while ago, is open
    # again. A survey answer does not reopen anything.
    reopened: dict[int, str] = {}
    for p in continued:
        ticket_id = int(p.ticket)  # type: ignore[arg-type]
        status = found.tickets.get(ticket_id, {}).get("status")
        if p.survey is None and status in (TicketStatus.PENDING.value, *FINISHED_STATES):
            reopened[ticket_id] = status
    for ticket_id, status in reopened.items():
        events.append(
            {
                "ticket_id": ticket_id,
                "type": "status_changed",
                "actor_user_id": None,
                "data": {
                    "from": status,
                    "to": "open",
                    "reason": "the citizen answered"
                    if status == TicketStatus.PENDING.value
                    else "the citizen wrote again on a resolved ticket",
                },
                "created_at": now,
            }
        )
    drafts, skipped = await _acknowledgements(conn, new_tickets, now, policy)
    events.extend(skipped)
    if events:
        await insert_many(conn, EVENTS, events)
    if continued:
        # The citizen answered: the ticket moves up the list and, if it waited on them, reopens.
        touched = {int(p.ticket) for p in continued}  # type: ignore[arg-type]
        await conn.execute(
            sa.update(TICKETS).where(TICKETS.c.id.in_(touched)).values(updated_at=now)
        )
        for ticket_id, status in reopened.items():
            ticket = found.tickets[ticket_id]
            values: dict[str, Any] = {"status": TicketStatus.OPEN.value}
            if status != TicketStatus.PENDING.value:
                values["resolved_at"] = None
            if followup is not None:
                values.update(
                    resume_values(followup, ticket, now, await clock_start(conn, ticket))
                    if status == TicketStatus.PENDING.value
                    else reopen_values(followup, ticket, now)
                )
            await conn.execute(sa.update(TICKETS).where(TICKETS.c.id == ticket_id).values(values))
            if followup is not None:
                await reschedule(conn, followup, ticket_id, now)
    if followup is not None:
        await _follow_up(conn, followup, new_tickets, continued, found, now)

    await insert_many(
        conn,
        JOURNAL,
        [
            _journal_row(p.msg, "duplicate" if p.duplicate else "processed", message_of.get(id(p)))
            for p in plans
        ],
    )

    await queue_outbound(conn, drafts, now)
    await _release_waiting(
        conn, {(p.msg.channel.value, contact_of(p.contact)) for p in stored}, now
    )

    results: list[IntakeResult] = []
    reference_of_new = {id(nt.plan): nt.reference for nt in new_tickets}
    reference_of_ticket = {nt.row_id: nt.reference for nt in new_tickets}
    for p in plans:
        if p.duplicate:
            original = seen.get((p.msg.channel.value, p.msg.external_id))
            ref = p.duplicate_of
            if ref is None and original is not None:
                ref = reference_of_new.get(id(original)) or _ref_of(
                    original, found, reference_of_ticket, ticket_of
                )
            results.append(IntakeResult(ref, duplicate=True, new_ticket=False))
        elif id(p) in reference_of_new:
            results.append(IntakeResult(reference_of_new[id(p)], new_ticket=True))
        else:
            results.append(
                IntakeResult(_ref_of(p, found, reference_of_ticket, ticket_of), new_ticket=False)
            )
    return results


async def _follow_up(
    conn: AsyncConnection,
    followup: FollowUp,
    new_tickets: Sequence[_NewTicket],
    continued: Sequence[_Plan],
    found: _Lookups,
    now: datetime,
) -> None:
    """Compliments passed on to their department, and survey answers recorded (both rare)."""
    for nt in new_tickets:
        if nt.kind != Kind.COMPLIMENT.value or nt.row["status"] != TicketStatus.CLOSED.value:
            continue
        address = followup.staff_address(nt.row["department"], lead=False)
        problem = await notify_staff(
            conn, followup, nt.row, Notice.COMPLIMENT_FORWARD, address, {}, now
        )
        await insert_many(
            conn,
            EVENTS,
            [
                {
                    "ticket_id": nt.row_id,
                    "type": "compliment_forwarded",
                    "actor_user_id": None,
                    "data": {"to": address, "problem": problem},
                    "created_at": now,
                }
            ],
        )
    for p in continued:
        if p.survey is None:
            continue
        ticket = found.tickets[int(p.ticket)]  # type: ignore[arg-type]
        via = p.msg.channel.value
        if p.survey.opt_out:
            await record_opt_out(conn, ticket, now)
        elif p.survey.answer is not None and p.survey.answer.score is not None:
            await record_survey_answer(
                conn,
                followup,
                ticket,
                p.survey.answer.score,
                p.survey.answer.comment,
                now,
                via=via,
                said=p.msg.text.strip() or None,
            )
        else:
            await record_unclear(conn, followup, ticket, now)


async def _release_waiting(
    conn: AsyncConnection, wrote: set[tuple[str, int]], now: datetime
) -> None:
    """Send the answers that waited for these citizens to write again on these channels.

    WhatsApp only carries a free-form answer within 24 hours of the citizen's last message: an
    answer parked for that (``waiting``) may go now, in the same transaction as the message that
    reopened the window, so no answer is forgotten.
    """
    by_channel: dict[str, set[int]] = {}
    for channel, contact in wrote:
        by_channel.setdefault(channel, set()).add(contact)
    for channel, contacts in by_channel.items():
        await conn.execute(
            sa.update(OUTBOX)
            .where(
                OUTBOX.c.state == WAITING,
                OUTBOX.c.channel == channel,
                OUTBOX.c.ticket_id.in_(
                    sa.select(TICKETS.c.id).where(TICKETS.c.contact_id.in_(contacts))
                ),
            )
            .values(
                state=PENDING,
                next_attempt_at=now,
                reason="the citizen wrote again on this channel; the answer goes out now",
            )
        )


async def _acknowledgements(
    conn: AsyncConnection, new_tickets: Sequence[_NewTicket], now: datetime, policy: IntakePolicy
) -> tuple[list[OutboundDraft], list[dict[str, Any]]]:
    """The acknowledgement of each new ticket, and an event for each one deliberately not sent."""
    drafts: list[OutboundDraft] = []
    events: list[dict[str, Any]] = []
    routes = {id(nt): _reply_route(nt.plan.msg) for nt in new_tickets}
    sent_recently: dict[str, int] = {}
    limit = policy.acknowledgements_per_hour
    recipients = {address for _, address in routes.values() if address}
    if limit is not None and recipients:
        rows = await conn.execute(
            sa.select(OUTBOX.c.recipient, sa.func.count())
            .where(
                OUTBOX.c.purpose == "acknowledgement",
                OUTBOX.c.recipient.in_(recipients),
                OUTBOX.c.created_at >= now - timedelta(hours=1),
            )
            .group_by(OUTBOX.c.recipient)
        )
        sent_recently = {recipient: int(count) for recipient, count in rows}
    for nt in new_tickets:
        msg = nt.plan.msg
        reply_channel, reply_address = routes[id(nt)]
        skipped = None
        if msg.automatic:
            # On the phone line nobody wrote anything: a missed call, or one the front desk took.
            # At the desk, staff registered it and chose not to send one (or had no address).
            if msg.channel is Channel.VOICE:
                skipped = "a phone call: the caller asked for no message"
            elif msg.channel is Channel.DESK:
                skipped = "registered by staff without an acknowledgement"
            else:
                skipped = "the message was sent automatically (an auto-reply or list mail)"
        elif limit is not None and reply_address:
            if sent_recently.get(reply_address, 0) >= limit:
                skipped = f"{limit} acknowledgements went to this address in the last hour"
            sent_recently[reply_address] = sent_recently.get(reply_address, 0) + 1
        if skipped:
            events.append(
                {
                    "ticket_id": nt.row_id,
                    "type": "acknowledgement_skipped",
                    "actor_user_id": None,
                    "data": {"reason": skipped},
                    "created_at": now,
                }
            )
            continue
        ack = policy.acknowledge(
            AckRequest(
                reference=nt.reference,
                kind=nt.kind,
                language=nt.language,
                source=msg.channel,
                channel=Channel(reply_channel),
                received_at=msg.received_at,
                department=nt.decision.department,
                name=msg.sender.display_name,
                text=msg.text,
                expected=nt.row.get("first_answer_due"),
            )
        )
        drafts.append(
            OutboundDraft(
                ticket_id=nt.row_id,
                channel=reply_channel,
                recipient=reply_address,
                text=ack.text,
                subject=ack.subject,
                purpose="acknowledgement",
            )
        )
    return drafts, events


def _ref_of(
    plan: _Plan,
    found: _Lookups,
    new_refs: dict[int, str],
    ticket_of: Callable[[int | tuple[str, int]], int],
) -> str | None:
    ticket_id = ticket_of(plan.ticket)
    if ticket_id in new_refs:
        return new_refs[ticket_id]
    ticket = found.tickets.get(ticket_id)
    return str(ticket["reference"]) if ticket else None


__all__ = [
    "Acknowledgement",
    "Intake",
    "IntakePolicy",
    "IntakeUnavailable",
    "minimal_acknowledgement",
    "routing_input",
]
