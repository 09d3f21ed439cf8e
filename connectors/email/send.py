"""Outgoing e-mail: turn an outbound message into a threaded MIME mail and hand it to SMTP.

``compose`` is pure (no clock, no I/O: the caller reads attachment bytes and hands them in) and
``message_id_for`` is deterministic, so a send retried after a crash carries the same Message-ID
and the receiving side can tell it is a duplicate.
``SmtpSender`` turns every SMTP failure into a ``SendError`` that says whether a retry can help.

SMTP quirks this relies on (RFC 5321 §4.2): a 4xx reply means "try again later" (greylisting
answers RCPT with 450/451 on the first attempt), a 5xx reply is final. Servers usually hide AUTH
until the connection is encrypted, so a login against a plain connection reports "not supported".
"""

from __future__ import annotations

import base64
import contextlib
import email.policy
import email.utils
import hashlib
import hmac
import html
import re
import ssl
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from typing import NamedTuple

import aiosmtplib
import nh3
import structlog

from connectors.base import SendError
from connectors.email.options import EmailOptions, SmtpOptions
from connectors.email.parse import LOOP_HEADER
from ingest.files import media_type, safe_filename
from ingest.model import OutboundMessage

log = structlog.get_logger("meldpunt.email")

TICKET_HEADER = "X-Meldpunt-Ticket"

# Mail clients keep the thread root and the most recent ancestors when References grows long
# (RFC 5322 §3.6.4 leaves the trimming to them); the root keeps threading intact.
REFERENCES_KEEP_LAST = 10

_TAG_LENGTH = 8
_OUR_MESSAGE_ID = re.compile(r"mp\.(\d{1,19})\.([a-z2-7]+)@[^\s@<>]+")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_URL = re.compile(r"\bhttps?://[^\s<>\"]+", re.IGNORECASE)
# Sentence punctuation right after a link belongs to the sentence, not to the address.
_URL_TRAILING = ".,;:!?'\")]}»"
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n+")

# SMTP reply codes that are about our login, not about the message: fixing the credentials lets
# the same message go out, so they must never fail it for good.
_AUTH_CODES = frozenset({530, 534, 535, 538})
# 552 on MAIL FROM answers the SIZE we announced: this message is too large for the server.
_TOO_LARGE = 552


@dataclass(frozen=True, slots=True)
class SenderIdentity:
    """Who a mail is from and where answers to it should go."""

    from_address: str
    from_name: str | None = None
    reply_to: str | None = None


class MailAttachment(NamedTuple):
    """A file to attach to a mail: the name the citizen sees, its media type and its bytes."""

    filename: str
    content_type: str
    data: bytes


def sender_for(options: EmailOptions, department: str | None) -> SenderIdentity:
    """The From and Reply-To for a reply by ``department``.

    Each field of a configured department overrides the town's SMTP identity on its own, so a
    department may set only a Reply-To and keep the central From.

    Raises:
        ValueError: no From address is configured at all.
    """
    smtp = options.smtp
    own = options.departments.get(department) if department else None
    from_address = (own.from_address if own else None) or smtp.from_address
    if not from_address:
        raise ValueError("no From address: set channels.email.smtp.from_address")
    return SenderIdentity(
        from_address=from_address,
        from_name=(own.from_name if own else None) or smtp.from_name or None,
        reply_to=own.reply_to if own else None,
    )


def mail_domain(address: str) -> str:
    """The domain part of an e-mail address, e.g. for ``message_id_for``."""
    domain = address.strip().rpartition("@")[2]
    if not domain:
        raise ValueError(f"not an e-mail address: {address!r}")
    return domain


def message_id_for(outbox_id: int, domain: str, secret: bytes) -> str:
    """The Message-ID of the mail for one outbox row, without angle brackets.

    Deterministic, so a retried send carries the same id; the short HMAC tag keeps ids of other
    rows unguessable, so nobody can forge a reply or bounce that matches a row they never saw.

    Raises:
        ValueError: a negative id, an empty secret or a domain that cannot be in a Message-ID.
    """
    if outbox_id < 0:
        raise ValueError(f"outbox id must not be negative: {outbox_id}")
    if not secret:
        raise ValueError("an empty secret would make Message-IDs guessable")
    return f"mp.{outbox_id}.{_tag(outbox_id, secret)}@{_ascii_domain(domain).lower()}"


