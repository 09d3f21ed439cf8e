"""``channels.twilio``: numbers in E.164, what is missing, where the API is."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from connectors.twilio.options import TWILIO_API, TwilioOptions


def test_nothing_set_names_the_variables_to_set() -> None:
    options = TwilioOptions()
    assert options.missing == ["TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"]
    assert options.base_url == TWILIO_API
    assert options.whatsapp_fallback == ["sms", "email"]


def test_numbers_are_read_with_or_without_the_whatsapp_prefix() -> None:
    options = TwilioOptions(
        account_sid="AC1",
        auth_token=SecretStr("t"),
        sms_number=" +3250123456 ",
        whatsapp_sender="whatsapp:+3250654321",
        api_base="http://127.0.0.1:9/",
    )
    assert options.missing == []
    assert (options.sms_number, options.whatsapp_sender) == ("+3250123456", "+3250654321")
    assert options.base_url == "http://127.0.0.1:9"


@pytest.mark.parametrize(
    "fields",
    [
        {"sms_number": "050 12 34 56"},
        {"whatsapp_sender": "whatsapp:0470123456"},
        {"api_base": "api.twilio.com"},
        {"whatsapp_fallback": ["telegram"]},
    ],
)
def test_mistakes_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        TwilioOptions.model_validate(fields)


def test_the_phone_line_has_dutch_defaults_and_checks_the_front_desk_number() -> None:
    voice = TwilioOptions().voice
    assert (voice.menu, voice.front_desk_number, voice.reply_by_sms) == (False, "", True)
    assert voice.acknowledge_missed_calls is False
    assert (
        TwilioOptions.model_validate(
            {"voice": {"front_desk_number": " +3250999888 "}}
        ).voice.front_desk_number
        == "+3250999888"
    )
    with pytest.raises(ValidationError, match=r"E\.164"):
        TwilioOptions.model_validate({"voice": {"front_desk_number": "050 99 98 88"}})
    with pytest.raises(ValidationError, match="greater than or equal to 5"):
        TwilioOptions.model_validate({"voice": {"ring_seconds": 1}})
