"""Turns an ``InboundMessage`` into JSON-safe data and back, for the journal's envelope.

The journal keeps both the provider's raw bytes and this normalised form, so a quarantined
message can be processed again after a fix without the connector that parsed it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ingest.model import (
    Attachment,
    Channel,
    ContactRef,
    Identity,
    IdentityKind,
    InboundMessage,
    Kind,
    Location,
    RawPayload,
    ThreadHints,
)


def message_to_envelope(msg: InboundMessage) -> dict[str, Any]:
    """The message without its raw payload (stored beside it), as JSON-safe values."""
    return {
        "channel": msg.channel.value,
        "external_id": msg.external_id,
        "sender": {
            "identities": [[i.kind.value, i.value] for i in msg.sender.identities],
            "display_name": msg.sender.display_name,
            "language": msg.sender.language,
        },
        "received_at": msg.received_at.isoformat(),
        "text": msg.text,
        "subject": msg.subject,
        "html": msg.html,
        "kind": msg.kind.value if msg.kind else None,
        "location": (
            None
            if msg.location is None
            else {
                "latitude": msg.location.latitude,
                "longitude": msg.location.longitude,
                "address": msg.location.address,
            }
        ),
        "attachments": [
            {
                "filename": a.filename,
                "content_type": a.content_type,
                "size": a.size,
                "sha256": a.sha256,
                "removed_reason": a.removed_reason,
                "content_id": a.content_id,
            }
            for a in msg.attachments
        ],
        "language": msg.language,
        "hints": {
            "message_ids": list(msg.hints.message_ids),
            "reference": msg.hints.reference,
            "conversation": msg.hints.conversation,
        },
        "reply_channel": msg.reply_channel.value if msg.reply_channel else None,
        "reply_address": msg.reply_address,
        "full_text": msg.full_text,
        "automatic": msg.automatic,
    }


def message_from_envelope(data: dict[str, Any], raw: RawPayload) -> InboundMessage:
    sender = data["sender"]
    loc = data.get("location")
    hints = data.get("hints") or {}
    return InboundMessage(
        channel=Channel(data["channel"]),
        external_id=data["external_id"],
        sender=ContactRef(
            identities=tuple(Identity(IdentityKind(k), v) for k, v in sender["identities"]),
            display_name=sender.get("display_name"),
            language=sender.get("language"),
        ),
        received_at=datetime.fromisoformat(data["received_at"]),
        text=data["text"],
        raw=raw,
        subject=data.get("subject"),
        html=data.get("html"),
        kind=Kind(data["kind"]) if data.get("kind") else None,
        location=Location(**loc) if loc else None,
        attachments=tuple(Attachment(**a) for a in data.get("attachments", [])),
        language=data.get("language"),
        hints=ThreadHints(
            message_ids=tuple(hints.get("message_ids", ())),
            reference=hints.get("reference"),
            conversation=hints.get("conversation"),
        ),
        reply_channel=Channel(data["reply_channel"]) if data.get("reply_channel") else None,
        reply_address=data.get("reply_address"),
        full_text=data.get("full_text"),
        automatic=bool(data.get("automatic", False)),
    )