def outbox_id_from_message_id(message_id: str, secret: bytes) -> int | None:
    """The outbox row a Message-ID made by ``message_id_for`` belongs to, or None.

    For the intake side: a reply or bounce that names one of our ids can be tied to its row. Ids
    with a wrong tag (forged, or from another installation) give None.
    """
    match = _OUR_MESSAGE_ID.fullmatch(_strip_brackets(message_id))
    if match is None or not secret:
        return None
    outbox_id = int(match.group(1))
    if not hmac.compare_digest(match.group(2), _tag(outbox_id, secret)):
        return None
    return outbox_id


def _tag(outbox_id: int, secret: bytes) -> str:
    digest = hmac.new(secret, f"message-id:{outbox_id}".encode(), hashlib.sha256).digest()
    return base64.b32encode(digest).decode("ascii")[:_TAG_LENGTH].lower()


def compose(
    message: OutboundMessage,
    *,
    sender: SenderIdentity,
    message_id: str,
    town_name: str,
    now: datetime,
    attachments: Sequence[MailAttachment] = (),
) -> EmailMessage:
    """Build the mail for ``message``: threaded, with a text and an HTML alternative.

    With ``attachments`` the mail is multipart/mixed: the alternative first, then the files in
    the order given.

    Args:
        message: What to send; ``recipient`` is a bare e-mail address.
        sender: From and Reply-To, see ``sender_for``.
        message_id: Our id for this mail (see ``message_id_for``), without angle brackets. Its
            domain also goes in ``X-Meldpunt-Loop``, so intake recognises the mail if it returns.
        town_name: Used in the default subject.
        now: The Date header; must be timezone-aware.
        attachments: The bytes of the files in ``message.attachments``, read by the caller.

    Raises:
        ValueError: an address, the Message-ID or an attachment's name or media type cannot be
            put in a mail header.
    """
    if now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    own_id = _clean_id(message_id)
    if own_id is None or "@" not in own_id:
        raise ValueError(f"not a usable Message-ID: {message_id!r}")
    subject = _subject(message, town_name)

    mail = EmailMessage(policy=email.policy.default)
    mail["From"] = _address(sender.from_address, sender.from_name, "From")
    mail["To"] = _address(message.recipient, None, "recipient")
    if sender.reply_to:
        mail["Reply-To"] = _address(sender.reply_to, None, "Reply-To")
    mail["Date"] = email.utils.format_datetime(now)
    mail["Message-ID"] = f"<{own_id}>"
    parents = _clean_ids(message.in_reply_to)
    if parents:
        mail["In-Reply-To"] = f"<{parents[-1]}>"
    chain = _reference_chain(message.references, message.in_reply_to, own_id)
    if chain:
        mail["References"] = " ".join(f"<{i}>" for i in chain)
    mail["Subject"] = subject
    if message.automatic:
        # RFC 3834: robots must not answer this, and Outlook/Exchange out-of-office replies
        # honour only their own header.
        mail["Auto-Submitted"] = "auto-replied"
        mail["X-Auto-Response-Suppress"] = "All"
    mail[LOOP_HEADER] = own_id.rpartition("@")[2]
    if message.ticket_reference:
        mail[TICKET_HEADER] = message.ticket_reference

    text = _normalise_text(message.text)
    body = _sanitised(message.html) if message.html else html_from_text(text)
    # Quoted-printable keeps both parts 7-bit: readable for Dutch text and safe for a server
    # that does not offer 8BITMIME.
    mail.set_content(text, subtype="plain", charset="utf-8", cte="quoted-printable")
    mail.add_alternative(
        _html_document(body, subject), subtype="html", charset="utf-8", cte="quoted-printable"
    )
    for attachment in attachments:
        _attach(mail, attachment)
    return mail


