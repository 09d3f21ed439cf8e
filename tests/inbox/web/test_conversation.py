"""The conversation on the ticket page: HTML mail shown safely, files served only to those who may
see them, why the ticket went where it went, and the citizen's other tickets.

The whole service in-process on SQLite and PostgreSQL; mail arrives through the real intake.
Where a test needs HTML that today's intake would have cleaned, it writes it into the stored
message as an older version might have left it: the page must clean it again.
"""

from __future__ import annotations

import base64
import re
from datetime import timedelta
from urllib.parse import quote

import aiohttp
import sqlalchemy as sa
from sqlmodel import col

from connectors.email.connector import EmailConnector
from inbox import tickets
from inbox.auth import Staff
from inbox.schemas import TransferRequest
from inbox.web.conversation import sanitise_html
from ingest.model import Channel
from meldpunt.app import RUNTIME
from store.models import AttachmentRow, Message, OutboxRow, Ticket, TicketEvent, User, utcnow
from tests.inbox.web.conftest import Town, Visitor, street_lamp_photo, submit_mail

PHOTO = street_lamp_photo()
MARKER = "[afbeelding van buiten niet geladen]"

MAIL_HTML = """<html><head><style>p { margin: 0 }</style></head><body>
<p>Beste,</p>
<p>De <b>straatlamp</b> voor huisnummer 12 in de Kerkstraat brandt al een week niet.</p>
<table><tr><td>Adres</td><td>Kerkstraat 12, 8750 Wingene</td></tr>
<tr><td>Paalnummer</td><td>WG-0412</td></tr></table>
<p>Meer info: <a href="https://www.wingene.be/straatverlichting">straatverlichting</a></p>
<p>Met vriendelijke groeten,<br>Mie Janssens</p>
<img src="https://tracker.example/open.gif?id=77" width="1" height="1">
</body></html>"""

# What a hostile sender tries, as an older version might have stored it.
NASTY_HTML = """<p>Kapotte lamp</p>
<script>window.pwned = true</script>
<img src="https://tracker.example/pixel.gif" onerror="window.pwned = true">
<img src="x" onerror="document.title = 'pwned'">
<a href="javascript:window.pwned = true">klik hier</a>
<a href=" JaVa&#x09;ScRiPt:alert(1)">of hier</a>
<p style="background: url(https://tracker.example/bg.png)">achtergrond</p>
<svg onload="window.pwned = true"><image href="https://tracker.example/svg.png"/></svg>
<img src="data:image/png;base64,iVBORw0KGgo=">
<form action="https://evil.example/"><input name="q"><button>zoek</button></form>
<iframe src="https://evil.example/"></iframe>
<img src="cid:foto-lamp.png@01DA4B2C" alt="de lamp">
<img src="cid:ander-bestand.png">
<div id="csrf" class="notice" data-x="1">geen eigen id of klasse</div>"""


def marker_count(html: str) -> int:
    return html.count(MARKER)


async def staff_of(town: Town, email: str) -> Staff:
    async with town.db.session() as session:
        user = (await session.scalars(sa.select(User).where(col(User.email) == email))).one()
        return Staff.from_user(user)


async def file_ids(town: Town, reference: str) -> list[int]:
    async with town.db.session() as session:
        rows = await session.scalars(
            sa.select(col(AttachmentRow.id))
            .join(Message, col(Message.id) == col(AttachmentRow.message_id))
            .join(Ticket, col(Ticket.id) == col(Message.ticket_id))
            .where(col(Ticket.reference) == reference)
            .order_by(col(AttachmentRow.id))
        )
        return [i for i in rows if i is not None]


async def fetch(visitor: Visitor, path: str) -> tuple[aiohttp.ClientResponse, bytes]:
    """A file as the visitor's browser gets it: the answer and its bytes."""
    response = await visitor.client.get(path, cookies=visitor.cookies, allow_redirects=False)
    return response, await response.read()


async def store_html(town: Town, reference: str, html: str) -> None:
    async with town.db.session() as session:
        ticket_id = (
            await session.scalars(
                sa.select(col(Ticket.id)).where(col(Ticket.reference) == reference)
            )
        ).one()
        await session.execute(
            sa.update(Message)
            .where(col(Message.ticket_id) == ticket_id, col(Message.direction) == "in")
            .values(html=html)
        )


