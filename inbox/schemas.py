"""Request and response bodies of the staff API, as pydantic models.

The same models validate requests, build responses and generate the OpenAPI schemas, so the
document cannot drift from what the API does.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    WithJsonSchema,
)

from ingest.files import MEDIA_TYPE_PATTERN, media_type, safe_filename
from ingest.model import (
    Channel,
    DeliveryStatus,
    Direction,
    IdentityKind,
    Kind,
    Priority,
    TicketStatus,
)
from store import outbox


def _isoformat(value: datetime) -> str:
    return value.isoformat()


# Written as ISO 8601 with an explicit offset ("+00:00"), which every client parses alike.
Timestamp = Annotated[
    AwareDatetime,
    PlainSerializer(_isoformat, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20_000)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]

MAX_REPLY_ATTACHMENTS = 10


def _usable_filename(value: str) -> str:
    name = safe_filename(value)
    if not name:
        raise ValueError("no file name is left once folders and unsafe characters are removed")
    return name


def _usable_media_type(value: str) -> str:
    found = media_type(value)
    if found is None:
        raise ValueError(
            "must be a media type such as application/pdf or image/jpeg, without parameters"
        )
    return found


Filename = Annotated[
    str, StringConstraints(min_length=1, max_length=255), AfterValidator(_usable_filename)
]
MediaType = Annotated[str, StringConstraints(max_length=127), AfterValidator(_usable_media_type)]


class OutboxState(enum.StrEnum):
    """Where an outbound message is in the outbox (see ``store.outbox``)."""

    PENDING = outbox.PENDING
    SENDING = outbox.SENDING
    SENT = outbox.SENT
    FAILED = outbox.FAILED
    UNCERTAIN = outbox.UNCERTAIN
    WAITING = outbox.WAITING


class JournalState(enum.StrEnum):
    """The journal states staff can list: input that did not become (part of) a ticket."""

    QUARANTINED = "quarantined"
    IGNORED = "ignored"
    REPLAYED = "replayed"


class RetryOutcome(enum.StrEnum):
    """What processing a quarantined message again came to."""

    TICKET = "ticket"
    DUPLICATE = "duplicate"
    STILL_QUARANTINED = "still_quarantined"
    HANDED_TO_CONNECTOR = "handed_to_connector"


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Response(BaseModel):
    model_config = ConfigDict(frozen=True)


# Requests


class ReplyAttachment(_Request):
    """A file to send with a reply."""

    filename: Filename = Field(
        description="The name the citizen sees; folder parts and control or reserved characters "
        "are removed, and a very long name is shortened keeping its extension."
    )
    content_type: MediaType = Field(
        description="The media type, e.g. application/pdf or image/jpeg, without parameters; "
        "any case is accepted and stored in lower case.",
        json_schema_extra={"pattern": MEDIA_TYPE_PATTERN},
    )
    content_base64: str = Field(
        min_length=1,
        description="The file's bytes in base64 (standard alphabet, padded; line breaks are "
        "ignored). Each file may have at most the server's attachment limit "
        "(channels.email.max_attachment_bytes, 15 MB unless configured otherwise).",
        json_schema_extra={"contentEncoding": "base64"},
    )


class ReplyRequest(_Request):
    """A reply to the citizen, on the ticket's reply channel unless ``channel`` says otherwise."""

    text: Text
    channel: Channel | None = Field(
        default=None,
        description="Send on this channel instead, to the contact's address for it "
        "(e-mail identity for email; phone number for sms and whatsapp; and so on).",
    )
    status: TicketStatus | None = Field(
        default=None,
        description="New status of the ticket; without it a new ticket becomes open.",
    )
    attachments: list[ReplyAttachment] = Field(
        default_factory=list,
        max_length=MAX_REPLY_ATTACHMENTS,
        description=f"Files to send with the reply, at most {MAX_REPLY_ATTACHMENTS}. Channels "
        "that cannot carry files (such as sms) send the text only; the files stay on the ticket.",
    )


class NoteRequest(_Request):
    """An internal note: staff see it, the citizen never does."""

    text: Text


class CalledBackRequest(_Request):
    """Staff phoned the citizen back (a missed call, a voicemail); the body is optional."""

    note: Reason | None = Field(
        default=None, description="What was agreed on the phone, for the ticket's history."
    )


