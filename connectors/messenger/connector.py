"""Facebook Messenger: a Page's conversations in by Meta's webhook, answers out by the Send API.

Provider notes: Meta first checks the webhook address with a GET handshake (``hub.mode``,
``hub.verify_token``, ``hub.challenge``), then posts JSON signed with the app secret
(``X-Hub-Signature-256``). It batches events, retries a delivery that gets no 200 for hours and
eventually switches a failing webhook off, so a signed payload that cannot be read is quarantined
and still answered 200. Citizens are known by a page-scoped id (PSID), nothing else: no name,
number or address comes with a message. Attachments arrive as links to Meta's CDN that expire,
so they are fetched at once. A Page may answer freely within 24 hours of the citizen's last
message; up to 7 days only a person may answer, with the HUMAN_AGENT tag, if Meta approved the
Page's app for it; after that nothing goes through until the citizen writes again. Meta's
receipts for what the Page sent come as delivery and read events (``sent.py``), and everything
the Page sends comes back as an echo.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import mimetypes
import posixpath
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit

import aiohttp
import structlog
from aiohttp import web

from connectors.base import Capabilities, Connector, ConnectorContext, SendError, WindowClosed
from connectors.messenger.options import MessengerOptions
from connectors.messenger.parse import (
    JSON,
    Delivered,
    Echo,
    Edited,
    Event,
    Ignored,
    Incoming,
    Media,
    NotAWebhook,
    Read,
    Unreadable,
    parse_webhook,
)
from connectors.messenger.send import (
    FILE_LIMIT,
    STANDARD_WINDOW,
    Closed,
    GraphError,
    attachment_type,
    messaging_fields,
    quick_replies,
    split_text,
)
from connectors.messenger.sent import SentLog
from connectors.messenger.signature import (
    SIGNATURE_HEADER,
    handshake_challenge,
    signature_valid,
)
from ingest.files import STORAGE_FULL, StorageFull, safe_filename
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
    OutboundAttachment,
    OutboundMessage,
    RawPayload,
    SendResult,
    ThreadHints,
)

log = structlog.get_logger("meldpunt.messenger")

WEBHOOK_PATH = "/webhooks/facebook"
WAITING_FOR = "to write again on Facebook Messenger"
# Marks what meldpunt sends, so its echo is told apart from a message typed in Meta's inbox.
METADATA_PREFIX = "meldpunt:outbox:"
EDIT_NOTE = "Aangepaste tekst (de burger wijzigde het bericht in Messenger)"
# A citizen's clock is not ours: a message dated in the future is dated on arrival.
_FUTURE_SLACK = timedelta(minutes=5)


class MessengerConnector(Connector):
    """Receives a Facebook Page's Messenger conversations and receipts; sends answers."""

    channel: ClassVar[Channel] = Channel.MESSENGER
    unconfigured: ClassVar[str] = "no Facebook app or Page configured"
    capabilities: ClassVar[Capabilities] = Capabilities(
        can_send=True,
        conversational=True,
        reply_window=STANDARD_WINDOW,
        attachments_in=True,
        attachments_out=True,
    )

    def __init__(self, context: ConnectorContext, options: MessengerOptions | None = None) -> None:
        super().__init__(context)
        self.options = options or MessengerOptions()
        self._sent = SentLog(context.cursors)
        self._http: aiohttp.ClientSession | None = None

    @property
    def can_send(self) -> bool:
        return self.disabled_reason is None

    def sends(self, channel: Channel) -> bool:
        return channel is Channel.MESSENGER and self.can_send

    def routes(self) -> Sequence[web.RouteDef]:
        return [web.get(WEBHOOK_PATH, self.on_verify), web.post(WEBHOOK_PATH, self.on_event)]

    async def start(self) -> None:
        self._http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.options.timeout_seconds)
        )

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.close()
        self._http = None

    # --- inbound ----------------------------------------------------------------------------------

    async def on_verify(self, request: web.Request) -> web.StreamResponse:
        """``GET /webhooks/facebook``: Meta's subscription handshake."""
        challenge = handshake_challenge(self.options.verify_token.get_secret_value(), request.query)
        if challenge is None:
            log.warning("messenger webhook handshake refused", mode=request.query.get("hub.mode"))
            raise web.HTTPForbidden(text="verify token does not match")
        return web.Response(text=challenge, content_type="text/plain")

    async def on_event(self, request: web.Request) -> web.StreamResponse:
        """``POST /webhooks/facebook``: one signed batch of Messenger events."""
        body = await request.read()
        secret = self.options.app_secret.get_secret_value()
        if not signature_valid(secret, body, request.headers.get(SIGNATURE_HEADER)):
            raise web.HTTPForbidden(text="invalid or missing X-Hub-Signature-256")
        try:
            await self.deliver(RawPayload(JSON, body))
        except IntakeUnavailable:
            # Nothing (or not everything) stored: Meta retries a delivery that is not answered
            # 200, and what was already stored is recognised by its message id.
            raise web.HTTPServiceUnavailable(text="intake unavailable, try again") from None
        return web.Response(text="EVENT_RECEIVED", content_type="text/plain")

    async def redeliver(self, raw: RawPayload) -> None:
        await self.deliver(raw)

    async def deliver(self, raw: RawPayload) -> None:
        """Hand every event of one signed webhook to intake; returns once all are durable.

        The citizens' messages go to intake together, so they are written in one batch; receipts,
        echoes and what cannot be read follow. A payload that is no Messenger webhook is
        quarantined rather than refused: Meta signed it, and refusing would only make Meta retry
        it and in the end switch the webhook off.

        Raises:
            IntakeUnavailable: not everything was stored.
        """
        try:
            events = parse_webhook(raw.body)
        except NotAWebhook as exc:
            await self.context.intake.quarantine(Channel.MESSENGER, exc.external_id, raw, str(exc))
            return
        incoming = [e for e in events if isinstance(e, Incoming)]
        messages = [await self._inbound(e) for e in incoming]
        outcomes = await asyncio.gather(
            *(self.context.intake.submit(m) for m in messages), return_exceptions=True
        )
        if failed := next((o for o in outcomes if isinstance(o, BaseException)), None):
            raise failed
        for event in events:
            if not isinstance(event, Incoming):
                await self._settle(event)

    async def _settle(self, event: Event) -> None:
        """Whatever is not a citizen's message: receipts, echoes, edits, the unreadable."""
        intake = self.context.intake
        match event:
            case Echo(mid=mid, metadata=metadata, raw=raw):
                if metadata.startswith(METADATA_PREFIX):
                    reason = "meldpunt's own answer, echoed back by Messenger"
                else:
                    # Typed in Meta Business Suite or sent by another app: staff should know it
                    # is on no ticket.
                    reason = (
                        "sent from the Page outside meldpunt (Meta Business Suite or another "
                        "app); it is on no ticket"
                    )
                await intake.ignore(Channel.MESSENGER, f"echo:{mid}", raw, reason)
            case Delivered(psid=psid, mids=mids, watermark=watermark, raw=raw):
                ids = await self._log(self._sent.delivered(psid, mids, watermark))
                await self._report(ids, DeliveryStatus.DELIVERED, raw)
            case Read(psid=psid, watermark=watermark, raw=raw):
                ids = await self._log(self._sent.read(psid, watermark))
                await self._report(ids, DeliveryStatus.READ, raw)
            case Edited(mid=mid, text=text, count=count, raw=raw):
                found = await intake.add_text(
                    Channel.MESSENGER,
                    mid,
                    text,
                    f"{EDIT_NOTE}, wijziging {count}",
                    raw,
                    event="message_edited",
                )
                if not found:
                    log.info("edit of a message meldpunt does not have", mid=mid)
            case Ignored(external_id=external_id, reason=reason, raw=raw):
                await intake.ignore(Channel.MESSENGER, external_id, raw, reason)
            case Unreadable(external_id=external_id, error=error, raw=raw):
                await intake.quarantine(Channel.MESSENGER, external_id, raw, error)

    @staticmethod
    async def _log(pending: Any) -> list[str]:
        """The sent log's answer; its database being down is intake being down."""
        try:
            ids: list[str] = await pending
        except Exception as exc:
            raise IntakeUnavailable(f"the Messenger sent log is unreadable: {exc}") from exc
        return ids

    async def _report(self, ids: list[str], status: DeliveryStatus, raw: RawPayload) -> None:
        for provider_id in ids:
            await self.context.intake.report_delivery(
                DeliveryReport(
                    channel=Channel.MESSENGER,
                    provider_id=provider_id,
                    status=status,
                    received_at=self.context.clock(),
                    raw=raw,
                )
            )

    async def _inbound(self, event: Incoming) -> InboundMessage:
        files = [await self._download(n, media) for n, media in enumerate(event.media)]
        left_out = [
            Attachment(
                kind, "application/octet-stream", 0, None, f"a Messenger {kind} cannot be kept"
            )
            for kind in event.unsupported
        ]
        now = self.context.clock()
        sent_at = event.sent_at
        received_at = sent_at if sent_at is not None and sent_at <= now + _FUTURE_SLACK else now
        return InboundMessage(
            channel=Channel.MESSENGER,
            external_id=event.external_id,
            sender=ContactRef((Identity(IdentityKind.MESSENGER, event.psid),)),
            received_at=received_at,
            text=event.text,
            raw=event.raw,
            kind=event.kind,
            location=event.location,
            attachments=(*files, *left_out),
            hints=ThreadHints(
                message_ids=event.replies_to,
                conversation=f"{Channel.MESSENGER.value}:{event.psid}",
            ),
        )

    async def _download(self, index: int, media: Media) -> Attachment:
        """Fetch one file from Meta's CDN, within limits.

        A file that is refused or cannot be fetched is recorded with the reason; the message
        still becomes a ticket (the link stays in the journalled payload until it expires).
        """
        path = unquote(urlsplit(media.url).path)
        named = safe_filename(posixpath.basename(path))

        def filename(content_type: str) -> str:
            if named and "." in named:
                return named
            extension = mimetypes.guess_extension(content_type) or ".bin"
            return f"{media.type}-{index + 1}{extension}"

        def removed(content_type: str, size: int, reason: str) -> Attachment:
            return Attachment(filename(content_type), content_type, size, None, reason)

        guessed = mimetypes.guess_type(named)[0] or "application/octet-stream"
        if self._http is None:
            return removed(guessed, 0, "could not be downloaded (the service is stopping)")
        limit = self.options.max_attachment_bytes
        try:
            async with self._http.get(media.url) as response:
                content_type = (response.content_type or guessed).lower()
                if content_type == "application/octet-stream":
                    content_type = guessed
                if response.status != 200:
                    return removed(
                        content_type,
                        0,
                        f"could not be downloaded from Meta (HTTP {response.status})",
                    )
                if content_type not in self.options.allowed_media_types:
                    return removed(content_type, 0, f"file type {content_type} is not accepted")
                if response.content_length is not None and response.content_length > limit:
                    return removed(
                        content_type, response.content_length, f"larger than {limit} bytes"
                    )
                data = bytearray()
                async for chunk in response.content.iter_chunked(64 * 1024):
                    data += chunk
                    if len(data) > limit:
                        return removed(content_type, len(data), f"larger than {limit} bytes")
        except (aiohttp.ClientError, TimeoutError) as exc:
            return removed(guessed, 0, f"could not be downloaded from Meta ({type(exc).__name__})")
        try:
            sha256 = await self.context.files.put(bytes(data))
        except StorageFull:
            # The text is kept rather than the whole delivery refused for a file.
            return removed(content_type, len(data), STORAGE_FULL)
        return Attachment(filename(content_type), content_type, len(data), sha256)

    # --- outbound ---------------------------------------------------------------------------------

    def _closed(self, why: str) -> WindowClosed:
        # The dispatcher keeps what it did, not why: the why is in the log.
        log.info("messenger will not take the answer now", reason=why)
        return WindowClosed(
            f"Messenger will not take this answer now: {why}",
            fallback=tuple(Channel(c) for c in self.options.fallback),
            waiting_for=WAITING_FOR,
        )

    def _auth(self) -> dict[str, str]:
        # The token as the Send API documents it, with the proof Meta demands when the app's
        # "Require app secret" setting is on (and accepts when it is off).
        token = self.options.page_token.get_secret_value()
        proof = hmac.new(
            self.options.app_secret.get_secret_value().encode(), token.encode(), hashlib.sha256
        ).hexdigest()
        return {"access_token": token, "appsecret_proof": proof}

    async def _post(self, data: aiohttp.FormData | dict[str, Any], tagged: bool) -> str:
        """One Send API call; returns the message id Meta gave it.

        Raises:
            WindowClosed: Meta says the window is closed (or refuses the HUMAN_AGENT tag).
            SendError: anything else, permanent when repeating cannot help.
        """
        if self._http is None:
            raise SendError("the Messenger client is not running (the service is stopping)")
        request: dict[str, Any] = (
            {"data": data} if isinstance(data, aiohttp.FormData) else {"json": data}
        )
        try:
            async with self._http.post(
                self.options.send_url, params=self._auth(), **request
            ) as response:
                try:
                    body = await response.json(content_type=None)
                except ValueError:
                    body = None
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SendError(
                f"Meta's Graph API could not be reached ({type(exc).__name__})"
            ) from exc
        if status == 200 and isinstance(body, dict) and body.get("message_id"):
            return str(body["message_id"])
        error = GraphError.of(status, body)
        if error.outside_window:
            raise self._closed("Meta says the 24-hour window is closed")
        if tagged and error.code in (10, 200):
            log.warning("Meta refused the HUMAN_AGENT tag", detail=error.describe())
            raise self._closed(
                "Meta refused the HUMAN_AGENT tag (is the Page's app approved for it? "
                f"else set human_agent_tag: false): {error.describe()}"
            )
        raise SendError(
            f"Messenger refused the message: {error.describe()}", permanent=error.permanent
        )

    def _text_request(
        self,
        psid: str,
        messaging: dict[str, str],
        text: str,
        metadata: str,
        answers: list[dict[str, str]],
    ) -> dict[str, Any]:
        message: dict[str, Any] = {"text": text, "metadata": metadata}
        if answers:
            message["quick_replies"] = answers
        return {"recipient": {"id": psid}, **messaging, "message": message}

    async def _file_request(
        self,
        psid: str,
        messaging: dict[str, str],
        attachment: OutboundAttachment,
        metadata: str,
        answers: list[dict[str, str]],
    ) -> aiohttp.FormData:
        data = aiohttp.FormData()
        data.add_field("recipient", json.dumps({"id": psid}))
        for name, value in messaging.items():
            data.add_field(name, value)
        message: dict[str, Any] = {
            "attachment": {
                "type": attachment_type(attachment.content_type),
                "payload": {"is_reusable": False},
            },
            "metadata": metadata,
        }
        if answers:
            message["quick_replies"] = answers
        data.add_field("message", json.dumps(message))
        data.add_field(
            "filedata",
            await self.context.files.get(attachment.sha256),
            filename=attachment.filename,
            content_type=attachment.content_type,
        )
        return data

    async def send(self, message: OutboundMessage) -> SendResult:
        psid = message.recipient.strip()
        if not psid:
            raise SendError("no Messenger id (PSID) to send to", permanent=True)
        if too_big := [a.filename for a in message.attachments if a.size > FILE_LIMIT]:
            raise SendError(
                f"Messenger takes files up to 25 MB; too large: {', '.join(too_big)}",
                permanent=True,
            )
        last = message.last_inbound_at
        try:
            messaging = messaging_fields(
                self.context.clock() - last if last is not None else None,
                automatic=message.automatic,
                human_agent_tag=self.options.human_agent_tag,
            )
        except Closed as exc:
            raise self._closed(str(exc)) from None
        tagged = "tag" in messaging
        metadata = f"{METADATA_PREFIX}{message.outbox_id}"
        steps: list[str | OutboundAttachment] = [
            *split_text(message.text),
            *message.attachments,
        ]
        if not steps:
            raise SendError("the answer has neither text nor files", permanent=True)
        several = len(steps) > 1
        offered = quick_replies(message.choices)
        if message.choices and not offered:
            log.warning(
                "messenger answers not offered as quick replies (more than 13, or too long)",
                outbox_id=message.outbox_id,
            )
        done = await self._partial(psid, message.outbox_id) if several else []
        mids = list(done)
        for n, step in enumerate(steps[len(done) :], start=len(done)):
            # Messenger shows the quick replies of the newest message only: they go on the last.
            answers = offered if n == len(steps) - 1 else []
            if isinstance(step, str):
                request: aiohttp.FormData | dict[str, Any] = self._text_request(
                    psid, messaging, step, metadata, answers
                )
            else:
                request = await self._file_request(psid, messaging, step, metadata, answers)
            mids.append(await self._post(request, tagged))
            if several and n < len(steps) - 1:
                await self._save_partial(psid, message.outbox_id, mids)
        provider_id = mids[-1]
        try:
            await self._sent.record(
                psid,
                message.outbox_id,
                mids,
                provider_id,
                int(self.context.clock().timestamp() * 1000),
            )
        except Exception as exc:
            # Sent is sent: only the read receipts of this answer will not be matched.
            log.warning("messenger sent log not saved", outbox_id=message.outbox_id, error=str(exc))
        return SendResult(provider_id=provider_id, status=DeliveryStatus.SENT)

    async def _partial(self, psid: str, outbox_id: int) -> list[str]:
        try:
            return await self._sent.partial(psid, outbox_id)
        except Exception as exc:
            # Without knowing what went out, sending nothing is safer than sending twice.
            raise SendError(f"the Messenger sent log is unreadable: {exc}") from exc

    async def _save_partial(self, psid: str, outbox_id: int, mids: list[str]) -> None:
        try:
            await self._sent.save_partial(psid, outbox_id, mids)
        except Exception as exc:
            log.warning(
                "messenger progress not saved; a retry may repeat parts",
                outbox_id=outbox_id,
                error=str(exc),
            )


__all__ = ["MessengerConnector"]
