"""Twilio's messaging webhook fields, read into plain values; no I/O here.

Twilio posts ``application/x-www-form-urlencoded`` with ``MessageSid``, ``From``, ``To``,
``Body``, ``NumMedia`` with ``MediaUrlN``/``MediaContentTypeN``, and for WhatsApp also
``ProfileName``, ``WaId``, ``Latitude``/``Longitude``/``Address``/``Label`` for a shared
location and ``ButtonText``/``ButtonPayload`` for a quick-reply button. WhatsApp numbers carry a
``whatsapp:`` prefix. Status callbacks post ``MessageSid``, ``MessageStatus`` and ``ErrorCode``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl

from ingest.model import Channel, DeliveryStatus, Kind, Location, chosen_kind

WHATSAPP_PREFIX = "whatsapp:"
# Twilio allows ten media per message; more would be a malformed payload.
MAX_MEDIA = 10

# Twilio's message states; "receiving"/"received" describe inbound messages and are not ours.
STATUS: dict[str, DeliveryStatus] = {
    "accepted": DeliveryStatus.SENDING,
    "scheduled": DeliveryStatus.SENDING,
    "queued": DeliveryStatus.SENDING,
    "sending": DeliveryStatus.SENDING,
    "sent": DeliveryStatus.SENT,
    "delivered": DeliveryStatus.DELIVERED,
    "read": DeliveryStatus.READ,
    "failed": DeliveryStatus.FAILED,
    "undelivered": DeliveryStatus.FAILED,
    "canceled": DeliveryStatus.FAILED,
}

# Plain words for the error codes staff meet most, shown next to the code.
ERROR_TEXT: dict[str, str] = {
    "21211": "the number is not a valid phone number",
    "21408": "sending to this country is not enabled on the Twilio account",
    "21610": "the citizen unsubscribed from SMS (answered STOP)",
    "21612": "Twilio cannot reach this number from the sending number",
    "21614": "the number cannot receive SMS (not a mobile number)",
    "30003": "the phone is switched off or unreachable",
    "30004": "the citizen blocked messages",
    "30005": "the number does not exist",
    "30006": "the number is a landline or cannot receive messages",
    "30007": "the carrier filtered the message as spam",
    "30008": "the carrier gave no reason",
    "63016": "outside WhatsApp's 24-hour window: only an approved template may be sent",
    "63024": "the number has no WhatsApp account",
}


class NotAMessage(ValueError):
    """A signed payload that cannot be a citizen's message (no sender, no message id)."""


@dataclass(frozen=True, slots=True)
class Media:
    url: str
    content_type: str


@dataclass(frozen=True, slots=True)
class TwilioInbound:
    """One inbound SMS or WhatsApp message as Twilio described it."""

    message_sid: str
    channel: Channel
    number: str
    text: str
    profile_name: str | None
    media: tuple[Media, ...]
    location: Location | None
    kind: Kind | None


@dataclass(frozen=True, slots=True)
class TwilioStatus:
    message_sid: str
    channel: Channel
    status: DeliveryStatus
    detail: str | None


def read_form(body: bytes) -> dict[str, str]:
    """The webhook's fields; Twilio never repeats a field, so the last value wins."""
    return dict(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))


def channel_of(address: str) -> Channel:
    return Channel.WHATSAPP if address.lower().startswith(WHATSAPP_PREFIX) else Channel.SMS


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def _location(form: Mapping[str, str]) -> Location | None:
    latitude, longitude = _float(form.get("Latitude")), _float(form.get("Longitude"))
    address = " – ".join(p for p in (form.get("Label"), form.get("Address")) if p) or None
    if latitude is None and longitude is None and address is None:
        return None
    return Location(latitude=latitude, longitude=longitude, address=address)


def parse_message(form: Mapping[str, str]) -> TwilioInbound:
    """Read an inbound message webhook.

    Raises:
        NotAMessage: the payload lacks ``MessageSid`` or ``From``.
    """
    sid, sender = form.get("MessageSid", "").strip(), form.get("From", "").strip()
    if not sid or not sender:
        raise NotAMessage("the payload has no MessageSid or no From: it is not a message")
    try:
        count = min(int(form.get("NumMedia") or 0), MAX_MEDIA)
    except ValueError:
        count = 0
    media = tuple(
        Media(url, form.get(f"MediaContentType{n}", "application/octet-stream"))
        for n in range(count)
        if (url := form.get(f"MediaUrl{n}", ""))
    )
    button = form.get("ButtonText", "").strip()
    channel = channel_of(sender)
    return TwilioInbound(
        message_sid=sid,
        channel=channel,
        number=sender[len(WHATSAPP_PREFIX) :] if channel is Channel.WHATSAPP else sender,
        text=form.get("Body", "").strip() or button,
        profile_name=form.get("ProfileName", "").strip() or None,
        media=media,
        location=_location(form),
        kind=chosen_kind(form.get("ButtonPayload")),
    )


def error_detail(code: str | None, status: str) -> str:
    """What staff read on a failed message: Twilio's code and, when known, plain words."""
    if not code:
        return f"Twilio reported the message {status}"
    words = ERROR_TEXT.get(code)
    return f"Twilio error {code}" + (f": {words}" if words else f" (message {status})")


def parse_status(form: Mapping[str, str]) -> TwilioStatus | None:
    """Read a status callback; None for a state that says nothing about our message."""
    sid = form.get("MessageSid", "").strip()
    raw = form.get("MessageStatus", "").strip().lower()
    status = STATUS.get(raw)
    if not sid or status is None:
        return None
    channel = channel_of(form.get("To", "") or form.get("From", ""))
    if form.get("From", "").lower().startswith(WHATSAPP_PREFIX):
        channel = Channel.WHATSAPP
    detail = (
        error_detail(form.get("ErrorCode") or None, raw)
        if status is DeliveryStatus.FAILED
        else None
    )
    return TwilioStatus(sid, channel, status, detail)
