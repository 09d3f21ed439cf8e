"""SMS, WhatsApp and the phone line through Twilio: one account, one REST client out.

Provider notes: Twilio posts every inbound SMS and WhatsApp message to the same messaging
webhook, form-encoded and signed with the account's auth token (``signature.py``); it wants a
TwiML answer and treats anything but 2xx as an error it shows in its console. Media sit behind
the account's credentials at ``MediaUrlN``. Status callbacks arrive on a second URL, one per
state change, in no guaranteed order. WhatsApp only accepts a free-form message within 24 hours
of the citizen's last one; after that only an approved template (a Content SID) goes through,
and Twilio refuses free-form text with error 63016. The phone line's webhooks are in
``voice.py``; answers to a call go out by SMS through this connector.

A send in doubt (interrupted, or timed out) is looked up in the Messages list resource, filtered
by ``To``, ``From`` and ``DateSent>=`` (a day, in GMT; the list is newest first and paged with
``next_page_uri``). Caveat: the filter is on ``date_sent``, which Twilio fills in once the message
leaves its queue, so a message still queued may not be listed yet; the dispatcher asks only well
after the send started. A WhatsApp answer replaced by the approved template is not found by its
text; it is then sent again, and the window is checked again first.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import mimetypes
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar

import aiohttp
import structlog
from aiohttp import web
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client
from twilio.twiml.messaging_response import MessagingResponse

from connectors.base import (
    CannotTell,
    Capabilities,
    Connector,
    ConnectorContext,
    SendError,
    WindowClosed,
)
from connectors.twilio.messaging import (
    STATUS,
    WHATSAPP_PREFIX,
    Media,
    NotAMessage,
    TwilioInbound,
    channel_of,
    error_detail,
    parse_message,
    parse_status,
    read_form,
)
from connectors.twilio.options import TwilioOptions
from connectors.twilio.signature import SignatureCheck
from connectors.twilio.voice import VoiceLine
from ingest.files import STORAGE_FULL, StorageFull
from ingest.identity import InvalidIdentity, normalise_phone
from ingest.model import (
    Attachment,
    Channel,
    ContactRef,
    DeliveryReport,
    DeliveryStatus,
    Identity,
    IdentityKind,
    InboundMessage,
    IntakeUnavailable,
    OutboundMessage,
    RawPayload,
    SendResult,
    ThreadHints,
)

log = structlog.get_logger("meldpunt.twilio")

FORM = "application/x-www-form-urlencoded"
MESSAGING_PATH = "/webhooks/twilio/messaging"
STATUS_PATH = "/webhooks/twilio/status"
WHATSAPP_WINDOW = timedelta(hours=24)
# Clocks and queues differ a little: a reply at 23 h 59 would still be refused.
WINDOW_MARGIN = timedelta(minutes=5)
OUTSIDE_WINDOW = 63016
# Our clock and Twilio's differ a little, and date_created has whole seconds only: a message
# created this long before our attempt started still counts as that attempt's.
CLOCK_SKEW = timedelta(seconds=60)
# How many of the citizen's messages since that day are read, newest first, at most, and how
# many per page. No citizen gets that many from the town in a day or two.
LOOKUP_LIMIT = 1000
LOOKUP_PAGE = 100
# 4xx answers that retrying can fix: rate limits, time-outs and credentials an operator corrects.
_RETRYABLE_HTTP = {401, 403, 408, 429}


def _empty_twiml() -> web.Response:
    return web.Response(text=str(MessagingResponse()), content_type="text/xml")


class TwilioConnector(Connector):
    """Receives SMS, WhatsApp messages and calls, and status callbacks; sends answers."""

    channel: ClassVar[Channel] = Channel.SMS
    unconfigured: ClassVar[str] = "no Twilio account configured"
    capabilities: ClassVar[Capabilities] = Capabilities(
        can_send=True, conversational=True, attachments_in=True
    )

    def __init__(self, context: ConnectorContext, options: TwilioOptions | None = None) -> None:
        super().__init__(context)
        self.options = options or TwilioOptions()
        self._signature = SignatureCheck(
            self.options.auth_token.get_secret_value(), context.public_url
        )
        self.voice = VoiceLine(context, self.options.voice, self._signature, self._fetch)
        self._http: aiohttp.ClientSession | None = None
        self._twilio_http: AsyncTwilioHttpClient | None = None
        self._client: Client | None = None

    @classmethod
    def options_key(cls) -> str:
        return "twilio"

    def _sender(self, channel: Channel) -> str:
        if channel is Channel.WHATSAPP:
            return self.options.whatsapp_sender
        return self.options.sms_number if channel is Channel.SMS else ""

    def reply_window(self, channel: Channel) -> timedelta | None:
        return WHATSAPP_WINDOW if channel is Channel.WHATSAPP else None

    def sends(self, channel: Channel) -> bool:
        return self.disabled_reason is None and bool(self._sender(channel))

    @property
    def can_send(self) -> bool:
        return self.sends(Channel.SMS) or self.sends(Channel.WHATSAPP)

    def routes(self) -> Sequence[web.RouteDef]:
        return [
            web.post(MESSAGING_PATH, self.on_message),
            web.post(STATUS_PATH, self.on_status),
            *self.voice.routes(),
        ]

    async def start(self) -> None:
        for channel in (Channel.SMS, Channel.WHATSAPP):
            if not self.sends(channel):
                variable = (
                    "TWILIO_SMS_NUMBER" if channel is Channel.SMS else "TWILIO_WHATSAPP_SENDER"
                )
                log.info(
                    "twilio sending disabled: settings missing",
                    channel=channel.value,
                    missing=variable,
                )
        self._http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.options.timeout_seconds)
        )
        # The twilio library's async client opens its aiohttp session on creation, which needs
        # the running loop: hence here and not in __init__.
        self._twilio_http = AsyncTwilioHttpClient(timeout=self.options.timeout_seconds)
        self._client = Client(
            self.options.account_sid,
            self.options.auth_token.get_secret_value(),
            http_client=self._twilio_http,
        )
        self._client.api.base_url = self.options.base_url

    async def stop(self) -> None:
        if self._twilio_http is not None:
            await self._twilio_http.close()
        if self._http is not None:
            await self._http.close()
        self._http = self._twilio_http = self._client = None

    # --- inbound ----------------------------------------------------------------------------

    async def on_message(self, request: web.Request) -> web.StreamResponse:
        """``POST /webhooks/twilio/messaging``: one inbound SMS or WhatsApp message."""
        body = await request.read()
        form = read_form(body)
        if not self._signature.valid(request, form):
            raise web.HTTPForbidden(text="invalid or missing Twilio signature")
        try:
            await self.deliver(RawPayload(FORM, body))
        except IntakeUnavailable:
            # Nothing stored: a 5xx makes Twilio report the failure (and retry, when the
            # number's webhook is set up with retries), instead of losing the message.
            raise web.HTTPServiceUnavailable(text="intake unavailable, try again") from None
        return _empty_twiml()

    async def redeliver(self, raw: RawPayload) -> None:
        form = read_form(raw.body)
        if "CallSid" in form and "RecordingUrl" in form and "TranscriptionText" not in form:
            # The kind chosen in the menu was in the URL, not the payload: it is lost here.
            await self.voice.deliver_recording(raw, None)
        else:
            await self.deliver(raw)

    async def deliver(self, raw: RawPayload) -> None:
        """Hand one signed message payload to intake; returns once it is durable.

        A payload that cannot be a message is quarantined, not refused: Twilio signed it, so
        refusing would only produce an alert in its console and no second chance here, while
        staff can look at the quarantined copy.

        Raises:
            IntakeUnavailable: nothing was stored.
        """
        form = read_form(raw.body)
        fallback_id = form.get("MessageSid") or f"sha256-{hashlib.sha256(raw.body).hexdigest()}"
        try:
            parsed = parse_message(form)
            number = normalise_phone(parsed.number)
        except (NotAMessage, InvalidIdentity) as exc:
            whatsapp = "WaId" in form or channel_of(form.get("From", "")) is Channel.WHATSAPP
            channel = Channel.WHATSAPP if whatsapp else Channel.SMS
            await self.context.intake.quarantine(channel, fallback_id, raw, str(exc))
            return
        attachments = [await self._download(n, media) for n, media in enumerate(parsed.media)]
        await self.context.intake.submit(self._inbound(parsed, number, raw, attachments))

    def _inbound(
        self, parsed: TwilioInbound, number: str, raw: RawPayload, attachments: list[Attachment]
    ) -> InboundMessage:
        return InboundMessage(
            channel=parsed.channel,
            external_id=parsed.message_sid,
            sender=ContactRef(
                (Identity(IdentityKind.PHONE, number),), display_name=parsed.profile_name
            ),
            received_at=self.context.clock(),
            text=parsed.text,
            raw=raw,
            kind=parsed.kind,
            location=parsed.location,
            attachments=tuple(attachments),
            hints=ThreadHints(conversation=f"{parsed.channel.value}:{number}"),
        )

    async def _download(self, index: int, media: Media) -> Attachment:
        return await self._fetch(media, f"media-{index + 1}")

    async def _fetch(self, media: Media, stem: str) -> Attachment:
        """Fetch one media file or recording with the account's credentials, within limits.

        A file that is refused or cannot be fetched is recorded with the reason; the message
        still becomes a ticket (the URL stays in the journalled payload).
        """
        content_type = media.content_type.split(";")[0].strip().lower()
        extension = mimetypes.guess_extension(content_type) or ".bin"
        filename = f"{stem}{extension}"

        def removed(size: int, reason: str) -> Attachment:
            return Attachment(filename, content_type, size, None, removed_reason=reason)

        options = self.options
        if content_type not in options.allowed_media_types:
            return removed(0, f"file type {content_type} is not accepted")
        assert self._http is not None, "start() opens the HTTP session"
        limit = options.max_media_bytes
        # Twilio redirects media to its file store; aiohttp drops this header when the redirect
        # leaves the origin, so the credentials stay with Twilio.
        auth = aiohttp.encode_basic_auth(options.account_sid, options.auth_token.get_secret_value())
        try:
            async with self._http.get(media.url, headers={"Authorization": auth}) as response:
                if response.status != 200:
                    return removed(
                        0, f"could not be downloaded from Twilio (HTTP {response.status})"
                    )
                if response.content_length is not None and response.content_length > limit:
                    return removed(response.content_length, f"larger than {limit} bytes")
                data = bytearray()
                async for chunk in response.content.iter_chunked(64 * 1024):
                    data += chunk
                    if len(data) > limit:
                        return removed(len(data), f"larger than {limit} bytes")
        except (aiohttp.ClientError, TimeoutError) as exc:
            return removed(0, f"could not be downloaded from Twilio ({type(exc).__name__})")
        try:
            sha256 = await self.context.files.put(bytes(data))
        except StorageFull:
            # Twilio does not send the message again: the text is kept, the file noted.
            return removed(len(data), STORAGE_FULL)
        return Attachment(filename, content_type, len(data), sha256)

    async def on_status(self, request: web.Request) -> web.StreamResponse:
        """``POST /webhooks/twilio/status``: Twilio's word on a message meldpunt sent."""
        body = await request.read()
        form = read_form(body)
        if not self._signature.valid(request, form):
            raise web.HTTPForbidden(text="invalid or missing Twilio signature")
        status = parse_status(form)
        if status is None:
            log.info("twilio status ignored", status=form.get("MessageStatus"))
            return web.Response(status=204)
        report = DeliveryReport(
            channel=status.channel,
            provider_id=status.message_sid,
            status=status.status,
            received_at=self.context.clock(),
            detail=status.detail,
            raw=RawPayload(FORM, body),
        )
        try:
            await self.context.intake.report_delivery(report)
        except IntakeUnavailable:
            raise web.HTTPServiceUnavailable(text="intake unavailable, try again") from None
        return web.Response(status=204)

    # --- outbound ---------------------------------------------------------------------------

    def _address(self, channel: Channel, number: str) -> str:
        number = number.removeprefix(WHATSAPP_PREFIX)
        return f"{WHATSAPP_PREFIX}{number}" if channel is Channel.WHATSAPP else number

    async def _create(self, **fields: Any) -> Any:
        """One ``Messages.json`` call, its failures sorted into permanent and temporary."""
        if self._client is None:
            raise SendError("the Twilio client is not running (the service is stopping)")
        try:
            async with asyncio.timeout(self.options.timeout_seconds):
                return await self._client.messages.create_async(
                    status_callback=f"{self.context.public_url}{STATUS_PATH}", **fields
                )
        except TwilioRestException as exc:
            code = str(exc.code) if exc.code is not None else None
            detail = error_detail(code, "refused") if code else f"HTTP {exc.status}"
            status = int(exc.status)
            permanent = 400 <= status < 500 and status not in _RETRYABLE_HTTP
            raise SendError(f"Twilio refused the message: {detail}", permanent=permanent) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SendError(f"Twilio could not be reached ({type(exc).__name__})") from exc

    def _window_open(self, message: OutboundMessage, now: datetime) -> bool:
        last = message.last_inbound_at
        return last is not None and now - last < WHATSAPP_WINDOW - WINDOW_MARGIN

    async def send(self, message: OutboundMessage) -> SendResult:
        channel = message.channel
        sender = self._sender(channel)
        if not sender:
            raise SendError(f"no Twilio number is configured for {channel.value}")
        to, from_ = self._address(channel, message.recipient), self._address(channel, sender)
        now = self.context.clock()
        if channel is Channel.WHATSAPP and not self._window_open(message, now):
            await self._window_closed(message, to, from_, now)
        try:
            created = await self._create(to=to, from_=from_, body=message.text)
        except SendError as exc:
            cause = exc.__cause__
            if isinstance(cause, TwilioRestException) and cause.code == OUTSIDE_WINDOW:
                # Our clock said open, WhatsApp says closed: WhatsApp decides.
                await self._window_closed(message, to, from_, now)
            raise
        return SendResult(provider_id=str(created.sid), status=DeliveryStatus.SENT)

    async def find_sent(
        self, message: OutboundMessage, attempt_started_at: datetime
    ) -> SendResult | None:
        """The message Twilio created for this send, if any, found by number, sender and text.

        Among the messages from our number to the citizen's since the attempt's day, the
        earliest one created no earlier than the attempt (less ``CLOCK_SKEW``) with exactly this
        text is it; its sid is then recorded, so Twilio's status callbacks match. None: Twilio
        has no such message, so sending it again is safe.

        Raises:
            CannotTell: no Twilio number is configured for the channel any more.
            SendError: Twilio could not be asked (an error answer, a time-out).
        """
        channel = message.channel
        sender = self._sender(channel)
        if not sender:
            raise CannotTell(f"no Twilio number is configured for {channel.value} any more")
        if self._client is None:
            raise SendError("the Twilio client is not running (the service is stopping)")
        to, from_ = self._address(channel, message.recipient), self._address(channel, sender)
        since = attempt_started_at - CLOCK_SKEW
        try:
            async with asyncio.timeout(self.options.timeout_seconds):
                listed = await self._client.messages.list_async(
                    to=to,
                    from_=from_,
                    # Sent as DateSent>=YYYY-MM-DD, the form Twilio documents.
                    date_sent_after=since.strftime("%Y-%m-%d"),
                    limit=LOOKUP_LIMIT,
                    page_size=LOOKUP_PAGE,
                )
        except TwilioRestException as exc:
            raise SendError(f"Twilio's message list answered HTTP {exc.status}") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SendError(f"Twilio could not be reached ({type(exc).__name__})") from exc
        matches = [
            m
            for m in listed
            if m.body == message.text
            and m.to == to
            and m.from_ == from_
            and m.date_created is not None
            and m.date_created >= since
        ]
        if not matches:
            return None
        first = min(matches, key=lambda m: m.date_created)
        status = STATUS.get(str(first.status or ""), DeliveryStatus.SENT)
        return SendResult(provider_id=str(first.sid), status=status)

    async def _window_closed(
        self, message: OutboundMessage, to: str, from_: str, now: datetime
    ) -> None:
        """Send the approved template, if there is one, and say so; never returns.

        Raises:
            WindowClosed: always, carrying the template's id and the fallback channels.
            SendError: the template itself could not be sent.
        """
        fallback = tuple(Channel(c) for c in self.options.whatsapp_fallback)
        template = self.options.whatsapp_template_sid
        if not template:
            raise WindowClosed(
                "the WhatsApp 24-hour window is closed and no template is configured "
                "(TWILIO_WHATSAPP_TEMPLATE_SID)",
                fallback=fallback,
            )
        variables = json.dumps({"1": message.ticket_reference or ""})
        created = await self._create(
            to=to, from_=from_, content_sid=template, content_variables=variables
        )
        raise WindowClosed(
            "the WhatsApp 24-hour window is closed; the template was sent instead",
            template_sent_at=now,
            template_provider_id=str(created.sid),
            fallback=fallback,
        )


__all__ = ["TwilioConnector"]