async def test_an_html_mail_shows_formatted_with_its_text_and_whole_mail_to_open(
    town: Town,
) -> None:
    reference = await submit_mail(
        town.client.app,
        text="Beste,\n\nDe straatlamp voor huisnummer 12 brandt al een week niet.",
        full_text="Beste,\n\nDe straatlamp voor huisnummer 12 brandt al een week niet.\n\n"
        "Op ma 16 nov 2026 om 10:12 schreef Onthaal <onthaal@wingene.example>:\n> Eerder bericht",
        subject="Straatlamp kapot",
        html=MAIL_HTML,
        files=[("foto-lamp.png", "image/png", PHOTO)],
    )
    await town.add_user("td@wingene.example", "agent", ("technical-service",))
    staff = await town.signed_in("td@wingene.example")
    assert (await staff.get(f"/tickets/{reference}")).status == 200
    html = staff.html
    # The formatted mail, with the plain text and the whole mail one click away.
    assert "<b>straatlamp</b>" in html
    assert "<td>Kerkstraat 12, 8750 Wingene</td>" in html
    assert re.search(r'<details class="conv-plain"><summary>Tekstversie</summary>', html)
    assert "Volledige e-mail, met eerdere berichten" in html
    assert "&gt; Eerder bericht" in html
    # Links open apart, telling the other site nothing; the tracking pixel is not loaded.
    assert (
        '<a href="https://www.wingene.be/straatverlichting" target="_blank" '
        'rel="noopener noreferrer nofollow">' in html
    )
    assert "tracker.example" not in html
    assert marker_count(html) == 1
    assert "p { margin: 0 }" not in html
    # The photo: a preview and a download with its size.
    [photo] = await file_ids(town, reference)
    assert f'<img class="conv-thumb" src="/tickets/{reference}/files/{photo}?view=1"' in html
    assert f'<a href="/tickets/{reference}/files/{photo}" download>foto-lamp.png</a>' in html
    assert f"({len(PHOTO) / 1024:.1f} kB)".replace(".", ",") in html


async def test_stored_html_is_cleaned_again_before_it_is_shown(town: Town) -> None:
    reference = await submit_mail(
        town.client.app,
        text="Kapotte lamp",
        subject="Lamp",
        html="<p>Kapotte lamp</p>",
        files=[("foto-lamp.png", "image/png", PHOTO)],
    )
    other = await submit_mail(
        town.client.app,
        text="Nog een lamp",
        subject="Lamp 2",
        files=[("ander-bestand.png", "image/png", PHOTO)],
        email="jan@example.be",
    )
    await store_html(town, reference, NASTY_HTML)
    await town.add_user("beheer@wingene.example", "operator", ())
    staff = await town.signed_in("beheer@wingene.example")
    assert (await staff.get(f"/tickets/{reference}")).status == 200
    page = staff.html
    shown = page[page.index('<div class="conv-html">') : page.index('<details class="conv-plain">')]
    for forbidden in (
        "<script",
        "pwned",
        "onerror",
        "onload",
        "javascript",
        "ScRiPt",
        "url(",
        "style=",
        "<svg",
        "<image",
        "data:",
        "<form",
        "<input",
        "<iframe",
        "evil.example",
        "tracker.example",
        'id="csrf"',
        'class="notice"',
        "data-x",
    ):
        assert forbidden not in shown, forbidden
    # The mail's own picture shows from this ticket; a cid naming a file of another ticket, the
    # outside images and the data: image become markers.
    [photo] = await file_ids(town, reference)
    assert (
        f'<img src="/tickets/{reference}/files/{photo}?view=1" alt="de lamp" class="conv-inline">'
        in shown
    )
    [elsewhere] = await file_ids(town, other)
    assert f"/files/{elsewhere}" not in page
    assert marker_count(shown) == 4
    assert ">klik hier</a>" in shown and ">of hier</a>" in shown
    assert "<p>achtergrond</p>" in shown