class TransferRequest(_Request):
    """Hand the ticket to another department."""

    department: str = Field(min_length=1, max_length=64, description="Id from GET /departments.")
    reason: Reason


class StatusRequest(_Request):
    status: TicketStatus
    reason: Reason | None = Field(
        default=None,
        description="Why; required to resolve (or close) a ticket without an answer to the "
        "citizen.",
    )
    answer: Text | None = Field(
        default=None,
        description=(
            "Only with status 'resolved': the answer to the citizen. It goes out on the "
            "ticket's reply channel in the town's 'resolved' notice."
        ),
    )


class ContactEventTicketRequest(_Request):
    """Turn a contact event (a call answered at the front desk) into a ticket."""

    kind: Kind = Field(description="What the caller wanted.")
    department: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="Id from GET /departments; when left out, the routing rules choose.",
    )
    subject: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]
        | None
    ) = None
    text: Text | None = Field(
        default=None, description="What the caller asked, as the ticket's first message."
    )


class AssignRequest(_Request):
    """Give the ticket to a colleague, or to nobody."""

    assignee_id: int | None = Field(
        ge=1,
        le=2**31 - 1,
        description="A user id (GET /me gives yours): an active agent of the ticket's department, "
        "an admin or an operator. Null: nobody.",
    )


class DetailsRequest(_Request):
    """Change kind, priority and tags; a field left out stays as it is."""

    kind: Kind | None = None
    priority: Priority | None = None
    tags: list[Annotated[str, StringConstraints(max_length=200)]] | None = Field(
        default=None,
        max_length=100,
        description="The ticket's tags (all of them): trimmed, lower-cased and de-duplicated; "
        "at most 20 of 40 characters each.",
    )


class MergeRequest(_Request):
    """Merge this ticket (a duplicate) into another one."""

    into: str = Field(
        min_length=1, max_length=32, description="The reference of the ticket that stays."
    )


class ContactMergeRequest(_Request):
    """Merge another contact into this one: the same citizen known twice."""

    contact_id: int = Field(
        ge=1, le=2**31 - 1, description="The contact that goes; its identities and tickets move."
    )


# Responses


class ErrorDetail(_Response):
    code: str = Field(description="Stable machine-readable code, e.g. 'not_found'.")
    message: str
    details: Any = None


class ErrorResponse(_Response):
    error: ErrorDetail


class Me(_Response):
    id: int
    email: str
    name: str | None
    role: str = Field(description="admin, operator or agent.")
    departments: list[str]


class Department(_Response):
    id: str
    name: str


class DepartmentList(_Response):
    items: list[Department]


class StaffRef(_Response):
    """A staff member who wrote a message or did something to a ticket."""

    id: int
    email: str
    name: str | None


class ContactIdentityOut(_Response):
    kind: IdentityKind
    value: str


class ContactSummary(_Response):
    id: int
    name: str | None


class ContactDetail(ContactSummary):
    language: str | None
    identities: list[ContactIdentityOut]


class Location(_Response):
    latitude: float | None
    longitude: float | None
    address: str | None


class TicketDeadlines(_Response):
    """The ticket's clock; all null when no deadline policy applies (compliments)."""

    policy: str | None = Field(description="The deadline policy from the configuration.")
    first_answer_due: Timestamp | None
    first_answered_at: Timestamp | None
    resolution_due: Timestamp | None
    paused: bool = Field(description="The ticket waits for the citizen; the clock stands still.")
    overdue: bool = Field(description="A deadline has passed and is not met yet.")
    escalated_at: Timestamp | None = Field(
        description="When a missed deadline or a low satisfaction score escalated the ticket."
    )


class TicketSummary(_Response):
    reference: str
    subject: str | None
    status: TicketStatus
    kind: Kind
    priority: Priority
    department: str
    department_name: str | None = Field(description="Null if the department is not configured.")
    tags: list[str]
    channel: Channel = Field(description="The channel the ticket came in on.")
    reply_channel: Channel | None
    contact: ContactSummary
    created_at: Timestamp
    updated_at: Timestamp
    resolved_at: Timestamp | None
    deadlines: TicketDeadlines
    satisfaction: int | None = Field(description="The citizen's score (1-5) in the survey.")


