"""Builds the aiohttp application from a loaded configuration: the one place parts meet.

``create_app`` composes the connectors' routes, the REST API, the operations endpoints and the
background workers (intake writer, dispatcher); long-lived resources open and close in
``cleanup_ctx``. Nothing imports this package.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from html import escape as html_escape
from typing import Literal, get_args

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

from connectors import REGISTRY
from connectors.base import Connector, ConnectorContext
from connectors.email.connector import EmailConnector
from connectors.webchat.connector import WebChatConnector
from inbox.api import ApiContext, create_api
from inbox.quarantine import RetryHook
from inbox.survey_page import SurveyPage
from inbox.web.pages import Town, WebInbox
from inbox.web.sessions import Sessions
from ingest.acknowledge import TemplatedAcknowledgement, sample_values
from ingest.deadlines import Calendar
from ingest.dispatch import Dispatcher, DispatchPolicy
from ingest.files import AttachmentStore
from ingest.followup import Department, FollowUp, FollowUpWorker, SurveyPolicy
from ingest.model import Channel, IntakeResult, RawPayload
from ingest.pipeline import Intake, IntakePolicy
from ingest.quarantine import Redeliver, retry_quarantined
from ingest.templates import Templates
from meldpunt.config import ConfigError, LoadedConfig, load_config
from router.rules import RuleSet
from store.chat import DatabaseChats
from store.cursors import DatabaseCursors
from store.db import Database
from store.leases import Leases, hold
from store.migrate import check_schema_current, current_revision, upgrade
from store.presence import DatabasePresence

log = structlog.get_logger("meldpunt")

HTTP_REQUESTS = Counter(
    "meldpunt_http_requests_total", "HTTP requests by route and status.", ["route", "status"]
)
HTTP_SECONDS = Histogram("meldpunt_http_request_seconds", "HTTP request latency.", ["route"])
CHANNEL_ENABLED = Gauge(
    "meldpunt_channel_enabled", "1 when a channel's connector is live.", ["channel"]
)


Role = Literal["all", "web", "worker"]
"""What one process does: ``web`` answers HTTP (webhooks, forms, web chat, inbox, API) and runs
no background loop; ``worker`` runs the background loops (dispatcher, timers, mailbox reading)
and serves only /healthz, /readyz and /metrics; ``all`` does both (one process, the default)."""
ROLES: tuple[Role, ...] = get_args(Role)

# How long a process's claim to a mailbox lasts unless renewed (every third of it): also how long
# the others wait to take over from a process that died.
LEASE_SECONDS = 30.0


class StartupError(Exception):
    """The service cannot start; the message tells the operator what to do."""


@dataclass
class RulesHolder:
    """The rules in force. A failed reload keeps the last good set and says why."""

    config: LoadedConfig
    rules: RuleSet = field(init=False)
    last_error: str | None = None

    def __post_init__(self) -> None:
        self.rules = self.config.rules

    def current(self) -> RuleSet:
        return self.rules

    def reload(self) -> bool:
        try:
            fresh = load_config(self.config.config_file)
        except ConfigError as exc:
            self.last_error = str(exc)
            log.error("rules not reloaded; keeping the last good rules", problems=exc.problems)
            return False
        self.rules, self.last_error = fresh.rules, None
        log.info("rules reloaded", rules=len(fresh.rules))
        return True


@dataclass
class Runtime:
    """Everything the running app holds, under one typed key."""

    config: LoadedConfig
    db: Database
    rules: RulesHolder
    intake: Intake
    connectors: dict[Channel, Connector]
    dispatcher: Dispatcher
    files: AttachmentStore
    followup: FollowUp
    # Runs due timers; the service's loop calls it, and tests may call it themselves.
    timers: FollowUpWorker
    leases: Leases
    role: Role = "all"
    dispatch_task: asyncio.Task[None] | None = None
    timer_task: asyncio.Task[None] | None = None
    stopping: asyncio.Event = field(default_factory=asyncio.Event)


RUNTIME = web.AppKey("runtime", Runtime)


def secret_key(config: LoadedConfig) -> bytes:
    """From ``MELDPUNT_SECRET_KEY`` (via the settings), else a random key kept in the data dir."""
    if config.settings.secret_key is not None:
        return config.settings.secret_key.get_secret_value().encode()
    path = config.data_dir / "secret_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48))
    return path.read_text().strip().encode()


def _build_connectors(config: LoadedConfig, context: ConnectorContext) -> dict[Channel, Connector]:
    built: dict[Channel, Connector] = {}
    # One provider may carry several channels (Twilio: SMS, WhatsApp, voice): the registry then
    # names its class for each, and one instance serves them all.
    instances: dict[type[Connector], Connector] = {}
    for channel, cls in REGISTRY.items():
        connector = instances.get(cls)
        if connector is None:
            # Its options sit under channels.<options_key> in meldpunt.yaml.
            options = getattr(config.settings.channels, cls.options_key(), None)
            connector = instances[cls] = cls(context, options)
        reason = connector.disabled_reason
        CHANNEL_ENABLED.labels(channel.value).set(0 if reason else 1)
        if reason:
            log.info("channel disabled", channel=channel.value, reason=reason)
            continue
        built[channel] = connector
    return built


def unique(connectors: Mapping[Channel, Connector]) -> list[Connector]:
    """Each connector once, also when it serves several channels."""
    return list({id(c): c for c in connectors.values()}.values())


@web.middleware
async def _observe(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    info = request.match_info.route.resource
    route = info.canonical if info is not None else "unmatched"
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except Exception:
        log.exception("unhandled error", method=request.method, path=request.path)
        raise
    finally:
        HTTP_REQUESTS.labels(route, str(status)).inc()
        HTTP_SECONDS.labels(route).observe(time.perf_counter() - started)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    checks: dict[str, str] = {}
    try:
        async with asyncio.timeout(3):
            await runtime.db.ping()
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"unreachable: {type(exc).__name__}"
    checks["intake"] = "ok" if runtime.intake.running else "stopped"
    if runtime.rules.last_error:
        checks["rules"] = "last reload failed; running on the previous rules"
    channels = {c.value: ("enabled" if c in runtime.connectors else "disabled") for c in REGISTRY}
    for connector in unique(runtime.connectors):
        # Reported, not counted against readiness: the other channels keep working meanwhile.
        checks.update(connector.health())
    # Reported, not counted either: with the disk full, messages without files are still
    # stored on every channel, while one with a file is refused (its sender, or the mailbox,
    # keeps it) and taken once there is room. An unready process would refuse them all.
    # Named only when something is wrong, as the rules are.
    if (attachments := runtime.files.health()) != "ok":
        checks["attachments storage"] = attachments
    ready = checks["database"] == "ok" and checks["intake"] == "ok"
    return web.json_response(
        {
            "status": "ready" if ready else "not ready",
            "role": runtime.role,
            "checks": checks,
            "channels": channels,
            # The background jobs this process runs alone, by lease (e.g. "imap:contactpunt").
            "leases": sorted(runtime.leases.held),
        },
        status=200 if ready else 503,
    )


async def metrics(request: web.Request) -> web.Response:
    response = web.Response(body=generate_latest())
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    return response


async def landing(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    town = html_escape(runtime.config.settings.town.name)
    # The web chat shows here too, as it would on the town's website.
    chat = (
        "<script src='/chat/widget.js' data-lang='nl' defer></script>"
        if Channel.WEBCHAT in runtime.connectors
        else ""
    )
    html = (
        "<!doctype html><html lang='nl'><meta charset='utf-8'>"
        f"<title>meldpunt – {town}</title><main style='font-family:system-ui;max-width:40rem;"
        f"margin:2rem auto'><h1>meldpunt – {town}</h1><ul>"
        "<li><a href='/contact'>Contactformulier voor burgers</a></li>"
        "<li><a href='/'>Inbox voor medewerkers</a></li>"
        "<li><a href='/api/v1/openapi.json'>REST API (OpenAPI)</a></li>"
        f"<li><a href='/readyz'>Status</a></li></ul></main>{chat}</html>"
    )
    return web.Response(text=html, content_type="text/html")


async def _every(
    runtime: Runtime, interval: float, work: Callable[[], Awaitable[int]], what: str
) -> None:
    """Run ``work`` every ``interval`` seconds (at once again while it finds work) until
    ``runtime.stopping`` is set; a pass in progress is finished.

    The first pass waits one interval, so a service just started is not already busy while it
    answers its first requests. Finishing rather than cancelling matters: a send cut off mid-way
    is "delivery uncertain", and a database call cancelled while its driver's thread still works
    can outlive the loop.
    """
    done = 0
    while not runtime.stopping.is_set():
        if not done:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(runtime.stopping.wait(), interval)
            if runtime.stopping.is_set():
                return
        try:
            done = await work()
        except Exception:
            log.exception("background pass failed", work=what)
            done = 0


def build_intake(
    config: LoadedConfig,
    db: Database,
    rules: Callable[[], RuleSet],
    followup: FollowUp | None = None,
    clock: Callable[[], datetime] | None = None,
) -> Intake:
    """The process's intake pipeline, with the policy from the configuration."""
    settings = config.settings
    return Intake(
        db.engine,
        rules,
        IntakePolicy(
            reference_prefix=settings.town.reference_prefix,
            conversation_window=timedelta(hours=settings.intake.conversation_window_hours),
            max_batch=settings.intake.max_batch,
            acknowledgements_per_hour=settings.intake.acknowledgements_per_address_per_hour,
            acknowledge=acknowledgement(config),
            followup=followup or follow_up(config),
        ),
        clock,
    )


