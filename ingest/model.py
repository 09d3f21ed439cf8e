"""The normalised message model: the one type every connector hands to ingest.

Connectors turn provider payloads into these values and nothing else touches a provider format.
All values are frozen and slotted; datetimes are always timezone-aware.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime


class Channel(enum.StrEnum):
    """Where a message came from or goes to."""

    EMAIL = "email"
    SMS = "sms"
    WHATSAPP = "whatsapp"
    VOICE = "voice"
    MESSENGER = "messenger"
    TELEGRAM = "telegram"
    WEBCHAT = "webchat"
    WEBFORM = "webform"
    APP = "app"
    DESK = "desk"


class Kind(enum.StrEnum):
    """What the citizen says the message is."""

    REPORT = "report"
    QUESTION = "question"
    SUGGESTION = "suggestion"
    COMPLAINT = "complaint"
    COMPLIMENT = "compliment"


# A button or quick reply whose payload is "kind:complaint" lets the citizen choose the kind.
KIND_CHOICE = "kind:"


def chosen_kind(payload: str | None) -> Kind | None:
    """The kind a ``kind:<kind>`` button payload names; None for any other payload."""
    if not payload or payload[: len(KIND_CHOICE)].lower() != KIND_CHOICE:
        return None
    try:
        return Kind(payload[len(KIND_CHOICE) :].strip().lower())
    except ValueError:
        return None


class IdentityKind(enum.StrEnum):
    """How a citizen can be recognised across channels.

    One phone number is the same person on SMS, WhatsApp and voice, so identities are not channels.
    """

    EMAIL = "email"
    PHONE = "phone"
    TELEGRAM = "telegram"
    MESSENGER = "messenger"
    WEBCHAT = "webchat"


# Which of a citizen's identities a message on a channel is addressed to. Channels missing here
# (voice, web form, app, desk) cannot carry a reply themselves.
REPLY_IDENTITY: dict[Channel, IdentityKind] = {
    Channel.EMAIL: IdentityKind.EMAIL,
    Channel.SMS: IdentityKind.PHONE,
    Channel.WHATSAPP: IdentityKind.PHONE,
    Channel.TELEGRAM: IdentityKind.TELEGRAM,
    Channel.MESSENGER: IdentityKind.MESSENGER,
    Channel.WEBCHAT: IdentityKind.WEBCHAT,
}


class Priority(enum.StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"

    @property
    def rank(self) -> int:
        return _PRIORITY_RANK[self]


_PRIORITY_RANK = {Priority.LOW: 0, Priority.NORMAL: 1, Priority.HIGH: 2, Priority.URGENT: 3}


class TicketStatus(enum.StrEnum):
    NEW = "new"
    OPEN = "open"
    PENDING = "pending"
    RESOLVED = "resolved"
    CLOSED = "closed"


class Direction(enum.StrEnum):
    IN = "in"
    OUT = "out"
    NOTE = "note"


class DeliveryStatus(enum.StrEnum):
    """Delivery state of an outbound message (inbound messages are ``received``)."""

    RECEIVED = "received"
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"
    UNCERTAIN = "uncertain"


@dataclass(frozen=True, slots=True)
class Identity:
    """One way to reach a citizen, already normalised (case-folded e-mail, E.164 phone)."""

    kind: IdentityKind
    value: str


@dataclass(frozen=True, slots=True)
class ContactRef:
    """Who sent a message, as far as the channel can tell."""

    identities: tuple[Identity, ...]
    display_name: str | None = None
    language: str | None = None

    def first(self, kind: IdentityKind) -> str | None:
        return next((i.value for i in self.identities if i.kind is kind), None)


@dataclass(frozen=True, slots=True)
class Location:
    latitude: float | None = None
    longitude: float | None = None
    address: str | None = None


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file that came with a message, already stored content-addressed by ingest's file store.

    ``removed_reason`` is set when the file was refused (too large, forbidden type): the message
    still becomes a ticket and staff see that something was left out. ``content_id`` is the
    e-mail part's Content-ID (without angle brackets): the HTML shows the part as ``cid:…``.
    """

    filename: str
    content_type: str
    size: int
    sha256: str | None
    removed_reason: str | None = None
    content_id: str | None = None