def _attach(mail: EmailMessage, attachment: MailAttachment) -> None:
    # Checked again here, where the header is written: a name with a line break or a container
    # type would break the mail whatever path it came by.
    filename = safe_filename(attachment.filename)
    if not filename:
        raise ValueError(f"not a usable attachment file name: {attachment.filename!r}")
    content_type = media_type(attachment.content_type)
    if content_type is None:
        raise ValueError(f"not a usable attachment media type: {attachment.content_type!r}")
    maintype, _, subtype = content_type.partition("/")
    # Base64 keeps any bytes 7-bit. The policy writes a non-ASCII name as RFC 2231
    # (filename*=utf-8''...), split over continuation lines when long.
    mail.add_attachment(attachment.data, maintype, subtype, filename=filename, cte="base64")


def html_from_text(text: str) -> str:
    """A plain text as an HTML fragment: escaped, paragraphs, line breaks and clickable links."""
    paragraphs = [p for p in _PARAGRAPH_BREAK.split(_normalise_text(text).strip()) if p.strip()]
    return "\n".join(
        '<p style="margin:0 0 1em 0;">'
        + "<br>\n".join(_linkify(line) for line in paragraph.split("\n"))
        + "</p>"
        for paragraph in paragraphs
    )


def _linkify(line: str) -> str:
    parts: list[str] = []
    position = 0
    for match in _URL.finditer(line):
        url = _trim_url(match.group())
        end = match.start() + len(url)
        parts.append(html.escape(line[position : match.start()]))
        parts.append(
            f'<a href="{html.escape(url, quote=True)}" style="color:#0b5cab;">'
            f"{html.escape(url)}</a>"
        )
        position = end
    parts.append(html.escape(line[position:]))
    return "".join(parts)


def _trim_url(url: str) -> str:
    while url and url[-1] in _URL_TRAILING:
        # Keep a closing parenthesis that belongs to the address (Wikipedia-style links).
        if url[-1] == ")" and url.count("(") >= url.count(")"):
            break
        url = url[:-1]
    return url


def _sanitised(markup: str) -> str:
    # Staff HTML comes from a rich-text editor fed by pasted content: keep formatting, drop
    # scripts, handlers and anything else a mail client could run.
    return str(nh3.clean(markup))


def _html_document(body: str, title: str) -> str:
    # Inline styles only: many mail clients drop <style> blocks and never load external CSS.
    return (
        "<!DOCTYPE html>\n"
        '<html><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title></head>\n"
        '<body style="margin:0;padding:16px;background-color:#ffffff;">\n'
        '<div style="max-width:640px;font-family:Arial,Helvetica,sans-serif;font-size:15px;'
        'line-height:1.5;color:#1f1f1f;">\n'
        f"{body}\n"
        "</div>\n</body></html>\n"
    )


def _subject(message: OutboundMessage, town_name: str) -> str:
    # Header values must be one line; staff may paste a subject with a line break in it.
    subject = " ".join((message.subject or "").split())
    if not subject:
        subject = f"Uw bericht aan {' '.join(town_name.split())}"
    reference = message.ticket_reference
    if not reference:
        return subject
    tag = f"[{reference}]"
    if tag not in subject:
        return f"{subject} {tag}"
    # Keep the first tag only: "Re: ... [ref]" answered again must not grow "[ref] [ref]".
    head, _, tail = subject.partition(tag)
    return " ".join(f"{head}{tag}{tail.replace(tag, '')}".split())


def _normalise_text(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text if text.endswith("\n") else text + "\n"


def _address(address: str, display_name: str | None, role: str) -> Address:
    local, at, domain = address.strip().rpartition("@")
    if not (local and at and domain):
        raise ValueError(f"the {role} address is not an e-mail address: {address!r}")
    try:
        return Address(
            display_name=" ".join((display_name or "").split()),
            addr_spec=f"{local}@{_ascii_domain(domain)}",
        )
    except (ValueError, IndexError) as exc:
        # The header parser raises IndexError on some malformed input ("jan@"), not ValueError.
        raise ValueError(f"the {role} address is not usable: {address!r} ({exc})") from exc


def _ascii_domain(domain: str) -> str:
    domain = domain.strip().rstrip(".")
    if not domain.isascii():
        # An internationalised domain needs SMTPUTF8 unless it is written in its A-label form.
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise ValueError(f"not a valid domain: {domain!r}") from exc
    if not _DOMAIN.fullmatch(domain):
        raise ValueError(f"not a valid domain: {domain!r}")
    return domain


def _strip_brackets(value: str) -> str:
    value = value.strip()
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1].strip()
    return value