def calendar(config: LoadedConfig) -> Calendar:
    """The town's counted time: office hours, public holidays and closing days."""
    settings = config.settings
    return Calendar(
        settings.office_hours,
        settings.town.timezone,
        country=settings.deadlines.holidays,
        closed_days=settings.deadlines.closed_days,
    )


def town_values(config: LoadedConfig) -> dict[str, str]:
    """What the notice templates know of the town (``{{ town.name }}``, ``town.phone``...)."""
    town = config.settings.town
    return {"name": town.name, "phone": town.phone, "email": town.email, "website": town.website}


def follow_up(config: LoadedConfig) -> FollowUp:
    """The town's deadlines, survey and closing rules, with the templates they write in."""
    settings = config.settings
    options = settings.follow_up
    survey = options.survey
    return FollowUp(
        calendar=calendar(config),
        policies=tuple(p.policy() for p in settings.deadlines.policies),
        templates=Templates(config.templates_dir, default_language=settings.town.language),
        town=town_values(config),
        departments={
            d.id: Department(name=d.name, email=d.email, lead_email=d.lead_email)
            for d in settings.departments
        },
        public_url=settings.public_url,
        secret=secret_key(config),
        warn_before=timedelta(hours=settings.deadlines.warn_before_hours),
        reopen_within=timedelta(days=options.reopen_within_days),
        survey=SurveyPolicy(
            enabled=survey.enabled,
            delay=timedelta(hours=survey.delay_hours),
            threshold=survey.threshold,
            answer_within=timedelta(days=survey.answer_within_days),
        ),
        ombudsman=options.ombudsman.model_dump(),
    )


