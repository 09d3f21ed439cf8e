"""Turn the raw bytes of one e-mail into what meldpunt needs: who wrote, what, in which thread.

Pure and synchronous (no I/O, no clock), so the IMAP import, the SMTP intake and reprocessing
from the quarantine all share it. A damaged mail never raises: what had to be guessed is listed
in ``ParsedMail.problems``. Only bytes that are not a mail at all raise ``UnparseableMail``.

Headers are read from their raw text with our own decoding rather than the stdlib's header
classes, which raise on some malformed input and replace undecodable bytes instead of trying
another charset. The stdlib parser (``email.policy.default``) still does the MIME structure.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import enum
import hashlib
import html as html_lib
import re
import textwrap
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import errors, policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import getaddresses, parsedate_to_datetime

from inscriptis import get_text
from mailparser_reply.parser import EmailMessage as ReplyMessage

from ingest.files import safe_filename, size_in_words
from ingest.identity import InvalidIdentity, normalise_email

__all__ = [
    "BounceInfo",
    "Noise",
    "ParsedAttachment",
    "ParsedMail",
    "UnparseableMail",
    "parse_mail",
    "strip_reply",
]

# MIME levels read before the rest of a branch is skipped: real mail rarely goes past 6 (a
# forward of a forward with inline images); hostile mail goes to thousands.
MAX_DEPTH = 20
MAX_PARTS = 500
# Longest body text kept; a citizen does not write a megabyte, a pasted log might.
MAX_TEXT_CHARS = 1_000_000
# HTML beyond this is cut before conversion: inscriptis builds a whole tree in memory.
MAX_HTML_CHARS = 2_000_000
# Where reply stripping looks for the start of the quoted part. What the citizen wrote now sits
# above it, and mail-parser-reply's patterns are quadratic on long lines.
STRIP_WINDOW_CHARS = 20_000
STRIP_LINE_CHARS = 200
# Bounce and loop clues are looked for only in the first part of the text.
SCAN_CHARS = 64_000
MAX_RECEIVED = 25
MAX_PROBLEMS = 50
# store.models.Message.external_id is 255 characters; longer ids are hashed the same way
# wherever they appear, so a reply to such a mail still finds its thread.
MAX_ID_CHARS = 250
MAX_FILENAME_CHARS = 200
LANGUAGES = frozenset({"nl", "fr", "en"})
# connectors/email/send.py puts this on everything meldpunt sends.
LOOP_HEADER = "X-Meldpunt-Loop"
REPLY_LANGUAGES = ("nl", "fr", "de", "en")


class UnparseableMail(Exception):
    """The bytes are not an e-mail at all (empty, no headers); the text says why."""


class Noise(enum.StrEnum):
    """Why a mail is not a citizen writing: it is stored, but never acknowledged."""

    AUTO_REPLY = "auto_reply"
    BULK = "bulk"
    BOUNCE = "bounce"
    LOOP = "loop"


@dataclass(frozen=True, slots=True)
class ParsedAttachment:
    """A file in the mail; ``data`` is None when it was left out (``removed_reason`` says why)."""

    filename: str
    content_type: str
    data: bytes | None
    size: int
    inline: bool
    content_id: str | None
    removed_reason: str | None


@dataclass(frozen=True, slots=True)
class BounceInfo:
    """What a delivery failure report says about a mail meldpunt sent.

    ``original_message_ids`` are the Message-IDs (no angle brackets) of the mail that bounced;
    ``permanent`` is False for a delay or another temporary (4.x.x) failure.
    """

    original_message_ids: tuple[str, ...]
    recipients: tuple[str, ...]
    status: str | None
    diagnostic: str | None
    permanent: bool


@dataclass(frozen=True, slots=True)
class ParsedMail:
    """One e-mail, read. Ids have no angle brackets; addresses are case-folded addr-specs."""

    message_id: str
    from_address: str | None
    from_name: str | None
    reply_to: str | None
    to: tuple[str, ...]
    cc: tuple[str, ...]
    subject: str
    date: datetime | None
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    reference: str | None
    text: str
    full_text: str
    html: str | None
    language: str | None
    attachments: tuple[ParsedAttachment, ...]
    noise: Noise | None
    bounce: BounceInfo | None
    problems: tuple[str, ...]


def parse_mail(
    raw: bytes,
    *,
    max_attachment_bytes: int,
    own_addresses: Collection[str] = (),
    own_message_id_domain: str | None = None,
) -> ParsedMail:
    """Read one e-mail as received (RFC 5322 bytes, any line endings).

    Args:
        raw: The whole mail.
        max_attachment_bytes: Larger attachments keep their name and size but lose their data.
        own_addresses: meldpunt's own addresses: a mail from one of them is a loop.
        own_message_id_domain: The domain of the Message-IDs meldpunt makes: a mail carrying
            one as its own id is ours coming back.

    Raises:
        UnparseableMail: the bytes are empty or have no mail headers at all.
    """
    data = bytes(raw)
    if not data.strip():
        raise UnparseableMail("the message is empty")
    problems = _Problems()
    message = _parse_structure(data, problems)
    headers = _Headers(message)
    if not headers.names & _MAIL_HEADERS:
        raise UnparseableMail("no e-mail headers found: these bytes are not a mail")

    from_pairs = _address_pairs(headers.first("from"), "From", problems)
    from_address, from_name = _first_address(from_pairs, "From", problems)
    if headers.first("from") is None:
        problems.add("the mail has no From header")
    reply_to, _ = _first_address(
        _address_pairs(headers.first("reply-to"), "Reply-To", problems), "Reply-To", problems
    )
    subject = _clean_line(_decode_header(headers.first("subject") or "", problems))
    message_id = _own_id(headers.first("message-id"), data, problems)
    date = _date(headers.first("date"), problems)

    reader = _BodyReader(max_attachment_bytes, problems)
    body = reader.read(message)
    full_text = _join_texts(body.texts, problems)
    html = "\n".join(h for h in body.htmls if h.strip()) or None
    report_type = _report_type(message)

    in_reply_to = _ids(" ".join(headers.all("in-reply-to")))
    references = _ids(" ".join(headers.all("references")))
    # A bounce that quotes no headers may still answer the mail it is about; the rest of
    # References is the thread before it, which was delivered.
    bounced = in_reply_to or references[-1:]
    bounce = _bounce(headers, from_pairs, subject, report_type, reader, full_text, bounced)
    checks: tuple[tuple[Noise, bool], ...] = (
        # In order of precedence: a bounce must reach the outbox row it is about, and our own
        # mail coming back matters more than whatever else it looks like.
        (Noise.BOUNCE, bounce is not None),
        (
            Noise.LOOP,
            _is_loop(headers, from_address, message_id, own_addresses, own_message_id_domain),
        ),
        (Noise.AUTO_REPLY, _is_auto_reply(headers, subject, report_type)),
        (Noise.BULK, _is_bulk(headers)),
    )
    noise = next((kind for kind, hit in checks if hit), None)

    return ParsedMail(
        message_id=message_id,
        from_address=from_address,
        from_name=from_name,
        reply_to=reply_to,
        to=_all_addresses(headers, "to", problems),
        cc=_all_addresses(headers, "cc", problems),
        subject=subject,
        date=date,
        in_reply_to=in_reply_to,
        references=references,
        reference=_reference(subject),
        text=strip_reply(full_text),
        full_text=full_text,
        html=html,
        language=_language(headers.first("content-language")) or reader.language,
        attachments=tuple(body.attachments),
        noise=noise,
        bounce=bounce,
        problems=problems.as_tuple(),
    )


# --- structure ---------------------------------------------------------------------------------

# At least one of these makes bytes a mail; random text that happens to parse has none.
# fmt: off
_MAIL_HEADERS = frozenset({
    "from", "sender", "to", "cc", "subject", "date", "message-id", "received", "return-path",
    "mime-version", "content-type", "reply-to", "delivered-to", "in-reply-to", "references",
})
# fmt: on


class _Problems:
    """Defects noticed, in plain words, each once, in the order they were found."""

    def __init__(self) -> None:
        self._seen: dict[str, None] = {}

    def add(self, words: str) -> None:
        if len(self._seen) < MAX_PROBLEMS:
            self._seen.setdefault(words, None)

    def as_tuple(self) -> tuple[str, ...]:
        return tuple(self._seen)


def _parse_structure(data: bytes, problems: _Problems) -> EmailMessage:
    parser = BytesParser(policy=policy.default)
    try:
        return parser.parsebytes(data)
    except RecursionError:
        problems.add("the MIME structure is nested too deeply to read: the body is raw text")
    except Exception as exc:  # the stdlib parser has crash bugs on hostile input
        problems.add(
            f"the MIME structure could not be read ({type(exc).__name__}): the body is raw text"
        )
    try:
        return parser.parsebytes(data, headersonly=True)
    except Exception as exc:
        raise UnparseableMail(f"not even the headers could be read ({type(exc).__name__})") from exc


class _Headers:
    """The header fields of one part as sent: unfolded, not yet decoded, names in lower case."""

    def __init__(self, part: Message) -> None:
        self.fields = [
            (str(name).strip().lower(), _unfold(str(value))) for name, value in part.raw_items()
        ]
        self.names = frozenset(name for name, _ in self.fields)

    def first(self, name: str) -> str | None:
        return next((value for key, value in self.fields if key == name), None)

    def all(self, name: str) -> list[str]:
        return [value for key, value in self.fields if key == name]

    def count(self, name: str) -> int:
        return sum(1 for key, _ in self.fields if key == name)


def _unfold(value: str) -> str:
    # RFC 5322 unfolding drops the line break and keeps the whitespace after it.
    return value.replace("\r", "").replace("\n", "").strip()


# --- header values -----------------------------------------------------------------------------

_SURROGATES = re.compile("[\udc80-\udcff]+")
_ENCODED_WORD = re.compile(r"=\?([^?\s*]+)(?:\*[^?\s]*)?\?([bBqQ])\?([^?\s]*)\?=")
_QP_ESCAPE = re.compile(rb"=([0-9A-Fa-f]{2})")
_WHITESPACE = re.compile(r"\s+")
_CONTROL = {
    **dict.fromkeys(c for c in range(32) if c not in (9, 10)),
    **dict.fromkeys(range(0x7F, 0xA0)),
    0xFEFF: None,
}


def _fix_8bit(value: str, problems: _Problems | None = None) -> str:
    """Raw 8-bit bytes in a header (the parser keeps them as surrogates) read as text."""

    def decode(run: re.Match[str]) -> str:
        return _bytes_to_text(
            run.group().encode("ascii", "surrogateescape"), None, "a header", problems
        )

    return _SURROGATES.sub(decode, value)


def _decode_header(value: str, problems: _Problems) -> str:
    """RFC 2047 encoded words decoded with the same charset fallbacks as bodies."""
    value = _fix_8bit(value, problems)
    if "=?" not in value:
        return value
    pieces: list[str | tuple[bytes, str]] = []
    last = 0
    for match in _ENCODED_WORD.finditer(value):
        gap = value[last : match.start()]
        # Whitespace between two encoded words is folding, not text (RFC 2047 section 6.2).
        if last == 0 or gap.strip():
            pieces.append(gap)
        word = _decode_word(match, problems)
        previous = pieces[-1] if pieces else None
        if isinstance(word, tuple) and isinstance(previous, tuple) and previous[1] == word[1]:
            # Joined before decoding: senders split multi-byte characters over two words.
            pieces[-1] = (previous[0] + word[0], word[1])
        else:
            pieces.append(word)
        last = match.end()
    pieces.append(value[last:])
    return "".join(
        p if isinstance(p, str) else _bytes_to_text(p[0], p[1], "a header", problems)
        for p in pieces
    )


def _decode_word(match: re.Match[str], problems: _Problems) -> str | tuple[bytes, str]:
    charset, encoding, text = match.group(1), match.group(2).lower(), match.group(3)
    if encoding == "q":
        raw = text.replace("_", " ").encode("utf-8")
        return _QP_ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), raw), charset
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4)), charset
    except (binascii.Error, ValueError):
        problems.add("a header has a broken base64 encoded word: it was kept as is")
        return match.group()


def _clean_line(value: str) -> str:
    return _WHITESPACE.sub(" ", value.translate(_CONTROL)).strip()


def _address_pairs(value: str | None, name: str, problems: _Problems) -> list[tuple[str, str]]:
    """(display name, addr-spec) pairs, display names decoded, addresses as written."""
    if not value:
        return []
    value = _fix_8bit(value, problems)
    # Split before decoding: a decoded display name may hold commas or angle brackets.
    pairs = _getaddresses(value)
    if not any("@" in addr for _, addr in pairs) and "=?" in value:
        # Some senders encode the whole "Name <address>" as one encoded word.
        pairs = _getaddresses(_decode_header(value, problems))
    result: list[tuple[str, str]] = []
    for display, addr in pairs:
        display = _clean_line(_decode_header(display, problems)).strip("'\" ")
        addr = addr.strip().strip("<>").strip()
        if addr or display:
            result.append((display, addr))
    if not result:
        problems.add(f"the {name} header holds no address: {_clean_line(value)[:80]!r}")
    return result


def _getaddresses(value: str) -> list[tuple[str, str]]:
    try:
        return getaddresses([value])
    except Exception:  # an old, lenient parser, but never trusted with hostile input
        return []


def _first_address(
    pairs: list[tuple[str, str]], name: str, problems: _Problems
) -> tuple[str | None, str | None]:
    for display, addr in pairs:
        if "@" not in addr:
            continue
        try:
            return normalise_email(addr), display or None
        except InvalidIdentity:
            problems.add(f"the {name} address {addr[:80]!r} is not usable")
    if not pairs:
        return None, None
    problems.add(f"the {name} header holds no usable address")
    return None, pairs[0][0] or None


def _all_addresses(headers: _Headers, name: str, problems: _Problems) -> tuple[str, ...]:
    found: dict[str, None] = {}
    label = name.capitalize()
    for value in headers.all(name):
        for _, addr in _address_pairs(value, label, problems):
            try:
                found.setdefault(normalise_email(addr), None)
            except InvalidIdentity:
                if addr:
                    problems.add(f"ignored an unusable {label} address: {addr[:80]!r}")
    return tuple(found)


_ANGLED_ID = re.compile(r"<([^<>\s]+)>")


def _ids(value: str) -> tuple[str, ...]:
    """Message-IDs without brackets, in order, each once; bare ids when nobody used brackets."""
    found = _ANGLED_ID.findall(value)
    if not found:
        found = [token for token in value.split() if "@" in token]
    return tuple(dict.fromkeys(_fit_id(i) for i in found if i))


def _fit_id(message_id: str) -> str:
    if len(message_id) <= MAX_ID_CHARS and message_id.isascii() and message_id.isprintable():
        return message_id
    digest = hashlib.sha256(message_id.encode("utf-8", "surrogateescape")).hexdigest()
    return f"sha256-{digest}@meldpunt.invalid"


def _own_id(value: str | None, raw: bytes, problems: _Problems) -> str:
    ids = _ids(value or "")
    if ids:
        return ids[0]
    problems.add(
        "the mail has no usable Message-ID: its id is a hash of the whole mail"
        if value is None or not value.strip()
        else f"the Message-ID {value[:80]!r} is not usable: its id is a hash of the whole mail"
    )
    # A hash of the bytes, so importing the same mail twice still finds the duplicate.
    return f"sha256-{hashlib.sha256(raw).hexdigest()}@meldpunt.invalid"


def _date(value: str | None, problems: _Problems) -> datetime | None:
    if value is None:
        problems.add("the mail has no Date header")
        return None
    try:
        parsed = parsedate_to_datetime(_fix_8bit(value))
    except (TypeError, ValueError, IndexError, OverflowError):
        problems.add(f"the Date header {value[:60]!r} is not a date")
        return None
    # "-0000" means "zone unknown" and gives a naive datetime: UTC is the honest reading.
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


_REFERENCE = re.compile(r"\[([A-Za-z0-9]{1,10}-[0-9]{6,})\]")


def _reference(subject: str) -> str | None:
    match = _REFERENCE.search(subject)
    return match.group(1) if match else None


def _language(value: str | None) -> str | None:
    if not value:
        return None
    primary = value.split(",")[0].strip().split("-")[0].split("_")[0].lower()
    return primary if primary in LANGUAGES else None


# --- charsets ----------------------------------------------------------------------------------

# Labels that mail clients put on text without checking. The WHATWG encoding standard reads
# ASCII and Latin-1 as Windows-1252, which adds the euro sign and curly quotes Outlook uses.
_WESTERN = frozenset({"ascii", "iso8859-1", "iso8859-15", "cp1252", "latin-1"})
_AS_CP1252 = frozenset({"ascii", "iso8859-1", "latin-1"})
# Names mailers use that Python does not know, and codecs that are not character sets.
_CHARSET_ALIASES = {"iso-8859-8-i": "iso-8859-8", "x-mac-roman": "mac-roman", "utf8mb4": "utf-8"}
_NOT_CHARSETS = frozenset({"unicode-escape", "raw-unicode-escape", "punycode", "idna", "undefined"})


def _codec(label: str) -> str | None:
    name = label.strip().strip("\"'").lower()
    name = _CHARSET_ALIASES.get(name, name)
    try:
        codec = codecs.lookup(name).name
    except (LookupError, ValueError, TypeError):
        return None
    try:
        b"a".decode(codec)
    except LookupError:
        return None  # a bytes-to-bytes codec such as base64 or rot13, not a charset
    except (UnicodeError, ValueError):
        pass  # a real charset that needs more than one byte
    return None if codec.replace("_", "-") in _NOT_CHARSETS else codec


def _bytes_to_text(
    data: bytes, declared: str | None, where: str, problems: _Problems | None
) -> str:
    """Decode ``data``: declared charset, then UTF-8, then Windows-1252 with replacement."""
    if data.isascii():
        return data.decode("ascii")
    codec = _codec(declared) if declared else None
    if declared and codec is None and problems is not None:
        problems.add(f"unknown charset {declared[:40]!r} in {where}: read as UTF-8 or Windows-1252")
    if codec is None or codec in _WESTERN:
        # Valid UTF-8 beyond ASCII is practically never an accident, whatever the label says.
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            if codec is not None and problems is not None:
                problems.add(f"{where} says {declared} but is UTF-8")
            return text
        if codec in _AS_CP1252:
            codec = "cp1252"
    if codec is not None:
        try:
            return data.decode(codec)
        except (UnicodeDecodeError, LookupError):
            if problems is not None:
                problems.add(f"{where} is not valid {declared}: read as UTF-8 or Windows-1252")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


# --- bodies and attachments --------------------------------------------------------------------


@dataclass
class _Body:
    """What one MIME branch contributed, so multipart/alternative can choose between branches."""

    texts: list[str] = field(default_factory=list)
    htmls: list[str] = field(default_factory=list)
    attachments: list[ParsedAttachment] = field(default_factory=list)
    from_plain: bool = False  # some of ``texts`` is text/plain as the sender's client wrote it

    @property
    def has_text(self) -> bool:
        return any(t.strip() for t in self.texts)


_SIGNATURE_TYPES = frozenset(
    {"application/pkcs7-signature", "application/x-pkcs7-signature", "application/pgp-signature"}
)
_EMBEDDED_TYPES = frozenset({"message/rfc822", "message/global"})
_KNOWN_TRANSFER_ENCODINGS = frozenset(
    {"7bit", "8bit", "binary", "base64", "quoted-printable", "x-uuencode", "uuencode", "x-uue"}
)
_EXTENSIONS = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/gif": ".gif",
    "image/webp": ".webp",
    "image/heic": ".heic",
    "image/bmp": ".bmp",
    "image/tiff": ".tif",
    "application/pdf": ".pdf",
    "text/plain": ".txt",
    "text/html": ".html",
    "text/calendar": ".ics",
    "text/csv": ".csv",
    "message/rfc822": ".eml",
    "application/zip": ".zip",
    "audio/mpeg": ".mp3",
    "video/mp4": ".mp4",
    "application/msword": ".doc",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ".docx",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ".xlsx",
}
_DEFECT_WORDS: dict[type[errors.MessageDefect], str] = {
    errors.CloseBoundaryNotFoundDefect: (
        "a multipart section has no closing boundary (the mail may be cut off)"
    ),
    errors.StartBoundaryNotFoundDefect: (
        "the multipart boundary never occurs: the body was read as plain text"
    ),
    errors.NoBoundaryInMultipartDefect: (
        "a multipart section has no boundary parameter: it was read as plain text"
    ),
    errors.FirstHeaderLineIsContinuationDefect: "the first header line is indented",
    errors.MisplacedEnvelopeHeaderDefect: "an mbox 'From ' line sits among the headers",
    errors.MissingHeaderBodySeparatorDefect: (
        "a header line has no colon: what follows was read as body"
    ),
    errors.MultipartInvariantViolationDefect: "a multipart section holds no parts",
    errors.InvalidMultipartContentTransferEncodingDefect: (
        "a multipart section has a transfer encoding other than 7bit, 8bit or binary"
    ),
    errors.InvalidBase64PaddingDefect: "broken base64 (bad padding)",
    errors.InvalidBase64CharactersDefect: "broken base64 (characters outside the alphabet)",
    errors.InvalidBase64LengthDefect: "broken base64 (cut off mid-character)",
}


class _BodyReader:
    """Walks the MIME tree once, with a depth and part limit, collecting texts and files."""

    def __init__(self, max_attachment_bytes: int, problems: _Problems) -> None:
        self.max_attachment_bytes = max_attachment_bytes
        self.problems = problems
        self.parts = 0
        self.files = 0
        self.language: str | None = None
        self.delivery_status: list[dict[str, str]] = []
        self.returned_ids: list[str] = []

    def read(self, message: Message) -> _Body:
        body = _Body()
        self._visit(message, body, depth=0, parent="")
        return body

    def _visit(
        self, part: Message, body: _Body, *, depth: int, parent: str, resource: bool = False
    ) -> None:
        if depth > MAX_DEPTH:
            self.problems.add(f"MIME parts nested deeper than {MAX_DEPTH} levels were skipped")
            return
        self.parts += 1
        if self.parts > MAX_PARTS:
            self.problems.add(f"more than {MAX_PARTS} MIME parts: the rest were skipped")
            return
        content_type = _content_type(part)
        try:
            self._dispatch(part, content_type, body, depth, parent, resource)
        except Exception as exc:  # one broken part must not cost the rest of the mail
            self.problems.add(
                f"a {content_type} part could not be read ({type(exc).__name__}): it was skipped"
            )
        for defect in part.defects:
            words = _DEFECT_WORDS.get(type(defect))
            if words is None and isinstance(defect, errors.ObsoleteHeaderDefect):
                continue  # obsolete but readable syntax, not worth a staff member's attention
            self.problems.add(words or f"MIME defect: {type(defect).__name__}")

    def _dispatch(
        self,
        part: Message,
        content_type: str,
        body: _Body,
        depth: int,
        parent: str,
        resource: bool,
    ) -> None:
        if content_type in _EMBEDDED_TYPES:
            self._embedded(part, content_type, body, depth, returned=parent == "multipart/report")
        elif content_type == "message/delivery-status":
            self._delivery_status(part)
        elif content_type == "text/rfc822-headers":
            returned = BytesParser(policy=policy.default).parsebytes(
                _payload_bytes(part), headersonly=True
            )
            self.returned_ids.extend(_ids(_Headers(returned).first("message-id") or ""))
        elif content_type == "message/disposition-notification" or content_type in _SIGNATURE_TYPES:
            return  # read receipts and signatures carry nothing for staff
        elif part.is_multipart():
            children = list(_children(part))
            if content_type == "multipart/alternative":
                self._alternative(children, body, depth, content_type)
            elif content_type == "multipart/related":
                self._related(part, children, body, depth, content_type)
            else:
                for child in children:
                    self._visit(child, body, depth=depth + 1, parent=content_type)
        else:
            self._leaf(part, content_type, body, resource)

    def _alternative(
        self, children: list[Message], body: _Body, depth: int, content_type: str
    ) -> None:
        branches: list[_Body] = []
        for child in children:
            branch = _Body()
            self._visit(child, branch, depth=depth + 1, parent=content_type)
            branches.append(branch)
        # Plain text is what the sender typed; otherwise the last (richest) version that reads.
        chosen = next((b for b in branches if b.from_plain and b.has_text), None) or next(
            (b for b in reversed(branches) if b.has_text), None
        )
        if chosen is not None:
            body.texts.extend(chosen.texts)
            body.from_plain = body.from_plain or chosen.from_plain
        seen = {_attachment_key(a) for a in body.attachments}
        for branch in branches:
            body.htmls.extend(branch.htmls)
            for attachment in branch.attachments:
                if _attachment_key(attachment) not in seen:
                    seen.add(_attachment_key(attachment))
                    body.attachments.append(attachment)

    def _related(
        self, part: Message, children: list[Message], body: _Body, depth: int, content_type: str
    ) -> None:
        if not children:
            return
        start = _clean_id(str(part.get_param("start", "") or ""))
        root = next((c for c in children if start and _content_id(c) == start), children[0])
        for child in children:
            # The root is the document; the other parts are what it shows (images, styles).
            resource = child is not root
            self._visit(child, body, depth=depth + 1, parent=content_type, resource=resource)

    def _embedded(
        self, part: Message, content_type: str, body: _Body, depth: int, *, returned: bool
    ) -> None:
        payload = part.get_payload()
        inner = payload[0] if isinstance(payload, list) and payload else None
        if not isinstance(inner, Message):
            self.problems.add(f"an attached {content_type} message is empty")
            return
        headers = _Headers(inner)
        if returned:
            # The mail a bounce returns is ours: its id matters, its text and files do not.
            self.returned_ids.extend(_ids(headers.first("message-id") or ""))
            return
        nested = _Body()
        self._visit(inner, nested, depth=depth + 1, parent=content_type)
        intro = _forward_intro(headers, self.problems)
        body.texts.append("\n\n".join([intro, *(t for t in nested.texts if t.strip())]))
        body.attachments.extend(nested.attachments)

    def _delivery_status(self, part: Message) -> None:
        payload = part.get_payload()
        if isinstance(payload, list):
            blocks = [dict(_Headers(b).fields) for b in payload if isinstance(b, Message)]
        else:
            blocks = _field_blocks(_bytes_to_text(_payload_bytes(part), None, "", None))
        self.delivery_status.extend(blocks)

    def _leaf(self, part: Message, content_type: str, body: _Body, resource: bool) -> None:
        disposition = _disposition(part)
        filename = _filename(part, self.problems)
        readable = content_type in ("text/plain", "text/html") or content_type.startswith(
            "multipart/"  # declared multipart but unreadable as one: its raw text is all we have
        )
        if readable and not resource and disposition != "attachment" and filename is None:
            text = self._text(part, content_type)
            if content_type == "text/html":
                body.htmls.append(text)
                body.texts.append(_html_to_text(text, self.problems))
            else:
                body.texts.append(_tidy(text))
                body.from_plain = True
            if self.language is None:
                self.language = _language(_Headers(part).first("content-language"))
            return
        body.attachments.append(
            self._attachment(part, content_type, disposition, filename, resource)
        )

    def _text(self, part: Message, content_type: str) -> str:
        self._check_transfer_encoding(part)
        charset = part.get_content_charset()
        where = f"a {content_type} part"
        text = _bytes_to_text(_payload_bytes(part), charset, where, self.problems)
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        if content_type == "text/plain" and str(part.get_param("format", "")).lower() == "flowed":
            text = _unflow(text, delsp=str(part.get_param("delsp", "")).lower() == "yes")
        return text

    def _attachment(
        self,
        part: Message,
        content_type: str,
        disposition: str | None,
        filename: str | None,
        resource: bool,
    ) -> ParsedAttachment:
        self._check_transfer_encoding(part)
        data = _payload_bytes(part)
        self.files += 1
        name = filename or f"bijlage-{self.files}{_EXTENSIONS.get(content_type, '')}"
        size = len(data)
        too_large = size > self.max_attachment_bytes
        return ParsedAttachment(
            filename=name,
            content_type=content_type if len(content_type) <= 127 else "application/octet-stream",
            data=None if too_large else data,
            size=size,
            inline=disposition == "inline" or (resource and disposition != "attachment"),
            content_id=_content_id(part),
            removed_reason=(
                f"te groot: {size_in_words(size)} "
                f"(maximum {size_in_words(self.max_attachment_bytes)})"
                if too_large
                else None
            ),
        )

    def _check_transfer_encoding(self, part: Message) -> None:
        encoding = _Headers(part).first("content-transfer-encoding")
        if encoding and encoding.strip().lower() not in _KNOWN_TRANSFER_ENCODINGS:
            self.problems.add(f"unknown transfer encoding {encoding[:40]!r}: read as is")


def _content_type(part: Message) -> str:
    try:
        content_type = part.get_content_type()
    except Exception:  # a hostile Content-Type: the RFC default is the sensible reading
        return "text/plain"
    return content_type[:255]


def _children(part: Message) -> Iterator[Message]:
    payload = part.get_payload()
    if isinstance(payload, list):
        yield from (child for child in payload if isinstance(child, Message))


def _disposition(part: Message) -> str | None:
    try:
        return part.get_content_disposition()
    except Exception:  # unreadable: treat as if absent
        return None


def _filename(part: Message, problems: _Problems) -> str | None:
    """The sender's file name (RFC 2231 or encoded words), without any folder part."""
    try:
        name = part.get_filename()
    except Exception:  # broken RFC 2231 continuations
        problems.add("an attachment's file name could not be read")
        return None
    if name is None:
        return None
    return safe_filename(_decode_header(str(name), problems), limit=MAX_FILENAME_CHARS) or None


