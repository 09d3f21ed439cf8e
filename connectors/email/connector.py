"""The e-mail channel: IMAP mailboxes in, SMTP out.

Provider notes: mail is read with IMAP (``mailbox.py``: IDLE or polling, UIDVALIDITY and last UID
per mailbox, marked on the server only after ingest stored it), parsed with the standard library
(``parse.py``: charsets, nested mail, quoted replies, auto-replies, bounces), and sent with SMTP
(``send.py``: one Message-ID per outbox row, so a retried send is recognisably the same mail).
Threading is ingest's job; this module hands it the Message-IDs a mail answers and the ticket
reference in its subject.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import ssl
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import ClassVar
from urllib.parse import urlsplit

import structlog

from connectors.base import Capabilities, Connector, ConnectorContext, SendError
from connectors.email.mailbox import MailboxReader, MailboxStatus
from connectors.email.options import EmailOptions, MailboxOptions
from connectors.email.parse import Noise, ParsedMail, UnparseableMail, parse_mail
from connectors.email.send import (
    MailAttachment,
    SmtpSender,
    compose,
    mail_domain,
    message_id_for,
    outbox_id_from_message_id,
    sender_for,
)
from ingest.identity import InvalidIdentity
from ingest.model import (
    Attachment,
    Channel,
    ContactRef,
    DeliveryReport,
    DeliveryStatus,
    Identity,
    IdentityKind,
    InboundMessage,
    OutboundAttachment,
    OutboundMessage,
    RawPayload,
    SendResult,
    ThreadHints,
)

log = structlog.get_logger("meldpunt.email")

RFC822 = "message/rfc822"

Exclusive = Callable[[str, Callable[[], Awaitable[None]]], Awaitable[None]]
"""Runs the work (second argument) only while holding the lease named by the key; never ends."""

# A forward quotes someone else's thread: its In-Reply-To/References must not pull it into that
# ticket (only the ticket reference, which ingest honours for the ticket's own citizen).
_FORWARD = re.compile(r"^\s*(fwd?|doorst|wg|tr|wtr|rv)\s*:", re.IGNORECASE)


class EmailConnector(Connector):
    """Reads the configured mailboxes and sends replies by SMTP."""

    channel: ClassVar[Channel] = Channel.EMAIL
    capabilities: ClassVar[Capabilities] = Capabilities(
        can_send=True, attachments_in=True, attachments_out=True
    )

    def __init__(self, context: ConnectorContext, options: EmailOptions | None = None) -> None:
        super().__init__(context)
        self.options = options or EmailOptions()
        smtp = self.options.smtp
        self.domain = (
            mail_domain(smtp.from_address).casefold()
            if "@" in smtp.from_address
            else urlsplit(context.public_url).hostname or "meldpunt.invalid"
        )
        self._smtp = (
            SmtpSender(
                smtp,
                tls_context=ssl.create_default_context(cafile=smtp.ca_file)
                if smtp.ca_file
                else None,
                local_hostname=smtp.helo_name or None,
            )
            if smtp.configured
            else None
        )
        self._own = {
            a.casefold()
            for a in [
                self.options.smtp.from_address,
                *(d.from_address for d in self.options.departments.values()),
            ]
            if a
        }
        self.readers: list[MailboxReader] = []
        self._tasks: list[asyncio.Task[None]] = []
        # Set by the wiring before start(). False: this process does not read mail at all (a
        # web-only process). ``exclusive`` runs a mailbox's reading only while this process
        # holds the lease named by its key (``imap:<name>``), so that of several processes one
        # at a time reads each mailbox; None reads at once.
        self.read_mailboxes = True
        self.exclusive: Exclusive | None = None

    @property
    def mailboxes(self) -> list[MailboxOptions]:
        """The mailboxes with enough settings to log in."""
        return [m for m in self.options.mailboxes if m.configured]

    @property
    def disabled_reason(self) -> str | None:
        if reason := super().disabled_reason:
            return reason
        if not self.mailboxes and self._smtp is None:
            return (
                "no IMAP mailbox and no SMTP server configured "
                "(set IMAP_HOST, IMAP_USER, IMAP_PASSWORD and SMTP_HOST, SMTP_FROM)"
            )
        return None

    @property
    def can_send(self) -> bool:
        return self._smtp is not None

    async def start(self) -> None:
        for box in self.options.mailboxes:
            if not box.configured:
                log.info(
                    "mailbox disabled: settings missing",
                    mailbox=box.name,
                    missing=", ".join(box.missing),
                )
        if self._smtp is None:
            log.info(
                "e-mail sending disabled: settings missing",
                missing=", ".join(self.options.smtp.missing),
            )
        for box in self.mailboxes if self.read_mailboxes else ():
            task = asyncio.create_task(self._read_mailbox(box), name=f"imap-{box.name}")
            self._tasks.append(task)

    async def _read_mailbox(self, box: MailboxOptions) -> None:
        async def run() -> None:
            # A fresh reader each time the lease is taken: a stopped reader stays closed.
            reader = MailboxReader(
                box,
                self.context.cursors,
                self.deliver,
                max_message_bytes=self.options.max_message_bytes,
            )
            self.readers.append(reader)
            try:
                await reader.run()
            finally:
                self.readers.remove(reader)

        if self.exclusive is None:
            await run()
        else:
            await self.exclusive(f"imap:{box.name}", run)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for reader in self.readers:
            await reader.close()
        self._tasks.clear()
        self.readers.clear()

    def health(self) -> dict[str, str]:
        checks: dict[str, str] = {}
        if self.read_mailboxes and self.exclusive is not None:
            for box in self.mailboxes:
                checks[f"mailbox {box.name}"] = "not read here: another process holds its lease"
        for reader in self.readers:
            status: MailboxStatus = reader.status
            text: str = status.state
            if status.last_error:
                text += f" (failures: {status.consecutive_failures}; last: {status.last_error})"
            checks[f"mailbox {status.name}"] = text
        return checks

    async def deliver(self, raw: bytes) -> None:
        """Store one mail as received from a mailbox; returns once it is durable.

        Raises:
            IntakeUnavailable: nothing was stored; the mailbox reader leaves the mail on the
                server and tries again later.
        """
        payload = RawPayload(RFC822, raw)
        try:
            # In a worker thread: a mail with a large attachment takes a noticeable fraction of
            # a second to decode, which must not hold up webhooks and the API meanwhile.
            parsed = await asyncio.to_thread(
                parse_mail,
                raw,
                max_attachment_bytes=self.options.max_attachment_bytes,
                own_addresses=self._own,
            )
        except UnparseableMail as exc:
            external_id = f"sha256-{hashlib.sha256(raw).hexdigest()}@meldpunt.invalid"
            await self.context.intake.quarantine(self.channel, external_id, payload, str(exc))
            return
        if parsed.noise is Noise.BOUNCE:
            await self._bounced(parsed, payload)
            return
        # Our own Message-IDs carry a keyed tag: checking it, rather than the domain, keeps mail
        # from staff whose mail server shares the town's domain from looking like a loop.
        own = outbox_id_from_message_id(parsed.message_id, self.context.secret_key) is not None
        if parsed.noise is Noise.LOOP or own:
            await self.context.intake.ignore(
                self.channel,
                parsed.message_id,
                payload,
                "meldpunt's own mail came back (a mail loop or a copy of a sent message)",
            )
            return
        if not parsed.from_address:
            await self.context.intake.quarantine(
                self.channel, parsed.message_id, payload, "the mail names no sender (From)"
            )
            return
        message = await self._inbound(parsed, payload)
        try:
            await self.context.intake.submit(message)
        except InvalidIdentity as exc:
            await self.context.intake.quarantine(
                self.channel, parsed.message_id, payload, f"unusable sender address: {exc}"
            )

    async def redeliver(self, raw: RawPayload) -> None:
        await self.deliver(raw.body)

    async def _bounced(self, parsed: ParsedMail, payload: RawPayload) -> None:
        bounce = parsed.bounce
        if bounce is None or not bounce.permanent:
            # A delay notice ("still trying") changes nothing for the citizen yet.
            await self.context.intake.ignore(
                self.channel, parsed.message_id, payload, "a delivery delay notice, not a failure"
            )
            return
        detail = (
            " ".join(part for part in (bounce.status, bounce.diagnostic) if part)
            or "the receiving mail server refused the message"
        )
        matched = False
        for original in bounce.original_message_ids:
            report = DeliveryReport(
                channel=self.channel,
                provider_id=original,
                status=DeliveryStatus.FAILED,
                received_at=self.context.clock(),
                detail=detail[:1000],
                raw=payload,
            )
            matched = await self.context.intake.report_delivery(report) or matched
        if not bounce.original_message_ids:
            await self.context.intake.ignore(
                self.channel,
                parsed.message_id,
                payload,
                "a bounce that does not say which mail it is about",
            )
        elif not matched:
            log.info("bounce for mail meldpunt did not send", message_id=parsed.message_id)

    async def _inbound(self, parsed: ParsedMail, payload: RawPayload) -> InboundMessage:
        attachments = []
        for part in parsed.attachments:
            sha256 = await self.context.files.put(part.data) if part.data is not None else None
            attachments.append(
                Attachment(
                    filename=part.filename,
                    content_type=part.content_type,
                    size=part.size,
                    sha256=sha256,
                    removed_reason=part.removed_reason,
                    content_id=part.content_id,
                )
            )
        # A mail too large to import arrives as its headers plus a note from the mailbox reader.
        text = parsed.text
        answered = (
            ()
            if _FORWARD.match(parsed.subject)
            else (
                *parsed.in_reply_to,
                *parsed.references,
            )
        )
        assert parsed.from_address is not None
        return InboundMessage(
            channel=self.channel,
            external_id=parsed.message_id,
            sender=ContactRef(
                (Identity(IdentityKind.EMAIL, parsed.from_address),),
                display_name=parsed.from_name,
                language=parsed.language,
            ),
            received_at=self.context.clock(),
            text=text,
            full_text=parsed.full_text if parsed.full_text != parsed.text else None,
            raw=payload,
            subject=parsed.subject or None,
            html=parsed.html,
            attachments=tuple(attachments),
            language=parsed.language,
            hints=ThreadHints(
                message_ids=tuple(dict.fromkeys(answered)), reference=parsed.reference
            ),
            reply_address=parsed.reply_to,
            automatic=parsed.noise in (Noise.AUTO_REPLY, Noise.BULK),
        )

    async def send(self, message: OutboundMessage) -> SendResult:
        if self._smtp is None:
            raise SendError("no SMTP server is configured (SMTP_HOST, SMTP_FROM)")
        files = [await self._read(attachment) for attachment in message.attachments]
        try:
            message_id = message_id_for(message.outbox_id, self.domain, self.context.secret_key)
            mail = compose(
                message,
                sender=sender_for(self.options, message.department),
                message_id=message_id,
                town_name=self.context.town_name,
                now=self.context.clock(),
                attachments=files,
            )
        except ValueError as exc:
            # An address or setting no retry can fix: show it on the message at once.
            raise SendError(f"cannot write this mail: {exc}", permanent=True) from exc
        await self._smtp.send(mail)
        return SendResult(provider_id=message_id, status=DeliveryStatus.SENT)

    async def find_sent(
        self, message: OutboundMessage, attempt_started_at: datetime
    ) -> SendResult | None:
        """Always "send it again": SMTP cannot be asked, and a second copy is harmless.

        The mail goes out again with the same Message-ID (``message_id_for`` is derived from the
        outbox row), so the citizen's mail program treats both as one message: at worst they
        see one copy.
        """
        return None

    async def _read(self, attachment: OutboundAttachment) -> MailAttachment:
        """The bytes of one file to send, from the attachment store.

        Raises:
            SendError: permanent when the file is gone (no retry brings it back), temporary when
                it could not be read (permissions, a disk error: an operator can fix those).
        """
        files = self.context.files
        try:
            data = await files.get(attachment.sha256)
        except FileNotFoundError as exc:
            raise SendError(
                f"the attachment {attachment.filename!r} is missing from the attachment store "
                f"(expected at {files.path_for(attachment.sha256)}); "
                "the mail cannot be sent with it",
                permanent=True,
            ) from exc
        except ValueError as exc:
            raise SendError(
                f"the attachment {attachment.filename!r} has no usable file id: {exc}",
                permanent=True,
            ) from exc
        except OSError as exc:
            raise SendError(
                f"could not read the attachment {attachment.filename!r}: {exc}"
            ) from exc
        return MailAttachment(attachment.filename, attachment.content_type, data)


__all__ = ["EmailConnector"]