def test_the_cleaner_refuses_what_could_run_or_load() -> None:
    images = {"foto.png": "/tickets/1750-000001/files/3?view=1"}
    cases = {
        '<img src="cid:foto.png">': '<img src="/tickets/1750-000001/files/3?view=1" alt="" '
        'class="conv-inline">',
        '<img src="CID:%3Cfoto.png%3E">': '<img src="/tickets/1750-000001/files/3?view=1" alt="" '
        'class="conv-inline">',
        '<img src="/tickets/1750-000002/files/9?view=1">': f'<span class="conv-blocked">{MARKER}'
        "</span>",
        '<img alt="x&quot;><script>alert(1)</script>" src="cid:foto.png">': (
            '<img src="/tickets/1750-000001/files/3?view=1" '
            'alt="x&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;" class="conv-inline">'
        ),
        '<a href="/logout">uit</a>': (
            '<a target="_blank" rel="noopener noreferrer nofollow">uit</a>'
        ),
        '<a href="mailto:jan@example.be">jan</a>': '<a href="mailto:jan@example.be" '
        'target="_blank" rel="noopener noreferrer nofollow">jan</a>',
        '<span class="conv-blocked">nep</span>': "<span>nep</span>",
        "<p>1 &lt; 2 &amp; 3</p>": "<p>1 &lt; 2 &amp; 3</p>",
        '<math><mi xlink:href="javascript:alert(1)">m</mi></math>': "",
        '<a href="https://x.example" onclick="alert(1)" target="_top">x</a>': (
            '<a href="https://x.example" target="_blank" rel="noopener noreferrer nofollow">x</a>'
        ),
    }
    for given, expected in cases.items():
        assert str(sanitise_html(given, images, MARKER)) == expected, given


async def test_files_are_served_as_downloads_with_safe_headers(town: Town) -> None:
    fake_png = b"<html><script>alert(1)</script></html>"
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    pdf = b"%PDF-1.4\n% brief\n"
    reference = await submit_mail(
        town.client.app,
        text="Zie bijlagen",
        subject="Bijlagen",
        files=[
            ("foto straatlamp é.png", "image/png", PHOTO),
            ("nep.png", "image/png", fake_png),
            ("tekening.svg", "image/svg+xml", svg),
            ("brief.pdf", "application/pdf", pdf),
            ("film.mov", "video/quicktime", None),
        ],
    )
    photo, fake, drawing, letter, refused = await file_ids(town, reference)
    staff = await town.signed_in("an@wingene.example")

    response, body = await fetch(staff, f"/tickets/{reference}/files/{photo}")
    assert response.status == 200
    assert body == PHOTO
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert response.headers["Content-Disposition"] == (
        "attachment; filename=\"foto straatlamp _.png\"; filename*=UTF-8''"
        + quote("foto straatlamp é.png", safe="")
    )
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Security-Policy"] == "default-src 'none'; sandbox"
    assert response.headers["Cache-Control"] == "private, no-store"

    # A real image may be shown by itself, with its type, still sandboxed.
    response, body = await fetch(staff, f"/tickets/{reference}/files/{photo}?view=1")
    assert body == PHOTO
    assert response.headers["Content-Type"] == "image/png"
    assert response.headers["Content-Disposition"].startswith("inline; ")
    assert response.headers["Content-Security-Policy"] == "default-src 'none'; sandbox"
    # Not so a page that calls itself an image, an SVG or a PDF: always a download of bytes.
    for ident, data in ((fake, fake_png), (drawing, svg), (letter, pdf)):
        response, body = await fetch(staff, f"/tickets/{reference}/files/{ident}?view=1")
        assert response.status == 200
        assert body == data
        assert response.headers["Content-Type"] == "application/octet-stream"
        assert response.headers["Content-Disposition"].startswith("attachment; ")
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    # A file intake refused says why on the page, and has nothing to download.
    assert (await staff.get(f"/tickets/{reference}")).status == 200
    assert "film.mov (30 MB) — niet bewaard: larger than 15 MB" in staff.html
    assert f"/files/{refused}" not in staff.html
    # Previews are offered for image types that cannot carry script (the server checks the
    # bytes before it shows one).
    assert f"/files/{drawing}?view=1" not in staff.html
    assert f"/files/{fake}?view=1" in staff.html
    assert (await staff.get(f"/tickets/{reference}/files/{refused}")).status == 404