def _clean_id(value: str) -> str | None:
    return value.strip().strip("<>").strip() or None


def _content_id(part: Message) -> str | None:
    value = _Headers(part).first("content-id")
    return _clean_id(_fix_8bit(value)) if value else None


def _payload_bytes(part: Message) -> bytes:
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""


def _attachment_key(attachment: ParsedAttachment) -> tuple[str, str, int, str | None]:
    return attachment.filename, attachment.content_type, attachment.size, attachment.content_id


_FORWARD_FIELDS = (("Van", "from"), ("Datum", "date"), ("Onderwerp", "subject"), ("Aan", "to"))


def _forward_intro(headers: _Headers, problems: _Problems) -> str:
    lines = ["---------- Doorgestuurd bericht ----------"]
    for label, name in _FORWARD_FIELDS:
        value = headers.first(name)
        if value:
            lines.append(f"{label}: {_clean_line(_decode_header(value, problems))}")
    return "\n".join(lines)


def _field_blocks(text: str) -> list[dict[str, str]]:
    """``Name: value`` blocks separated by blank lines (a delivery-status body the parser left)."""
    blocks: list[dict[str, str]] = []
    for chunk in re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n")):
        fields: dict[str, str] = {}
        last = ""
        for line in chunk.split("\n"):
            if line[:1] in (" ", "\t") and last:
                fields[last] += " " + line.strip()
            elif ":" in line:
                name, _, value = line.partition(":")
                last = name.strip().lower()
                fields.setdefault(last, value.strip())
        if fields:
            blocks.append(fields)
    return blocks


