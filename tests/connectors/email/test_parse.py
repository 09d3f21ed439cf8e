"""Tests for ``connectors/email/parse.py``.

A corpus of real-shaped mails in ``tests/fixtures/email`` (one row per file in ``CORPUS``), then
targeted tests for reply stripping, charsets, noise and bounces, limits, and a fuzz test: only
``UnparseableMail`` may ever leave ``parse_mail``.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.email.parse import (
    MAX_DEPTH,
    MAX_PARTS,
    MAX_RECEIVED,
    Noise,
    ParsedMail,
    UnparseableMail,
    parse_mail,
    strip_reply,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "email"
OWN_ADDRESS = "meldpunt@gemeente.example.be"
OWN_DOMAIN = "gemeente.example.be"
LIMIT = 4096  # small, so the corpus needs no megabyte fixture to show a refused file


def parse(raw: bytes, *, limit: int = LIMIT) -> ParsedMail:
    return parse_mail(
        raw,
        max_attachment_bytes=limit,
        own_addresses=(OWN_ADDRESS,),
        own_message_id_domain=OWN_DOMAIN,
    )


def parse_fixture(name: str) -> ParsedMail:
    return parse((FIXTURES / name).read_bytes())


def mail(body: str | bytes, *, headers: str = "", content_type: str = "text/plain") -> bytes:
    """A minimal mail around ``body`` for targeted tests."""
    head = (
        "From: Jan Peeters <jan.peeters@example.be>\n"
        "To: meldpunt@gemeente.example.be\n"
        "Subject: Test\n"
        "Date: Mon, 16 Nov 2026 10:12:00 +0100\n"
        "Message-ID: <test.1@example.be>\n"
        "MIME-Version: 1.0\n"
        f"Content-Type: {content_type}\n"
        f"{headers}\n"
    ).encode()
    return head + (body.encode() if isinstance(body, str) else body)


# --- the corpus ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """What one fixture must give; ``text`` is exact, ``text_has`` are parts of a long text."""

    subject: str
    from_address: str | None
    text: str | None = None
    text_has: tuple[str, ...] = ()
    text_lacks: tuple[str, ...] = ()
    full_text_has: tuple[str, ...] = ()
    noise: Noise | None = None
    attachments: tuple[tuple[str, int], ...] = ()
    reference: str | None = None
    language: str | None = None
    problems: tuple[str, ...] = ()  # words each expected in one of the problems


LAMP_REPLY_SUBJECT = "RE: [1750-000123] Kapotte straatlamp Kerkstraat"

CORPUS: dict[str, Case] = {
    "streetlight_utf8_8bit.eml": Case(
        subject="Straatlamp kapot in de Kerkstraat",
        from_address="jan.peeters@example.be",
        text_has=("Goedemorgen,", "Alvast één dikke merci!", "Met vriendelijke groeten,\nJan"),
        language="nl",
    ),
    "garbage_latin1_qp.eml": Case(
        subject="Restafval niet opgehaald – al één week",
        from_address="mia.wouters@example.com",
        text_has=("de katten hebben er één opengescheurd", "het café op de hoek", "Groenstraat 7"),
    ),
    "noise_cp1252.eml": Case(
        subject="Geluidsoverlast café “De Nachtuil”",
        from_address="karel.desmet@example.be",
        text_has=("café “De Nachtuil”", "’s nachts…", "250 € lijkt"),
        language="nl",
    ),
    "latin1_label_cp1252_bytes.eml": Case(
        subject="Bewonerskaart parkeren",
        from_address="leen.vandamme@example.be",
        text_has=("nu 25 € per jaar", "nog ‘gratis’"),
    ),
    "idcard_latin9_qp.eml": Case(
        subject="Prijs nieuwe identiteitskaart",
        from_address="hilde.goossens@example.be",
        text_has=("ik 20,60 €, maar", "Kids-ID?\n\nBedankt,\nHilde Goossens"),
    ),
    "idcard_base64_utf8.eml": Case(
        subject="Wanneer kan ik mijn eID afhalen?",
        from_address="daan.bakker@example.com",
        text_has=("verhuisd naar België", "Alvast bedankt 👍"),
    ),
    "encoded_headers_rfc2231.eml": Case(
        subject="Boom omgevallen op het fietspad – foto bijgevoegd",
        from_address="zoe.vermeulen@example.be",
        # format=flowed: the soft break after "langs de" is joined.
        text_has=("het fietspad langs de Dijle gevallen", "Zoë"),
        attachments=(
            ("boom fietspad één.jpg", 1198),
            ("situatieschets Zoë.pdf", 159),
            ("planning straße.pdf", 153),
        ),
    ),
    "alternative_plain_html.eml": Case(
        subject="Afvalkalender 2027",
        from_address="ruben.claes@example.com",
        text=(
            "Hallo,\n\nWanneer komt de papieren afvalkalender voor 2027? Mijn moeder heeft geen\n"
            "internet en heeft hem *dringend* nodig.\n\nRuben"
        ),
    ),
    "html_only_webmail.eml": Case(
        subject="Zwerfvuil aan de speeltuin",
        from_address="ilse.jacobs@example.be",
        text_has=("Beste medewerker,", "veel zwerfvuil", "Stadspark, bij de schommels", "café"),
        text_lacks=("<p>", "font-family", "&nbsp;"),
    ),
    "related_inline_image.eml": Case(
        subject="Put in de weg aan de Veldstraat",
        from_address="eva.willems@example.com",
        text_has=("diepe put in de weg aan de Veldstraat 30",),
        attachments=(("image001.png", 89),),
        language="nl",
    ),
    "mixed_pdf_attachment.eml": Case(
        subject="Attest van woonst voor mijn werkgever",
        from_address="lucas.peeters@example.com",
        text_has=("attest van woonst", "Lucas"),
        attachments=(("formulier werkgever.pdf", 158),),
    ),
    "forward_rfc822_attached.eml": Case(
        subject="FW: Hondenpoep op het grasplein",
        from_address="pieter.maes@example.be",
        text=(
            "Beste,\n\nZie de klacht van mijn buurvrouw hieronder, ik sluit me erbij aan."
            "\n\nGroeten,\nPieter"
        ),
        full_text_has=(
            "---------- Doorgestuurd bericht ----------\n"
            "Van: An Janssens <an.janssens@example.com>",
            "Onderwerp: Hondenpoep op het grasplein",
            "ligt weer vol hondenpoep",
        ),
        attachments=(("grasplein.jpg", 898),),
    ),
    "forward_inline_gmail.eml": Case(
        subject="Fwd: Gat in het voetpad",
        from_address="sofie.maes@example.be",
        text="Ter info, dit kreeg ik van de buren. Kunnen jullie dit opvolgen?\n\nSofie",
        full_text_has=("diep gat in het voetpad",),
    ),
    "large_attachment.eml": Case(
        subject="Lawaai bouwwerf 's nachts - filmpje",
        from_address="wim.hermans@example.com",
        text_has=("om middernacht nog geboord",),
        attachments=(("filmpje_lawaai.mp4", 5000), ("bouwwerf.jpg", 298)),
    ),
    "outlook_reply_nl.eml": Case(
        subject=LAMP_REPLY_SUBJECT,
        from_address="jan.peeters@example.be",
        text="Dag,\n\nDe lamp brandt nog altijd niet, ook gisteravond niet.\n\nGroeten\nJan",
        reference="1750-000123",
        language="nl",
    ),
    "outlook_reply_fr_html.eml": Case(
        subject="RE: [1750-000124] Conteneur à verre plein",
        from_address="marie.dubois@example.com",
        text=(
            "Bonjour,\n\nLe conteneur à verre de la place du Marché déborde toujours. Des éclats "
            "de verre traînent sur le trottoir.\n\nCordialement,\nMarie Dubois"
        ),
        reference="1750-000124",
        language="fr",
    ),
    "outlook_reply_en.eml": Case(
        subject="RE: [1750-000130] Bulky waste pickup",
        from_address="tom.smith@example.com",
        text=(
            "Hello,\n\nThursday morning works for us. The sofa and two mattresses will be at the"
            "\nfront door from 7 am.\n\nKind regards,\nTom Smith"
        ),
        reference="1750-000130",
        language="en",
    ),
    "original_message_block.eml": Case(
        subject="RE: [1750-000131] Wateroverlast kelder",
        from_address="frank.jacobs@example.be",
        text=(
            "Het water staat nu 10 cm hoog in de kelder. De riolering in de straat loopt\n"
            "over zodra het regent.\n\nFrank"
        ),
        reference="1750-000131",
    ),
    "oorspronkelijk_bericht_zimbra.eml": Case(
        subject="Re: [1750-000132] Snoeiafval ophalen",
        from_address="nele.vos@example.be",
        text="Het gaat om ongeveer drie kubieke meter takken. Ze liggen al gebundeld.\n\nNele",
        reference="1750-000132",
    ),
    "apple_mail_nl.eml": Case(
        subject="Re: [1750-000123] Kapotte straatlamp Kerkstraat",
        from_address="jan.peeters@example.be",
        # Pitfall 9: "Dank u," opens a real answer and must survive.
        text="Dank u, de lamp brandt weer sinds gisteravond. Snel opgelost!\n\nGroeten,\nJan",
        reference="1750-000123",
    ),
    "iphone_reply_nl.eml": Case(
        subject="Re: [1750-000125] Restafval niet opgehaald",
        from_address="an.janssens@example.com",
        text="Bedankt! Ik stuur morgen nog een foto van de zakken.",
        reference="1750-000125",
    ),
    "gmail_reply_nl.eml": Case(
        subject="Re: [1750-000125] Restafval niet opgehaald",
        from_address="an.janssens@example.com",
        text=(
            "Hallo,\n\nVandaag is er weer niets opgehaald. De gele zakken liggen nog steeds op de"
            "\nstoep.\n\nMvg\nAn"
        ),
        reference="1750-000125",
    ),
    "gmail_reply_fr.eml": Case(
        subject="Re: [1750-000126] Lampadaire en panne",
        from_address="francoise.lambert@example.com",
        text="Merci pour votre réponse rapide. Le lampadaire fonctionne de nouveau.",
        reference="1750-000126",
    ),
    "gmail_reply_en.eml": Case(
        subject="Re: [1750-000133] Missing street sign",
        from_address="tom.smith@example.com",
        text="Thanks, that's great news. The sign is back up and straight again.\n\nTom",
        reference="1750-000133",
    ),
    "thunderbird_flowed_signature.eml": Case(
        subject="Bladeren in de goot Molenstraat",
        from_address="sofie.maes@example.be",
        text=(
            "Beste,\n\nDe goten in de Molenstraat zitten vol bladeren. Bij de laatste regenbui "
            "stond het water tot aan de deurdrempels van de huizen aan de even kant. Kan de "
            "veegwagen eens langskomen?\n\nBedankt!"
        ),
        full_text_has=("--\nSofie Maes\nMolenstraat 3",),
        language="nl",
    ),
    "interleaved_quotes.eml": Case(
        subject="Re: [1750-000134] Kledingcontainer vol",
        from_address="bart.claessens@example.be",
        # Answers between quotes: the quotes are their context, nothing is cut.
        text_has=(
            "> Kunt u ons het exacte adres geven?",
            "Stationsstraat 45",
            "Ja, op het voetpad",
        ),
        reference="1750-000134",
    ),
    "bottom_quote_bare_attribution.eml": Case(
        subject="Re: [1750-000123] Kapotte straatlamp Kerkstraat",
        from_address="jan.peeters@example.be",
        text="Het is de lamp bij nummer 14, niet bij nummer 12.\n\nJan",
        reference="1750-000123",
    ),
    "broken_no_closing_boundary.eml": Case(
        subject="Verkeersbord omver gereden",
        from_address="koen.mertens@example.com",
        text_has=("Het verkeersbord aan het kruispunt",),
        attachments=(("bord.jpg", 171),),
        problems=("no closing boundary",),
    ),
    "broken_unknown_charset.eml": Case(
        subject="Café lawaai",
        from_address="willy.vanacker@example.be",
        text="Het café op de markt speelt weer veel te luid. Eén uur 's nachts!",
        problems=("unknown charset 'x-klingon-1'", "unknown charset 'x-unknown'"),
    ),
    "broken_garbage_headers.eml": Case(
        subject="Overlast café aan de markt",
        from_address="rita.peeters@example.be",
        text_has=("bromfietsen te ronken voor het café",),
        problems=("is not a date", "has no colon", "unusable To address"),
    ),
    "broken_missing_boundary.eml": Case(
        subject="Fietsenstalling station kapot",
        from_address="luc.jansen@example.com",
        text_has=("De overkapping van de fietsenstalling",),
        problems=("no boundary parameter",),
    ),
    "broken_base64.eml": Case(
        subject="Containerpark",
        from_address="dirk.wuyts@example.be",
        text_has=("De slagboom aan het containerpark",),
        problems=("broken base64",),
    ),
    "no_message_id.eml": Case(
        subject="Container vol aan de sporthal",
        from_address="sms-gateway@provider.example.com",
        text="Glasbol aan de sporthal zit vol, er staan flessen naast. Groetjes Jef",
        problems=("no usable Message-ID", "no Date header"),
    ),
    "ooo_nl_exchange.eml": Case(
        subject="Automatisch antwoord: [1750-000140] Uw vraag over de bibliotheek",
        from_address="griet.stevens@example.be",
        text_has=("Ik ben afwezig",),
        noise=Noise.AUTO_REPLY,
        reference="1750-000140",
        language="nl",
    ),
    "ooo_fr_autoreply.eml": Case(
        subject="Réponse automatique : [1750-000124] Conteneur à verre plein",
        from_address="luc.martin@example.com",
        text_has=("Je suis absent du bureau",),
        noise=Noise.AUTO_REPLY,
        reference="1750-000124",
    ),
    "ooo_en_subject.eml": Case(
        subject="Out of Office AutoReply: [1750-000130] Bulky waste pickup",
        from_address="kevin.brown@example.com",
        text_has=("I am out of the office",),
        noise=Noise.AUTO_REPLY,
        reference="1750-000130",
    ),
    "read_receipt_mdn.eml": Case(
        subject="Gelezen: [1750-000123] Kapotte straatlamp Kerkstraat",
        from_address="jan.peeters@example.be",
        text="Uw bericht is gelezen op maandag 16 november 2026 10:20.",
        noise=Noise.AUTO_REPLY,
        reference="1750-000123",
    ),
    "bounce_postfix_dsn.eml": Case(
        subject="Undelivered Mail Returned to Sender",
        from_address="mailer-daemon@gemeente.example.be",
        text_has=("could not\nbe delivered", "User unknown"),
        # The returned mail is ours: neither its text nor its PDF belongs to the bounce.
        text_lacks=("ontvangstbewijs", "Uw nummer is"),
        noise=Noise.BOUNCE,
    ),
    "bounce_exchange_ndr.eml": Case(
        subject="Onbestelbaar: [1750-000142] Uw melding over de speeltuin",
        from_address="microsoftexchange329e71ec88ae4615bbc36ab6ce41109e@example.com",
        text_has=("kan niet worden bezorgd",),
        noise=Noise.BOUNCE,
        reference="1750-000142",
        language="nl",
    ),
    "bounce_delayed_dsn.eml": Case(
        subject="Delayed Mail (still being retried)",
        from_address="mailer-daemon@gemeente.example.be",
        text_has=("THIS IS A WARNING ONLY",),
        noise=Noise.BOUNCE,
    ),
    "bounce_exim_plain.eml": Case(
        subject="Mail delivery failed: returning message to sender",
        from_address="mailer-daemon@mx.example.com",
        text_has=("550 5.1.1 No such user here",),
        noise=Noise.BOUNCE,
    ),
    "mailing_list.eml": Case(
        subject="[Buurtcomite] Verslag vergadering november",
        from_address="buurt@lists.example.com",
        text_has=("verkeersdrempels in de Molenstraat",),
        noise=Noise.BULK,
    ),
    "own_address_loop.eml": Case(
        subject="[1750-000145] We hebben uw melding ontvangen",
        from_address=OWN_ADDRESS,
        text="Beste, we hebben uw melding goed ontvangen. Uw nummer is 1750-000145.",
        noise=Noise.LOOP,
        reference="1750-000145",
    ),
    "loop_header_redirect.eml": Case(
        subject="[1750-000146] We hebben uw melding ontvangen",
        from_address="noor.aerts@example.be",
        text="Beste, we hebben uw melding goed ontvangen. Uw nummer is 1750-000146.",
        noise=Noise.LOOP,
        reference="1750-000146",
    ),
    "apple_inline_photos.eml": Case(
        subject="Graffiti op de muur van de sporthal",
        from_address="lotte.claes@example.com",
        text=(
            "Er staat nieuwe graffiti op de zijmuur van de sporthal:\n\n"
            "En ook op de fietsenstalling ernaast.\n\nLotte"
        ),
        attachments=(("IMG_4821.jpeg", 698), ("IMG_4822.jpeg", 648)),
    ),
    "smime_signed.eml": Case(
        subject="Aanvraag terrasvergunning 2027",
        from_address="info@bakkerij-verbeke.example.be",
        text_has=("terras van 4 op 6 meter",),
    ),
}


def test_every_fixture_is_in_the_table() -> None:
    on_disk = {p.name for p in FIXTURES.glob("*.eml")}
    assert on_disk == set(CORPUS)
    assert len(on_disk) >= 30


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_corpus(name: str) -> None:
    case = CORPUS[name]
    parsed = parse_fixture(name)

    assert parsed.subject == case.subject
    assert parsed.from_address == case.from_address
    assert parsed.noise is case.noise
    assert parsed.reference == case.reference
    assert parsed.language == case.language
    if case.text is not None:
        assert parsed.text == case.text
    for part in case.text_has:
        assert part in parsed.text
    for part in case.text_lacks:
        assert part not in parsed.full_text
    for part in case.full_text_has:
        assert part in parsed.full_text
    assert [(a.filename, a.size) for a in parsed.attachments] == list(case.attachments)
    for words in case.problems:
        assert any(words in problem for problem in parsed.problems), parsed.problems
    if not case.problems:
        assert parsed.problems == ()


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_corpus_invariants(name: str) -> None:
    parsed = parse_fixture(name)

    assert parsed.message_id and "<" not in parsed.message_id and ">" not in parsed.message_id
    assert parsed.date is None or parsed.date.tzinfo is not None
    assert parsed.text in parsed.full_text
    assert bool(parsed.text.strip()) == bool(parsed.full_text.strip())
    assert (parsed.noise is Noise.BOUNCE) == (parsed.bounce is not None)
    for attachment in parsed.attachments:
        assert (attachment.data is None) == (attachment.removed_reason is not None)
        assert attachment.data is None or len(attachment.data) == attachment.size


# --- fields in detail ----------------------------------------------------------------------------


def test_threading_ids_have_no_brackets_and_keep_their_order() -> None:
    parsed = parse_fixture("outlook_reply_nl.eml")

    assert (
        parsed.message_id
        == "AS8PR03MB6934C1B2D3E4F5A6@AS8PR03MB6934.eurprd03.prod.outlook.example.com"
    )
    assert parsed.in_reply_to == ("mp.41.k3j5h2dq@gemeente.example.be",)
    assert parsed.references == (
        "CAB8xq1+street.light.0001@mail.example.be",
        "mp.41.k3j5h2dq@gemeente.example.be",
    )
    assert parsed.to == (OWN_ADDRESS,)
    assert parsed.from_name == "Jan Peeters"
    assert parsed.date is not None and parsed.date.isoformat() == "2026-11-18T20:14:33+00:00"


def test_references_are_deduplicated() -> None:
    raw = mail("Hallo", headers="References: <a@x.be> <b@x.be>\n <a@x.be>\nIn-Reply-To: <b@x.be>\n")

    parsed = parse(raw)

    assert parsed.references == ("a@x.be", "b@x.be")
    assert parsed.in_reply_to == ("b@x.be",)


def test_addresses_are_case_folded_and_reply_to_is_separate() -> None:
    raw = (
        b'From: "Peeters, Jan" <Jan.Peeters@Example.BE>\n'
        b"Reply-To: Thuis <JAN@thuis.example.com>\n"
        b"To: meldpunt@gemeente.example.be, Schepen <Schepen@Gemeente.Example.be>\n"
        b"Cc: buur@example.com, buur@EXAMPLE.com\n"
        b"Subject: x\nMessage-ID: <x@y>\n\nHallo\n"
    )

    parsed = parse(raw)

    assert parsed.from_address == "jan.peeters@example.be"
    assert parsed.from_name == "Peeters, Jan"
    assert parsed.reply_to == "jan@thuis.example.com"
    assert parsed.to == ("meldpunt@gemeente.example.be", "schepen@gemeente.example.be")
    assert parsed.cc == ("buur@example.com",)


def test_a_whole_encoded_from_header_still_gives_the_address() -> None:
    encoded = base64.b64encode("Zoë <zoe@example.be>".encode()).decode()
    raw = f"From: =?utf-8?b?{encoded}?=\nSubject: x\nMessage-ID: <x@y>\n\nHallo\n".encode()

    parsed = parse(raw)

    assert parsed.from_address == "zoe@example.be"
    assert parsed.from_name == "Zoë"


def test_encoded_words_split_inside_a_character_are_joined() -> None:
    # "één" in UTF-8 is c3 a9 c3 a9 6e; split after the first byte of the second character.
    subject = "=?UTF-8?Q?=C3=A9=C3?= =?UTF-8?Q?=A9n_straat?="
    raw = mail("x").replace(b"Subject: Test", f"Subject: {subject}".encode())

    assert parse(raw).subject == "één straat"


def test_subject_whitespace_is_normalised() -> None:
    raw = mail("x").replace(b"Subject: Test", b"Subject:   Lamp \t kapot\n   in de straat  ")

    assert parse(raw).subject == "Lamp kapot in de straat"


def test_date_without_a_zone_is_read_as_utc() -> None:
    raw = mail("x").replace(b"+0100", b"-0000")

    parsed = parse(raw)

    assert parsed.date is not None and parsed.date.utcoffset() is not None
    assert parsed.date.isoformat() == "2026-11-16T10:12:00+00:00"


def test_a_missing_message_id_is_a_stable_hash_of_the_bytes() -> None:
    raw = (FIXTURES / "no_message_id.eml").read_bytes()

    first, second = parse(raw), parse(raw)

    assert first.message_id == second.message_id
    assert first.message_id == f"sha256-{hashlib.sha256(raw).hexdigest()}@meldpunt.invalid"


def test_an_overlong_message_id_is_hashed_the_same_wherever_it_appears() -> None:
    long_id = "x" * 300 + "@example.be"
    raw = mail("x", headers=f"In-Reply-To: <{long_id}>\n").replace(
        b"<test.1@example.be>", f"<{long_id}>".encode()
    )

    parsed = parse(raw)

    assert parsed.message_id == parsed.in_reply_to[0]
    assert parsed.message_id.startswith("sha256-") and len(parsed.message_id) < 255


@pytest.mark.parametrize(
    ("subject", "reference"),
    [
        ("RE: [1750-000123] Kapotte lamp", "1750-000123"),
        ("Re: Re: [MP-0001234] vraag", "MP-0001234"),
        ("[ABCDEFGHIJ-123456]", "ABCDEFGHIJ-123456"),
        ("1750-000123 zonder haken", None),
        ("[1750-12345] te kort", None),
        ("[ABCDEFGHIJK-123456] prefix te lang", None),
    ],
)
def test_reference_in_subject(subject: str, reference: str | None) -> None:
    raw = mail("x").replace(b"Subject: Test", f"Subject: {subject}".encode())

    assert parse(raw).reference == reference


@pytest.mark.parametrize(
    ("value", "language"),
    [("nl-BE", "nl"), ("fr", "fr"), ("en-GB, nl", "en"), ("de-DE", None), ("", None)],
)
def test_content_language(value: str, language: str | None) -> None:
    assert parse(mail("x", headers=f"Content-Language: {value}\n")).language == language


def test_html_is_kept_as_received() -> None:
    parsed = parse_fixture("html_only_webmail.eml")

    assert parsed.html is not None
    assert parsed.html.startswith("<html><head><style")
    assert "caf&eacute;uitbaatster" in parsed.html


def test_plain_text_wins_in_alternative_and_html_is_kept() -> None:
    parsed = parse_fixture("alternative_plain_html.eml")

    assert "*dringend*" in parsed.full_text
    assert parsed.html is not None and "<b>dringend</b>" in parsed.html


def test_inline_image_keeps_its_content_id() -> None:
    (image,) = parse_fixture("related_inline_image.eml").attachments

    assert image.inline
    assert image.content_id == "image001.png@01DB3F1A.6C2D5E80"
    assert image.content_type == "image/png"
    assert image.data is not None and image.data.startswith(b"\x89PNG")


def test_apple_inline_photos_are_inline_attachments() -> None:
    parsed = parse_fixture("apple_inline_photos.eml")

    assert [a.inline for a in parsed.attachments] == [True, True]
    assert parsed.html is not None and "fietsenstalling" in parsed.html


def test_attachment_too_large_keeps_name_and_size_without_data() -> None:
    video, photo = parse_fixture("large_attachment.eml").attachments

    assert video.data is None
    assert video.size == 5000
    assert video.removed_reason == "te groot: 4,9 kB (maximum 4 kB)"
    assert photo.data is not None and photo.removed_reason is None


def test_a_twenty_megabyte_attachment_is_refused_but_the_mail_is_read() -> None:
    payload = base64.encodebytes(bytes(20 * 1024 * 1024 + 512 * 1024))
    raw = mail(
        b"--b\nContent-Type: text/plain\n\nZie het filmpje.\n"
        b"--b\nContent-Type: video/mp4\nContent-Disposition: attachment; filename=lawaai.mp4\n"
        b"Content-Transfer-Encoding: base64\n\n" + payload + b"--b--\n",
        content_type='multipart/mixed; boundary="b"',
    )

    parsed = parse(raw, limit=15 * 1024 * 1024)

    (video,) = parsed.attachments
    assert video.data is None and video.size == 20 * 1024 * 1024 + 512 * 1024
    assert video.removed_reason == "te groot: 20,5 MB (maximum 15 MB)"
    assert parsed.text == "Zie het filmpje."


def test_unnamed_attachments_get_a_dutch_name_and_paths_are_dropped() -> None:
    raw = mail(
        b"--b\nContent-Type: text/plain\n\nzie bijlagen\n"
        b"--b\nContent-Type: image/png\nContent-Transfer-Encoding: base64\n\niVBORw0KGgo=\n"
        b"--b\nContent-Type: application/pdf\n"
        b'Content-Disposition: attachment; filename="..\\\\..\\\\windows\\\\brief.pdf"\n\n%PDF\n'
        b"--b--\n",
        content_type='multipart/mixed; boundary="b"',
    )

    names = [a.filename for a in parse(raw).attachments]

    assert names == ["bijlage-1.png", "brief.pdf"]


def test_forwarded_mail_attachments_count() -> None:
    parsed = parse_fixture("forward_rfc822_attached.eml")

    assert [a.filename for a in parsed.attachments] == ["grasplein.jpg"]
    assert parsed.text.endswith("Pieter")


# --- charsets ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("charset", "body", "text", "problem"),
    [
        ("utf-8", "één café".encode(), "één café", None),
        ("iso-8859-1", "één café".encode("latin-1"), "één café", None),
        ("iso-8859-15", "50 € boete".encode("iso-8859-15"), "50 € boete", None),
        ("windows-1252", "“lawaai” 5 €".encode("cp1252"), "“lawaai” 5 €", None),
        # Latin-1 labels are read as Windows-1252, like browsers do.
        ("iso-8859-1", "’s nachts 5 €".encode("cp1252"), "’s nachts 5 €", None),
        ("us-ascii", "één".encode("cp1252"), "één", None),
        # The label is wrong: UTF-8 bytes declared as Latin-1.
        ("iso-8859-1", "één café".encode(), "één café", "says iso-8859-1 but is UTF-8"),
        # Declared UTF-8 but Latin-1 bytes.
        ("utf-8", "één café".encode("latin-1"), "één café", "is not valid utf-8"),
        ("x-klingon", "één".encode(), "één", "unknown charset 'x-klingon'"),
        ("x-klingon", "één".encode("latin-1"), "één", "unknown charset 'x-klingon'"),
        ("rot13", b"caf\xe9", "café", "unknown charset 'rot13'"),
        (None, "één".encode(), "één", None),
        (None, "één".encode("latin-1"), "één", None),
        # Undefined in Windows-1252 as well: replaced, never an exception.
        ("windows-1252", b"lamp \x81 kapot \xe9", "lamp \ufffd kapot é", "is not valid"),
    ],
)
def test_charset_fallbacks(
    charset: str | None, body: bytes, text: str, problem: str | None
) -> None:
    content_type = "text/plain" + (f'; charset="{charset}"' if charset else "")
    raw = mail(body, content_type=content_type, headers="Content-Transfer-Encoding: 8bit\n")

    parsed = parse(raw)

    assert parsed.full_text == text
    if problem is None:
        assert parsed.problems == ()
    else:
        assert any(problem in p for p in parsed.problems), parsed.problems


def test_raw_8bit_headers_are_read_as_utf8_or_windows_1252() -> None:
    raw = mail("x").replace(b"Subject: Test", "Subject: Overlast café".encode())
    raw = raw.replace(b"Jan Peeters", "Jérôme Peeters".encode("latin-1"))

    parsed = parse(raw)

    assert parsed.subject == "Overlast café"
    assert parsed.from_name == "Jérôme Peeters"


def test_broken_encoded_word_is_kept_as_is() -> None:
    raw = mail("x").replace(b"Subject: Test", b"Subject: =?utf-8?b?Q?=")

    parsed = parse(raw)

    assert parsed.subject == "=?utf-8?b?Q?="
    assert any("encoded word" in p for p in parsed.problems)


# --- reply stripping -----------------------------------------------------------------------------

QUOTE_NL = "\n> Beste,\n> We hebben uw melding ontvangen.\n"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            "Beste,\n\nDank u, de lamp brandt weer sinds gisteren.\n\nGroeten\nJan",
            "Beste,\n\nDank u, de lamp brandt weer sinds gisteren.\n\nGroeten\nJan",
            id="dank-u-after-greeting",
        ),
        pytest.param(
            "Bedankt, het is opgelost.\nThanks, it works.\nBest, Jan",
            "Bedankt, het is opgelost.\nThanks, it works.\nBest, Jan",
            id="thanks-words-are-not-signatures",
        ),
        pytest.param(
            "Kapot:\n- lamp 1\n- lamp 2\n\nJan",
            "Kapot:\n- lamp 1\n- lamp 2\n\nJan",
            id="hyphen-list-is-not-a-signature",
        ),
        pytest.param(
            "Op 3 november schreef ik u al:\nde lamp is kapot.\n\nJan",
            "Op 3 november schreef ik u al:\nde lamp is kapot.\n\nJan",
            id="citizen-sentence-looks-like-attribution",
        ),
        pytest.param(
            "Nog steeds kapot.\n\nOp ma 16 nov 2026 om 10:12 schreef Meldpunt <meldpunt@x.be>:\n"
            + QUOTE_NL,
            "Nog steeds kapot.",
            id="gmail-nl",
        ),
        pytest.param(
            "Nog steeds kapot.\n\nOp ma 16 nov 2026 om 10:12 schreef Meldpunt Gemeente Voorbeeld"
            " <\nmeldpunt@gemeente.example.be>:\n" + QUOTE_NL,
            "Nog steeds kapot.",
            id="gmail-nl-wrapped",
        ),
        pytest.param(
            "Nog steeds kapot.\n\nOp ma 16 nov 2026 om 10:12 schreef Meldpunt Gemeente\n"
            "Voorbeeld <meldpunt@gemeente.example.be\n>:\n" + QUOTE_NL,
            "Nog steeds kapot.",
            id="gmail-nl-wrapped-twice",
        ),
        pytest.param(
            "In orde.\n\nOp 16 nov. 2026, om 10:12 heeft Meldpunt <meldpunt@x.be> het volgende"
            " geschreven:\n" + QUOTE_NL,
            "In orde.",
            id="apple-nl",
        ),
        pytest.param(
            "D'accord.\n\nLe lun. 16 nov. 2026 à 10:12, Meldpunt <meldpunt@x.be> a écrit\xa0:\n"
            + QUOTE_NL,
            "D'accord.",
            id="gmail-fr-nbsp",
        ),
        pytest.param(
            "Fine.\n\nOn Mon, Nov 16, 2026 at 10:12 AM Meldpunt <meldpunt@x.be> wrote:\n"
            + QUOTE_NL,
            "Fine.",
            id="gmail-en",
        ),
        pytest.param(
            "Gut.\n\nAm 16.11.2026 um 10:12 schrieb Meldpunt <meldpunt@x.be>:\n" + QUOTE_NL,
            "Gut.",
            id="de",
        ),
        pytest.param(
            "Foto volgt.\n\nVan: Meldpunt\nVerzonden: maandag 16 november 2026 10:12\n"
            "Aan: Jan\nOnderwerp: lamp\n\nBeste,",
            "Foto volgt.",
            id="outlook-nl",
        ),
        pytest.param(
            "Photo suit.\n\nDe\xa0: Meldpunt\nEnvoyé\xa0: lundi 16 novembre 2026 10:12\n"
            "À\xa0: Marie\nObjet\xa0: lampe\n\nBonjour,",
            "Photo suit.",
            id="outlook-fr-nbsp",
        ),
        pytest.param(
            "Photo follows.\n\n*From:* Meldpunt\n*Sent:* Monday\n*To:* Tom\n*Subject:* lamp\n",
            "Photo follows.",
            id="outlook-en-bold",
        ),
        pytest.param(
            "Zie hieronder.\n\n-----Original Message-----\nFrom: x\nSent: y\n\ntekst",
            "Zie hieronder.",
            id="original-message",
        ),
        pytest.param(
            "Zie hieronder.\n\n----- Oorspronkelijk bericht -----\nVan: x\n\ntekst",
            "Zie hieronder.",
            id="oorspronkelijk-bericht",
        ),
        pytest.param(
            "Groeten,\nJan\n\n--\nJan Peeters\nKerkstraat 12",
            "Groeten,\nJan",
            id="signature-separator",
        ),
        pytest.param("Ok.\n\nVerzonden vanaf mijn iPhone\n\n" + QUOTE_NL, "Ok.", id="iphone-nl"),
        pytest.param("Ok.\n\nEnvoyé de mon iPhone", "Ok.", id="iphone-fr"),
        pytest.param("Ok.\n\nSent from my iPhone", "Ok.", id="iphone-en"),
        pytest.param("Ok.\n\nVerstuurd vanaf mijn Samsung Galaxy", "Ok.", id="samsung-nl"),
        pytest.param("Ok.\n\nGet Outlook for Android", "Ok.", id="outlook-mobile"),
        pytest.param(
            "Het is nummer 14.\n\n> Over welke lamp gaat het?\n> Meldpunt\n",
            "Het is nummer 14.",
            id="bottom-quote",
        ),
        pytest.param(
            "> Welk adres?\n\nStationsstraat 45.\n\n> Openbaar domein?\n\nJa.",
            "> Welk adres?\n\nStationsstraat 45.\n\n> Openbaar domein?\n\nJa.",
            id="interleaved",
        ),
        pytest.param(
            "> alles is geciteerd\n> niets nieuws",
            "> alles is geciteerd\n> niets nieuws",
            id="only-a-quote-keeps-everything",
        ),
        pytest.param(
            "Op ma 16 nov 2026 om 10:12 schreef Meldpunt <m@x.be>:\n> vraag\n\nantwoord",
            "Op ma 16 nov 2026 om 10:12 schreef Meldpunt <m@x.be>:\n> vraag\n\nantwoord",
            id="nothing-above-the-header-keeps-everything",
        ),
        pytest.param("", "", id="empty"),
    ],
)
def test_strip_reply(body: str, expected: str) -> None:
    assert strip_reply(body) == expected


@pytest.mark.parametrize(
    ("params", "body", "text"),
    [
        ("format=flowed", "De lamp \nbrandt niet.\n", "De lamp brandt niet."),
        ("format=flowed; delsp=yes", "De la \nmp brandt niet.\n", "De lamp brandt niet."),
        ("format=flowed", "> Het is \n> kapot.\nNieuw.\n", "> Het is kapot.\nNieuw."),
        ("format=flowed", " >niet geciteerd\n", ">niet geciteerd"),
        ("format=fixed", "De lamp \nbrandt niet.\n", "De lamp\nbrandt niet."),
    ],
)
def test_format_flowed(params: str, body: str, text: str) -> None:
    raw = mail(body, content_type=f"text/plain; charset=utf-8; {params}")

    assert parse(raw).full_text == text


def test_dank_u_survives_the_whole_pipeline() -> None:
    raw = mail("Beste,\n\nDank u, de container is geleegd.\n\nVriendelijke groeten,\nAn\n")

    assert (
        parse(raw).text == "Beste,\n\nDank u, de container is geleegd.\n\nVriendelijke groeten,\nAn"
    )


@given(st.text(max_size=2000))
@settings(max_examples=200, deadline=None)
def test_strip_reply_returns_part_of_its_input(text: str) -> None:
    assert strip_reply(text) in text


# --- noise and bounces ---------------------------------------------------------------------------


def test_postfix_bounce_names_the_mail_that_bounced() -> None:
    bounce = parse_fixture("bounce_postfix_dsn.eml").bounce

    assert bounce is not None
    assert bounce.original_message_ids == ("mp.71.x7qk2m4d@gemeente.example.be",)
    assert bounce.recipients == ("onbekend@example.com",)
    assert bounce.status == "5.1.1"
    assert bounce.diagnostic is not None and bounce.diagnostic.startswith("550 5.1.1 <onbekend@")
    assert bounce.permanent


def test_exchange_ndr_reads_the_returned_headers() -> None:
    bounce = parse_fixture("bounce_exchange_ndr.eml").bounce

    assert bounce is not None
    assert bounce.original_message_ids == ("mp.72.t5r4e3w2@gemeente.example.be",)
    assert bounce.recipients == ("lies.devos@example.com",)
    assert bounce.status == "5.4.1"
    assert bounce.permanent


def test_a_delay_is_not_permanent() -> None:
    bounce = parse_fixture("bounce_delayed_dsn.eml").bounce

    assert bounce is not None
    assert bounce.status == "4.4.1"
    assert not bounce.permanent
    assert bounce.original_message_ids == ("mp.73.y6u7i8o9@gemeente.example.be",)


def test_plain_text_bounce_uses_failed_recipients_and_the_copied_headers() -> None:
    bounce = parse_fixture("bounce_exim_plain.eml").bounce

    assert bounce is not None
    assert bounce.recipients == ("weg@example.com",)
    assert bounce.original_message_ids == ("mp.74.o9i8u7y6@gemeente.example.be",)
    assert bounce.status == "5.1.1"
    assert bounce.permanent


def test_bounce_wins_over_auto_submitted_and_our_own_address() -> None:
    raw = (FIXTURES / "bounce_postfix_dsn.eml").read_bytes()

    parsed = parse_mail(
        raw, max_attachment_bytes=LIMIT, own_addresses=("MAILER-DAEMON@gemeente.example.be",)
    )

    assert parsed.noise is Noise.BOUNCE


def test_a_failure_subject_alone_is_not_a_bounce() -> None:
    raw = mail("Mijn mail naar de school kwam niet aan.").replace(
        b"Subject: Test", b"Subject: Undeliverable: vraag over de school"
    )

    assert parse(raw).noise is None


@pytest.mark.parametrize(
    ("headers", "subject", "noise"),
    [
        ("Auto-Submitted: auto-replied\n", "Test", Noise.AUTO_REPLY),
        ("Auto-Submitted: auto-generated; owner-email=x@y\n", "Test", Noise.AUTO_REPLY),
        ("Auto-Submitted: no\n", "Test", None),
        ("X-Autoreply: yes\n", "Test", Noise.AUTO_REPLY),
        ("X-Autorespond: Afwezig\n", "Test", Noise.AUTO_REPLY),
        ("X-Auto-Response-Suppress: DR, OOF\n", "Test", Noise.AUTO_REPLY),
        ("X-Auto-Response-Suppress: DR, RN\n", "Test", None),
        ("", "Afwezig: lamp", Noise.AUTO_REPLY),
        ("", "Automatic reply: lamp", Noise.AUTO_REPLY),
        ("", "Out of office", Noise.AUTO_REPLY),
        ("", "Absence de ramassage des poubelles", None),
        ("", "Afwezigheid van de vuilkar", None),
        ("Precedence: bulk\n", "Test", Noise.BULK),
        ("Precedence: junk\n", "Test", Noise.BULK),
        ("List-Unsubscribe: <mailto:x@y>\n", "Test", Noise.BULK),
        ("List-Id: <buurt.example.com>\nAuto-Submitted: auto-replied\n", "Test", Noise.AUTO_REPLY),
        ("X-Meldpunt-Loop: gemeente.example.be\nPrecedence: bulk\n", "Test", Noise.LOOP),
        ("", "Test", None),
    ],
)
def test_noise(headers: str, subject: str, noise: Noise | None) -> None:
    raw = mail("Hallo", headers=headers).replace(b"Subject: Test", f"Subject: {subject}".encode())

    assert parse(raw).noise is noise


def test_our_message_id_domain_is_a_loop() -> None:
    raw = mail("x").replace(b"<test.1@example.be>", b"<mp.9.abcdefgh@Gemeente.Example.be>")

    assert parse(raw).noise is Noise.LOOP
    assert parse_mail(raw, max_attachment_bytes=LIMIT).noise is None


@pytest.mark.parametrize(("hops", "noise"), [(MAX_RECEIVED, None), (MAX_RECEIVED + 1, Noise.LOOP)])
def test_too_many_received_headers_is_a_loop(hops: int, noise: Noise | None) -> None:
    received = "".join(
        f"Received: from hop{i}.example.com by hop{i + 1}.example.com\n" for i in range(hops)
    )

    assert parse(mail("x", headers=received)).noise is noise


# --- limits and garbage --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [b"", b"   \r\n\r\n", b"hallo, dit is geen mail", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"],
)
def test_not_a_mail(raw: bytes) -> None:
    with pytest.raises(UnparseableMail):
        parse(raw)


def test_absurd_nesting_keeps_the_headers() -> None:
    nested = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\n\n--b%d\n' % (i, i) for i in range(3000)
    )
    raw = (
        b"From: Jan <jan@example.be>\nSubject: diep\n" + nested + b"Content-Type: text/plain\n\nx\n"
    )

    parsed = parse(raw)

    assert parsed.subject == "diep"
    assert parsed.from_address == "jan@example.be"
    assert any("nested too deeply" in p for p in parsed.problems)


def test_deep_but_parseable_nesting_stops_at_the_depth_limit() -> None:
    levels = MAX_DEPTH + 10
    nested = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\n\n--b%d\n' % (i, i) for i in range(levels)
    )
    raw = b"From: a@example.be\nSubject: diep\n" + nested + b"Content-Type: text/plain\n\nx\n"

    parsed = parse(raw)

    assert any("nested deeper" in p for p in parsed.problems)


def test_too_many_parts_are_skipped() -> None:
    parts = b"".join(
        b"--b\nContent-Type: text/plain\n\nstuk %d\n" % i for i in range(MAX_PARTS + 50)
    )

    parsed = parse(mail(parts + b"--b--\n", content_type='multipart/mixed; boundary="b"'))

    assert "stuk 0" in parsed.full_text
    assert f"stuk {MAX_PARTS + 40}" not in parsed.full_text
    assert any("MIME parts" in p for p in parsed.problems)


def test_quadratic_patterns_are_kept_short() -> None:
    # Long lines that start like attribution lines; mail-parser-reply's patterns are quadratic.
    body = ("On " + "a" * 5000 + "\n") * 40 + ("Op " + "b " * 3000 + "\n") * 40

    parsed = parse(mail(body))

    assert parsed.text == parsed.full_text


FIXTURE_BYTES = [p.read_bytes() for p in sorted(FIXTURES.glob("*.eml"))]
JUNK = [b"\n", b"\r\n", b"--", b"=?", b"?=", b"\x00", b"\xff\xfe", b": ", b"<>", b"\n\n", b";"]


@st.composite
def mangled_mail(draw: st.DrawFn) -> bytes:
    """A corpus mail cut, spliced and sprinkled with MIME punctuation."""
    raw = bytearray(draw(st.sampled_from(FIXTURE_BYTES)))
    for _ in range(draw(st.integers(0, 8))):
        where = draw(st.integers(0, len(raw)))
        action = draw(st.sampled_from(["cut", "insert", "junk", "flip"]))
        if action == "cut":
            del raw[where : where + draw(st.integers(1, 400))]
        elif action == "insert":
            raw[where:where] = draw(st.binary(max_size=40))
        elif action == "junk":
            raw[where:where] = draw(st.sampled_from(JUNK))
        elif where < len(raw):
            raw[where] ^= draw(st.integers(1, 255))
    return bytes(raw)


@given(st.one_of(st.binary(max_size=3000), mangled_mail()))
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_only_unparseable_mail_escapes(raw: bytes) -> None:
    try:
        parsed = parse(raw)
    except UnparseableMail:
        return
    assert parsed.message_id
    assert parsed.date is None or parsed.date.tzinfo is not None
    assert parsed.text in parsed.full_text
    assert all(a.size >= 0 for a in parsed.attachments)
