"""Meta's Messenger webhook payloads, read into plain values; no I/O here.

A webhook is ``{"object": "page", "entry": [...]}``; Meta batches, so one request may carry
several entries (one per Page and moment) and each entry several events under ``messaging`` (or
``standby``, when another app holds the conversation: the citizen still wrote to the town, so
those count too). An event's type is the key it carries next to ``sender``, ``recipient`` and
``timestamp``: ``message`` (``is_echo`` when the Page itself sent it), ``postback``,
``delivery``, ``read``, ``message_edit``, ``reaction`` and a few that are no message at all.
Each is read by its entry in ``EVENT_TYPES``. Ids are strings, timestamps milliseconds since the
epoch (some documented examples carry seconds, as strings: both are read).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from connectors.messenger.send import CHOICE_PAYLOAD
from ingest.model import Kind, Location, RawPayload, chosen_kind

JSON = "application/json"
# Attachment types whose payload.url is a file to keep.
FILE_TYPES = frozenset({"image", "video", "audio", "file", "sticker"})
# Attachment types that are a link to something on Facebook or elsewhere: kept as text.
LINK_TYPES = frozenset({"fallback", "share", "reel", "ig_reel", "post", "ig_post", "template"})
# Meta's name for a location pin with no place name: no address worth keeping.
_GENERIC_PIN = "pinned location"
# Events that are no message and change nothing here; journalled as ignored, with why.
NOT_MESSAGES: dict[str, str] = {
    "optin": "the citizen opted in to messages (a plugin or checkbox), without writing",
    "referral": "the citizen came in through a link or ad, without writing",
    "account_linking": "account linking is not used by meldpunt",
    "policy_enforcement": "Meta's notice about the Page's messaging policy (see Meta's inbox)",
    "pass_thread_control": "the conversation was handed over between apps",
    "take_thread_control": "the conversation was taken over by another app",
    "request_thread_control": "another app asked to take over the conversation",
    "app_roles": "the Page's app roles changed",
    "messaging_feedback": "the citizen filled in a Messenger feedback form",
    "game_play": "an Instant Game was played",
}


class NotAWebhook(ValueError):
    """A signed body that is no Messenger webhook at all (no JSON, another object)."""

    def __init__(self, message: str, external_id: str) -> None:
        super().__init__(message)
        self.external_id = external_id


class Malformed(ValueError):
    """One event lacks what its type needs (no sender, no message id)."""


@dataclass(frozen=True, slots=True)
class Media:
    """A file a citizen sent: its Messenger type and the CDN address it can be fetched from."""

    type: str
    url: str


@dataclass(frozen=True, slots=True)
class Incoming:
    """A citizen's message, quick-reply tap or button press: becomes (part of) a ticket."""

    external_id: str
    psid: str
    sent_at: datetime | None
    text: str
    raw: RawPayload
    media: tuple[Media, ...] = ()
    # Attachment types that carry nothing to keep; staff see that something was left out.
    unsupported: tuple[str, ...] = ()
    location: Location | None = None
    kind: Kind | None = None
    # Provider ids of the message the citizen answered (Messenger's "reply").
    replies_to: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Echo:
    """A message the Page sent (meldpunt's answers, or someone typing in Meta's inbox)."""

    mid: str
    psid: str
    metadata: str
    raw: RawPayload


@dataclass(frozen=True, slots=True)
class Delivered:
    """The citizen's Messenger got the Page's messages: ``mids`` (if given), and all before
    ``watermark``."""

    psid: str
    mids: tuple[str, ...]
    watermark: int
    raw: RawPayload


@dataclass(frozen=True, slots=True)
class Read:
    """The citizen read everything the Page sent up to ``watermark`` (ms since the epoch)."""

    psid: str
    watermark: int
    raw: RawPayload


@dataclass(frozen=True, slots=True)
class Edited:
    """The citizen changed the text of a message sent earlier (Messenger allows five edits)."""

    mid: str
    psid: str
    text: str
    count: int
    raw: RawPayload


@dataclass(frozen=True, slots=True)
class Ignored:
    """An event that is no message and changes nothing; journalled with ``reason``."""

    external_id: str
    reason: str
    raw: RawPayload


