"""Reading Twilio's webhook fields, from recorded payload shapes."""

from __future__ import annotations

import pytest

from connectors.twilio.messaging import NotAMessage, parse_message, parse_status
from ingest.model import Channel, DeliveryStatus, Kind, Location
from tests.connectors.twilio.conftest import fixture


def test_an_sms() -> None:
    parsed = parse_message(fixture("sms"))
    assert parsed.channel is Channel.SMS
    assert parsed.number == "+32470123456"
    assert parsed.media == ()
    assert parsed.location is None
    assert parsed.profile_name is None


def test_whatsapp_media_location_and_button() -> None:
    media = parse_message(fixture("whatsapp_media"))
    assert media.channel is Channel.WHATSAPP
    assert media.number == "+32470123456"
    assert media.profile_name == "Marie Claes"
    assert [m.content_type for m in media.media] == ["image/jpeg"] * 2 + [
        "application/x-msdownload"
    ]
    location = parse_message(fixture("whatsapp_location"))
    assert location.location == Location(
        51.0631, 3.2729, "Gemeentehuis – Oostmolenstraat 11, 8750 Wingene"
    )
    button = parse_message(fixture("whatsapp_button", Body=""))
    assert (button.text, button.kind) == ("Klacht indienen", Kind.COMPLAINT)
    assert parse_message(fixture("whatsapp_button", ButtonPayload="kind:nonsense")).kind is None


@pytest.mark.parametrize("missing", ["From", "MessageSid"])
def test_a_payload_without_sender_or_id_is_not_a_message(missing: str) -> None:
    form = fixture("sms")
    del form[missing]
    with pytest.raises(NotAMessage):
        parse_message(form)


def test_status_callbacks() -> None:
    delivered = parse_status(fixture("status_delivered", MessageSid="SM1"))
    assert delivered is not None
    assert (delivered.channel, delivered.status, delivered.detail) == (
        Channel.SMS,
        DeliveryStatus.DELIVERED,
        None,
    )
    failed = parse_status(fixture("status_undelivered", MessageSid="SM1"))
    assert failed is not None and failed.status is DeliveryStatus.FAILED
    assert failed.detail == "Twilio error 30003: the phone is switched off or unreachable"
    read = parse_status(fixture("whatsapp_status_read", MessageSid="SM1"))
    assert read is not None and (read.channel, read.status) == (
        Channel.WHATSAPP,
        DeliveryStatus.READ,
    )
    assert (
        parse_status(fixture("status_delivered", MessageSid="SM1", MessageStatus="received"))
        is None
    )
