"""``channels.messenger``, Meta's signature and handshake, and the log of what was sent."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from connectors.messenger.options import GRAPH_API, MessengerOptions
from connectors.messenger.sent import KEEP, SentLog
from connectors.messenger.signature import handshake_challenge, sign, signature_valid
from tests.connectors.messenger.conftest import APP_SECRET, signed


def test_nothing_set_names_the_variables_to_set() -> None:
    options = MessengerOptions()
    assert options.missing == [
        "FACEBOOK_APP_SECRET",
        "FACEBOOK_VERIFY_TOKEN",
        "FACEBOOK_PAGE_TOKEN",
    ]
    assert options.send_url == f"{GRAPH_API}/v21.0/me/messages"
    assert (options.fallback, options.human_agent_tag) == (["email", "sms"], True)


def test_a_graph_base_and_version_make_the_send_address() -> None:
    options = MessengerOptions(
        app_secret=SecretStr("s"),
        verify_token=SecretStr("v"),
        page_token=SecretStr("p"),
        graph_base=" http://127.0.0.1:9/ ",
        graph_version="v22.0",
    )
    assert options.missing == []
    assert options.send_url == "http://127.0.0.1:9/v22.0/me/messages"
    assert "'p'" not in repr(options)


@pytest.mark.parametrize(
    "fields",
    [
        {"graph_base": "graph.facebook.com"},
        {"graph_version": "21.0"},
        {"graph_version": "latest"},
        {"fallback": ["telegram"]},
        {"max_attachment_bytes": -1},
        {"timeout_seconds": 0},
        {"page_access_token": "x"},
    ],
)
def test_mistakes_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        MessengerOptions.model_validate(fields)


def test_the_signature_is_an_hmac_of_the_raw_body() -> None:
    body = b'{"object":"page","entry":[]}'
    header = signed(body)["X-Hub-Signature-256"]
    assert header == sign(APP_SECRET, body)
    assert signature_valid(APP_SECRET, body, header)
    assert signature_valid(APP_SECRET, body, header.upper().replace("SHA256=", "sha256="))
    assert not signature_valid(APP_SECRET, body + b" ", header)
    assert not signature_valid(APP_SECRET, body, header.removeprefix("sha256="))
    assert not signature_valid(APP_SECRET, body, "sha1=" + header[7:])
    assert not signature_valid(APP_SECRET, body, None)
    assert not signature_valid("", body, sign("", body))


def test_the_handshake_wants_subscribe_and_the_token() -> None:
    query = {"hub.mode": "subscribe", "hub.verify_token": "geheim", "hub.challenge": "42"}
    assert handshake_challenge("geheim", query) == "42"
    assert handshake_challenge("anders", query) is None
    assert handshake_challenge("", {**query, "hub.verify_token": ""}) is None
    assert handshake_challenge("geheim", {**query, "hub.mode": "unsubscribe"}) is None


class MemoryCursors:
    def __init__(self) -> None:
        self.values: dict[str, dict[str, Any]] = {}

    async def load(self, key: str) -> dict[str, Any] | None:
        return self.values.get(key)

    async def save(self, key: str, value: dict[str, Any]) -> None:
        self.values[key] = value


async def test_the_sent_log_turns_receipts_into_the_ids_answers_were_stored_under() -> None:
    log = SentLog(MemoryCursors())
    await log.save_partial("p1", 7, ["m_a"])
    assert await log.partial("p1", 7) == ["m_a"]
    await log.record("p1", 7, ["m_a", "m_b"], "m_b", at_ms=1000)
    await log.record("p1", 8, ["m_c"], "m_c", at_ms=2000)
    assert await log.partial("p1", 7) == []
    # Named messages, mapped to their answer; an unknown id is passed on as it is.
    assert await log.delivered("p1", ["m_a", "m_old"], watermark=0) == ["m_b", "m_old"]
    # By watermark: what is not yet delivered and was sent by then.
    assert await log.delivered("p1", [], watermark=2500) == ["m_c"]
    assert await log.delivered("p1", [], watermark=2500) == []
    assert await log.read("p1", watermark=1500) == ["m_b"]
    assert await log.read("p1", watermark=1500) == []
    assert await log.read("p1", watermark=2000) == ["m_c"]
    assert await log.read("p2", watermark=9999) == []


async def test_the_sent_log_keeps_the_latest_messages_only() -> None:
    cursors = MemoryCursors()
    log = SentLog(cursors)
    for n in range(KEEP + 5):
        await log.record("p1", n, [f"m_{n}"], f"m_{n}", at_ms=n)
    assert len(cursors.values["messenger:psid:p1"]["sent"]) == KEEP
    assert await log.read("p1", watermark=4) == []
    assert (await log.read("p1", watermark=KEEP + 5))[0] == "m_5"