@dataclass(frozen=True, slots=True)
class Unreadable:
    """An event that could not be read; quarantined with ``error`` for staff and a retry."""

    external_id: str
    error: str
    raw: RawPayload


Event = Incoming | Echo | Delivered | Read | Edited | Ignored | Unreadable


@dataclass(frozen=True, slots=True)
class _Item:
    """One event with what surrounds it."""

    event: Mapping[str, Any]
    raw: RawPayload


def _digest_id(body: bytes) -> str:
    return f"sha256-{hashlib.sha256(body).hexdigest()}"


def _text(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


def _id(value: object) -> str:
    """Meta's ids are strings; an integer is accepted, anything else is no id."""
    if isinstance(value, bool):
        return ""
    if isinstance(value, int):
        return str(value)
    return _text(value)


def _number(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _millis(value: object) -> int | None:
    """A timestamp in milliseconds; documented examples in seconds are scaled up."""
    number = _number(value)
    if number is None or number <= 0:
        return None
    return number * 1000 if number < 10**11 else number


def moment(value: object) -> datetime | None:
    millis = _millis(value)
    return datetime.fromtimestamp(millis / 1000, UTC) if millis is not None else None


def _object(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise Malformed(f"{what} is not a JSON object")
    return value


def _psid(event: Mapping[str, Any], side: str = "sender") -> str:
    party = event.get(side)
    psid = _id(party.get("id")) if isinstance(party, Mapping) else ""
    if not psid:
        # Checkbox and chat-plugin senders come as user_ref, not yet a conversation.
        raise Malformed(f"the event has no {side}.id (a page-scoped id)")
    return psid


def _float(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _location(attachment: Mapping[str, Any]) -> Location | None:
    payload = attachment.get("payload")
    coordinates = payload.get("coordinates") if isinstance(payload, Mapping) else None
    if not isinstance(coordinates, Mapping):
        return None
    latitude, longitude = _float(coordinates.get("lat")), _float(coordinates.get("long"))
    if latitude is None or longitude is None:
        return None
    title = _text(attachment.get("title"))
    address = title if title and title.lower() != _GENERIC_PIN else None
    return Location(latitude=latitude, longitude=longitude, address=address)


def _link(attachment: Mapping[str, Any]) -> str:
    payload = attachment.get("payload")
    payload = payload if isinstance(payload, Mapping) else {}
    url = _text(attachment.get("url")) or _text(payload.get("url"))
    title = _text(attachment.get("title")) or _text(payload.get("title"))
    return " ".join(p for p in (title, url) if p)


# --- one reader per event type ------------------------------------------------------------------


def _message(item: _Item) -> Event:
    event = item.event
    message = _object(event.get("message"), "message")
    mid = _id(message.get("mid"))
    if not mid:
        raise Malformed("the message has no mid")
    psid = _psid(event)
    lines = [_text(message.get("text"))]
    media: list[Media] = []
    unsupported: list[str] = []
    location: Location | None = None
    attachments = message.get("attachments") or []
    if not isinstance(attachments, list):
        raise Malformed("message.attachments is not a list")
    for attachment in attachments:
        attachment = _object(attachment, "an attachment")
        kind = _text(attachment.get("type")).lower() or "unknown"
        payload = attachment.get("payload")
        url = _text(payload.get("url")) if isinstance(payload, Mapping) else ""
        if kind == "location":
            location = _location(attachment) or location
            if location is None:
                unsupported.append(kind)
        elif kind in FILE_TYPES and url:
            # While Meta moves stickers to their own type, a sticker comes twice (as
            # "sticker" and as "image") with one address: keep it once.
            if all(m.url != url for m in media):
                media.append(Media(kind, url))
        elif kind in LINK_TYPES and (link := _link(attachment)):
            lines.append(link)
        else:
            unsupported.append(kind)
    quick_reply = message.get("quick_reply")
    payload = _text(quick_reply.get("payload")) if isinstance(quick_reply, Mapping) else ""
    if payload.startswith(CHOICE_PAYLOAD) and not any(lines):
        # A tapped answer's text is its title; should Meta ever leave it out, the payload has it.
        lines.append(payload[len(CHOICE_PAYLOAD) :].strip())
    reply_to = message.get("reply_to")
    replied = _id(reply_to.get("mid")) if isinstance(reply_to, Mapping) else ""
    return Incoming(
        external_id=mid,
        psid=psid,
        sent_at=moment(event.get("timestamp")),
        text="\n".join(line for line in lines if line),
        raw=item.raw,
        media=tuple(media),
        unsupported=tuple(unsupported),
        location=location,
        # Only a "kind:" payload chooses a kind; an answer ("choice:4 🙂") is just its text.
        kind=chosen_kind(payload),
        replies_to=(replied,) if replied else (),
    )


def _postback(item: _Item) -> Event:
    event = item.event
    postback = _object(event.get("postback"), "postback")
    psid = _psid(event)
    payload, title = _text(postback.get("payload")), _text(postback.get("title"))
    # Newer postbacks carry a message id; older ones only the moment, so the id is built from
    # what a redelivery repeats: who, when, and which button.
    mid = _id(postback.get("mid"))
    if not mid:
        millis = _millis(event.get("timestamp"))
        if millis is None:
            raise Malformed("the postback has neither a mid nor a timestamp")
        button = hashlib.sha256(f"{title}\n{payload}".encode()).hexdigest()[:16]
        mid = f"postback:{psid}:{millis}:{button}"
    return Incoming(
        external_id=mid,
        psid=psid,
        sent_at=moment(event.get("timestamp")),
        text=title or payload,
        raw=item.raw,
        kind=chosen_kind(_text(payload)),
    )


def _echo(item: _Item) -> Event:
    event = item.event
    message = _object(event.get("message"), "message")
    mid = _id(message.get("mid"))
    if not mid:
        raise Malformed("the echo has no mid")
    # In an echo the Page is the sender and the citizen the recipient.
    return Echo(mid, _psid(event, "recipient"), _text(message.get("metadata")), item.raw)


def _delivery(item: _Item) -> Event:
    event = item.event
    delivery = _object(event.get("delivery"), "delivery")
    mids = delivery.get("mids") or []
    if not isinstance(mids, list):
        raise Malformed("delivery.mids is not a list")
    watermark = _millis(delivery.get("watermark"))
    return Delivered(
        psid=_psid(event),
        mids=tuple(m for m in (_id(m) for m in mids) if m),
        watermark=watermark or 0,
        raw=item.raw,
    )


def _read(item: _Item) -> Event:
    event = item.event
    read = _object(event.get("read"), "read")
    watermark = _millis(read.get("watermark"))
    if watermark is None:
        raise Malformed("the read receipt has no watermark")
    return Read(_psid(event), watermark, item.raw)


def _edit(item: _Item) -> Event:
    event = item.event
    edit = _object(event.get("message_edit"), "message_edit")
    mid = _id(edit.get("mid"))
    if not mid:
        raise Malformed("the edit has no mid")
    return Edited(
        mid=mid,
        psid=_psid(event),
        text=_text(edit.get("text")),
        count=_number(edit.get("num_edit")) or 1,
        raw=item.raw,
    )


def _reaction(item: _Item) -> Event:
    event = item.event
    reaction = _object(event.get("reaction"), "reaction")
    psid = _psid(event)
    mid = _id(reaction.get("mid"))
    action = _text(reaction.get("action")) or "react"
    emoji = _text(reaction.get("emoji")) or _text(reaction.get("reaction"))
    verb = "took back a reaction" if action == "unreact" else f"reacted {emoji}".rstrip()
    return Ignored(
        f"reaction:{psid}:{mid}:{action}:{emoji}",
        f"the citizen {verb} on message {mid or '(unknown)'}; reactions are not messages",
        item.raw,
    )


def _not_a_message(name: str) -> Callable[[_Item], Event]:
    def read(item: _Item) -> Event:
        sender = item.event.get("sender")
        psid = _id(sender.get("id")) if isinstance(sender, Mapping) else ""
        millis = _millis(item.event.get("timestamp")) or 0
        return Ignored(f"{name}:{psid}:{millis}", NOT_MESSAGES[name], item.raw)

    return read


# The key an event carries names its type. Checked in this order: an echo is a "message" with
# is_echo set, so it is told apart before the plain message.
EVENT_TYPES: dict[str, Callable[[_Item], Event]] = {
    "echo": _echo,
    "message": _message,
    "postback": _postback,
    "delivery": _delivery,
    "read": _read,
    "message_edit": _edit,
    "reaction": _reaction,
    **{name: _not_a_message(name) for name in NOT_MESSAGES},
}


def event_type(event: Mapping[str, Any]) -> str | None:
    """The name of ``event``'s type in ``EVENT_TYPES``, or None when it is none of them."""
    message = event.get("message")
    if isinstance(message, Mapping) and message.get("is_echo") is True:
        return "echo"
    return next((name for name in EVENT_TYPES if name != "echo" and name in event), None)


def _read_one(item: _Item) -> Event:
    name = event_type(item.event)
    if name is None:
        keys = ", ".join(sorted(k for k in item.event if k not in ("sender", "recipient")))
        return Unreadable(
            _digest_id(item.raw.body),
            f"an unknown kind of Messenger event (keys: {keys or 'none'})",
            item.raw,
        )
    try:
        return EVENT_TYPES[name](item)
    except Malformed as exc:
        return Unreadable(_digest_id(item.raw.body), f"a Messenger {name} event: {exc}", item.raw)


def _entries(body: bytes) -> Sequence[Mapping[str, Any]]:
    digest = _digest_id(body)
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NotAWebhook(f"the webhook body is not JSON: {exc}", digest) from None
    if not isinstance(document, Mapping):
        raise NotAWebhook("the webhook body is not a JSON object", digest)
    kind = document.get("object")
    if kind != "page":
        # Instagram, WhatsApp and Page feed webhooks share the mechanism but not the shapes;
        # this endpoint is for a Facebook Page's Messenger only.
        raise NotAWebhook(
            f'the webhook is about "{kind}", not a Facebook Page ("page"): subscribe this '
            "address to the Page's messaging fields only",
            digest,
        )
    entries = document.get("entry")
    if not isinstance(entries, list) or not all(isinstance(e, Mapping) for e in entries):
        raise NotAWebhook("the webhook has no list of entries", digest)
    return entries


def _alone(entry: Mapping[str, Any], event: object | None) -> RawPayload:
    """One event (or one entry without events) as a webhook of its own, to be read again alone."""
    if event is None:
        single = dict(entry)
    else:
        single = {"id": entry.get("id"), "time": entry.get("time"), "messaging": [event]}
    body = json.dumps({"object": "page", "entry": [single]}, ensure_ascii=False)
    return RawPayload(JSON, body.encode())


def _entry_without_events(entry: Mapping[str, Any], raw: RawPayload) -> Event:
    if "changes" in entry:
        return Ignored(
            f"changes:{_id(entry.get('id'))}:{_millis(entry.get('time')) or 0}",
            "a change on the Page (its feed), not a message: subscribe the app to the "
            "messaging fields only",
            raw,
        )
    return Unreadable(_digest_id(raw.body), "an entry without messaging events", raw)


def parse_webhook(body: bytes) -> list[Event]:
    """Every event in a signed webhook body, in order.

    Each event keeps its own raw payload (the whole body when it is the only one), so a
    quarantined event can be retried without the others.

    Raises:
        NotAWebhook: the body as a whole is unusable.
    """
    units: list[tuple[Mapping[str, Any], object | None]] = []
    for entry in _entries(body):
        lists = [entry.get(key) or [] for key in ("messaging", "standby")]
        events = [e for found in lists if isinstance(found, list) for e in found]
        units += [(entry, event) for event in events] or [(entry, None)]
    alone = len(units) == 1
    results: list[Event] = []
    for entry, event in units:
        raw = RawPayload(JSON, body) if alone else _alone(entry, event)
        if event is None:
            results.append(_entry_without_events(entry, raw))
        elif not isinstance(event, Mapping):
            results.append(Unreadable(_digest_id(raw.body), "an event that is no object", raw))
        else:
            results.append(_read_one(_Item(event, raw)))
    return results
