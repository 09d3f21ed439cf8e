"""An e-mail whose send was interrupted goes out again with the same Message-ID.

SMTP gives no way to ask whether a mail was delivered, so meldpunt sends it again: the citizen's
mail program sees the same Message-ID and treats both as one message. The dispatcher and the
e-mail connector against a real aiosmtpd server, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from connectors.base import ConnectorContext
from connectors.email.connector import EmailConnector
from connectors.email.options import EmailOptions
from ingest.dispatch import Dispatcher, DispatchPolicy
from ingest.model import Channel
from ingest.pipeline import Intake, IntakePolicy
from store.db import Database
from store.models import Message, OutboxRow, table_of
from tests.conftest import Clock, rows
from tests.connectors.email.conftest import Recorder, Start
from tests.connectors.email.test_connector import parsed
from tests.messages import inbound, sample_rules

OUTBOX = table_of(OutboxRow)
MESSAGES = table_of(Message)


async def test_an_interrupted_mail_is_sent_again_with_the_same_message_id(
    database: Database, clock: Clock, start_smtp: Start
) -> None:
    rules = sample_rules()
    intake = Intake(database.engine, lambda: rules, IntakePolicy(reference_prefix="T"), clock)
    await intake.start()
    await intake.submit(inbound("De vuilbak is niet geledigd.", email="mie@example.be"))
    await intake.stop()
    recorder = Recorder()
    port = await start_smtp(recorder)
    options = EmailOptions.model_validate(
        {
            "smtp": {
                "host": "127.0.0.1",
                "port": port,
                "tls": "none",
                "from_address": "meldpunt@wingene.example",
            }
        }
    )
    context = ConnectorContext(
        intake=None,  # type: ignore[arg-type]
        files=None,  # type: ignore[arg-type]
        cursors=None,  # type: ignore[arg-type]
        public_url="https://meldpunt.wingene.example",
        town_name="Wingene",
        secret_key=b"a secret of this town",
    )
    mail = EmailConnector(context, options)
    policy = DispatchPolicy(send_timeout_seconds=5)
    dispatcher = Dispatcher(database.engine, {Channel.EMAIL: mail}, policy, clock)

    await dispatcher.run_once()
    [first] = [parsed(r.raw) for r in recorder.received]
    # The server took the mail, then the service died before it wrote that down.
    async with database.engine.begin() as conn:
        await conn.execute(
            sa.update(OUTBOX).values(
                state="sending",
                claimed_at=clock.now,
                attempt_started_at=clock.now,
                provider_id=None,
                sent_at=None,
            )
        )
    clock.now += timedelta(seconds=11)
    await dispatcher.run_once()

    [_, again] = [parsed(r.raw) for r in recorder.received]
    assert again["Message-ID"] == first["Message-ID"]
    assert again["To"] == first["To"] == "mie@example.be"
    [row] = await rows(database, OutboxRow)
    assert row["state"] == "sent"
    assert f"<{row['provider_id']}>" == first["Message-ID"]
    [message] = await rows(database, Message, MESSAGES.c.id == row["message_id"])
    assert message["delivery_status"] == "sent"