def acknowledgement(config: LoadedConfig) -> TemplatedAcknowledgement:
    settings = config.settings
    return TemplatedAcknowledgement(
        Templates(config.templates_dir, default_language=settings.town.language),
        calendar(config),
        [p.policy() for p in settings.deadlines.policies],
        town=town_values(config),
        departments={d.id: d.name for d in settings.departments},
    )


def template_problems(config: LoadedConfig) -> list[str]:
    """Every notice template that is missing or does not render, one line each."""
    templates = Templates(config.templates_dir, default_language=config.settings.town.language)
    return templates.check(sample_values(town_values(config), config.settings.town.timezone))


def attachment_store(config: LoadedConfig) -> AttachmentStore:
    return AttachmentStore(config.data_dir / "attachments")


def build_connectors(
    config: LoadedConfig,
    db: Database,
    intake: Intake,
    files: AttachmentStore,
    clock: Callable[[], datetime] | None = None,
) -> dict[Channel, Connector]:
    """Every enabled channel's connector, sharing one context."""
    settings = config.settings
    context = ConnectorContext(
        intake=intake,
        files=files,
        cursors=DatabaseCursors(db.engine),
        public_url=settings.public_url,
        town_name=settings.town.name,
        secret_key=secret_key(config),
        calendar=calendar(config),
        timezone=settings.town.timezone,
        chats=DatabaseChats(db.engine),
        **({"clock": clock} if clock is not None else {}),
    )
    return _build_connectors(config, context)