async def test_files_of_tickets_one_may_not_see_are_not_found(town: Town) -> None:
    light = await submit_mail(
        town.client.app,
        text="De straatlamp brandt niet.",
        subject="Straatlamp",
        files=[("lamp.png", "image/png", PHOTO)],
    )
    waste = await submit_mail(
        town.client.app,
        text="De vuilniszakken zijn niet opgehaald.",
        subject="Afval",
        files=[("zakken.png", "image/png", PHOTO + b"zakken")],
        email="jan@example.be",
    )
    [lamp] = await file_ids(town, light)
    [bags] = await file_ids(town, waste)
    await town.add_user("td@wingene.example", "agent", ("technical-service",))
    staff = await town.signed_in("td@wingene.example")
    response, body = await fetch(staff, f"/tickets/{light}/files/{lamp}")
    assert (response.status, body) == (200, PHOTO)
    # Another department's file, by its own ticket's address or guessed under one's own ticket.
    for path in (
        f"/tickets/{waste}/files/{bags}",
        f"/tickets/{waste}/files/{bags}?view=1",
        f"/tickets/{light}/files/{bags}",
        f"/tickets/{light}/files/{bags}?view=1",
        f"/tickets/{waste}/files/{lamp}",
        f"/tickets/{light}/files/999999",
        f"/tickets/{light}/files/99999999999",
        f"/tickets/{light}/files/0",
        "/tickets/1750-999999/files/1",
    ):
        response = await staff.get(path)
        assert response.status == 404, path
        assert response.headers["Content-Type"].startswith("text/html")
        assert "Dit bestand bestaat niet, of u mag het niet zien." in staff.html
        assert b"PNG" not in staff.html.encode()
    # Without a session: to the sign-in page, nothing else.
    stranger = town.visitor()
    response = await stranger.get(f"/tickets/{light}/files/{lamp}")
    assert response.status == 303
    assert response.headers["Location"].startswith("/login?next=")


async def test_the_page_says_which_rule_routed_the_ticket_and_who_moved_it(town: Town) -> None:
    light = await town.submit(
        "De straatlamp aan het kruispunt is stuk. Het is daar 's avonds gevaarlijk.",
        "Straatlamp",
        "mie@example.be",
    )
    other = await town.submit("Wanneer is het gemeentehuis open?", "Openingsuren", "jan@example.be")
    await town.add_user("td@wingene.example", "agent", ("technical-service",), name="Tom Dierickx")
    async with town.db.session() as session:
        await tickets.transfer(
            session,
            await staff_of(town, "td@wingene.example"),
            {d.id: d.name for d in town.client.app[RUNTIME].config.settings.departments},
            light,
            TransferRequest(department="environment", reason="Het gaat om de paal, niet de lamp"),
        )
        await session.commit()
    await town.add_user("beheer@wingene.example", "operator", ())
    staff = await town.signed_in("beheer@wingene.example")
    await staff.get(f"/tickets/{light}")
    text = re.sub(r"\s+", " ", staff.html)
    assert (
        "Doorgestuurd naar Technische dienst door regel <code>straatverlichting</code> "
        "(Straatlampen en openbare verlichting)." in text
    )
    assert (
        "Ook toegepast: regel <code>gevaar</code> (Gevaarlijke situaties en dringende vragen)"
        in text
    )
    assert "prioriteit: hoog — labels: dringend" in text
    assert (
        "Overgedragen van Technische dienst naar Milieu en afval door Tom Dierickx. "
        "Reden: Het gaat om de paal, niet de lamp" in text
    )
    await staff.get(f"/tickets/{other}")
    text = re.sub(r"\s+", " ", staff.html)
    assert "Geen regel koos een dienst. Daarom naar de standaarddienst Onthaal." in text
    # In French too.
    await staff.get(f"/tickets/{light}?lang=fr")
    text = re.sub(r"\s+", " ", staff.html)
    assert "par la règle <code>straatverlichting</code>" in text


