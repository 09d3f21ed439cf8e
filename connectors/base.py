"""The one contract every channel implements: verify and parse inbound, send outbound.

A connector knows its provider's formats and nothing else: it hands ``InboundMessage`` values to
the ``IntakePort`` it is given and answers its provider once the port says the message is
durable. It never touches the database. Adding a channel means adding one module here, its entry
in the registry (``connectors/__init__.py``) and its tests.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Protocol

from aiohttp import web

from ingest.chat import ChatFile, ChatLine, Reachability, Transcript
from ingest.deadlines import Calendar
from ingest.files import AttachmentStore
from ingest.hours import OfficeHours
from ingest.model import (
    Channel,
    ContactRef,
    DeliveryReport,
    InboundMessage,
    IntakeResult,
    OutboundMessage,
    RawPayload,
    SendResult,
)


class IntakePort(Protocol):
    """What a connector may do with what it received; each call returns once it is durable."""

    async def submit(self, message: InboundMessage) -> IntakeResult:
        """Turn a citizen's message into (part of) a ticket."""
        ...

    async def report_delivery(self, report: DeliveryReport) -> bool:
        """Record a delivery update; False when no outbound message has that provider id."""
        ...

    async def add_text(
        self,
        channel: Channel,
        external_id: str,
        text: str,
        note: str,
        raw: RawPayload,
        event: str = "text_added",
    ) -> bool:
        """Add text that arrived later (a voicemail's transcription) to a stored inbound message.

        ``note`` says what the text is and ``event`` names the ticket event left; the payload
        is journalled either way. False when no inbound message on ``channel`` has
        ``external_id``.
        """
        ...

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

        The contact is found by ``sender`` as for a message; ``external_id`` is unique per
        channel, so a redelivery is journalled but not recorded again. False for a redelivery.
        """
        ...

    async def quarantine(
        self, channel: Channel, external_id: str, raw: RawPayload, error: str
    ) -> None:
        """Keep something that could not be parsed, with why, for staff to look at and retry."""
        ...

    async def ignore(
        self, channel: Channel, external_id: str, raw: RawPayload, reason: str
    ) -> None:
        """Journal input that is not a citizen writing (our own mail come back, a loop)."""
        ...


class CursorStore(Protocol):
    """Durable bookmarks a connector keeps between runs (e.g. IMAP UIDVALIDITY and last UID)."""

    async def load(self, key: str) -> dict[str, Any] | None: ...

    async def save(self, key: str, value: dict[str, Any]) -> None: ...


class SendError(Exception):
    """A provider refused or failed a send.

    ``permanent`` means retrying cannot help (unknown recipient, rejected content); otherwise the
    dispatcher retries with back-off.
    """

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class WindowClosed(SendError):
    """The channel only takes a free-form answer shortly after the citizen last wrote.

    WhatsApp allows one within 24 hours of the citizen's last message; after that only an
    approved template. The connector says what it did instead (``template_sent_at``, with the
    template's provider id), and the dispatcher then moves the answer to one of ``fallback``
    (channels in order of preference) or parks it until the citizen writes again.
    ``waiting_for`` completes "waiting for the citizen ..." in what staff see about a parked
    answer (e.g. "to open the chat again"); without it the WhatsApp template is named.
    """

    def __init__(
        self,
        message: str,
        *,
        template_sent_at: datetime | None = None,
        template_provider_id: str | None = None,
        fallback: tuple[Channel, ...] = (),
        waiting_for: str | None = None,
    ) -> None:
        super().__init__(message, permanent=False)
        self.template_sent_at = template_sent_at
        self.template_provider_id = template_provider_id
        self.fallback = fallback
        self.waiting_for = waiting_for


class CannotTell(Exception):
    """The provider gives no way to ask whether a message it may have received went out.

    Raised by ``Connector.find_sent``; the message then stays "delivery uncertain" for staff to
    settle. Any other exception from ``find_sent`` means the look-up itself failed (the provider
    answered 500, timed out) and may be tried again later. ``cannot_tell`` lets the dispatcher
    recognise it without importing connectors.
    """

    cannot_tell = True


class ChatReader(Protocol):
    """What a live chat reads back without writing: a visitor's conversation and the queue.

    A visitor is known by the id in their (signed) visitor token; only their own chat tickets
    are ever read, never the rest of their contact.
    """

    async def transcript(self, visitor_id: str, limit: int = 200) -> Transcript:
        """The newest lines of the visitor's conversation, oldest first, and their open ticket."""
        ...

    async def outbound_line(self, outbox_id: int, visitor_id: str) -> ChatLine | None:
        """The line an outbound message makes in the visitor's transcript, to push it live."""
        ...

    async def inbound_line(self, visitor_id: str, client_id: str) -> ChatLine | None:
        """The line of a message the visitor sent, with links to its files."""
        ...

    async def reachable(self, visitor_id: str) -> Reachability:
        """Whether the visitor's contact can be answered by e-mail or phone once they left."""
        ...

    async def queue_positions(self, visitor_ids: Collection[str]) -> dict[str, int | None]:
        """Each visitor's place in the chat queue (1 is next), or None when not waiting."""
        ...

    async def attachment(self, visitor_id: str, attachment_id: int) -> ChatFile | None:
        """A file of the visitor's conversation, or None when it is not one of theirs."""
        ...


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What the pipeline and the inbox may assume about a channel."""

    can_send: bool
    conversational: bool = False
    reply_window: timedelta | None = None
    attachments_in: bool = False
    attachments_out: bool = False


@dataclass(frozen=True, slots=True)
class ConnectorContext:
    """What the wiring gives every connector."""

    intake: IntakePort
    files: AttachmentStore
    cursors: CursorStore
    public_url: str
    town_name: str
    secret_key: bytes
    # When the town's staff are there: office hours less public holidays and closing days (the
    # phone line dials the front desk only then; the web chat says when it is staffed next).
    calendar: Calendar = field(
        default_factory=lambda: Calendar(
            OfficeHours.model_validate({}), "Europe/Brussels", country=None
        )
    )
    timezone: str = "Europe/Brussels"
    # The web chat's read side (transcripts, queue); None where no database is wired in.
    chats: ChatReader | None = None
    # The time of day: when a message arrived, whether the office is open. The service's own
    # clock, which tests of deadlines and surveys move by hand.
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))


class Connector(abc.ABC):
    """Base class of every channel connector."""

    channel: ClassVar[Channel]
    capabilities: ClassVar[Capabilities]
    # What an operator reads when credentials are missing: "no Telegram bot configured".
    unconfigured: ClassVar[str] = "not configured"

    def __init__(self, context: ConnectorContext, options: object = None) -> None:
        # ``options`` is the channel's section of meldpunt.yaml; subclasses narrow its type.
        self.context = context

    @property
    def disabled_reason(self) -> str | None:
        """Why the channel cannot run, or None when it is live.

        Read from the options the subclass keeps as ``self.options``: ``enabled: false``
        switches it off, and ``missing`` lists the environment variables still to set.
        """
        options = getattr(self, "options", None)
        if not getattr(options, "enabled", True):
            return f"switched off in meldpunt.yaml (channels.{self.options_key()}.enabled)"
        if missing := getattr(options, "missing", None):
            return f"{self.unconfigured} (set {', '.join(missing)})"
        return None

    @classmethod
    def options_key(cls) -> str:
        """The section under ``channels:`` in meldpunt.yaml that configures this connector."""
        return cls.channel.value

    @property
    def can_send(self) -> bool:
        """Whether the dispatcher may hand this connector messages now (credentials present)."""
        return self.capabilities.can_send

    def reply_window(self, channel: Channel) -> timedelta | None:
        """How long after the citizen's last message a free-form answer may go out, if limited."""
        return self.capabilities.reply_window

    def sends(self, channel: Channel) -> bool:
        """Whether the dispatcher may hand this connector messages for ``channel`` now."""
        return self.can_send

    def health(self) -> dict[str, str]:
        """Named checks for ``/readyz`` (e.g. each mailbox's state); "ok" when all is well."""
        return {}

    def routes(self) -> Sequence[web.RouteDef]:
        """Public and webhook routes this channel serves, with absolute paths."""
        return ()

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Open long-lived resources (clients, pollers). Called once the app starts."""

    async def stop(self) -> None:  # noqa: B027 - optional hook
        """Release what ``start`` opened."""

    async def redeliver(self, raw: RawPayload) -> None:
        """Parse a payload this channel once failed to parse, and hand it to intake again."""
        raise NotImplementedError(f"the {self.channel.value} channel cannot re-read its input")

    async def send(self, message: OutboundMessage) -> SendResult:
        """Deliver one outbound message; raise ``SendError`` when the provider fails."""
        raise SendError(f"the {self.channel.value} channel cannot send messages", permanent=True)

    async def find_sent(
        self, message: OutboundMessage, attempt_started_at: datetime
    ) -> SendResult | None:
        """Ask the provider whether a send that was interrupted or timed out went out after all.

        Called for a message whose delivery is uncertain, with when its last provider call
        started. Returns what the provider has when the message is there (its id, so later
        delivery reports match), or None when it is safe to send it again: the provider shows
        it never arrived, or a second copy is harmless on this channel.

        Raises:
            CannotTell: the provider gives no way to ask (the default); staff decide.
            Exception: anything else means the look-up failed and may be tried again.
        """
        raise CannotTell(
            f"the {self.channel.value} channel gives no way to ask whether a message arrived"
        )