def redeliver_to(connectors: Mapping[Channel, Connector]) -> Redeliver:
    """Hands a payload that was never parsed back to its channel's connector, to parse it again.

    The returned callable raises LookupError when the channel is not enabled, and the connector's
    NotImplementedError when it cannot read stored input again.
    """

    async def redeliver(channel: Channel, raw: RawPayload) -> None:
        connector = connectors.get(channel)
        if connector is None:
            raise LookupError(f"the {channel.value} channel is not enabled")
        await connector.redeliver(raw)

    return redeliver


def quarantine_retry(
    db: Database, intake: Intake, connectors: Mapping[Channel, Connector]
) -> RetryHook:
    """The API's retry of a quarantined message, through the running intake and connectors."""
    redeliver = redeliver_to(connectors)

    async def retry(journal_id: int) -> IntakeResult | None:
        return await retry_quarantined(db.engine, intake, journal_id, redeliver)

    return retry


def create_app(
    config: LoadedConfig,
    *,
    migrate: bool | None = None,
    clock: Callable[[], datetime] | None = None,
    role: Role = "all",
    lease_seconds: float = LEASE_SECONDS,
) -> web.Application:
    """The whole service, or the part ``role`` names. ``migrate`` defaults to True on SQLite
    (the embedded default).

    ``clock`` replaces the time of day for intake, the dispatcher and the timers (tests of
    deadlines and surveys move it by hand). ``lease_seconds``: how long a mailbox's lease lasts
    unless renewed.
    """
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    settings = config.settings
    db = Database(settings.database_url, pool_size=settings.database_pool_size)
    should_migrate = migrate if migrate is not None else db.dialect == "sqlite"
    rules = RulesHolder(config)
    followup = follow_up(config)
    intake = build_intake(config, db, rules.current, followup, clock)
    files = attachment_store(config)
    connectors = build_connectors(config, db, intake, files, clock)
    dispatcher = Dispatcher(
        db.engine,
        {ch: c for ch, c in connectors.items() if c.sends(ch)},
        DispatchPolicy(
            max_attempts=settings.dispatch.max_attempts,
            backoff_seconds=settings.dispatch.backoff_seconds,
            backoff_max_seconds=settings.dispatch.backoff_max_seconds,
            send_timeout_seconds=settings.dispatch.send_timeout_seconds,
            lookup_attempts=settings.dispatch.lookup_attempts,
        ),
        windowed={ch for ch, c in connectors.items() if c.reply_window(ch) is not None},
        clock=clock,
    )
    runtime = Runtime(
        config,
        db,
        rules,
        intake,
        connectors,
        dispatcher,
        files,
        followup,
        FollowUpWorker(db.engine, followup, clock),
        Leases(db.engine),
        role,
    )
    background = role != "web"
    for connector in unique(connectors):
        if isinstance(connector, EmailConnector):
            # Several worker processes may run: each mailbox is read by the lease's holder only.
            connector.read_mailboxes = background
            connector.exclusive = partial(
                hold, runtime.leases, ttl=timedelta(seconds=lease_seconds)
            )
        elif isinstance(connector, WebChatConnector) and db.dialect == "postgresql":
            # Several processes may run: a visitor's socket is in one web process, the answer
            # may be sent by another (a worker). SQLite runs one process: nothing to share.
            connector.share(
                DatabasePresence(db.engine, runtime.leases.holder), sockets=role != "worker"
            )

    webform = settings.channels.webform
    app = web.Application(
        middlewares=[_observe],
        client_max_size=max(
            2 * 1024 * 1024, webform.max_attachments * webform.max_attachment_bytes
        ),
    )
    app[RUNTIME] = runtime
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    if role != "worker":
        _add_public_routes(app, runtime, clock)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        if should_migrate:
            await upgrade(db)
            log.info("database schema up to date", revision=await current_revision(db))
        elif not await check_schema_current(db):
            await db.close()
            raise StartupError(
                "the database schema is not up to date: run 'meldpunt migrate' first"
            )
        await intake.start()
        for connector in unique(connectors):
            await connector.start()
        if background:
            runtime.dispatch_task = asyncio.create_task(
                _every(
                    runtime, settings.dispatch.interval_seconds, dispatcher.run_once, "dispatcher"
                ),
                name="meldpunt-dispatch",
            )
            runtime.timer_task = asyncio.create_task(
                _every(
                    runtime, settings.follow_up.interval_seconds, runtime.timers.run_once, "timer"
                ),
                name="meldpunt-timers",
            )
        log.info(
            "meldpunt started",
            town=settings.town.name,
            role=role,
            database=db.dialect,
            channels=sorted(c.value for c in connectors),
            rules=len(config.rules),
        )
        yield
        runtime.stopping.set()
        await _stop_background(runtime)
        for connector in unique(connectors):
            await connector.stop()
        await intake.stop()
        await db.close()

    app.cleanup_ctx.append(lifecycle)
    return app


