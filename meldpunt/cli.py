"""The ``meldpunt`` command: serve, check the configuration, explain and test routing, manage users.

Exit codes: 0 success, 1 the command failed (the message says why), 2 wrong usage.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from inbox.answers import ANSWERS_FILE
from meldpunt.config import ConfigError, LoadedConfig, load_config
from meldpunt.logs import configure_logging
from meldpunt.yamlsource import YamlError, load_yaml_file
from router.rules import (
    RoutingInput,
    RuleError,
    parse_message,
    parse_rule_tests,
    run_rule_tests,
)
from store.db import Database, DatabaseUrlError


class CommandError(Exception):
    """Ends the command with exit code 1 and this message."""


def _load(args: argparse.Namespace) -> LoadedConfig:
    try:
        return load_config(args.config)
    except ConfigError as exc:
        raise CommandError(
            "the configuration has errors:\n" + "\n".join(f"  {p}" for p in exc.problems)
        ) from None


def cmd_check_config(args: argparse.Namespace) -> int:
    from meldpunt.app import template_problems

    config = _load(args)
    s = config.settings
    if problems := template_problems(config):
        for problem in problems:
            print(f"{config.templates_dir}: {problem}", file=sys.stderr)
        raise CommandError(f"{len(problems)} notice template(s) need fixing")
    canned = config.answers
    print(f"configuration OK: {config.config_file}")
    print(f"  town: {s.town.name} (references {s.town.reference_prefix}-000001)")
    print(f"  departments: {', '.join(d.id for d in s.departments)}")
    print(f"  routing: {len(config.rules)} rules in {config.rules_file}")
    policies = "; ".join(
        f"{p.name}: first answer within {p.first_answer or 'no limit'}"
        for p in s.deadlines.policies
    )
    print(f"  deadlines: {policies or 'none'}")
    print(f"  notices: templates in {config.templates_dir}")
    print(
        f"  canned answers: {len(canned)} in {canned.file}"
        if canned.file
        else f"  canned answers: none ({config.folder / ANSWERS_FILE} not present)"
    )
    print(f"  database: {Database(s.database_url).dialect}")
    email = s.channels.email
    if not email.enabled:
        print("  e-mail: switched off")
    else:
        for box in email.mailboxes:
            state = (
                f"{box.user} on {box.host}:{box.effective_port} ({box.tls}), {box.folder}"
                if box.configured
                else f"off, {', '.join(box.missing)} not set"
            )
            print(f"  e-mail in, mailbox {box.name}: {state}")
        smtp = email.smtp
        sending = (
            f"{smtp.from_address} via {smtp.host}:{smtp.effective_port} ({smtp.tls})"
            if smtp.configured
            else f"off, {', '.join(smtp.missing)} not set (answers by e-mail wait in the outbox)"
        )
        print(f"  e-mail out: {sending}")
    twilio = s.channels.twilio
    if not twilio.enabled:
        print("  SMS and WhatsApp (Twilio): switched off")
    elif twilio.missing:
        print(f"  SMS and WhatsApp (Twilio): off, {', '.join(twilio.missing)} not set")
    else:
        for name, number, variable in (
            ("SMS", twilio.sms_number, "TWILIO_SMS_NUMBER"),
            ("WhatsApp", twilio.whatsapp_sender, "TWILIO_WHATSAPP_SENDER"),
        ):
            out = f"from {number}" if number else f"off, {variable} not set (answers wait)"
            print(f"  {name} (Twilio {twilio.account_sid}): in via webhook; out {out}")
        template = twilio.whatsapp_template_sid or "none (TWILIO_WHATSAPP_TEMPLATE_SID not set)"
        fallback = ", ".join(twilio.whatsapp_fallback) or "none: answers wait for the citizen"
        print(f"  WhatsApp after 24 h: template {template}; fallback {fallback}")
        voice = twilio.voice
        desk = (
            f"rings {voice.front_desk_number} within office hours, else voicemail"
            if voice.front_desk_number
            else "voicemail only (TWILIO_VOICE_FRONT_DESK not set)"
        )
        menu = "with menu" if voice.menu else "no menu"
        answers = "SMS" if voice.reply_by_sms else "e-mail"
        print(f"  phone line (Twilio): {desk}; {menu}; answers by {answers}")
    telegram = s.channels.telegram
    if not telegram.enabled:
        print("  Telegram: switched off")
    elif telegram.missing:
        print(f"  Telegram: off, {', '.join(telegram.missing)} not set")
    else:
        print(
            f"  Telegram: in via {s.public_url}/webhooks/telegram "
            "(register it with 'meldpunt telegram set-webhook'); out via the Bot API"
        )
    messenger = s.channels.messenger
    if not messenger.enabled:
        print("  Facebook Messenger: switched off")
    elif messenger.missing:
        print(f"  Facebook Messenger: off, {', '.join(messenger.missing)} not set")
    else:
        print(
            f"  Facebook Messenger: in via {s.public_url}/webhooks/facebook; out via the Send API"
        )
    chat = s.channels.webchat
    if not chat.enabled:
        print("  web chat: switched off")
    else:
        sites = ", ".join(chat.allowed_origins) or "none yet (set channels.webchat.allowed_origins)"
        print(f"  web chat: {s.public_url}/chat/widget.js, may be embedded on {sites}")
    return 0


def _routing_input(data: Any, source: str) -> RoutingInput:
    if not isinstance(data, dict):
        raise CommandError(f"{source}: expected a JSON object describing a message")
    known = ("channel", "kind", "subject", "text", "sender", "sender_address", "has_location",
             "has_attachment", "language")  # fmt: skip
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise CommandError(f"{source}: unknown field(s) {', '.join(unknown)}; use {sorted(known)}")
    message = {"channel": "webform", **data}
    if "sender_address" in message:
        message.setdefault("sender", message.pop("sender_address"))
    try:
        return parse_message(message, file=source)
    except RuleError as exc:
        raise CommandError(
            "the message has errors:\n" + "\n".join(f"  {p}" for p in exc.problems)
        ) from None


def cmd_route(args: argparse.Namespace) -> int:
    config = _load(args)
    source = args.file
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
        data = json.loads(text)
    except OSError as exc:
        raise CommandError(f"{source}: cannot read: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise CommandError(f"{source}:{exc.lineno}: not valid JSON: {exc.msg}") from None
    msg = _routing_input(data, source)
    if args.explain:
        print(config.rules.explain(msg).render())
    else:
        d = config.rules.route(msg)
        print(
            json.dumps(
                {
                    "department": d.department,
                    "kind": d.kind,
                    "priority": d.priority,
                    "tags": list(d.tags),
                    "rules": list(d.fired),
                    "defaulted": d.defaulted,
                },
                indent=2,
            )
        )
    return 0


def cmd_rules_test(args: argparse.Namespace) -> int:
    config = _load(args)
    name = args.file or config.settings.routing.tests
    if not name:
        raise CommandError("no rule tests configured (routing.tests in meldpunt.yaml)")
    path = Path(name) if args.file else config.folder / name
    try:
        doc = load_yaml_file(path)
        cases = parse_rule_tests(doc.data, file=str(path), line_of=doc.line_of)
    except YamlError as exc:
        raise CommandError(str(exc)) from None
    except RuleError as exc:
        raise CommandError("\n".join(exc.problems)) from None
    results = run_rule_tests(config.rules, cases)
    failed = [r for r in results if not r.passed]
    for r in results:
        if not r.passed or args.verbose:
            print(("PASS " if r.passed else "FAIL ") + r.description)
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


def _database_failure(db: Database, exc: BaseException) -> CommandError:
    """Say which database failed and why in one line, without a traceback or a password."""
    reason = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    first = (str(reason).strip().splitlines() or [type(reason).__name__])[0]
    return CommandError(f"cannot use the {db.where}: {first}")


async def _require_schema(db: Database) -> None:
    from store.migrate import check_schema_current

    if not await check_schema_current(db):
        raise CommandError("the database schema is not up to date: run 'meldpunt migrate' first")


async def _migrate(config: LoadedConfig) -> str:
    from store.migrate import current_revision, upgrade

    db = Database(config.settings.database_url)
    try:
        await upgrade(db)
        return await current_revision(db) or "?"
    except (SQLAlchemyError, OSError) as exc:
        raise _database_failure(db, exc) from None
    finally:
        await db.close()


def cmd_migrate(args: argparse.Namespace) -> int:
    config = _load(args)
    revision = asyncio.run(_migrate(config))
    print(f"database is at revision {revision}")
    return 0


def _read_password() -> str:
    from store.users import MIN_PASSWORD_LENGTH

    if not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat password: ") != password:
            raise CommandError("the passwords differ")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise CommandError(f"the password must be at least {MIN_PASSWORD_LENGTH} characters long")
    return password


async def _user_add(config: LoadedConfig, args: argparse.Namespace, password: str) -> str:
    from store.migrate import upgrade
    from store.users import UserError, create_user

    unknown = [d for d in args.department if config.settings.department(d) is None]
    if unknown:
        valid = ", ".join(d.id for d in config.settings.departments)
        raise CommandError(f"unknown department(s) {', '.join(unknown)}; valid: {valid}")
    db = Database(config.settings.database_url)
    try:
        if db.dialect == "sqlite":
            await upgrade(db)
        await _require_schema(db)
        async with db.session() as session:
            user = await create_user(
                session, args.email, args.role, list(args.department), password, name=args.name
            )
            return user.email
    except UserError as exc:
        raise CommandError(str(exc)) from None
    except (SQLAlchemyError, OSError) as exc:
        raise _database_failure(db, exc) from None
    finally:
        await db.close()


def cmd_user_add(args: argparse.Namespace) -> int:
    config = _load(args)
    password = _read_password()
    email = asyncio.run(_user_add(config, args, password))
    print(f"user {email} created ({args.role})")
    return 0


async def _token_create(config: LoadedConfig, email: str, name: str | None) -> str:
    from store.users import UserError, create_token

    db = Database(config.settings.database_url)
    try:
        await _require_schema(db)
        async with db.session() as session:
            return await create_token(session, email, name=name)
    except UserError as exc:
        raise CommandError(str(exc)) from None
    except (SQLAlchemyError, OSError) as exc:
        raise _database_failure(db, exc) from None
    finally:
        await db.close()


def cmd_token_create(args: argparse.Namespace) -> int:
    config = _load(args)
    token = asyncio.run(_token_create(config, args.email, args.name))
    print(token)
    print("Keep this token secret: it is shown only once.", file=sys.stderr)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from meldpunt.app import RUNTIME, StartupError, create_app, template_problems

    config = _load(args)
    configure_logging(config.settings.log_level)
    for problem in template_problems(config):
        # Not fatal: an acknowledgement whose template fails goes out in the plain words.
        structlog.get_logger("meldpunt").error("notice template problem", problem=problem)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is optional on other platforms
        pass
    if args.lease_seconds < 3:
        raise CommandError("--lease-seconds must be at least 3")
    app = create_app(config, role=args.role, lease_seconds=args.lease_seconds)

    async def on_startup(app: web.Application) -> None:
        # SIGHUP reloads the routing rules; a bad file keeps the last good rules in force.
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, app[RUNTIME].rules.reload)

    app.on_startup.append(on_startup)

    def announce(_banner: str) -> None:
        # aiohttp calls this once the start-up hooks ran and the port is bound, not before.
        what = "meldpunt" if args.role == "all" else f"meldpunt ({args.role})"
        where = "/readyz" if args.role == "worker" else "/contact"
        print(f"{what} listening on http://{args.host}:{args.port}{where}", flush=True)

    try:
        web.run_app(
            app,
            host=args.host,
            port=args.port,
            print=announce,
            access_log=None,
            reuse_port=args.reuse_port or None,
        )
    except StartupError as exc:
        raise CommandError(str(exc)) from None
    return 0


async def _quarantine(config: LoadedConfig, retry: list[int]) -> int:
    from ingest.quarantine import list_quarantined, retry_quarantined
    from meldpunt.app import attachment_store, build_connectors, build_intake, redeliver_to

    db = Database(config.settings.database_url)
    try:
        if not retry:
            entries = await list_quarantined(db.engine)
            for e in entries:
                first_line = (e.error or "").splitlines()[0] if e.error else ""
                print(
                    f"{e.id}\t{e.received_at.isoformat()}\t{e.channel}\t{e.external_id}\t"
                    f"{first_line[:160]}"
                )
            print(f"{len(entries)} quarantined message(s)", file=sys.stderr)
            return 0
        intake = build_intake(config, db, lambda: config.rules)
        # Only for parsing again what a connector once failed to parse: none is started.
        redeliver = redeliver_to(build_connectors(config, db, intake, attachment_store(config)))

        await intake.start()
        failed = 0
        try:
            for journal_id in retry:
                try:
                    result = await retry_quarantined(db.engine, intake, journal_id, redeliver)
                except (LookupError, NotImplementedError) as exc:
                    print(f"{journal_id}: {exc}", file=sys.stderr)
                    failed += 1
                    continue
                if result is None:
                    print(f"{journal_id}: parsed and handed to intake again")
                elif result.quarantined:
                    failed += 1
                    print(f"{journal_id}: still fails; see 'meldpunt quarantine list'")
                else:
                    state = "duplicate of" if result.duplicate else "ticket"
                    print(f"{journal_id}: {state} {result.ticket_reference}")
        finally:
            await intake.stop()
        return 1 if failed else 0
    except (SQLAlchemyError, OSError) as exc:
        raise _database_failure(db, exc) from None
    finally:
        await db.close()


def cmd_quarantine(args: argparse.Namespace) -> int:
    config = _load(args)
    return asyncio.run(_quarantine(config, list(args.retry or [])))


def _telegram(args: argparse.Namespace, action: str) -> int:
    from connectors.telegram.api import SetupError, set_webhook, webhook_info

    config = _load(args)
    options, public_url = config.settings.channels.telegram, config.settings.public_url
    try:
        if action == "set-webhook":
            lines = asyncio.run(set_webhook(options, public_url, drop_pending=args.drop_pending))
        else:
            lines = asyncio.run(webhook_info(options, public_url))
    except SetupError as exc:
        raise CommandError(str(exc)) from None
    for line in lines:
        print(line)
    return 0


def cmd_telegram_set_webhook(args: argparse.Namespace) -> int:
    return _telegram(args, "set-webhook")


def cmd_telegram_webhook_info(args: argparse.Namespace) -> int:
    return _telegram(args, "webhook-info")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meldpunt", description="Omnichannel contact point for towns."
    )
    parser.add_argument(
        "--config",
        help="main configuration file (default: $MELDPUNT_CONFIG or config/meldpunt.yaml)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "serve",
        help="run the web service and workers",
        description="Run meldpunt. One process does everything by default; on PostgreSQL run "
        "several 'web' processes behind a proxy and one or more 'worker' processes.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8750)
    p.add_argument(
        "--role",
        choices=["all", "web", "worker"],
        default="all",
        help="all (default): everything in one process; web: HTTP only (webhooks, web form, "
        "web chat, inbox, API), no background work; worker: the background work (sending the "
        "outbox, deadline and survey timers, reading the mailboxes), with only /healthz, "
        "/readyz and /metrics on its port",
    )
    p.add_argument(
        "--lease-seconds",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long a worker's claim to a mailbox lasts unless renewed; after a crash "
        "another worker takes the mailbox over this much later (default: 30)",
    )
    p.add_argument(
        "--reuse-port",
        action="store_true",
        help="let several 'web' processes listen on the same host and port (SO_REUSEPORT; "
        "Linux spreads the connections over them), instead of one port each behind a proxy",
    )
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("check-config", help="validate the configuration and routing rules")
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("route", help="show where a message (JSON file, or - for stdin) would go")
    p.add_argument("file")
    p.add_argument("--explain", action="store_true", help="show every rule and why it fired")
    p.set_defaults(func=cmd_route)

    p = sub.add_parser("rules", help="routing rule tools")
    rules_sub = p.add_subparsers(dest="rules_command", required=True, metavar="SUBCOMMAND")
    t = rules_sub.add_parser("test", help="run the example messages next to the rules")
    t.add_argument("file", nargs="?", help="tests file (default: routing.tests in meldpunt.yaml)")
    t.add_argument("-v", "--verbose", action="store_true", help="list passing tests too")
    t.set_defaults(func=cmd_rules_test)

    p = sub.add_parser("migrate", help="bring the database schema up to date")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser(
        "quarantine", help="list messages that could not be processed, or process them again"
    )
    p.add_argument(
        "--retry", type=int, nargs="+", metavar="ID", help="process these journal entries again"
    )
    p.set_defaults(func=cmd_quarantine)

    p = sub.add_parser("telegram", help="the Telegram bot's webhook")
    telegram_sub = p.add_subparsers(dest="telegram_command", required=True, metavar="SUBCOMMAND")
    t = telegram_sub.add_parser(
        "set-webhook", help="have Telegram post the bot's updates to {public_url}/webhooks/telegram"
    )
    t.add_argument(
        "--drop-pending", action="store_true", help="discard the updates Telegram still holds"
    )
    t.set_defaults(func=cmd_telegram_set_webhook)
    t = telegram_sub.add_parser(
        "webhook-info", help="show Telegram's view of the webhook: address, backlog, last error"
    )
    t.set_defaults(func=cmd_telegram_webhook_info)

    p = sub.add_parser("user", help="staff users")
    user_sub = p.add_subparsers(dest="user_command", required=True, metavar="SUBCOMMAND")
    u = user_sub.add_parser("add", help="add a user; the password is read from stdin or a prompt")
    u.add_argument("email")
    u.add_argument("--role", required=True, choices=["admin", "operator", "agent"])
    u.add_argument("--department", action="append", default=[], help="repeat for several")
    u.add_argument("--name")
    u.set_defaults(func=cmd_user_add)

    p = sub.add_parser("token", help="API bearer tokens")
    token_sub = p.add_subparsers(dest="token_command", required=True, metavar="SUBCOMMAND")
    tc = token_sub.add_parser("create", help="create a token for a user and print it once")
    tc.add_argument("email")
    tc.add_argument("--name", help="what the token is for")
    tc.set_defaults(func=cmd_token_create)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except CommandError as exc:
        print(f"meldpunt: {exc}", file=sys.stderr)
        return 1
    except DatabaseUrlError as exc:
        print(f"meldpunt: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader (e.g. `| head`) went away; that is not an error of ours.
        sys.stderr.close()
        return 0
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