class TicketPage(_Response):
    items: list[TicketSummary]
    next_cursor: str | None = Field(
        description="Pass as 'cursor' for the next page; null at the end."
    )


class AttachmentOut(_Response):
    id: int
    filename: str
    content_type: str
    size: int
    sha256: str | None
    removed_reason: str | None = Field(description="Why the file was refused, if it was.")
    content_id: str | None = Field(
        default=None,
        description="The e-mail part's Content-ID: the message's HTML shows it as 'cid:…'.",
    )


class MessageOutbox(_Response):
    """Sending state of an outbound message; ``reason`` says why it is still pending or failed."""

    id: int
    state: OutboxState
    reason: str | None
    attempts: int
    next_attempt_at: Timestamp
    sent_at: Timestamp | None


class MessageOut(_Response):
    id: int
    direction: Direction
    channel: Channel
    subject: str | None
    text: str
    full_text: str | None = Field(
        description="The whole text as received when 'text' is a shortened form (an e-mail "
        "without the quoted earlier mail and the signature); null when 'text' is all of it.",
    )
    html: str | None = Field(description="Sanitised HTML of an e-mail, if it had any.")
    sender: str | None
    author: StaffRef | None = Field(description="The staff member who wrote it (out, note).")
    delivery_status: DeliveryStatus
    attachments: list[AttachmentOut]
    outbox: MessageOutbox | None = Field(description="Set on outbound messages.")
    segments: int | None = Field(
        default=None,
        description="SMS only: the number of SMS parts the text is sent in (160 GSM-7 "
        "characters, or 70 when it needs Unicode; 153 and 67 per part once split).",
    )
    created_at: Timestamp


class EventOut(_Response):
    id: int
    type: str = Field(
        description="created, routed, transferred, status_changed, replied, note, "
        "delivery_failed, reply_window_closed (WhatsApp's 24-hour window: the answer went "
        "by another channel, or waits for the citizen), transcription_added (a voicemail's "
        "text arrived), called_back (staff phoned the citizen), assigned, kind_changed, "
        "priority_changed, tags_changed, merged_into (this ticket went into data.into), merged "
        "(data.from went into this one) or contact_merged (the citizen's contact took in "
        "another one)."
    )
    actor: StaffRef | None = Field(description="Null when meldpunt itself acted.")
    data: dict[str, Any]
    created_at: Timestamp


class TicketDetail(TicketSummary):
    contact: ContactDetail
    reply_address: str | None
    language: str | None
    follows: str | None = Field(
        description="The reference of the earlier ticket this one continues (the citizen wrote "
        "again after it was closed)."
    )
    survey: str | None = Field(description="'asked', 'unclear', 'answered' or null (not asked).")
    satisfaction_comment: str | None
    location: Location | None
    messages: list[MessageOut] = Field(description="Oldest first.")
    events: list[EventOut] = Field(description="The ticket's history, oldest first.")


class OutboxItem(_Response):
    id: int
    ticket_reference: str
    message_id: int
    purpose: str
    channel: Channel
    recipient: str | None
    state: OutboxState
    reason: str | None
    attempts: int
    next_attempt_at: Timestamp
    created_at: Timestamp
    sent_at: Timestamp | None


class OutboxPage(_Response):
    items: list[OutboxItem]
    next_cursor: str | None


class QuarantineItem(_Response):
    """A journalled delivery that did not become (part of) a ticket."""

    id: int
    state: JournalState
    channel: Channel
    external_id: str = Field(description="The provider's id of the delivery.")
    received_at: Timestamp
    error: str | None = Field(
        description="Why it was quarantined or ignored, in full; a replayed entry keeps its error."
    )
    content_type: str = Field(description="Content type of the raw payload.")
    size: int = Field(description="Size of the raw payload in bytes.")
    parsed: bool = Field(
        description="Whether the connector had turned it into a message. A retry of a parsed "
        "entry resubmits that message; an unparsed one goes back to its channel's connector."
    )


class QuarantinePage(_Response):
    items: list[QuarantineItem]
    next_cursor: str | None