async def _stop_background(runtime: Runtime) -> None:
    """Let the dispatcher's and the timers' passes in progress finish, within limits."""
    if runtime.dispatch_task is not None:
        try:
            # A pass in progress may wait for one send's time-out at most.
            timeout = runtime.config.settings.dispatch.send_timeout_seconds + 5
            async with asyncio.timeout(timeout):
                await asyncio.shield(runtime.dispatch_task)
        except TimeoutError:
            runtime.dispatch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runtime.dispatch_task
    if runtime.timer_task is not None:
        # A timer runs in one short transaction: let the one in progress finish.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(runtime.timer_task), 30)
        if not runtime.timer_task.done():
            runtime.timer_task.cancel()


def _add_public_routes(
    app: web.Application, runtime: Runtime, clock: Callable[[], datetime] | None
) -> None:
    """What a web process serves: the channels' webhooks and pages, the inbox and the API."""
    config, db, connectors = runtime.config, runtime.db, runtime.connectors
    settings, followup, files, intake = (
        config.settings,
        runtime.followup,
        runtime.files,
        runtime.intake,
    )
    # A page to try the citizens' side (web form, web chat) on a fresh install.
    app.router.add_get("/welcome", landing)
    for connector in unique(connectors):
        app.router.add_routes(connector.routes())
    app.router.add_routes(
        SurveyPage(db, followup, settings.town.name, settings.town.language, clock).routes()
    )
    api_context = ApiContext(
        db=db,
        departments={d.id: d.name for d in settings.departments},
        files=files,
        retry_quarantined=quarantine_retry(db, intake, connectors),
        # Replies with files go out by e-mail: the mail channel's per-file limit holds.
        max_attachment_bytes=settings.channels.email.max_attachment_bytes,
        submit=intake.submit,
        followup=followup,
    )
    app.router.add_routes(
        WebInbox(
            api_context,
            Sessions(db, clock=clock),
            town=Town(settings.town.name, settings.town.language, settings.town.timezone),
            rules=runtime.rules.current,
            answers=config.answers,
            connectors=connectors,
            clock=clock,
            secure_cookies=settings.public_url.startswith("https://"),
        ).routes()
    )
    app.add_subapp("/api/v1", create_api(api_context))
