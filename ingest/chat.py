"""What the web chat shows a visitor, as values: lines of the conversation, files, reachability.

The web chat connector reads them through ``connectors.base.ChatReader`` and the store
(``store.chat``) writes them; both know these types, neither knows the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from ingest.model import Channel

# Where the widget fetches a file of the conversation: ``/chat/files/<attachment id>``.
FILES_PATH = "/chat/files"

Speaker = Literal["visitor", "staff", "system"]


def conversation_key(visitor_id: str) -> str:
    """The ``tickets.conversation`` of a visitor's chat (the connector's thread hint)."""
    return f"{Channel.WEBCHAT.value}:{visitor_id}"


@dataclass(frozen=True, slots=True)
class ChatAttachment:
    """A file in the conversation; ``url`` is a path under meldpunt's base URL."""

    url: str
    name: str
    content_type: str


@dataclass(frozen=True, slots=True)
class ChatLine:
    """One line of the conversation as the widget shows it.

    ``id`` is stable: ``v-<client_id>`` for what the visitor wrote (as in the ``received``
    frame), ``o-<outbox id>`` for what was sent to them (as in the live ``message`` frame).
    """

    id: str
    sender: Speaker
    text: str
    at: datetime
    attachments: tuple[ChatAttachment, ...] = ()
    client_id: str | None = None


@dataclass(frozen=True, slots=True)
class Reachability:
    """Whether the visitor's contact can be answered by e-mail or by phone once they left."""

    email: bool = False
    phone: bool = False


@dataclass(frozen=True, slots=True)
class Transcript:
    """What a returning visitor is shown: the last lines, the open ticket, how to reach them."""

    lines: tuple[ChatLine, ...] = ()
    reference: str | None = None
    reachable: Reachability = field(default_factory=Reachability)


@dataclass(frozen=True, slots=True)
class ChatFile:
    """A file a visitor may fetch: its name and type as stored, and where its bytes are."""

    filename: str
    content_type: str
    sha256: str


def inbound_line_id(client_id: str) -> str:
    return f"v-{client_id}"


def outbound_line_id(outbox_id: int) -> str:
    return f"o-{outbox_id}"
