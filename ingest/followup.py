"""Follow-up after intake: deadlines, their warnings and escalation, the survey, auto-close.

A ticket's clock is a few columns on the ticket (when the first answer and the resolution are
due, the waits while it was pending) and a handful of rows in ``timers``, one per kind of work
due at a moment. Whoever changes a ticket (intake, staff in the inbox, the worker itself) asks
``FollowUp.timers`` what the ticket needs now and ``apply_timers`` writes the difference, in the
same transaction as the change, so a timer is never left behind by a crash.

``FollowUpWorker`` runs in every process. It claims one due timer at a time with
``SELECT … FOR UPDATE SKIP LOCKED`` (on SQLite every transaction takes the write lock instead),
does the work (queue a notice in the outbox, flag the ticket, write the event) and marks the
timer done in that transaction: a survey or a warning goes out once, however many processes run
and however often they are restarted.

The survey answers themselves arrive as citizen messages: intake asks ``read_survey_reply``
whether a message answers an open survey and ``record_survey_answer`` stores the score, thanks
the citizen or, at or below the threshold, sends the ombudsman's details and tells the department.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
import structlog
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ingest.acknowledge import DeadlinePolicy, policy_for
from ingest.deadlines import Calendar, Duration, Interval
from ingest.model import REPLY_IDENTITY, Channel, Kind, TicketStatus
from ingest.survey import SurveyAnswer, read_answer, wants_no_more
from ingest.templates import Notice, TemplateProblem, Templates
from store.batch import insert_many
from store.models import (
    Contact,
    ContactIdentity,
    Message,
    Ticket,
    TicketEvent,
    Timer,
    User,
    table_of,
)
from store.outbox import OutboundDraft, backoff, queue_outbound

log = structlog.get_logger("meldpunt.followup")

TIMERS = table_of(Timer)
TICKETS = table_of(Ticket)
CONTACTS = table_of(Contact)
IDENTITIES = table_of(ContactIdentity)
EVENTS = table_of(TicketEvent)
MESSAGES = table_of(Message)
USERS = table_of(User)

TIMERS_RUN = Counter(
    "meldpunt_timers_total", "Timers run, by kind and outcome.", ["kind", "outcome"]
)

PENDING, DONE, CANCELLED = "pending", "done", "cancelled"
_ACTIVE = (TicketStatus.NEW.value, TicketStatus.OPEN.value)
_FINISHED = (TicketStatus.RESOLVED.value, TicketStatus.CLOSED.value)
# Tickets staff registered themselves (a visit at the desk, something seen in the street) are
# no citizen's request: nobody is asked how satisfied they are.
_INTERNAL_CHANNELS = frozenset({Channel.DESK.value})
# A reply this short without a score is most likely a failed attempt at one ("goed hoor"),
# not a new question: the citizen is asked once more for a number.
_SHORT_REPLY_WORDS = 4
# The survey's buttons, where the channel has them: each reads as its score (ingest.survey).
SURVEY_CHOICES = ("1 😞", "2 🙁", "3 😐", "4 🙂", "5 😀")


class TimerKind(enum.StrEnum):
    FIRST_ANSWER_WARNING = "first_answer_warning"
    FIRST_ANSWER_DUE = "first_answer_due"
    RESOLUTION_WARNING = "resolution_warning"
    RESOLUTION_DUE = "resolution_due"
    SURVEY = "survey"
    CLOSE = "close"


_DEADLINE_OF = {
    TimerKind.FIRST_ANSWER_WARNING: "first_answer",
    TimerKind.FIRST_ANSWER_DUE: "first_answer",
    TimerKind.RESOLUTION_WARNING: "resolution",
    TimerKind.RESOLUTION_DUE: "resolution",
}
# A survey is asked once per ticket, ever; the other timers may run again after a reopen.
_ONCE = frozenset({TimerKind.SURVEY})


@dataclass(frozen=True, slots=True)
class SurveyPolicy:
    enabled: bool = True
    # How long after resolving the question goes out (time for the citizen to see the result).
    delay: timedelta = timedelta(days=1)
    # A score at or below this sends the ombudsman's details.
    threshold: int = 2
    # How long a reply on the channel still counts as the answer.
    answer_within: timedelta = timedelta(days=14)
    skip_kinds: frozenset[str] = frozenset({Kind.COMPLIMENT.value})


@dataclass(frozen=True, slots=True)
class Department:
    name: str
    email: str | None = None
    lead_email: str | None = None


@dataclass(frozen=True, slots=True)
class TicketClock:
    """What the timers of a ticket depend on (a row of ``tickets`` plus the contact's choice)."""

    status: str
    kind: str
    origin_channel: str
    resolved_at: datetime | None
    first_answered_at: datetime | None
    first_answer_due: datetime | None
    resolution_due: datetime | None
    survey_state: str | None
    no_surveys: bool = False

    @classmethod
    def of(cls, row: Mapping[str, Any], no_surveys: bool = False) -> TicketClock:
        return cls(
            status=row["status"],
            kind=row["kind"],
            origin_channel=row["origin_channel"],
            resolved_at=row["resolved_at"],
            first_answered_at=row["first_answered_at"],
            first_answer_due=row["first_answer_due"],
            resolution_due=row["resolution_due"],
            survey_state=row["survey_state"],
            no_surveys=no_surveys,
        )


@dataclass(frozen=True, slots=True)
class Deadlines:
    policy: str | None
    first_answer: datetime | None
    resolution: datetime | None


@dataclass(frozen=True)
class FollowUp:
    """The town's follow-up rules and the texts it writes; shared by intake, inbox and worker."""

    calendar: Calendar
    policies: tuple[DeadlinePolicy, ...]
    templates: Templates | None = None
    town: Mapping[str, Any] = field(default_factory=dict)
    departments: Mapping[str, Department] = field(default_factory=dict)
    public_url: str = ""
    secret: bytes = b""
    warn_before: timedelta = timedelta(hours=24)
    # A citizen writing on a resolved ticket within this time reopens it; later, or on a closed
    # ticket, they open a new ticket linked to it. A resolved ticket is closed after this time.
    reopen_within: timedelta = timedelta(days=14)
    survey: SurveyPolicy = SurveyPolicy()
    ombudsman: Mapping[str, str] = field(default_factory=dict)

    # Deadlines

    def deadlines(
        self, kind: str, department: str | None, start: datetime, paused: Sequence[Interval] = ()
    ) -> Deadlines:
        """When the first answer and the resolution are due for a ticket opened at ``start``."""
        policy = policy_for(self.policies, kind, department)
        if policy is None or kind == Kind.COMPLIMENT.value:
            return Deadlines(None, None, None)
        return Deadlines(
            policy.name,
            self._due(start, policy.first_answer, paused),
            self._due(start, policy.resolution, paused),
        )

    def _due(
        self, start: datetime, duration: Duration | None, paused: Sequence[Interval]
    ) -> datetime | None:
        if duration is None:
            return None
        return self.calendar.deadline(start, duration, paused).astimezone(UTC)

    def timers(self, ticket: TicketClock, now: datetime) -> dict[TimerKind, datetime | None]:
        """The due time of each timer the ticket needs now; None cancels that timer."""
        wanted: dict[TimerKind, datetime | None] = dict.fromkeys(TimerKind)
        if ticket.status in _ACTIVE:
            if ticket.first_answered_at is None and ticket.first_answer_due is not None:
                self._deadline(wanted, TimerKind.FIRST_ANSWER_WARNING, ticket.first_answer_due, now)
                wanted[TimerKind.FIRST_ANSWER_DUE] = ticket.first_answer_due
            if ticket.resolution_due is not None:
                self._deadline(wanted, TimerKind.RESOLUTION_WARNING, ticket.resolution_due, now)
                wanted[TimerKind.RESOLUTION_DUE] = ticket.resolution_due
        if ticket.status in _FINISHED and ticket.resolved_at is not None:
            if self.survey_wanted(ticket):
                wanted[TimerKind.SURVEY] = ticket.resolved_at + self.survey.delay
            if ticket.status == TicketStatus.RESOLVED.value:
                wanted[TimerKind.CLOSE] = ticket.resolved_at + self.reopen_within
        return wanted

    def _deadline(
        self,
        wanted: dict[TimerKind, datetime | None],
        kind: TimerKind,
        due: datetime,
        now: datetime,
    ) -> None:
        warn = due - self.warn_before
        # A deadline closer than the warning time gets no warning: the escalation follows soon.
        wanted[kind] = warn if warn > now else None

    def survey_wanted(self, ticket: TicketClock) -> bool:
        return (
            self.survey.enabled
            and ticket.survey_state is None
            and not ticket.no_surveys
            and ticket.kind not in self.survey.skip_kinds
            and ticket.origin_channel not in _INTERNAL_CHANNELS
        )

    # Texts

    def render(
        self,
        notice: Notice,
        *,
        language: str | None,
        channel: Channel,
        kind: str | None,
        values: Mapping[str, Any],
    ) -> tuple[str | None, str] | None:
        """(subject, text) of a notice, or None when the town has no usable template for it."""
        if self.templates is None:
            return None
        try:
            rendered = self.templates.render(
                notice,
                language=language,
                channel=channel,
                kind=kind,
                values={**self.base_values(), **values},
            )
        except TemplateProblem as exc:
            log.error("notice template failed", notice=notice.value, problem=str(exc))
            return None
        return rendered.subject, rendered.text

    def base_values(self) -> dict[str, Any]:
        return {
            "town": dict(self.town),
            "ombudsman": {
                "name": self.ombudsman.get("name", ""),
                "email": self.ombudsman.get("email", ""),
                "phone": self.ombudsman.get("phone", ""),
                "url": self.ombudsman.get("url", ""),
            },
        }

    def ticket_url(self, reference: str) -> str:
        return f"{self.public_url}/tickets/{reference}" if self.public_url else ""

    def survey_token(self, reference: str) -> str:
        """Lets whoever holds the survey link answer for this ticket, and nothing else."""
        digest = hmac.new(self.secret, f"survey:{reference}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:18]).decode().rstrip("=")

    def survey_url(self, reference: str) -> str:
        if not self.public_url:
            return ""
        return f"{self.public_url}/survey/{reference}/{self.survey_token(reference)}"

    def check_survey_token(self, reference: str, token: str) -> bool:
        return hmac.compare_digest(self.survey_token(reference), token)

    def department_name(self, department: str) -> str:
        dep = self.departments.get(department)
        return dep.name if dep else department

    def staff_address(self, department: str, *, lead: bool) -> str | None:
        dep = self.departments.get(department)
        if dep is None:
            return None
        return (dep.lead_email or dep.email) if lead else dep.email


# Timers in the database


async def apply_timers(
    conn: AsyncConnection,
    ticket_id: int,
    wanted: Mapping[TimerKind, datetime | None],
    now: datetime,
) -> None:
    """Make the ticket's timer rows match ``wanted``: insert, move, revive or cancel."""
    rows = (
        await conn.execute(
            sa.select(
                TIMERS.c.id, TIMERS.c.kind, TIMERS.c.state, TIMERS.c.due_at, TIMERS.c.done_at
            ).where(TIMERS.c.ticket_id == ticket_id)
        )
    ).all()
    existing = {TimerKind(r.kind): r for r in rows}
    new: list[dict[str, Any]] = []
    for kind, due in wanted.items():
        row = existing.get(kind)
        if due is None:
            if row is not None and row.state == PENDING:
                await conn.execute(
                    sa.update(TIMERS)
                    .where(TIMERS.c.id == row.id)
                    .values(state=CANCELLED, done_at=now, outcome="no longer needed")
                )
            continue
        if row is None:
            new.append(_timer_row(ticket_id, kind, due, now))
        elif row.state == PENDING and row.due_at != due:
            await conn.execute(sa.update(TIMERS).where(TIMERS.c.id == row.id).values(due_at=due))
        elif row.state == CANCELLED or (
            row.state == DONE
            and kind not in _ONCE
            and row.done_at is not None
            and due > row.done_at
        ):
            await conn.execute(
                sa.update(TIMERS)
                .where(TIMERS.c.id == row.id)
                .values(state=PENDING, due_at=due, done_at=None, outcome=None)
            )
    await insert_many(conn, TIMERS, new)


def _timer_row(ticket_id: int, kind: TimerKind, due: datetime, now: datetime) -> dict[str, Any]:
    return {
        "ticket_id": ticket_id,
        "kind": kind.value,
        "due_at": due,
        "state": PENDING,
        "created_at": now,
        "done_at": None,
        "outcome": None,
        "attempts": 0,
    }


def new_timer_rows(
    ticket_id: int, wanted: Mapping[TimerKind, datetime | None], now: datetime
) -> list[dict[str, Any]]:
    """The timer rows of a ticket that has none yet (intake inserts them in one batch)."""
    return [_timer_row(ticket_id, k, due, now) for k, due in wanted.items() if due is not None]


def pauses_of(ticket: Mapping[str, Any]) -> list[Interval]:
    return [
        (datetime.fromisoformat(a), datetime.fromisoformat(b)) for a, b in ticket["pauses"] or []
    ]


async def clock_start(conn: AsyncConnection, ticket: Mapping[str, Any]) -> datetime:
    """When the ticket's clock started: its first message's arrival, as intake counted it."""
    first = await conn.scalar(
        sa.select(MESSAGES.c.created_at)
        .where(MESSAGES.c.ticket_id == ticket["id"], MESSAGES.c.direction == "in")
        .order_by(MESSAGES.c.id)
        .limit(1)
    )
    return first if isinstance(first, datetime) else ticket["created_at"]


def resume_values(
    followup: FollowUp, ticket: Mapping[str, Any], now: datetime, start: datetime
) -> dict[str, Any]:
    """Column values for a pending ticket that is active again: the wait joins ``pauses`` and
    the deadlines, counted from ``start`` (``clock_start``), move on by the time it lasted."""
    since = ticket["paused_since"]
    pauses = [*(ticket["pauses"] or [])]
    if since is not None:
        pauses.append([since.isoformat(), now.isoformat()])
    intervals = [(datetime.fromisoformat(a), datetime.fromisoformat(b)) for a, b in pauses]
    deadlines = followup.deadlines(ticket["kind"], ticket["department"], start, intervals)
    values: dict[str, Any] = {"paused_since": None, "pauses": pauses}
    if ticket["first_answer_due"] is not None:
        values["first_answer_due"] = deadlines.first_answer
    if ticket["resolution_due"] is not None:
        values["resolution_due"] = deadlines.resolution
    return values


def reopen_values(followup: FollowUp, ticket: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """Column values for a resolved or closed ticket that is open again: a new resolution
    deadline counted from now (the old one was met)."""
    deadlines = followup.deadlines(ticket["kind"], ticket["department"], now)
    return {
        "status": TicketStatus.OPEN.value,
        "resolved_at": None,
        "paused_since": None,
        "resolution_due": deadlines.resolution,
    }


async def reschedule(
    conn: AsyncConnection, followup: FollowUp, ticket_id: int, now: datetime
) -> None:
    """Read the ticket as it is in this transaction and bring its timers in line."""
    row = (
        await conn.execute(
            sa.select(TICKETS, CONTACTS.c.no_surveys)
            .join(CONTACTS, CONTACTS.c.id == TICKETS.c.contact_id)
            .where(TICKETS.c.id == ticket_id)
        )
    ).first()
    if row is None:
        return
    m = dict(row._mapping)
    await apply_timers(
        conn, ticket_id, followup.timers(TicketClock.of(m, bool(m["no_surveys"])), now), now
    )


# Notices on a ticket


@dataclass(frozen=True, slots=True)
class _Route:
    channel: Channel
    address: str | None


async def citizen_route(conn: AsyncConnection, ticket: Mapping[str, Any]) -> _Route:
    """Where a notice to the ticket's citizen goes: the ticket's reply route, else an identity."""
    channel = Channel(ticket["reply_channel"] or ticket["origin_channel"])
    if ticket["reply_address"]:
        return _Route(channel, ticket["reply_address"])
    kind = REPLY_IDENTITY.get(channel)
    if kind is None:
        return _Route(channel, None)
    address = await conn.scalar(
        sa.select(IDENTITIES.c.value)
        .where(IDENTITIES.c.contact_id == ticket["contact_id"], IDENTITIES.c.kind == kind.value)
        .order_by(IDENTITIES.c.id)
        .limit(1)
    )
    return _Route(channel, address)


def _event(ticket_id: int, kind: str, data: dict[str, Any], now: datetime) -> dict[str, Any]:
    return {
        "ticket_id": ticket_id,
        "type": kind,
        "actor_user_id": None,
        "data": data,
        "created_at": now,
    }


async def _language(conn: AsyncConnection, ticket: Mapping[str, Any]) -> str | None:
    if ticket["language"]:
        return str(ticket["language"])
    lang = await conn.scalar(
        sa.select(CONTACTS.c.language).where(CONTACTS.c.id == ticket["contact_id"])
    )
    return str(lang) if lang else None


async def _name(conn: AsyncConnection, ticket: Mapping[str, Any]) -> str | None:
    name = await conn.scalar(
        sa.select(CONTACTS.c.display_name).where(CONTACTS.c.id == ticket["contact_id"])
    )
    return str(name) if name else None


async def notify_citizen(
    conn: AsyncConnection,
    followup: FollowUp,
    ticket: Mapping[str, Any],
    notice: Notice,
    values: Mapping[str, Any],
    now: datetime,
    *,
    purpose: str | None = None,
    choices: Sequence[str] = (),
) -> str | None:
    """Queue ``notice`` to the ticket's citizen; return why not when it cannot be sent."""
    route = await citizen_route(conn, ticket)
    if route.address is None:
        return f"the citizen left no address to reach on {route.channel.value}"
    return await _queue_notice(
        conn,
        followup,
        ticket,
        notice,
        now,
        language=await _language(conn, ticket),
        draft=OutboundDraft(
            ticket_id=ticket["id"],
            channel=route.channel.value,
            recipient=route.address,
            text="",
            purpose=purpose or notice.value,
            choices=tuple(choices),
        ),
        values=values,
    )


async def notify_staff(
    conn: AsyncConnection,
    followup: FollowUp,
    ticket: Mapping[str, Any],
    notice: Notice,
    address: str | None,
    values: Mapping[str, Any],
    now: datetime,
) -> str | None:
    """Queue a staff notice by e-mail, in the town's language; return why not when it cannot."""
    if not address:
        return f"the department '{ticket['department']}' has no e-mail address in the configuration"
    return await _queue_notice(
        conn,
        followup,
        ticket,
        notice,
        now,
        language=None,
        draft=OutboundDraft(
            ticket_id=ticket["id"],
            channel=Channel.EMAIL.value,
            recipient=address,
            text="",
            purpose=notice.value,
            direction="note",
        ),
        values={
            "subject": ticket["subject"] or "",
            "ticket_url": followup.ticket_url(ticket["reference"]),
            "message": await _first_message(conn, ticket["id"]),
            **values,
        },
    )


async def _queue_notice(
    conn: AsyncConnection,
    followup: FollowUp,
    ticket: Mapping[str, Any],
    notice: Notice,
    now: datetime,
    *,
    language: str | None,
    draft: OutboundDraft,
    values: Mapping[str, Any],
) -> str | None:
    """Render ``notice`` for the ticket and queue it as ``draft`` (its text and subject filled)."""
    channel = Channel(draft.channel)
    rendered = followup.render(
        notice,
        language=language,
        channel=channel,
        kind=ticket["kind"],
        values={
            "reference": ticket["reference"],
            "name": await _name(conn, ticket),
            "department": followup.department_name(ticket["department"]),
            **values,
        },
    )
    if rendered is None:
        return f"the town's {notice.value} template could not be used (see the log)"
    subject, text = rendered
    # An e-mail always carries the reference in its subject; other channels have none.
    subject = (subject or f"[{ticket['reference']}]") if channel is Channel.EMAIL else None
    await queue_outbound(conn, [replace(draft, text=text, subject=subject)], now)
    return None


async def _first_message(conn: AsyncConnection, ticket_id: int) -> str | None:
    text = await conn.scalar(
        sa.select(MESSAGES.c.text)
        .where(MESSAGES.c.ticket_id == ticket_id, MESSAGES.c.direction == "in")
        .order_by(MESSAGES.c.id)
        .limit(1)
    )
    return str(text) if text is not None else None


# The worker


class FollowUpWorker:
    """Runs due timers; one per process, any number of processes."""

    def __init__(
        self,
        engine: AsyncEngine,
        followup: FollowUp,
        clock: Callable[[], datetime] | None = None,
        *,
        batch: int = 50,
    ) -> None:
        self._engine = engine
        self._followup = followup
        self._clock = clock or (lambda: datetime.now(UTC))
        self._batch = batch

    async def run_once(self) -> int:
        """Run due timers until none is left or ``batch`` ran; return how many ran."""
        ran = 0
        while ran < self._batch:
            now = self._clock()
            claimed: list[int] = []
            try:
                timer = await self._run_one(now, claimed)
            except Exception as exc:
                log.exception("timer failed")
                if claimed:
                    await self._postpone(claimed[0], now, exc)
                ran += 1
                continue
            if timer is None:
                break
            ran += 1
        return ran

    async def _claim(self, conn: AsyncConnection, now: datetime) -> sa.Row[Any] | None:
        """The oldest due timer with its ticket, both locked, or None. A timer whose row or
        ticket another transaction holds is skipped, never waited for: staff and intake lock
        the ticket before its timers, so waiting here in the other order could deadlock."""
        return (
            await conn.execute(
                sa.select(TIMERS)
                .join(TICKETS, TICKETS.c.id == TIMERS.c.ticket_id)
                .where(TIMERS.c.state == PENDING, TIMERS.c.due_at <= now)
                .order_by(TIMERS.c.due_at, TIMERS.c.id)
                .limit(1)
                .with_for_update(skip_locked=True, of=[TIMERS, TICKETS])
            )
        ).first()

    async def _run_one(self, now: datetime, claimed: list[int]) -> str | None:
        async with self._engine.begin() as conn:
            timer = await self._claim(conn, now)
            if timer is None:
                return None
            claimed.append(timer.id)
            kind = TimerKind(timer.kind)
            ticket = (
                await conn.execute(
                    sa.select(TICKETS, CONTACTS.c.no_surveys)
                    .join(CONTACTS, CONTACTS.c.id == TICKETS.c.contact_id)
                    .where(TICKETS.c.id == timer.ticket_id)
                )
            ).first()
            assert ticket is not None
            outcome = await self._handle(conn, kind, dict(ticket._mapping), timer.due_at, now)
            await conn.execute(
                sa.update(TIMERS)
                .where(TIMERS.c.id == timer.id)
                .values(state=DONE, done_at=now, outcome=outcome)
            )
        TIMERS_RUN.labels(kind.value, "done").inc()
        log.info("timer ran", kind=kind.value, ticket_id=timer.ticket_id, outcome=outcome)
        return outcome

    async def _postpone(self, timer_id: int, now: datetime, exc: Exception) -> None:
        """The timer failed: try it again later rather than block the others (unless another
        process has it in hand already)."""
        async with self._engine.begin() as conn:
            timer = (
                await conn.execute(
                    sa.select(TIMERS.c.kind, TIMERS.c.attempts)
                    .where(TIMERS.c.id == timer_id, TIMERS.c.state == PENDING)
                    .with_for_update(skip_locked=True)
                )
            ).first()
            if timer is None:
                return
            attempts = timer.attempts + 1
            await conn.execute(
                sa.update(TIMERS)
                .where(TIMERS.c.id == timer_id)
                .values(
                    attempts=attempts,
                    due_at=now + backoff(attempts, 60, 3600),
                    outcome=f"failed {attempts} time(s), tried again later: {exc}"[:2000],
                )
            )
        TIMERS_RUN.labels(str(timer.kind), "failed").inc()

    async def _handle(
        self,
        conn: AsyncConnection,
        kind: TimerKind,
        ticket: Mapping[str, Any],
        due_at: datetime,
        now: datetime,
    ) -> str:
        f = self._followup
        status = ticket["status"]
        if kind in _DEADLINE_OF:
            deadline = _DEADLINE_OF[kind]
            due = ticket[f"{deadline}_due"]
            met = ticket["first_answered_at"] is not None if deadline == "first_answer" else False
            if status not in _ACTIVE or met or due is None:
                return "nothing to do: the ticket is no longer waiting on this deadline"
            values = {"deadline": deadline, "due": due.astimezone(f.calendar.zone)}
            if kind in (TimerKind.FIRST_ANSWER_WARNING, TimerKind.RESOLUTION_WARNING):
                address = await self._assignee_email(conn, ticket) or f.staff_address(
                    ticket["department"], lead=False
                )
                problem = await notify_staff(
                    conn, f, ticket, Notice.DEADLINE_WARNING, address, values, now
                )
                await insert_many(
                    conn,
                    EVENTS,
                    [
                        _event(
                            ticket["id"], "deadline_warning", {**_iso(values), "to": address}, now
                        )
                    ],
                )
                return problem or f"warned {address}"
            address = f.staff_address(ticket["department"], lead=True)
            problem = await notify_staff(
                conn, f, ticket, Notice.DEADLINE_MISSED, address, values, now
            )
            await conn.execute(
                sa.update(TICKETS)
                .where(TICKETS.c.id == ticket["id"], TICKETS.c.escalated_at.is_(None))
                .values(escalated_at=now)
            )
            await insert_many(
                conn,
                EVENTS,
                [_event(ticket["id"], "deadline_missed", {**_iso(values), "to": address}, now)],
            )
            return problem or f"escalated to {address}"
        if kind is TimerKind.SURVEY:
            clock = TicketClock.of(ticket, bool(ticket["no_surveys"]))
            if status not in _FINISHED or not f.survey_wanted(clock):
                return "nothing to do: the ticket was reopened, surveyed or the citizen opted out"
            problem = await notify_citizen(
                conn,
                f,
                ticket,
                Notice.SURVEY,
                {"survey_url": f.survey_url(ticket["reference"])},
                now,
                choices=SURVEY_CHOICES,
            )
            if problem:
                await insert_many(
                    conn, EVENTS, [_event(ticket["id"], "survey_skipped", {"reason": problem}, now)]
                )
                return problem
            await conn.execute(
                sa.update(TICKETS)
                .where(TICKETS.c.id == ticket["id"])
                .values(survey_state="asked", survey_sent_at=now)
            )
            await insert_many(conn, EVENTS, [_event(ticket["id"], "survey_sent", {}, now)])
            return "survey sent"
        if kind is TimerKind.CLOSE:
            if status != TicketStatus.RESOLVED.value:
                return "nothing to do: the ticket is no longer resolved"
            await conn.execute(
                sa.update(TICKETS)
                .where(TICKETS.c.id == ticket["id"])
                .values(status=TicketStatus.CLOSED.value, updated_at=now)
            )
            days = f.reopen_within.days
            reason = f"resolved {days} days ago and the citizen did not write again"
            await insert_many(
                conn,
                EVENTS,
                [
                    _event(
                        ticket["id"],
                        "status_changed",
                        {"from": "resolved", "to": "closed", "reason": reason},
                        now,
                    )
                ],
            )
            return "closed"
        raise AssertionError(kind)

    async def _assignee_email(self, conn: AsyncConnection, ticket: Mapping[str, Any]) -> str | None:
        if ticket["assignee_id"] is None:
            return None
        email = await conn.scalar(
            sa.select(USERS.c.email).where(
                USERS.c.id == ticket["assignee_id"], USERS.c.active.is_(True)
            )
        )
        return str(email) if email else None


def _iso(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in values.items()}


# Survey answers


@dataclass(frozen=True, slots=True)
class SurveyReply:
    """What a citizen's message does to an open survey."""

    answer: SurveyAnswer | None
    opt_out: bool = False
    # No score, but short enough to be a failed attempt at one: ask again, once.
    unclear: bool = False


def read_survey_reply(text: str) -> SurveyReply | None:
    """How ``text`` answers an open survey; None when it is a message of its own."""
    if wants_no_more(text):
        return SurveyReply(None, opt_out=True)
    answer = read_answer(text)
    if answer.score is not None:
        return SurveyReply(answer)
    if len(text.split()) <= _SHORT_REPLY_WORDS and "?" not in text:
        return SurveyReply(None, unclear=True)
    return None


async def record_survey_answer(
    conn: AsyncConnection,
    followup: FollowUp,
    ticket: Mapping[str, Any],
    score: int,
    comment: str | None,
    now: datetime,
    *,
    via: str,
    said: str | None = None,
) -> None:
    """Store the citizen's score; thank them, or below the threshold refer them to the ombudsman
    and tell the department. A second answer replaces the first but sends nothing again.

    ``said`` is the reply as written ("slecht"): the lead reads the citizen's own word even when
    it was nothing but the score.
    """
    first = ticket["survey_state"] != "answered"
    await conn.execute(
        sa.update(TICKETS)
        .where(TICKETS.c.id == ticket["id"])
        .values(survey_state="answered", satisfaction=score, satisfaction_comment=comment)
    )
    events = [
        _event(
            ticket["id"], "survey_answered", {"score": score, "comment": comment, "via": via}, now
        )
    ]
    if first and score <= followup.survey.threshold:
        problem = await notify_citizen(
            conn, followup, ticket, Notice.OMBUDSMAN, {"score": score}, now
        )
        staff_problem = await notify_staff(
            conn,
            followup,
            ticket,
            Notice.LOW_SCORE,
            followup.staff_address(ticket["department"], lead=True),
            {"score": score, "comment": comment or said},
            now,
        )
        await conn.execute(
            sa.update(TICKETS)
            .where(TICKETS.c.id == ticket["id"], TICKETS.c.escalated_at.is_(None))
            .values(escalated_at=now)
        )
        events.append(
            _event(
                ticket["id"],
                "ombudsman_referred",
                {"score": score, "problem": problem, "department_problem": staff_problem},
                now,
            )
        )
    elif first:
        problem = await notify_citizen(
            conn, followup, ticket, Notice.SURVEY_THANKS, {"score": score}, now
        )
        if problem:
            events.append(_event(ticket["id"], "notice_skipped", {"reason": problem}, now))
    await insert_many(conn, EVENTS, events)


async def record_unclear(
    conn: AsyncConnection, followup: FollowUp, ticket: Mapping[str, Any], now: datetime
) -> None:
    """The reply had no score: ask once more how to answer (a second such reply is a message)."""
    await conn.execute(
        sa.update(TICKETS).where(TICKETS.c.id == ticket["id"]).values(survey_state="unclear")
    )
    problem = await notify_citizen(
        conn, followup, ticket, Notice.SURVEY_UNCLEAR, {}, now, choices=SURVEY_CHOICES
    )
    await insert_many(
        conn, EVENTS, [_event(ticket["id"], "survey_unclear", {"problem": problem}, now)]
    )


async def record_opt_out(conn: AsyncConnection, ticket: Mapping[str, Any], now: datetime) -> None:
    await conn.execute(
        sa.update(CONTACTS).where(CONTACTS.c.id == ticket["contact_id"]).values(no_surveys=True)
    )
    await conn.execute(
        sa.update(TICKETS).where(TICKETS.c.id == ticket["id"]).values(survey_state="answered")
    )
    await insert_many(
        conn,
        EVENTS,
        [
            _event(
                ticket["id"],
                "survey_opt_out",
                {"reason": "the citizen asked for no more questions"},
                now,
            )
        ],
    )
    await conn.execute(
        sa.update(TIMERS)
        .where(
            TIMERS.c.kind == TimerKind.SURVEY.value,
            TIMERS.c.state == PENDING,
            TIMERS.c.ticket_id.in_(
                sa.select(TICKETS.c.id).where(TICKETS.c.contact_id == ticket["contact_id"])
            ),
        )
        .values(state=CANCELLED, done_at=now, outcome="the citizen asked for no more surveys")
    )
