"""connectors/email/send.py: composing replies, and sending them to a real local SMTP server.

The server is aiosmtpd started inside the test's loop (RECIPES, pitfall 7); handlers answer like
real servers do (greylisting, unknown user, spam refusal), and a raw asyncio server plays the
ones that hang up or never answer.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword

from connectors.base import SendError
from connectors.email.options import DepartmentSender, EmailOptions, SmtpOptions, TlsMode
from connectors.email.send import (
    MailAttachment,
    SenderIdentity,
    SmtpSender,
    compose,
    message_id_for,
    outbox_id_from_message_id,
    sender_for,
)
from ingest.model import Channel, OutboundMessage
from tests.conftest import free_port, unavailable
from tests.connectors.email.conftest import Recorder, Start

SECRET = b"test-secret-key"
NOW = datetime(2026, 11, 16, 10, 12, tzinfo=UTC)
TOWN = "Gemeente Wingene"
REFERENCE = "1750-000001"
FROM_ADDRESS = "meldpunt@wingene.example"
FROM_NAME = "Contactpunt 1750 – Gemeente Wingene"
CITIZEN = "jan.peeters@example.be"
USER = "meldpunt"
PASSWORD = "juist-wachtwoord"

CENTRAL = SenderIdentity(from_address=FROM_ADDRESS, from_name=FROM_NAME, reply_to=None)
REPLY_TEXT = (
    "Beste meneer Peeters,\n"
    "\n"
    "De losliggende stoeptegel in de Kerkstraat wordt deze week hersteld.\n"
    "Meer info: https://www.wingene.example/werken?straat=kerkstraat&week=47.\n"
    "\n"
    "Met vriendelijke groeten,\n"
    "Élodie Vandenbroucke – dienst Wegen (« ça marche »)\n"
)


def outbound(**changes: Any) -> OutboundMessage:
    values: dict[str, Any] = {
        "outbox_id": 42,
        "channel": Channel.EMAIL,
        "recipient": CITIZEN,
        "text": REPLY_TEXT,
        "subject": "Re: Losliggende stoeptegel",
        "ticket_reference": REFERENCE,
        "in_reply_to": ("CAB+citizen-2@mail.example.be",),
        "references": ("CAB+citizen-1@mail.example.be", "mp.7.abcdefgh@wingene.example"),
    }
    values.update(changes)
    return OutboundMessage(**values)


def composed(
    message: OutboundMessage | None = None,
    *,
    files: Sequence[MailAttachment] = (),
    **changes: Any,
) -> EmailMessage:
    message = message or outbound(**changes)
    return compose(
        message,
        sender=CENTRAL,
        message_id=message_id_for(message.outbox_id, "wingene.example", SECRET),
        town_name=TOWN,
        now=NOW,
        attachments=files,
    )


def smtp_options(port: int, tls: TlsMode = "none", **login: str) -> SmtpOptions:
    return SmtpOptions.model_validate(
        {
            "host": "127.0.0.1",
            "port": port,
            "tls": tls,
            "from_address": FROM_ADDRESS,
            "from_name": FROM_NAME,
            "timeout_seconds": 5,
            **login,
        }
    )


def sender(port: int, tls: TlsMode = "none", **kwargs: Any) -> SmtpSender:
    login = {k: kwargs.pop(k) for k in ("user", "password") if k in kwargs}
    return SmtpSender(smtp_options(port, tls, **login), local_hostname="client.test", **kwargs)


def parse(raw: bytes) -> EmailMessage:
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def accept_only(login: bytes, password: bytes) -> Callable[..., AuthResult]:
    def authenticate(
        server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == login
            and auth_data.password == password
        )
        # handled=False: aiosmtpd itself answers 535 to a refused login.
        return AuthResult(success=ok, handled=False)

    return authenticate


@pytest.fixture
async def start_raw() -> AsyncIterator[Callable[..., Awaitable[int]]]:
    """Starts a bare TCP server running ``talk`` per connection, for misbehaving servers."""
    servers: list[asyncio.Server] = []
    writers: list[asyncio.StreamWriter] = []

    async def start(
        talk: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
    ) -> int:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writers.append(writer)
            await talk(reader, writer)

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        servers.append(server)
        port: int = server.sockets[0].getsockname()[1]
        return port

    yield start
    for writer in writers:
        writer.close()
    for server in servers:
        server.close()
        await server.wait_closed()


@dataclass(frozen=True, slots=True)
class Certificate:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context

    def client_context(self) -> ssl.SSLContext:
        # Trust exactly this certificate; hostname checking stays on (it names 127.0.0.1).
        return ssl.create_default_context(cafile=str(self.cert))


@pytest.fixture
def certificate(tmp_path: Path) -> Certificate:
    openssl = shutil.which("openssl")
    if openssl is None:
        unavailable("the TLS tests need the openssl command (Debian: apt-get install openssl)")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return Certificate(cert, key)


# --- compose -------------------------------------------------------------------------------


@pytest.mark.parametrize("automatic", [False, True])
async def test_a_composed_reply_round_trips_through_a_real_smtp_server(
    start_smtp: Start, automatic: bool
) -> None:
    handler = Recorder()
    port = await start_smtp(handler)
    message_id = message_id_for(42, "wingene.example", SECRET)

    await sender(port).send(composed(outbound(automatic=automatic)))

    [got] = handler.received
    assert got.mail_from == FROM_ADDRESS
    assert got.rcpt_tos == [CITIZEN]
    # Everything is 7-bit on the wire, so no relay on the way can mangle the accents.
    assert got.raw.isascii()
    mail = parse(got.raw)
    assert mail["Message-ID"] == f"<{message_id}>"
    assert mail["In-Reply-To"] == "<CAB+citizen-2@mail.example.be>"
    assert mail["References"].split() == [
        "<CAB+citizen-1@mail.example.be>",
        "<mp.7.abcdefgh@wingene.example>",
        "<CAB+citizen-2@mail.example.be>",
    ]
    assert mail["Subject"] == f"Re: Losliggende stoeptegel [{REFERENCE}]"
    assert mail["From"].addresses[0].display_name == FROM_NAME
    assert mail["From"].addresses[0].addr_spec == FROM_ADDRESS
    assert mail["To"] == CITIZEN
    assert "Reply-To" not in mail
    assert mail["Date"].datetime == NOW
    assert mail["X-Meldpunt-Loop"] == "wingene.example"
    assert mail["X-Meldpunt-Ticket"] == REFERENCE
    if automatic:
        assert mail["Auto-Submitted"] == "auto-replied"
        assert mail["X-Auto-Response-Suppress"] == "All"
    else:
        assert "Auto-Submitted" not in mail
        assert "X-Auto-Response-Suppress" not in mail

    assert mail.get_content_type() == "multipart/alternative"
    plain = mail.get_body(preferencelist=("plain",))
    rich = mail.get_body(preferencelist=("html",))
    assert plain is not None
    assert rich is not None
    # Lines travel as CRLF (RFC 5322); the parser keeps them in a decoded body.
    assert plain.get_content().replace("\r\n", "\n") == REPLY_TEXT
    page = rich.get_content()
    assert "Élodie Vandenbroucke – dienst Wegen (« ça marche »)" in page
    assert '<a href="https://www.wingene.example/werken?straat=kerkstraat&amp;week=47"' in page
    assert "week=47</a>.</p>" in page


async def test_the_raw_bytes_the_server_got_parse_back_to_what_was_composed(
    start_smtp: Start,
) -> None:
    handler = Recorder()
    port = await start_smtp(handler)
    mail = composed(subject="Vraag over « l'été » – ça va?", text="Één\r\ntwee\n")

    await sender(port).send(mail)

    got = parse(handler.received[0].raw)
    assert got["Subject"] == f"Vraag over « l'été » – ça va? [{REFERENCE}]"
    for header in ("From", "To", "Message-ID", "In-Reply-To", "References", "Date"):
        assert str(got[header]) == str(mail[header])
    plain = got.get_body(preferencelist=("plain",))
    assert plain is not None
    assert plain.get_content() == "Één\r\ntwee\r\n"


@pytest.mark.parametrize(
    ("subject", "reference", "expected"),
    [
        (None, REFERENCE, f"Uw bericht aan {TOWN} [{REFERENCE}]"),
        (None, None, f"Uw bericht aan {TOWN}"),
        ("Lamp kapot", REFERENCE, f"Lamp kapot [{REFERENCE}]"),
        (f"Re: We hebben uw bericht ontvangen [{REFERENCE}]", REFERENCE, None),
        (f"[{REFERENCE}] Re: Lamp [{REFERENCE}] kapot", REFERENCE, f"[{REFERENCE}] Re: Lamp kapot"),
        ("Lamp\r\n  kapot", REFERENCE, f"Lamp kapot [{REFERENCE}]"),
        ("   ", REFERENCE, f"Uw bericht aan {TOWN} [{REFERENCE}]"),
    ],
)
def test_the_subject_carries_the_ticket_reference_exactly_once(
    subject: str | None, reference: str | None, expected: str | None
) -> None:
    mail = composed(subject=subject, ticket_reference=reference)
    assert mail["Subject"] == (expected or subject)
    if reference:
        assert mail["Subject"].count(f"[{reference}]") == 1
        assert mail["X-Meldpunt-Ticket"] == reference
    else:
        assert "X-Meldpunt-Ticket" not in mail


def test_references_are_deduplicated_and_capped_to_the_root_and_the_last_ten() -> None:
    chain = tuple(f"<id{n}@mail.example.be>" for n in range(15))
    mail = composed(references=(*chain, "id3@mail.example.be", "kapot id"), in_reply_to=("id20@x",))

    root, *last_ten = mail["References"].split()
    assert root == "<id0@mail.example.be>"
    assert last_ten == [*(f"<id{n}@mail.example.be>" for n in range(6, 15)), "<id20@x>"]
    assert mail["In-Reply-To"] == "<id20@x>"


def test_a_first_message_has_no_threading_headers() -> None:
    mail = composed(in_reply_to=(), references=())
    assert "In-Reply-To" not in mail
    assert "References" not in mail


def test_the_generated_html_escapes_text_and_links_only_web_addresses() -> None:
    text = (
        "Zie <b>dit</b> & https://a.example/x_(y).\n\njavascript:alert(1) of (http://b.example/p)"
    )
    mail = composed(text=text)
    rich = mail.get_body(preferencelist=("html",))
    assert rich is not None
    page = rich.get_content()

    assert "&lt;b&gt;dit&lt;/b&gt; &amp;" in page
    assert '<a href="https://a.example/x_(y)"' in page
    assert '<a href="http://b.example/p"' in page
    assert "http://b.example/p</a>)" in page
    assert page.count("<p ") == 2
    assert "javascript:alert(1) of" in page
    assert 'href="javascript' not in page
    assert "<script" not in page
    assert "src=" not in page


def test_staff_html_is_sanitised_and_used_instead_of_the_generated_part() -> None:
    markup = '<p onclick="steal()">Hallo <strong>Jan</strong></p><script>steal()</script>'
    mail = composed(text="Hallo Jan", html=markup)
    rich = mail.get_body(preferencelist=("html",))
    plain = mail.get_body(preferencelist=("plain",))
    assert rich is not None
    assert plain is not None

    page = rich.get_content()
    assert "<p>Hallo <strong>Jan</strong></p>" in page
    assert "script" not in page
    assert "onclick" not in page
    assert plain.get_content() == "Hallo Jan\n"


FILES = (
    MailAttachment(
        "Plan van de herstelling – Kerkstraat (één blad, « définitif »).pdf",
        "application/pdf",
        b"%PDF-1.7\n" + bytes(range(256)) * 4,
    ),
    MailAttachment("foto.jpg", "image/jpeg", b"\xff\xd8\xff\xe0" + bytes(range(255, -1, -1))),
)


def test_attachments_follow_the_text_with_their_names_and_bytes_intact() -> None:
    raw = composed(files=FILES).as_bytes()
    # RFC 2231: the accented name travels percent-encoded UTF-8, split over continuation lines.
    assert raw.isascii()
    assert re.search(rb"filename\*(0\*)?=utf-8''Plan%20van%20de%20herstelling%20%E2%80%93", raw)

    mail = parse(raw)
    assert mail.get_content_type() == "multipart/mixed"
    alternative, *files = mail.iter_parts()
    assert alternative.get_content_type() == "multipart/alternative"
    plain = mail.get_body(preferencelist=("plain",))
    assert plain is not None
    assert plain.get_content().replace("\r\n", "\n") == REPLY_TEXT
    assert [
        (f.get_content_disposition(), f.get_filename(), f.get_content_type(), f.get_content())
        for f in files
    ] == [("attachment", f.filename, f.content_type, f.data) for f in FILES]


def test_an_attachment_name_cannot_add_a_header() -> None:
    sneaky = MailAttachment("rapport.pdf\r\nBcc: evil@x.example", "application/pdf", b"%PDF")
    mail = parse(composed(files=[sneaky]).as_bytes())
    assert "Bcc" not in mail
    [attachment] = mail.iter_attachments()
    assert attachment.get_filename() == "rapport.pdfBcc evil@x.example"


@pytest.mark.parametrize(
    "attachment",
    [
        MailAttachment("..", "application/pdf", b"%PDF"),
        MailAttachment("brief.pdf", "pdf", b"%PDF"),
        MailAttachment("brief.eml", "message/rfc822", b"Subject: x\r\n\r\n"),
    ],
)
def test_compose_refuses_an_attachment_it_cannot_name_or_type(attachment: MailAttachment) -> None:
    with pytest.raises(ValueError, match="attachment"):
        composed(files=[attachment])


def test_a_department_reply_to_is_set() -> None:
    identity = SenderIdentity(FROM_ADDRESS, FROM_NAME, "wegen@wingene.example")
    mail = compose(outbound(), sender=identity, message_id="x.1@w.example", town_name=TOWN, now=NOW)
    assert mail["Reply-To"] == "wegen@wingene.example"


def test_an_internationalised_domain_is_sent_in_its_ascii_form() -> None:
    # Without this the server would have to offer SMTPUTF8 for an address like jan@café.be.
    mail = composed(recipient="jan@café.example")
    assert mail["To"] == "jan@xn--caf-dma.example"


@pytest.mark.parametrize(
    ("changes", "compose_args"),
    [
        ({"recipient": "jan@"}, {}),
        ({"recipient": "geen adres"}, {}),
        ({"recipient": "jan@x.be\r\nBcc: evil@x.be"}, {}),
        ({}, {"message_id": "zonder-domein"}),
        ({}, {"message_id": "a b@c"}),
        ({}, {"now": datetime(2026, 11, 16, 10, 0)}),  # noqa: DTZ001 - naive on purpose
    ],
)
def test_compose_refuses_what_cannot_go_in_a_header(
    changes: dict[str, Any], compose_args: dict[str, Any]
) -> None:
    arguments: dict[str, Any] = {
        "sender": CENTRAL,
        "message_id": "mp.1.abcdefgh@wingene.example",
        "town_name": TOWN,
        "now": NOW,
    }
    arguments.update(compose_args)
    with pytest.raises(ValueError, match=r"."):
        compose(outbound(**changes), **arguments)


# --- message ids and sender identity -------------------------------------------------------


def test_message_ids_are_stable_per_outbox_row_and_differ_across_rows_and_secrets() -> None:
    first = message_id_for(42, "Wingene.example", SECRET)

    assert first == message_id_for(42, "wingene.example", SECRET)
    assert re.fullmatch(r"mp\.42\.[a-z2-7]{8}@wingene\.example", first)
    assert first != message_id_for(43, "wingene.example", SECRET)
    assert first != message_id_for(42, "wingene.example", b"another-secret")
    assert outbox_id_from_message_id(f"<{first}>", SECRET) == 42
    assert outbox_id_from_message_id(first, b"another-secret") is None
    assert outbox_id_from_message_id(first.replace("mp.42.", "mp.43."), SECRET) is None
    assert outbox_id_from_message_id("CAB+citizen-1@mail.example.be", SECRET) is None


@pytest.mark.parametrize(("domain", "secret"), [("wingene.example", b""), ("a b", SECRET)])
def test_message_id_for_refuses_an_empty_secret_or_a_bad_domain(domain: str, secret: bytes) -> None:
    with pytest.raises(ValueError, match=r"."):
        message_id_for(1, domain, secret)


def email_options() -> EmailOptions:
    return EmailOptions(
        smtp=smtp_options(587),
        departments={
            "wegen": DepartmentSender(
                from_address="wegen@wingene.example",
                from_name="Dienst Wegen – Gemeente Wingene",
                reply_to="wegen-team@wingene.example",
            ),
            "burgerzaken": DepartmentSender(reply_to="burgerzaken@wingene.example"),
        },
    )


@pytest.mark.parametrize(
    ("department", "expected"),
    [
        (
            "wegen",
            SenderIdentity(
                "wegen@wingene.example",
                "Dienst Wegen – Gemeente Wingene",
                "wegen-team@wingene.example",
            ),
        ),
        ("burgerzaken", SenderIdentity(FROM_ADDRESS, FROM_NAME, "burgerzaken@wingene.example")),
        ("onbekend", CENTRAL),
        (None, CENTRAL),
    ],
)
def test_sender_for_picks_the_department_identity(
    department: str | None, expected: SenderIdentity
) -> None:
    assert sender_for(email_options(), department) == expected


def test_sender_for_needs_a_from_address() -> None:
    with pytest.raises(ValueError, match="from_address"):
        sender_for(EmailOptions(), None)


# --- SMTP failures -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("replies", "permanent", "said"),
    [
        ({"rcpt": "450 4.2.0 Greylisted, try again later"}, False, "450"),
        ({"rcpt": "550 5.1.1 No such user"}, True, "550 5.1.1 No such user"),
        ({"data": "451 4.3.0 Local error in processing"}, False, "451"),
        ({"data": "554 5.7.1 Message rejected as spam"}, True, "554"),
        ({"mail": "553 5.7.1 Sender address not allowed"}, False, "from_address"),
        ({"mail": "552 5.3.4 Message size exceeds limit"}, True, "552"),
        ({"mail": "421 4.3.2 Shutting down"}, False, "421"),
    ],
    ids=["rcpt-450", "rcpt-550", "data-451", "data-554", "mail-553", "mail-552", "mail-421"],
)
async def test_smtp_replies_map_to_temporary_or_permanent_errors(
    start_smtp: Start, replies: dict[str, str], permanent: bool, said: str
) -> None:
    handler = Recorder(**replies)
    port = await start_smtp(handler)

    with pytest.raises(SendError) as caught:
        await sender(port).send(composed())

    assert caught.value.permanent is permanent
    assert said in str(caught.value)
    assert handler.received == []


async def test_nothing_listening_is_temporary() -> None:
    port = free_port()
    with pytest.raises(
        SendError, match=rf"could not reach the mail server 127.0.0.1:{port}"
    ) as caught:
        await sender(port).send(composed())
    assert caught.value.permanent is False


async def test_a_server_that_never_greets_times_out_as_temporary(
    start_raw: Callable[..., Awaitable[int]],
) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    port = await start_raw(silent)
    options = smtp_options(port).model_copy(update={"timeout_seconds": 0.2})
    with pytest.raises(SendError) as caught:
        await SmtpSender(options, local_hostname="client.test").send(composed())
    assert caught.value.permanent is False


async def test_a_server_hanging_up_after_the_data_is_temporary(
    start_raw: Callable[..., Awaitable[int]],
) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 mail.test ESMTP\r\n")
        while line := await reader.readline():
            if line.upper().startswith(b"DATA"):
                writer.write(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                while (await reader.readline()) not in (b".\r\n", b""):
                    pass
                break
            writer.write(b"250 OK\r\n")
        writer.close()

    port = await start_raw(hang_up)
    with pytest.raises(SendError, match="lost the connection") as caught:
        await sender(port).send(composed())
    assert caught.value.permanent is False


# --- login ---------------------------------------------------------------------------------


async def test_a_wrong_password_is_temporary_with_a_clear_message(
    start_smtp: Start, capsys: pytest.CaptureFixture[str]
) -> None:
    handler = Recorder()
    port = await start_smtp(
        handler, authenticator=accept_only(USER.encode(), PASSWORD.encode()), auth_require_tls=False
    )

    with pytest.raises(SendError) as caught:
        await sender(port, user=USER, password="fout-wachtwoord").send(composed())

    message = str(caught.value)
    assert caught.value.permanent is False
    assert f"SMTP login failed for user {USER}" in message
    assert "check SMTP_USER/SMTP_PASSWORD" in message
    assert "fout-wachtwoord" not in message
    assert "fout-wachtwoord" not in capsys.readouterr().out
    assert handler.received == []


async def test_the_right_password_sends(
    start_smtp: Start, capsys: pytest.CaptureFixture[str]
) -> None:
    handler = Recorder()
    port = await start_smtp(
        handler, authenticator=accept_only(USER.encode(), PASSWORD.encode()), auth_require_tls=False
    )

    await sender(port, user=USER, password=PASSWORD).send(composed())

    assert [r.rcpt_tos for r in handler.received] == [[CITIZEN]]
    assert PASSWORD not in capsys.readouterr().out


async def test_a_login_where_the_server_offers_none_is_temporary(start_smtp: Start) -> None:
    # aiosmtpd, like most servers, hides AUTH on an unencrypted connection.
    port = await start_smtp(Recorder(), authenticator=accept_only(b"x", b"y"))

    with pytest.raises(SendError, match="offers no login") as caught:
        await sender(port, user=USER, password=PASSWORD).send(composed())
    assert caught.value.permanent is False


async def test_one_connection_can_carry_a_batch(start_smtp: Start) -> None:
    handler = Recorder()
    port = await start_smtp(handler)

    async with sender(port).connect() as connection:
        await connection.send(composed(outbox_id=1))
        await connection.send(composed(outbox_id=2))

    first, second = handler.received
    assert first.session is second.session
    assert [parse(r.raw)["Message-ID"] for r in handler.received] == [
        f"<{message_id_for(n, 'wingene.example', SECRET)}>" for n in (1, 2)
    ]


# --- TLS -----------------------------------------------------------------------------------


async def test_starttls_with_login_delivers(start_smtp: Start, certificate: Certificate) -> None:
    handler = Recorder()
    # The server's defaults: AUTH only after STARTTLS, and STARTTLS required.
    port = await start_smtp(
        handler,
        tls_context=certificate.server_context(),
        require_starttls=True,
        authenticator=accept_only(USER.encode(), PASSWORD.encode()),
    )
    smtp = sender(
        port, "starttls", user=USER, password=PASSWORD, tls_context=certificate.client_context()
    )

    await smtp.send(composed())

    [got] = handler.received
    assert got.encrypted
    assert parse(got.raw)["X-Meldpunt-Ticket"] == REFERENCE


async def test_implicit_tls_delivers(start_smtp: Start, certificate: Certificate) -> None:
    handler = Recorder()
    port = await start_smtp(handler, ssl_context=certificate.server_context())

    await sender(port, "ssl", tls_context=certificate.client_context()).send(composed())

    [got] = handler.received
    assert got.encrypted


@pytest.mark.parametrize("tls", ["ssl", "starttls"])
async def test_an_untrusted_certificate_is_temporary(
    start_smtp: Start, certificate: Certificate, tls: TlsMode
) -> None:
    handler = Recorder()
    if tls == "ssl":
        port = await start_smtp(handler, ssl_context=certificate.server_context())
    else:
        port = await start_smtp(handler, tls_context=certificate.server_context())

    # The system's trusted roots do not include the test's self-signed certificate.
    with pytest.raises(SendError) as caught:
        await sender(port, tls).send(composed())

    assert caught.value.permanent is False
    assert handler.received == []


async def test_starttls_mode_never_falls_back_to_plain_text(start_smtp: Start) -> None:
    handler = Recorder()
    port = await start_smtp(handler)  # offers no STARTTLS

    with pytest.raises(SendError, match="STARTTLS") as caught:
        await sender(port, "starttls").send(composed())

    assert caught.value.permanent is False
    assert handler.received == []