async def test_the_citizens_other_tickets_only_those_one_may_see(town: Town) -> None:
    first = await town.submit("De straatlamp brandt niet.", "Straatlamp Kerkstraat", "mie@ex.be")
    town.clock.now += timedelta(minutes=1)
    await town.submit("De vuilniszakken staan er nog.", "Vuilniszakken", "mie@ex.be")
    town.clock.now += timedelta(minutes=1)
    await town.submit("Er is lawaai van de fuif.", "Geluidshinder fuif", "mie@ex.be")
    town.clock.now += timedelta(minutes=1)
    latest = await town.submit("Nog een lamp stuk.", "Lamp Molenstraat", "mie@ex.be")
    await town.submit("Putten in de weg.", "Putten", "jan@ex.be")
    await town.add_user("td@wingene.example", "agent", ("technical-service",))
    staff = await town.signed_in("td@wingene.example")
    await staff.get(f"/tickets/{first}")
    section = staff.html[staff.html.index('class="conv-others"') :]
    assert f'<a href="/tickets/{latest}">{latest}</a>' in section
    assert "Lamp Molenstraat" in section
    assert "Vuilniszakken" not in staff.html and "fuif" not in staff.html
    assert "Putten" not in staff.html
    assert "2 andere tickets bij andere diensten." in section
    # An operator sees them all, newest first, with status, channel and department.
    await town.add_user("beheer@wingene.example", "operator", ())
    boss = await town.signed_in("beheer@wingene.example")
    await boss.get(f"/tickets/{first}")
    section = boss.html[boss.html.index('class="conv-others"') :]
    found = re.findall(r"<td>(Lamp Molenstraat|Geluidshinder fuif|Vuilniszakken)</td>", section)
    assert found == ["Lamp Molenstraat", "Geluidshinder fuif", "Vuilniszakken"]
    assert "Milieu en afval" in section and "webformulier" in section and "nieuw" in section
    assert "andere diensten" not in section


async def test_delivery_states_and_history_in_plain_words(town: Town) -> None:
    reference = await town.submit("De straatlamp brandt niet.", "Straatlamp", "mie@example.be")
    async with town.db.session() as session:
        ticket = (
            await session.scalars(sa.select(Ticket).where(col(Ticket.reference) == reference))
        ).one()
        ack = (
            await session.scalars(
                sa.select(Message).where(
                    col(Message.ticket_id) == ticket.id, col(Message.direction) == "out"
                )
            )
        ).one()
        ack.delivery_status = "failed"
        await session.execute(
            sa.update(OutboxRow)
            .where(col(OutboxRow.message_id) == ack.id)
            .values(state="failed", reason="not delivered: mailbox full")
        )
        assert ticket.id is not None
        session.add(
            TicketEvent(ticket_id=ticket.id, type="iets_nieuws", data={}, created_at=utcnow())
        )
        await session.commit()
    await town.add_user("beheer@wingene.example", "operator", ())
    staff = await town.signed_in("beheer@wingene.example")
    await staff.get(f"/tickets/{reference}")
    html = staff.html
    assert '<span class="conv-delivery conv-delivery-failed">mislukt</span>' in html
    assert "not delivered: mailbox full" in html
    history = html[html.index('<ol class="history">') :]
    assert "Ticket gemaakt" in history and "webformulier" in history
    routed = '<span class="conv-event">Doorgestuurd</span> · <span class="conv-actor">meldpunt'
    assert routed + "</span> · Technische dienst" in history
    # A kind of event the page does not know yet shows under its own name.
    assert '<span class="conv-event">iets_nieuws</span>' in history
    await staff.get(f"/tickets/{reference}?lang=en")
    assert '<span class="conv-delivery conv-delivery-failed">failed</span>' in staff.html
    assert "Ticket created" in staff.html


# Apple Mail puts a photo in the text where the citizen pasted it: a multipart/related part
# whose Content-ID is a UUID, not the file name.
APPLE_CID = "9F2B7C1E-4D3A-4B5C-8E6F-7A8B9C0D1E2F"