_TAG = re.compile(r"<[^>]*>")


def _html_to_text(html: str, problems: _Problems) -> str:
    if len(html) > MAX_HTML_CHARS:
        problems.add(
            f"the HTML body is longer than {MAX_HTML_CHARS:,} characters: only the start "
            "was converted to text"
        )
        html = html[:MAX_HTML_CHARS]
    try:
        text = get_text(html)
    except Exception as exc:  # lxml refuses some inputs; a crude reading beats none
        problems.add(f"the HTML body could not be converted ({type(exc).__name__})")
        text = html_lib.unescape(_TAG.sub(" ", html))
    # Whitespace between block tags comes out as an indent on every line.
    return textwrap.dedent(_tidy(text))


def _tidy(text: str) -> str:
    """One newline style, no control characters or trailing spaces, at most one blank line."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").translate(_CONTROL)
    lines: list[str] = []
    for line in text.split("\n"):
        line = line.rstrip()
        if line or (lines and lines[-1]):
            lines.append(line)
    return "\n".join(lines).strip("\n")


def _unflow(text: str, *, delsp: bool) -> str:
    """Join the soft line breaks of format=flowed text (RFC 3676): Apple Mail and Thunderbird."""
    out: list[str] = []
    pending: str | None = None
    pending_depth = 0
    for line in text.split("\n"):
        depth = len(line) - len(line.lstrip(">"))
        content = line[depth:]
        if content.startswith(" "):
            content = content[1:]  # space-stuffing
        flowed = content.endswith(" ") and content != "-- "
        if flowed and delsp:
            content = content[:-1]
        if pending is not None and depth != pending_depth:
            out.append(_quoted(pending, pending_depth))
            pending = None
        pending = content if pending is None else pending + content
        pending_depth = depth
        if not flowed:
            out.append(_quoted(pending, depth))
            pending = None
    if pending is not None:
        out.append(_quoted(pending, pending_depth))
    return "\n".join(out)


def _quoted(line: str, depth: int) -> str:
    return f"{'>' * depth} {line}" if depth else line


def _join_texts(texts: list[str], problems: _Problems) -> str:
    text = _tidy("\n\n".join(t for t in texts if t.strip()))
    if len(text) > MAX_TEXT_CHARS:
        problems.add(f"the text is longer than {MAX_TEXT_CHARS:,} characters: the rest was cut")
        text = text[:MAX_TEXT_CHARS]
    return text


# --- noise -------------------------------------------------------------------------------------

_AUTO_SUBJECT = re.compile(
    r"\s*(?:automatisch(?:e)? (?:antwoord|bericht)|automatic reply|auto[- ]?reply|r[ée]ponse "
    r"automatique|automatische antwort|abwesenheitsnotiz|out of office auto ?reply"
    r"|(?:afwezig(?:heidsmelding|heidsbericht)?|out of (?:the )?office|absent|abwesend)\s*(?::|$))",
    re.IGNORECASE,
)
_BOUNCE_SUBJECT = re.compile(
    r"undelivered mail|delivery status notification|onbestelbaar|non remis|mail delivery failed"
    r"|undeliverable|returned mail|delivery failure|failure notice|unzustellbar|niet bezorgd"
    r"|niet afgeleverd|delivery has failed|not delivered|could not be delivered|delivery delayed"
    r"|warning: message .{0,80} delayed",
    re.IGNORECASE,
)
_DELAY = re.compile(r"delay|vertraagd|retard|verzögert", re.IGNORECASE)
_DAEMONS = frozenset({"mailer-daemon", "mailer_daemon", "mailerdaemon", "postmaster"})
_DAEMON_NAMES = frozenset({"mail delivery system", "mail delivery subsystem"})
_STATUS = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")
_MESSAGE_ID_LINE = re.compile(r"^[ \t>]*Message-ID:[ \t]*<([^<>\s]+)>", re.I | re.M)


def _report_type(message: Message) -> str | None:
    if _content_type(message) != "multipart/report":
        return None
    try:
        value = message.get_param("report-type")
    except Exception:  # unreadable parameter: an unknown report
        return None
    return str(value).strip().lower() if isinstance(value, str) else None


def _bounce(
    headers: _Headers,
    from_pairs: list[tuple[str, str]],
    subject: str,
    report_type: str | None,
    reader: _BodyReader,
    full_text: str,
    thread_ids: tuple[str, ...],
) -> BounceInfo | None:
    daemon = any(
        addr.split("@")[0].casefold() in _DAEMONS or name.casefold() in _DAEMON_NAMES
        for name, addr in from_pairs
    )
    failed_header = headers.first("x-failed-recipients")
    null_sender = (headers.first("return-path") or "").strip() == "<>"
    machine = daemon or failed_header is not None or null_sender
    if report_type != "delivery-status" and not (machine and _BOUNCE_SUBJECT.search(subject)):
        return None

    per_recipient = [
        b for b in reader.delivery_status if {"final-recipient", "original-recipient"} & b.keys()
    ]
    failed = [b for b in per_recipient if b.get("action", "").lower() == "failed"] or per_recipient
    recipients = [
        _dsn_address(b.get("final-recipient") or b.get("original-recipient") or "")
        for b in per_recipient
    ]
    if not any(recipients) and failed_header:
        recipients = [_dsn_address(a) for a in failed_header.split(",")]

    first = failed[0] if failed else {}
    status_match = _STATUS.search(first.get("status", ""))
    diagnostic = first.get("diagnostic-code")
    if diagnostic:
        diagnostic = _clean_line(diagnostic.split(";", 1)[-1])[:500] or None
    if status_match is None:
        status_match = _STATUS.search(diagnostic or "") or _STATUS.search(full_text[:SCAN_CHARS])
    status = status_match.group(1) if status_match else None
    action = first.get("action", "").strip().lower()
    if status is not None:
        permanent = status.startswith("5")
    elif action:
        permanent = action == "failed"
    else:
        permanent = not _DELAY.search(subject)

    original = (
        tuple(dict.fromkeys(reader.returned_ids))
        or thread_ids
        or _ids(" ".join(f"<{i}>" for i in _MESSAGE_ID_LINE.findall(full_text[:SCAN_CHARS])))
    )
    return BounceInfo(
        original_message_ids=original,
        recipients=tuple(dict.fromkeys(r for r in recipients if r)),
        status=status,
        diagnostic=diagnostic,
        permanent=permanent,
    )


def _dsn_address(value: str) -> str:
    """``rfc822; Jan@Example.be`` (DSN) or ``<jan@example.be>`` as a case-folded address."""
    address = value.split(";", 1)[-1].strip().strip("<>").strip()
    try:
        return normalise_email(address)
    except InvalidIdentity:
        return address.casefold()


def _is_loop(
    headers: _Headers,
    from_address: str | None,
    message_id: str,
    own_addresses: Collection[str],
    own_message_id_domain: str | None,
) -> bool:
    own = {a.strip().casefold() for a in own_addresses}
    if from_address is not None and from_address in own:
        return True
    domain = message_id.rpartition("@")[2].casefold()
    if own_message_id_domain and domain == own_message_id_domain.strip().casefold():
        return True
    return LOOP_HEADER.lower() in headers.names or headers.count("received") > MAX_RECEIVED


def _is_auto_reply(headers: _Headers, subject: str, report_type: str | None) -> bool:
    submitted = (headers.first("auto-submitted") or "no").split(";")[0].strip().lower()
    suppress_value = headers.first("x-auto-response-suppress") or ""
    suppress = {token.strip().lower() for token in suppress_value.split(",")}
    precedence = (headers.first("precedence") or "").strip().lower()
    return (
        submitted != "no"
        or bool({"x-autoreply", "x-autorespond"} & headers.names)
        or bool({"all", "oof", "autoreply"} & suppress)
        or precedence == "auto_reply"
        or report_type == "disposition-notification"  # a read receipt
        or _AUTO_SUBJECT.match(subject) is not None
    )


def _is_bulk(headers: _Headers) -> bool:
    precedence = (headers.first("precedence") or "").strip().lower()
    return precedence in {"bulk", "junk", "list"} or bool(
        {"list-id", "list-unsubscribe"} & headers.names
    )


# --- reply stripping ---------------------------------------------------------------------------

# "Op ma 16 nov 2026 om 10:12 schreef Naam <adres>:" and its cousins. A time and a date are
# required, so a citizen's own "Op 3 november schreef ik u:" is left alone.
_ATTRIBUTION_START = re.compile(r"(?:op|on|le|am)\s", re.IGNORECASE)
_ATTRIBUTION = re.compile(
    r"(?=.*\b\d{1,2}[:.h]\d{2}\b)(?=.*(?:\b(?:19|20)\d{2}\b|\b\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}\b))"
    r"(?:op\s.{1,150}?\sschreef\b.{0,250}"  # Gmail, Thunderbird, Outlook mobile (nl)
    r"|op\s.{1,150}?\sheeft\s.{1,250}?\shet\svolgende\sgeschreven\s?"  # Apple Mail (nl)
    r"|le\s.{1,150}?\sa\s[ée]crit\s?"  # Gmail, Apple Mail, Thunderbird (fr)
    r"|on\s.{1,250}?\swrote\s?"  # Gmail, Apple Mail, Thunderbird (en)
    r"|am\s.{1,150}?\sschrieb\b.{0,250}"  # (de)
    r"):",
    re.IGNORECASE,
)
_OUTLOOK_FROM = re.compile(r"\*?(?:van|from|de|von|afzender|exp[ée]diteur)\s*\*?\s*:\*?\s*\S", re.I)
_OUTLOOK_FIELD = re.compile(
    r"\*?(?:verzonden|sent|envoy[ée]|gesendet|datum|date|aan|to|à|a|an|onderwerp|subject|objet"
    r"|betreff|cc|bcc)\s*\*?\s*:",
    re.IGNORECASE,
)
_SEPARATOR = re.compile(
    r"-{2,}\s*(?:original message|oorspronkelijk bericht|origineel bericht|message d'origine"
    r"|message original|ursprüngliche nachricht|forwarded message|doorgestuurd bericht"
    r"|message transféré|weitergeleitete nachricht)\s*-{2,}"
    r"|begin (?:forwarded message|doorgestuurd bericht)\s*:|début du message réexpédié\s*:",
    re.IGNORECASE,
)
_MOBILE_FOOTER = re.compile(
    r"(?:verzonden|verstuurd) (?:vanaf|vanuit|van|met|via) (?:mijn|m'n|m’n) .{1,40}"
    r"|(?:verzonden|verstuurd) (?:vanaf|vanuit|met|via) (?:outlook|mail|yahoo|gmail)\b.{0,40}"
    r"|envoy[ée] (?:de|depuis|à partir de|avec) (?:mon|ma) .{1,40}"
    r"|envoy[ée] (?:de|depuis|avec|via) (?:outlook|mail|yahoo|gmail|l['’]application)\b.{0,40}"
    r"|sent (?:from|with|via|using) (?:my|the) .{1,40}"
    r"|sent (?:from|with|via) (?:outlook|mail|yahoo|gmail)\b.{0,40}"
    r"|(?:get|download|ontvang|downloaden?) outlook (?:for|voor|pour) (?:ios|android).{0,20}"
    r"|(?:gesendet|versendet) (?:von|mit) (?:meinem|meiner|der) .{1,40}"
    r"|von meinem .{1,30} gesendet",
    re.IGNORECASE,
)
_RULE = re.compile(r"[-_=*~\s]{5,}")
_BARE_ATTRIBUTION = re.compile(
    r".{1,200}(?:wrote|schreef|geschreven|a [ée]crit|schrieb)\s?:", re.IGNORECASE
)


def strip_reply(text: str) -> str:
    """What the sender wrote now: ``text`` without the quoted mail below it and the signature.

    mail-parser-reply finds the reply headers it knows (Outlook blocks in several languages,
    "On ... wrote:"); our own patterns add what it misses, such as Gmail's and Apple Mail's
    Dutch attribution lines, French Outlook's no-break spaces and mobile footers. Its signature
    rules are not used: they cut real answers that open with "Dank u," or "Thanks,", and lists.
    When nothing would be left, the whole text is returned.
    """
    lines = text.split("\n")
    window = _window(lines)
    cut = _first_cut(lines, window)
    header = _library_cut(lines[:window])
    kept = lines[: cut if header is None else min(cut, header)]
    end = len(kept)
    while end and (not kept[end - 1].strip() or kept[end - 1].lstrip().startswith(">")):
        end -= 1
    quoted = any(line.lstrip().startswith(">") for line in kept[end:])
    if quoted and end and _BARE_ATTRIBUTION.fullmatch(kept[end - 1].strip()):
        end -= 1  # a bare "Jan wrote:" over a bottom quote, without the date our patterns need
    kept = kept[:end]
    while kept and (not kept[-1].strip() or _RULE.fullmatch(kept[-1])):
        kept.pop()
    reply = "\n".join(kept).strip()
    return reply or text


def _window(lines: list[str]) -> int:
    total = 0
    for index, line in enumerate(lines):
        total += len(line) + 1
        if total > STRIP_WINDOW_CHARS:
            return index
    return len(lines)


def _first_cut(lines: list[str], window: int) -> int:
    for index in range(window):
        bare = lines[index].strip()
        if not bare or bare.startswith(">"):
            continue  # a quote in the middle is context for an answer below it
        if (
            bare == "--"  # the signature separator "-- ", its space lost to trimming
            or _SEPARATOR.fullmatch(bare)
            or _MOBILE_FOOTER.fullmatch(bare)
            or (_ATTRIBUTION_START.match(bare) and _attribution_at(lines, index))
            or (_OUTLOOK_FROM.match(bare) and _outlook_block_at(lines, index))
        ):
            return index
    return len(lines)


def _attribution_at(lines: list[str], index: int) -> bool:
    # Gmail wraps a long attribution line, often inside the address: try up to three lines.
    joined = lines[index].strip()
    for following in lines[index + 1 : index + 3]:
        if _ATTRIBUTION.fullmatch(joined):
            return True
        if not following.strip() or len(joined) > 400:
            return False
        joined = f"{joined} {following.strip()}"
    return _ATTRIBUTION.fullmatch(joined) is not None


def _outlook_block_at(lines: list[str], index: int) -> bool:
    """A "From:" line followed closely by at least two more header lines (Sent, To, Subject)."""
    following = [line.strip() for line in lines[index + 1 : index + 12] if line.strip()][:5]
    return sum(1 for line in following if _OUTLOOK_FIELD.match(line)) >= 2 and bool(
        following and _OUTLOOK_FIELD.match(following[0])
    )


def _library_cut(lines: list[str]) -> int | None:
    """The first line mail-parser-reply takes for a reply header, if any."""
    # Lines are trimmed as the library does itself, shortened (its patterns are quadratic per
    # line) and rule lines blanked (it deletes some), so its offsets map to our line numbers.
    view = "\n".join(
        "" if _RULE.fullmatch(line) else line.strip()[:STRIP_LINE_CHARS] for line in lines
    )
    message = ReplyMessage(text=view, languages=list(REPLY_LANGUAGES))
    if message.text != view:
        return None
    for match in message.HEADER_REGEX.finditer(view):
        found = match.group()
        if found.strip():
            start = match.start() + len(found) - len(found.lstrip())
            return view.count("\n", 0, start)
    return None