class RetryResult(_Response):
    outcome: RetryOutcome = Field(
        description="ticket: it is on ticket_reference now (new or continued); duplicate: it was "
        "already on ticket_reference; still_quarantined: it failed again and has a new "
        "quarantine entry; handed_to_connector: the connector parsed it again and gave it to "
        "intake, whose outcome has a journal entry of its own."
    )
    ticket_reference: str | None


class ContactEventOut(_Response):
    """Something that happened with a citizen outside a ticket."""

    id: int
    contact_id: int
    channel: Channel
    type: str = Field(description="call_answered: a call the front desk answered.")
    data: dict[str, Any] = Field(
        description="For call_answered: caller, duration_seconds, call_sid, answered_by (the "
        "front desk number) and answered_call_sid."
    )
    created_at: Timestamp
    ticket_reference: str | None = Field(
        description="The ticket staff made of the event; null while there is none."
    )


class ContactEventList(_Response):
    items: list[ContactEventOut] = Field(description="Newest first.")


# Statistics (GET /stats)


class StatsPeriod(_Response):
    model_config = ConfigDict(frozen=True, serialize_by_alias=True, validate_by_name=True)

    start: Timestamp = Field(alias="from", description="Start of the period, included.")
    end: Timestamp = Field(alias="to", description="End of the period, not included.")


class StatsCount(_Response):
    key: str
    count: int


class StatsDurations(_Response):
    """How long something took, over the tickets where it happened."""

    count: int = Field(description="How many tickets were measured.")
    median_seconds: int | None = Field(description="Null when no ticket was measured.")
    p90_seconds: int | None = Field(
        description="90th percentile: nine in ten tickets took this long or less. Null when no "
        "ticket was measured."
    )


class StatsResponseTimes(_Response):
    """Compliments are left out: they are closed as they arrive."""

    first_answer: StatsDurations = Field(
        description="From the ticket's creation to the first answer sent to the citizen."
    )
    resolution: StatsDurations = Field(
        description="From the ticket's creation to its resolution (tickets resolved or closed "
        "and not reopened since)."
    )


class StatsDeadlines(_Response):
    first_answer_missed: int = Field(
        description="Tickets answered after their first-answer deadline, or still unanswered "
        "with the deadline passed."
    )
    overdue_now: int = Field(
        description="Tickets still new, open or pending with a deadline (first answer or "
        "resolution) passed and not met yet."
    )
    escalated: int = Field(
        description="Tickets escalated to a lead (a deadline passed unmet, or a low score)."
    )


class StatsSatisfaction(_Response):
    asked: int = Field(description="Tickets whose citizen got the satisfaction question.")
    answered: int = Field(description="Tickets with a score.")
    average: float | None = Field(description="The average score, 1 to 5; null without scores.")
    distribution: dict[str, int] = Field(
        description='How many tickets got each score, keys "1" to "5", all present.'
    )


class TicketMergeOut(_Response):
    source: str = Field(description="The merged ticket, now closed.")
    target: str = Field(description="The ticket that holds the messages of both.")
    messages: int = Field(description="Messages moved.")


class ContactMergeOut(_Response):
    contact_id: int = Field(description="The contact kept.")
    merged_id: int = Field(description="The contact merged into it, which no longer exists.")
    tickets: list[str] = Field(description="Every ticket of the contact now, oldest first.")
    identities_moved: int


class StatsTransfers(_Response):
    count: int = Field(description="Transfers between departments.")
    tickets: int = Field(description="Tickets transferred at least once.")


class Stats(_Response):
    """Statistics over the tickets created in a period that the caller may see."""

    period: StatsPeriod
    total: int = Field(description="Tickets created in the period.")
    by_channel: list[StatsCount] = Field(
        description="Per channel the ticket came in on; most first, then by key."
    )
    by_kind: list[StatsCount] = Field(description="Per kind; most first, then by key.")
    by_department: list[StatsCount] = Field(
        description="Per department the ticket is with now; most first, then by key."
    )
    by_status: list[StatsCount] = Field(description="Per current status; most first, then by key.")
    by_week: list[StatsCount] = Field(
        description="Per ISO week of creation in UTC (key like 2026-W48), oldest first, from the "
        "first to the last week with tickets, weeks without tickets included."
    )
    response_times: StatsResponseTimes
    deadlines: StatsDeadlines
    satisfaction: StatsSatisfaction
    transfers: StatsTransfers