@dataclass(frozen=True, slots=True)
class ThreadHints:
    """What a connector knows that may tie a message to an earlier one; ingest decides.

    ``message_ids`` are provider ids of earlier messages this one answers (e-mail In-Reply-To and
    References); ``reference`` is a ticket reference the citizen quoted; ``conversation`` is a
    chat or phone conversation key that continues within a time window.
    """

    message_ids: tuple[str, ...] = ()
    reference: str | None = None
    conversation: str | None = None


@dataclass(frozen=True, slots=True)
class RawPayload:
    """The provider's request as received, kept for audit and reprocessing."""

    content_type: str
    body: bytes


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A citizen's message, whatever the channel."""

    channel: Channel
    external_id: str
    sender: ContactRef
    received_at: datetime
    text: str
    raw: RawPayload
    subject: str | None = None
    html: str | None = None
    # The whole text when ``text`` was shortened (an e-mail without its quoted history).
    full_text: str | None = None
    kind: Kind | None = None
    location: Location | None = None
    attachments: tuple[Attachment, ...] = ()
    language: str | None = None
    hints: ThreadHints = field(default_factory=ThreadHints)
    reply_channel: Channel | None = None
    reply_address: str | None = None
    # Sent by a machine (out-of-office, auto-reply, list mail): stored, but never acknowledged,
    # so two robots cannot keep answering each other.
    automatic: bool = False

    def __post_init__(self) -> None:
        if self.received_at.tzinfo is None:
            raise ValueError("received_at must be timezone-aware")
        if not self.external_id:
            raise ValueError("external_id is required for deduplication")


@dataclass(frozen=True, slots=True)
class OutboundAttachment:
    """A file sent with an outbound message.

    The bytes are in the attachment store under ``sha256``; the connector reads them to send.
    """

    filename: str
    content_type: str
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """A message to a citizen, as the dispatcher hands it to a connector.

    A channel that cannot carry files sends the text and leaves ``attachments`` out.
    """

    outbox_id: int
    channel: Channel
    recipient: str
    text: str
    subject: str | None = None
    html: str | None = None
    ticket_reference: str | None = None
    # E-mail threading: the citizen's message this answers, and the whole chain before it
    # (provider ids without angle brackets).
    in_reply_to: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    # The department answering: e-mail may send from its own address.
    department: str | None = None
    # An acknowledgement or notice rather than a person's answer (e-mail: Auto-Submitted).
    automatic: bool = False
    attachments: tuple[OutboundAttachment, ...] = ()
    # When this citizen last wrote on this channel (WhatsApp: free-form answers only within 24 h).
    last_inbound_at: datetime | None = None
    # Answers to offer as buttons where the channel has them; a tapped button comes back as an
    # inbound message with exactly that text. Channels without buttons send ``text`` alone
    # (which always says how to answer in words).
    choices: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SendResult:
    """What a provider said when it accepted a message."""

    provider_id: str | None
    status: DeliveryStatus = DeliveryStatus.SENT


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """A provider's word on an outbound message: delivered, read, failed (a bounce, a callback).

    ``provider_id`` is the id the provider gave the message when it was sent (for e-mail, the
    Message-ID meldpunt set, without angle brackets).
    """

    channel: Channel
    provider_id: str
    status: DeliveryStatus
    received_at: datetime
    detail: str | None = None
    raw: RawPayload | None = None


@dataclass(frozen=True, slots=True)
class IntakeResult:
    """What the citizen (or provider) is told once a message is durable."""

    ticket_reference: str | None
    duplicate: bool = False
    new_ticket: bool = True
    quarantined: bool = False


class IntakeUnavailable(Exception):
    """Nothing was stored (intake stopped, database down): the sender must retry later."""