def _clean_id(value: str) -> str | None:
    """A message id without brackets, or None when it cannot be written into a header."""
    value = _strip_brackets(value)
    if not value or not value.isascii() or not value.isprintable():
        return None
    if any(c in value for c in "<> \t"):
        return None
    return value


def _clean_ids(values: Iterable[str]) -> list[str]:
    return [i for i in (_clean_id(v) for v in values) if i is not None]


def _reference_chain(references: Iterable[str], in_reply_to: Iterable[str], own: str) -> list[str]:
    chain = list(dict.fromkeys(i for i in _clean_ids([*references, *in_reply_to]) if i != own))
    if len(chain) > REFERENCES_KEEP_LAST + 1:
        chain = [chain[0], *chain[-REFERENCES_KEEP_LAST:]]
    return chain


class SmtpConnection:
    """An open (and, when configured, logged-in) SMTP session; several mails may share it."""

    def __init__(self, client: aiosmtplib.SMTP, envelope_from: str, server: str) -> None:
        self._client = client
        self._envelope_from = envelope_from
        self._server = server

    async def send(self, mail: EmailMessage) -> None:
        """Hand one mail to the server.

        Raises:
            SendError: permanent when the server refused this mail for good (5xx on the
                recipient or the content), temporary otherwise.
        """
        recipients = _envelope_recipients(mail)
        if not recipients:
            raise SendError("the mail has no recipient", permanent=True)
        try:
            _, reply = await self._client.send_message(
                mail, sender=self._envelope_from, recipients=recipients
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refusals = exc.recipients
            permanent = bool(refusals) and all(_final(r.code) for r in refusals)
            said = "; ".join(f"{r.code} {r.message}" for r in refusals)
            raise SendError(
                f"the mail server {self._server} refused the recipient: {said}",
                permanent=permanent,
            ) from exc
        except aiosmtplib.SMTPSenderRefused as exc:
            # Refusing our own From is a setting to fix, after which this very mail can go out;
            # only "too large" is about the message itself.
            raise SendError(
                f"the mail server {self._server} refused the sender {exc.sender}: "
                f"{exc.code} {exc.message}"
                + ("" if exc.code == _TOO_LARGE else "; check channels.email.smtp.from_address"),
                permanent=exc.code == _TOO_LARGE,
            ) from exc
        except aiosmtplib.SMTPResponseException as exc:
            raise SendError(
                f"the mail server {self._server} refused the message: {exc.code} {exc.message}",
                permanent=_final(exc.code) and exc.code not in _AUTH_CODES,
            ) from exc
        except aiosmtplib.SMTPNotSupported as exc:
            # Only raised here for an address that needs SMTPUTF8 the server lacks.
            raise SendError(
                f"the mail server {self._server} cannot take this mail: {exc.message}",
                permanent=True,
            ) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            # Disconnects and time-outs: nobody knows whether the server kept the mail, and the
            # same Message-ID lets the receiving side spot a duplicate if it did.
            raise SendError(
                f"lost the connection to the mail server {self._server}: {_describe(exc)}"
            ) from exc
        except ValueError as exc:
            # aiosmtplib refuses addresses that would break the SMTP command line.
            raise SendError(f"the mail cannot be sent: {exc}", permanent=True) from exc
        log.info("mail accepted", message_id=mail["Message-ID"], server=self._server, reply=reply)


class SmtpSender:
    """Sends mails through the configured SMTP server, one connection per send.

    ``connect`` opens a session that several mails can share, for a batch later on.
    """

    def __init__(
        self,
        options: SmtpOptions,
        *,
        tls_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
    ) -> None:
        """Prepare a sender; nothing connects until the first send.

        Args:
            options: Server, TLS mode, login and time-out.
            tls_context: Certificate checks to use instead of the system's trusted roots, e.g.
                a context that trusts a relay's own certificate.
            local_hostname: The name to greet with (EHLO); defaults to this host's FQDN.
        """
        self._options = options
        self._tls_context = tls_context
        self._local_hostname = local_hostname

    @property
    def server(self) -> str:
        """``host:port`` as used in error messages."""
        return f"{self._options.host}:{self._options.effective_port}"

    async def send(self, mail: EmailMessage) -> None:
        """Connect, hand ``mail`` over and say goodbye.

        Raises:
            SendError: see ``SmtpConnection.send``; failing to connect or log in is temporary.
        """
        async with self.connect() as connection:
            await connection.send(mail)

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[SmtpConnection]:
        """An open session for one or more ``SmtpConnection.send`` calls, closed on exit.

        Raises:
            SendError: always temporary: an unreachable server, a failed TLS handshake or a
                refused login do not make the message undeliverable.
        """
        options = self._options
        if not options.configured:
            raise SendError(
                "SMTP is not configured: set channels.email.smtp " + ", ".join(options.missing)
            )
        client = aiosmtplib.SMTP(
            hostname=options.host,
            port=options.effective_port,
            timeout=options.timeout_seconds,
            use_tls=options.tls == "ssl",
            start_tls=options.tls == "starttls",
            tls_context=self._tls_context,
            local_hostname=self._local_hostname,
        )
        try:
            await self._open(client)
        except BaseException:
            client.close()
            raise
        try:
            yield SmtpConnection(client, options.from_address, self.server)
        except BaseException:
            # Interrupted (an error or a cancelled send): drop the line instead of waiting for
            # a polite QUIT that may never be answered.
            client.close()
            raise
        await _quit(client)

    async def _open(self, client: aiosmtplib.SMTP) -> None:
        options = self._options
        try:
            await client.connect()
        except aiosmtplib.SMTPResponseException as exc:
            # A greeting, EHLO or STARTTLS answered with an error code.
            raise SendError(
                f"the mail server {self.server} refused the connection: {exc.code} {exc.message}"
            ) from exc
        except OSError as exc:
            # Refused, unreachable, timed out, hung up or an untrusted certificate.
            raise SendError(
                f"could not reach the mail server {self.server} "
                f"(tls {options.tls}): {_describe(exc)}"
            ) from exc
        except aiosmtplib.SMTPException as exc:
            # E.g. STARTTLS required but not offered: never fall back to sending in the clear.
            raise SendError(
                f"could not set up a session with the mail server {self.server}: "
                f"{_describe(exc)}; check channels.email.smtp.tls"
            ) from exc
        if not options.user:
            return
        try:
            # AUTH is an ESMTP extension: only the EHLO answer says whether the server offers it.
            if client.is_ehlo_or_helo_needed:
                await client.ehlo()
            if not client.supports_extension("auth"):
                raise SendError(
                    f"the mail server {self.server} offers no login (AUTH) on this connection: "
                    "check channels.email.smtp.tls, or leave SMTP_USER empty for a relay "
                    "that needs none"
                )
            await client.login(options.user, options.password.get_secret_value())
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise SendError(
                f"SMTP login failed for user {options.user} on {self.server}: "
                f"check SMTP_USER/SMTP_PASSWORD (server said {exc.code} {exc.message})"
            ) from exc
        except aiosmtplib.SMTPResponseException as exc:
            raise SendError(
                f"SMTP login for user {options.user} on {self.server} failed: "
                f"{exc.code} {exc.message}"
            ) from exc
        except OSError as exc:
            # Includes aiosmtplib's disconnect and time-out errors.
            raise SendError(
                f"lost the connection to the mail server {self.server} while logging in: "
                f"{_describe(exc)}"
            ) from exc
        except aiosmtplib.SMTPException as exc:
            # E.g. no authentication method both sides know.
            raise SendError(
                f"SMTP login for user {options.user} on {self.server} failed: {_describe(exc)}"
            ) from exc


async def _quit(client: aiosmtplib.SMTP) -> None:
    try:
        await client.quit()
    except (aiosmtplib.SMTPException, OSError):
        # Every mail on this session was already accepted; a server that hangs up instead of
        # answering QUIT changes nothing about them.
        client.close()


def _envelope_recipients(mail: EmailMessage) -> list[str]:
    recipients: list[str] = []
    for name in ("To", "Cc", "Bcc"):
        for header in mail.get_all(name, []):
            recipients.extend(a.addr_spec for a in header.addresses)
    return recipients


def _final(code: int) -> bool:
    return 500 <= code < 600


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