def apple_mail_with_inline_photo(photo: bytes) -> bytes:
    encoded = base64.b64encode(photo).decode()
    wrapped = "\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))
    return f"""From: Lotte Claes <lotte.claes@example.com>
Content-Type: multipart/alternative;
\tboundary="Apple-Mail=_0A1B2C3D-4E5F-4061-8293-A4B5C6D7E8F9"
Mime-Version: 1.0 (Mac OS X Mail 16.0 \\(3826.200.121\\))
Subject: Lamp kapot in de Kerkstraat
Date: Mon, 16 Nov 2026 09:41:12 +0100
Message-Id: <1D2C3B4A-5F6E-4788-99AA-BBCCDDEEFF00@example.com>
To: contactpunt@wingene.example

--Apple-Mail=_0A1B2C3D-4E5F-4061-8293-A4B5C6D7E8F9
Content-Transfer-Encoding: 7bit
Content-Type: text/plain;
\tcharset=us-ascii

De lamp aan nummer 12 brandt niet. Zie de foto:

Lotte
--Apple-Mail=_0A1B2C3D-4E5F-4061-8293-A4B5C6D7E8F9
Content-Type: multipart/related;
\ttype="text/html";
\tboundary="Apple-Mail=_5A6B7C8D-9E0F-4112-A3B4-C5D6E7F8091A"

--Apple-Mail=_5A6B7C8D-9E0F-4112-A3B4-C5D6E7F8091A
Content-Transfer-Encoding: 7bit
Content-Type: text/html;
\tcharset=us-ascii

<html><head><meta http-equiv="Content-Type" content="text/html; charset=us-ascii"></head>\
<body style="word-wrap: break-word;"><div>De lamp aan nummer 12 brandt niet. Zie de foto:</div>\
<div><img apple-inline="yes" id="0B1C2D3E-4F50-4617-8293-A4B5C6D7E8F9" src="cid:{APPLE_CID}" \
alt="de kapotte lamp" class=""></div><div>Lotte</div></body></html>
--Apple-Mail=_5A6B7C8D-9E0F-4112-A3B4-C5D6E7F8091A
Content-Disposition: inline;
\tfilename=IMG_0042.png
Content-Type: image/png;
\tx-unix-mode=0644;
\tname="IMG_0042.png"
Content-Id: <{APPLE_CID}>
Content-Transfer-Encoding: base64

{wrapped}
--Apple-Mail=_5A6B7C8D-9E0F-4112-A3B4-C5D6E7F8091A--

--Apple-Mail=_0A1B2C3D-4E5F-4061-8293-A4B5C6D7E8F9--
""".replace("\n", "\r\n").encode()


async def test_an_inline_photo_of_a_mail_shows_in_its_text(town: Town) -> None:
    # The sample town reads no mailbox: an e-mail connector on the service's own context takes
    # the mail as the mailbox reader would hand it over.
    runtime = town.client.app[RUNTIME]
    mail = EmailConnector(runtime.connectors[Channel.WEBFORM].context)
    await mail.deliver(apple_mail_with_inline_photo(PHOTO))
    async with town.db.session() as session:
        reference, file_id, content_id = (
            await session.execute(
                sa.select(
                    col(Ticket.reference), col(AttachmentRow.id), col(AttachmentRow.content_id)
                )
                .join(Message, col(Message.ticket_id) == col(Ticket.id))
                .join(AttachmentRow, col(AttachmentRow.message_id) == col(Message.id))
                .where(
                    col(Message.external_id) == "1D2C3B4A-5F6E-4788-99AA-BBCCDDEEFF00@example.com"
                )
            )
        ).one()
    assert content_id == APPLE_CID

    await town.add_user("beheer@wingene.example", "operator", ())
    staff = await town.signed_in("beheer@wingene.example")
    assert (await staff.get(f"/tickets/{reference}")).status == 200
    page = staff.html
    shown = page[page.index('<div class="conv-html">') : page.index('<details class="conv-plain">')]
    assert "Zie de foto:" in shown
    inline = f"/tickets/{reference}/files/{file_id}?view=1"
    assert f'<img src="{inline}" alt="de kapotte lamp" class="conv-inline">' in shown
    assert marker_count(shown) == 0

    response, body = await fetch(staff, inline)
    assert response.status == 200
    assert response.headers["Content-Type"] == "image/png"
    assert body == PHOTO


def test_an_inline_image_is_found_by_its_content_id_before_its_file_name() -> None:
    # Outlook names a pasted image "image001.png@01DA…"; another file may be called image001.png.
    images = {"image001.png": "/tickets/1750-000001/files/3?view=1"}
    content_ids = {"image001.png@01da4b2c.5e6f7080": "/tickets/1750-000001/files/4?view=1"}
    cleaned = sanitise_html(
        '<img src="cid:image001.png@01DA4B2C.5E6F7080"><img src="cid:image001.png@01DA0000.1">',
        images,
        MARKER,
        content_ids,
    )
    assert str(cleaned) == (
        '<img src="/tickets/1750-000001/files/4?view=1" alt="" class="conv-inline">'
        '<img src="/tickets/1750-000001/files/3?view=1" alt="" class="conv-inline">'
    )
