"""``meldpunt telegram set-webhook`` and ``webhook-info`` as an operator runs them: a real
process against the fake Bot API, its exit code and its text, never the token."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.connectors.telegram.conftest import PUBLIC_URL, SECRET, TOKEN, FakeTelegram

SAMPLE = Path(__file__).resolve().parents[3] / "config"
WEBHOOK_URL = f"{PUBLIC_URL}/webhooks/telegram"


@dataclass(frozen=True)
class Done:
    code: int
    out: str
    err: str


@dataclass
class Cli:
    config: Path
    env: dict[str, str]

    async def run(self, *args: str, **env: str) -> Done:
        """``python -m meldpunt --config <sample copy> <args>``; ``env`` overrides variables."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "meldpunt", "--config", str(self.config), *args,
            env={**self.env, **env},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        done = Done(proc.returncode or 0, out.decode(), err.decode())
        # An operator gets a sentence, never a stack trace, and never the token.
        assert "Traceback" not in done.err, done.err
        assert TOKEN not in done.out + done.err
        assert TOKEN.split(":")[1] not in done.out + done.err
        return done


@pytest.fixture
def cli(tmp_path: Path, fake_telegram: FakeTelegram) -> Cli:
    shutil.copytree(SAMPLE, tmp_path / "config")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TELEGRAM_", "TWILIO_", "FACEBOOK_", "IMAP_", "SMTP_", "MELDPUNT_"))
    }
    env.update(
        MELDPUNT_DATABASE_URL=f"sqlite:///{tmp_path / 'meldpunt.db'}",
        MELDPUNT_SECRET_KEY="cli-test-secret-key-0123456789",
        MELDPUNT_PUBLIC_URL=PUBLIC_URL,
        TELEGRAM_BOT_TOKEN=TOKEN,
        TELEGRAM_WEBHOOK_SECRET=SECRET,
        TELEGRAM_API_BASE=fake_telegram.base,
    )
    return Cli(tmp_path / "config" / "meldpunt.yaml", env)


async def test_set_webhook_registers_the_url_secret_and_update_types(
    cli: Cli, fake_telegram: FakeTelegram
) -> None:
    before = await cli.run("telegram", "webhook-info")
    assert before.code == 0, before.err
    assert "webhook: none set: run 'meldpunt telegram set-webhook'" in before.out

    done = await cli.run("telegram", "set-webhook", "--drop-pending")
    assert done.code == 0, done.err
    assert done.out.splitlines() == [
        f"bot @wingene_meldpunt_bot (id 7012345678): webhook set to {WEBHOOK_URL}",
        "updates: message, edited_message, callback_query; secret token from "
        "TELEGRAM_WEBHOOK_SECRET",
        "pending updates: dropped",
    ]
    assert SECRET not in done.out
    assert fake_telegram.webhook == {
        "url": WEBHOOK_URL,
        "secret_token": SECRET,
        "allowed_updates": ["message", "edited_message", "callback_query"],
        "drop_pending_updates": "true",
    }

    again = await cli.run("telegram", "set-webhook")
    assert again.code == 0, again.err
    assert again.out.splitlines()[-1] == "pending updates: kept (Telegram delivers them now)"
    assert fake_telegram.webhook.get("drop_pending_updates", "false") == "false"

    fake_telegram.pending_updates = 3
    fake_telegram.last_error = (1794820000, "Wrong response from the webhook: 503 Service")
    info = await cli.run("telegram", "webhook-info")
    assert info.code == 0, info.err
    assert info.out.splitlines() == [
        f"webhook: {WEBHOOK_URL} (as configured)",
        "pending updates: 3",
        "updates: message, edited_message, callback_query",
        "last error: 2026-11-16T09:06:40+00:00: Wrong response from the webhook: 503 Service",
    ]


async def test_set_webhook_says_what_to_fix_and_calls_nothing_it_should_not(
    cli: Cli, fake_telegram: FakeTelegram
) -> None:
    no_secret, plain_http, odd_port, wrong_token, unreachable = await asyncio.gather(
        cli.run("telegram", "set-webhook", TELEGRAM_WEBHOOK_SECRET=""),
        cli.run("telegram", "set-webhook", MELDPUNT_PUBLIC_URL="http://meldpunt.wingene.example"),
        cli.run("telegram", "set-webhook", MELDPUNT_PUBLIC_URL=f"{PUBLIC_URL}:8750"),
        cli.run("telegram", "set-webhook", TELEGRAM_BOT_TOKEN="7012345678:AAother"),
        cli.run("telegram", "webhook-info", TELEGRAM_API_BASE=f"http://127.0.0.1:{free_port()}"),
    )
    for done in (no_secret, plain_http, odd_port, wrong_token, unreachable):
        assert done.code == 1 and done.out == ""
    assert no_secret.err == "meldpunt: set TELEGRAM_WEBHOOK_SECRET first (see channels.telegram)\n"
    assert "Telegram only posts to HTTPS addresses" in plain_http.err
    assert "MELDPUNT_PUBLIC_URL" in plain_http.err
    assert "only posts to ports 443, 80, 88, 8443; public_url uses port 8750" in odd_port.err
    assert wrong_token.err == (
        "meldpunt: Telegram refused the bot token (TELEGRAM_BOT_TOKEN): Unauthorized\n"
    )
    assert "could not be reached" in unreachable.err
    # The fake refuses a wrong token before it records a call; the others never called.
    assert [c.method for c in fake_telegram.calls] == []
    assert fake_telegram.webhook == {}


async def test_check_config_and_help_name_the_telegram_channel(cli: Cli) -> None:
    check, top, off = await asyncio.gather(
        cli.run("check-config"),
        cli.run("telegram", "--help"),
        cli.run("check-config", TELEGRAM_BOT_TOKEN="", TELEGRAM_WEBHOOK_SECRET=""),
    )
    assert check.code == 0, check.err
    assert f"Telegram: in via {WEBHOOK_URL}" in check.out
    assert "set-webhook" in top.out and "webhook-info" in top.out
    assert "Telegram: off, TELEGRAM_BOT_TOKEN, TELEGRAM_WEBHOOK_SECRET not set" in off.out
