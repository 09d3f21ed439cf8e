"""The assembled service in-process: operations endpoints, metrics, rule reloads, API, workers."""

from __future__ import annotations

import asyncio
import gc
import re
import stat
import threading
import warnings
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from ingest.codec import message_to_envelope
from ingest.model import Channel, RawPayload
from meldpunt.app import RUNTIME, create_app
from meldpunt.config import load_config
from router.rules import RoutingInput
from store.db import Database
from store.models import JournalEntry, OutboxRow, Ticket, table_of, utcnow
from store.users import create_token, create_user
from tests.conftest import PostgresCluster
from tests.messages import inbound
from tests.service import sample_config

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[[web.Application], Awaitable[Client]]

REPORT = {
    "kind": "report",
    "message": "De straatlamp voor huisnummer 12 in de Kerkstraat brandt al een week niet.",
    "email": "An.Peeters@Example.be",
}


@pytest.fixture
async def client(
    aiohttp_client: ClientFactory,
    tmp_path: Path,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Client:
    """The whole service on SQLite, then on PostgreSQL."""
    return await aiohttp_client(
        create_app(sample_config(tmp_path, database_url, monkeypatch), migrate=True)
    )


@pytest.fixture
async def sqlite_client(
    aiohttp_client: ClientFactory, tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> Client:
    """The whole service on SQLite only, for what does not depend on the database."""
    return await aiohttp_client(
        create_app(sample_config(tmp_path, sqlite_url, monkeypatch), migrate=True)
    )


def metric(text: str, sample: str, **labels: str) -> float:
    """The value of one sample in Prometheus text; 0 when it was never counted."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == sample and s.labels == labels:
                return float(s.value)
    return 0.0


async def metrics_text(client: Client) -> str:
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.content_type == "text/plain"
    return await response.text()


# --- health and readiness --------------------------------------------------------------------


async def test_healthz_and_readyz_when_all_is_well(client: Client) -> None:
    health = await client.get("/healthz")
    ready = await client.get("/readyz")
    assert health.status == 200
    assert await health.json() == {"status": "ok"}
    assert ready.status == 200
    body = await ready.json()
    assert body["status"] == "ready"
    assert body["checks"] == {"database": "ok", "intake": "ok"}
    assert body["channels"]["webform"] == "enabled"


@pytest.fixture
def forgets_dead_connections() -> Iterator[None]:
    """Collects, after the app stopped, the driver connections whose database was taken away.

    A SQLite connection open on a file that is then deleted can only be dropped, not closed
    cleanly; aiosqlite warns about that when it is garbage-collected, which would otherwise
    happen during whichever test runs next.
    """
    yield
    # Dropping such a connection after the test's event loop closed makes aiosqlite's worker
    # thread fail to hand back its last result ("Event loop is closed"): expected here, and
    # only here, so that complaint alone is let through while the threads finish.
    previous = threading.excepthook

    def closed_loop_only(args: threading.ExceptHookArgs) -> None:
        thread = args.thread.name if args.thread else ""
        if not (
            "_connection_worker_thread" in thread
            and isinstance(args.exc_value, RuntimeError)
            and "Event loop is closed" in str(args.exc_value)
        ):
            previous(args)

    threading.excepthook = closed_loop_only
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
        for thread in threading.enumerate():
            if "_connection_worker_thread" in thread.name:
                thread.join(timeout=1)
    finally:
        threading.excepthook = previous


async def test_readyz_is_503_when_the_database_is_gone(
    forgets_dead_connections: None,
    aiohttp_client: ClientFactory,
    tmp_path: Path,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    # The database really goes away, no patched ping: on SQLite the folder holding the file is
    # removed (so no new connection can open it), on PostgreSQL the database is dropped. The
    # SQLite file lives in a folder of its own for that; database_url only picks the backend.
    sqlite_folder = tmp_path / "database"
    url = (
        f"sqlite:///{sqlite_folder / 'meldpunt.db'}"
        if database_url.startswith("sqlite")
        else database_url
    )
    client = await aiohttp_client(
        create_app(sample_config(tmp_path, url, monkeypatch), migrate=True)
    )
    assert (await client.get("/readyz")).status == 200

    if url.startswith("sqlite"):
        for path in sorted(sqlite_folder.iterdir()):
            path.unlink()
        sqlite_folder.rmdir()
        # A pooled connection still holds the unlinked file open; a restarted pool would not.
        await client.app[RUNTIME].db.engine.dispose()
    else:
        cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
        await asyncio.to_thread(cluster.drop_database, url)

    ready = await client.get("/readyz")
    assert ready.status == 503
    body = await ready.json()
    assert body["status"] == "not ready"
    assert body["checks"]["database"].startswith("unreachable: ")
    assert body["checks"]["intake"] == "ok"
    # Liveness stays green: restarting the process would not bring the database back.
    assert (await client.get("/healthz")).status == 200


# --- metrics ---------------------------------------------------------------------------------


async def test_metrics_count_a_webform_submission(client: Client) -> None:
    # The registry is process-wide and other tests count too: compare before and after.
    before = await metrics_text(client)
    response = await client.post("/contact", json=REPORT)
    assert response.status == 201, await response.text()
    after = await metrics_text(client)

    intake = {"channel": "webform", "outcome": "new_ticket"}
    requests = {"route": "/contact", "status": "201"}
    assert metric(after, "meldpunt_intake_messages_total", **intake) == (
        metric(before, "meldpunt_intake_messages_total", **intake) + 1
    )
    assert metric(after, "meldpunt_http_requests_total", **requests) == (
        metric(before, "meldpunt_http_requests_total", **requests) + 1
    )
    assert metric(after, "meldpunt_channel_enabled", channel="webform") == 1


# --- routing rules reload --------------------------------------------------------------------

LAMP = RoutingInput(channel="webform", kind="report", text=REPORT["message"])
LAMP_RULE_THEN = """\
    then:
      department: technical-service
      kind: report
      tags: [straatverlichting]"""


async def test_rules_reload_takes_a_good_file_and_keeps_the_rules_on_a_bad_one(
    sqlite_client: Client,
) -> None:
    runtime = sqlite_client.app[RUNTIME]
    routing = runtime.config.rules_file
    sample = routing.read_text(encoding="utf-8")
    assert LAMP_RULE_THEN in sample
    assert runtime.rules.current().route(LAMP).department == "technical-service"

    moved = sample.replace(
        LAMP_RULE_THEN, LAMP_RULE_THEN.replace("technical-service", "environment")
    )
    routing.write_text(moved, encoding="utf-8")
    assert runtime.rules.reload() is True
    assert runtime.rules.current().route(LAMP).department == "environment"
    # Intake asks for the rules in force on every message, so new messages follow at once.
    response = await sqlite_client.post("/contact", json=REPORT)
    assert response.status == 201
    async with runtime.db.session() as session:
        ticket = (await session.execute(sa.select(Ticket))).scalar_one()
    assert ticket.department == "environment"

    routing.write_text(moved.replace("department: complaints", "department: parks"), "utf-8")
    assert runtime.rules.reload() is False
    assert runtime.rules.current().route(LAMP).department == "environment"
    assert "unknown department 'parks'" in (runtime.rules.last_error or "")
    ready = await sqlite_client.get("/readyz")
    assert ready.status == 200
    checks = (await ready.json())["checks"]
    assert checks["rules"] == "last reload failed; running on the previous rules"
    assert checks["database"] == "ok"


# --- REST API --------------------------------------------------------------------------------


async def test_the_api_is_mounted_with_a_public_description(sqlite_client: Client) -> None:
    described = await sqlite_client.get("/api/v1/openapi.json")
    assert described.status == 200
    document = await described.json()
    assert document["openapi"].startswith("3.")
    assert any(path.startswith("/tickets") for path in document["paths"])
    tickets = await sqlite_client.get("/api/v1/tickets")
    assert tickets.status == 401
    assert tickets.headers["WWW-Authenticate"].startswith("Bearer")


async def test_the_api_retries_quarantined_input_through_the_running_service(
    client: Client,
) -> None:
    runtime = client.app[RUNTIME]
    async with runtime.db.session() as session:
        await create_user(session, "op@town.test", "operator", [], None)
        token = await create_token(session, "op@town.test")
    # A parsed message the pipeline once failed on, journalled as intake does.
    journal = table_of(JournalEntry)
    message = inbound("De straatlamp in de Kerkstraat brandt niet.")
    async with runtime.db.engine.begin() as conn:
        await conn.execute(
            sa.insert(journal),
            [
                {
                    "channel": message.channel.value,
                    "external_id": message.external_id,
                    "received_at": utcnow(),
                    "content_type": message.raw.content_type,
                    "payload": message.raw.body,
                    "envelope": message_to_envelope(message),
                    "state": "quarantined",
                    "error": "RuntimeError: the rules were broken",
                }
            ],
        )
    # Input no connector could parse: the web form cannot read it again, SMS is not enabled.
    raw = RawPayload("application/json", b"{")
    await runtime.intake.quarantine(Channel.WEBFORM, "form-1", raw, "invalid JSON")
    await runtime.intake.quarantine(Channel.SMS, "sms-1", raw, "invalid JSON")
    async with runtime.db.engine.connect() as conn:
        rows = await conn.execute(sa.select(journal.c.external_id, journal.c.id))
        ids = {external_id: journal_id for external_id, journal_id in rows}

    async def retry(journal_id: int) -> tuple[int, dict[str, Any]]:
        response = await client.post(
            f"/api/v1/quarantine/{journal_id}/retry",
            headers={"Authorization": f"Bearer {token}"},
        )
        return response.status, await response.json()

    status, body = await retry(ids[message.external_id])
    assert (status, body) == (200, {"outcome": "ticket", "ticket_reference": "1750-000001"})
    status, body = await retry(ids["form-1"])
    assert status == 409
    assert body["error"]["message"] == "the webform channel cannot re-read its input"
    status, body = await retry(ids["sms-1"])
    assert (status, body["error"]["message"]) == (409, "the sms channel is not enabled")


# --- dispatcher ------------------------------------------------------------------------------


async def test_the_dispatcher_says_why_an_acknowledgement_waits(client: Client) -> None:
    response = await client.post("/contact", json=REPORT)
    assert response.status == 201
    runtime = client.app[RUNTIME]
    # The sample has no dispatch.interval_seconds, so the default pause (2 s) applies.
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        async with runtime.db.session() as session:
            ack = (await session.execute(sa.select(OutboxRow))).scalar_one()
        if ack.reason or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.05)
    assert (ack.channel, ack.recipient, ack.state) == ("email", "an.peeters@example.be", "pending")
    assert ack.reason is not None
    assert "no connector is configured for the email channel" in ack.reason


# --- secret key ------------------------------------------------------------------------------

CSRF = re.compile(r'name="(csrf_token|submission_id)" value="([^"]*)"')


async def test_without_a_configured_secret_key_one_is_generated_and_kept(
    aiohttp_client: ClientFactory,
    tmp_path: Path,
    sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sample_config(tmp_path, sqlite_url, monkeypatch)
    monkeypatch.delenv("MELDPUNT_SECRET_KEY")
    config = load_config(tmp_path / "config" / "meldpunt.yaml")
    key_file = config.data_dir / "secret_key"
    assert config.settings.secret_key is None
    assert not key_file.exists()

    first = await aiohttp_client(create_app(config, migrate=True))
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_bytes()
    assert len(key.strip()) >= 32
    form = await first.get("/contact")
    tokens = dict(CSRF.findall(await form.text()))
    await first.close()

    # After a restart the key is the same, so a form opened before it can still be sent.
    second = await aiohttp_client(create_app(load_config(config.config_file), migrate=True))
    assert key_file.read_bytes() == key
    second.session.cookie_jar.update_cookies({"meldpunt_csrf": tokens["csrf_token"]})
    sent = await second.post(
        "/contact",
        data={
            **tokens,
            "kind": "question",
            "message": "Wanneer is het containerpark open?",
            "email": "an@example.be",
        },
    )
    assert sent.status == 200, await sent.text()
    assert 'id="referentie"' in await sent.text()


# --- database connections ----------------------------------------------------------------------


@pytest.mark.postgres
async def test_a_process_keeps_to_its_database_pool_size_under_load(
    aiohttp_client: ClientFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    # Hundreds of towns share one PostgreSQL server: each process must stay within what the
    # operator gave it (database_pool_size, and as many again while busy).
    cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
    url = cluster.new_database(template=request.getfixturevalue("postgres_template"))
    config = sample_config(
        tmp_path,
        url,
        monkeypatch,
        replace={
            "database_url: sqlite:///var/meldpunt.db": "database_pool_size: 2",
            # Every form comes from 127.0.0.1 here; the per-address limit is not the point.
            "rate_limit_per_minute: 10 ": "rate_limit_per_minute: 1000 ",
        },
    )
    assert config.settings.database_pool_size == 2
    client = await aiohttp_client(create_app(config, migrate=False))
    name = url.rsplit("/", 1)[1]
    watcher = Database(cluster.url("postgres")).engine
    most = 0

    async def count_connections() -> None:
        nonlocal most
        async with watcher.connect() as conn:
            while True:
                found = await conn.scalar(
                    sa.text("SELECT count(*) FROM pg_stat_activity WHERE datname = :name"),
                    {"name": name},
                )
                most = max(most, int(found or 0))
                await asyncio.sleep(0.005)

    counting = asyncio.create_task(count_connections())
    try:
        answers = await asyncio.gather(
            *(
                client.post(
                    "/contact",
                    json={
                        "kind": "question",
                        "message": f"Vraag {n} over de openingsuren.",
                        "email": f"burger{n}@example.be",
                    },
                )
                for n in range(60)
            ),
            *(client.get("/readyz") for _ in range(60)),
        )
    finally:
        counting.cancel()
        await asyncio.gather(counting, return_exceptions=True)
        await watcher.dispose()
    assert [a.status for a in answers[:60]] == [201] * 60
    # Two kept, two more while busy, and the web chat's own connection for LISTEN.
    assert 1 <= most <= 2 * 2 + 1, most
