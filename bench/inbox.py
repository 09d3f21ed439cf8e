"""The inbox and API on a big store: the ticket list with filters and full-text search, p50/p95.

Fills a store of ``--tickets`` tickets (default 200,000) and ``--messages`` messages (default
1,000,000) of Dutch and French citizens' texts on a dozen topics, migrated to head first so the
search indexes of migration 0006 exist; then starts a real ``meldpunt serve`` on it and asks,
one request at a time, ``GET /api/v1/tickets`` and the web list ``/`` (signed in) with filters
(status, department, channel) and with a search for a rare, a medium and a common word, on
SQLite and on PostgreSQL. Goal (issue 8): p95 under 100 ms.

    python bench/inbox.py                                  # both engines, the issue's sizes
    python bench/inbox.py --tickets 20000 --messages 100000 --engines sqlite
    python bench/inbox.py --database postgresql://postgres@127.0.0.1:15432/inbox

Filling is the slow part (minutes at full size), so the store is kept in ``--data`` (default
``var/bench/``) and used again by later runs of the same sizes; an interrupted fill goes on
where it stopped. The fill writes rows with bulk SQL (sqlite3 ``executemany``, PostgreSQL
``COPY``), with the search triggers (SQLite) and the GIN indexes (PostgreSQL) set aside and
rebuilt at the end from their own definitions, which is many times faster than row by row.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.intake import (  # noqa: E402
    Postgres,
    Row,
    bench_config,
    free_port,
    migrate,
    percentile,
    print_rows,
    start_meldpunt,
    stop,
    wait_listening,
)
from bench.machine import machine  # noqa: E402
from store.db import Database  # noqa: E402
from store.users import create_token, create_user  # noqa: E402

GOAL_P95_MS = 100.0
# Bump when the generated data changes, so a cached store of the old shape is not reused.
FILL_VERSION = 1
CHUNK = 5000  # tickets per transaction; an interrupted fill resumes at a chunk's start

# The searched words: in about 1 in 10,000 messages, 1 in 500, and in most of them.
RARE, MEDIUM, COMMON = "zwaluwnest", "glasbol", "straat"
STAFF_EMAIL = "bench@wingene.example"
STAFF_PASSWORD = "bench-wachtwoord-1"  # noqa: S105 - this run's own throwaway account

DEPARTMENTS = ("front-desk", "technical-service", "environment", "civil-affairs", "complaints")
DEPARTMENT_WEIGHTS = (15, 40, 25, 15, 5)
CHANNELS = ("email", "webform", "sms", "whatsapp", "messenger", "telegram", "webchat", "voice",
            "app", "desk")  # fmt: skip
CHANNEL_WEIGHTS = (30, 20, 10, 12, 5, 3, 8, 5, 5, 2)
STATUSES = ("new", "open", "pending", "resolved", "closed")
STATUS_WEIGHTS = (3, 6, 3, 18, 70)
KINDS = ("report", "question", "suggestion", "complaint", "compliment")
KIND_WEIGHTS = (50, 30, 8, 8, 4)
STREETS = ("Kerkstraat", "Beernemstraat", "Oude Pittemstraat", "Hulstedestraat",
           "Stationsstraat", "Ruiseleedsesteenweg", "Wingenesteenweg", "Molenstraat",
           "Bruggestraat", "Dorpsplein")  # fmt: skip

# (subject, sentences) per topic and language; {street} and {n} are filled in.
TOPICS: dict[str, list[tuple[str, list[str]]]] = {
    "nl": [
        ("Straatlamp kapot", ["De straatlamp voor nummer {n} in de {street} brandt niet meer.",
          "Het is 's avonds heel donker in onze straat.", "Kan iemand de lamp vervangen?"]),
        ("Afval niet opgehaald", ["De gft-container in de {street} werd niet geleegd.",
          "De vuilniszakken liggen al twee dagen op de stoep in de straat.",
          "Wanneer komt de ophaling terug?"]),
        ("Put in de weg", ["Er ligt een diepe put in de {street} ter hoogte van nummer {n}.",
          "Fietsers moeten uitwijken naar het midden van de straat.", "Graag snel herstellen."]),
        ("Identiteitskaart", ["Mijn identiteitskaart vervalt volgende maand.",
          "Moet ik een afspraak maken aan het loket?", "Welke documenten breng ik mee?"]),
        ("Wateroverlast", ["Na de regen staat de {street} onder water.",
          "De riolering kan het water niet slikken.", "Mijn kelder liep vol tot {n} cm."]),
        ("Lawaai", ["Elke nacht is er lawaai van het café in de {street}.",
          "Wij kunnen niet slapen.", "Kan de politie of de gemeente iets doen?"]),
        ("Sluikstort", ["Iemand heeft afval gedumpt naast de straat aan de {street}.",
          "Het gaat om oude meubels en zakken.", "Het ligt er sinds maandag."]),
        ("Bedankt", ["Bedankt aan de technische dienst voor de snelle hulp in de {street}.",
          "De stoep ligt er weer mooi bij.", "Goed gedaan!"]),
    ],
    "fr": [
        ("Éclairage en panne", ["Le lampadaire au numéro {n} de la {street} ne marche plus.",
          "La rue est très sombre le soir.", "Pouvez-vous le réparer ?"]),
        ("Déchets non collectés", ["Les poubelles de la {street} n'ont pas été vidées.",
          "Les sacs sont sur le trottoir depuis deux jours.", "Quand passera la collecte ?"]),
        ("Trou dans la route", ["Il y a un grand trou dans la {street} au numéro {n}.",
          "Les cyclistes doivent l'éviter.", "Merci de réparer rapidement."]),
        ("Carte d'identité", ["Ma carte d'identité expire le mois prochain.",
          "Dois-je prendre rendez-vous au guichet ?", "Quels documents faut-il apporter ?"]),
    ],
}  # fmt: skip
ANSWERS = {
    "nl": ["Bedankt voor uw melding. We bekijken dit en houden u op de hoogte.",
           "De technische dienst plant de herstelling deze week in.",
           "U kunt een afspraak maken via de website of aan het onthaal."],
    "fr": ["Merci pour votre message. Nous examinons la situation.",
           "Le service technique prévoit la réparation cette semaine."],
}  # fmt: skip
NOTES = ["Doorgegeven aan de ploeg van Jan.", "Burger telefonisch gecontacteerd.",
         "Zie ook de vorige melding over dit adres."]  # fmt: skip


def _weighted(rng: random.Random, values: Sequence[str], weights: Sequence[int]) -> str:
    return rng.choices(values, weights)[0]


def generate(first: int, last: int, tickets: int, messages: int) -> Iterator[dict[str, Any]]:
    """The rows of tickets ``first``..``last`` (1-based, inclusive): one dict per ticket with its
    contact, the ticket and its messages. The same numbers always give the same rows."""
    rng = random.Random(first * 7919 + tickets)
    start = datetime(2024, 12, 1, tzinfo=UTC)
    span = (datetime(2026, 11, 29, tzinfo=UTC) - start).total_seconds()
    for t in range(first, last + 1):
        # Messages m with (m - 1) * tickets // messages == t - 1 belong to ticket t.
        m_first = -(-(t - 1) * messages // tickets) + 1
        m_last = -(-t * messages // tickets)
        lang = "fr" if rng.random() < 0.15 else "nl"
        subject, sentences = rng.choice(TOPICS[lang])
        street = rng.choice(STREETS)
        created = start + timedelta(seconds=span * (t - 1) / tickets + rng.random() * 60)
        status = _weighted(rng, STATUSES, STATUS_WEIGHTS)
        channel = _weighted(rng, CHANNELS, CHANNEL_WEIGHTS)
        rows = []
        at = created
        for k, m in enumerate(range(m_first, m_last + 1)):
            if k == 0 or rng.random() < 0.5:
                direction = "in"
                words = [s.format(street=street, n=rng.randint(1, 200)) for s in sentences]
                rng.shuffle(words)
                text = " ".join(words[: rng.randint(2, 3)])
                if k:
                    text = rng.choice(["Nog steeds niet opgelost.", "Toch nog een vraag.",
                                       "Merci.", "Dank u."]) + " " + text  # fmt: skip
            elif rng.random() < 0.2:
                direction, text = "note", rng.choice(NOTES)
            else:
                direction, text = "out", rng.choice(ANSWERS[lang])
            if m % 10007 == 0:
                text += f" Er zit een {RARE} onder de dakgoot."
            if m % 499 == 0:
                text += f" De {MEDIUM} is vol."
            at += timedelta(minutes=rng.randint(5, 3000))
            rows.append((m, direction, text, at))
        updated = at
        rows_out = [
            {
                "id": m, "ticket_id": t, "direction": d, "channel": channel,
                "external_id": f"bench-{m}" if d == "in" else None,
                "sender": f"burger{t}@example.be" if d == "in" else None,
                "subject": subject if d == "in" else None, "text": text,
                "delivery_status": "received" if d == "in" else "delivered", "created_at": at_,
            }
            for m, d, text, at_ in rows
        ]  # fmt: skip
        yield {
            "contact": {
                "id": t,
                "display_name": f"Burger {t}",
                "language": lang,
                "created_at": created,
            },
            "ticket": {
                "id": t,
                "reference": f"1750-{t:06d}",
                "kind": _weighted(rng, KINDS, KIND_WEIGHTS),
                "status": status,
                "department": _weighted(rng, DEPARTMENTS, DEPARTMENT_WEIGHTS),
                "priority": "normal",
                "tags": "[]",
                "origin_channel": channel,
                "contact_id": t,
                "reply_channel": channel,
                "reply_address": f"burger{t}@example.be",
                "subject": f"{subject} ({street})",
                "language": lang,
                "created_at": created,
                "updated_at": updated,
                "resolved_at": updated if status in ("resolved", "closed") else None,
                "first_answer_due": created + timedelta(days=5),
                "resolution_due": created + timedelta(days=30),
                "first_answered_at": created + timedelta(hours=8) if status != "new" else None,
                "pauses": "[]",
            },
            "messages": rows_out,
        }


def _sqlite_stamp(value: datetime | None) -> str | None:
    # As SQLAlchemy writes DateTime on SQLite (naive UTC), so comparisons and order hold.
    return None if value is None else value.replace(tzinfo=None).isoformat(" ", "microseconds")


def _insert(table: str, rows: list[dict[str, Any]], mark: str) -> tuple[str, list[tuple[Any, ...]]]:
    columns = list(rows[0])
    marks = ", ".join(mark.format(i + 1) for i in range(len(columns)))
    statement = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"  # noqa: S608
    return statement, [tuple(r[c] for c in columns) for r in rows]


def _batches(
    done: int, tickets: int, messages: int
) -> Iterator[tuple[int, dict[str, list[dict[str, Any]]]]]:
    for first in range(done + 1, tickets + 1, CHUNK):
        last = min(tickets, first + CHUNK - 1)
        tables: dict[str, list[dict[str, Any]]] = {"contacts": [], "tickets": [], "messages": []}
        for item in generate(first, last, tickets, messages):
            tables["contacts"].append(item["contact"])
            tables["tickets"].append(item["ticket"])
            tables["messages"].extend(item["messages"])
        yield last, tables


def _progress(done: int, tickets: int, started: float) -> None:
    rate = done / max(time.perf_counter() - started, 1e-9)
    print(f"  filled {done:,} of {tickets:,} tickets ({rate:,.0f} a second)", flush=True)


def _read_state(state_file: Path) -> dict[str, Any]:
    """How far a fill got: ``{}`` before it began."""
    return dict(json.loads(state_file.read_text())) if state_file.exists() else {}


def fill_sqlite(path: Path, tickets: int, messages: int) -> None:
    """Fill (or go on filling) the SQLite store at ``path``; a state file beside it says how far."""
    state_file = path.with_suffix(".json")
    state = _read_state(state_file)
    if state.get("complete"):
        return
    if not state:
        asyncio.run(_migrate(f"sqlite:///{path}"))
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    if "triggers" not in state:
        # The FTS5 triggers of migration 0006, kept to be put back after the bulk load.
        found = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND "
                             "tbl_name IN ('tickets', 'messages')").fetchall()  # fmt: skip
        state = {"triggers": dict(found)}
        state_file.write_text(json.dumps(state))
        for name in state["triggers"]:
            conn.execute(f"DROP TRIGGER {name}")
    started = time.perf_counter()
    done = conn.execute("SELECT coalesce(max(id), 0) FROM tickets").fetchone()[0]
    for last, tables in _batches(done, tickets, messages):
        conn.execute("BEGIN")
        for table, rows in tables.items():
            for row in rows:
                for key, value in row.items():
                    if isinstance(value, datetime):
                        row[key] = _sqlite_stamp(value)
            conn.executemany(*_insert(table, rows, "?"))
        conn.execute("COMMIT")
        if last % (CHUNK * 10) == 0 or last == tickets:
            _progress(last - done, tickets - done, started)
    print("  indexing the texts for search (FTS5 rebuild) ...", flush=True)
    conn.execute("INSERT INTO ticket_search (ticket_search) VALUES ('rebuild')")
    conn.execute("INSERT INTO message_search (message_search) VALUES ('rebuild')")
    for sql in state["triggers"].values():
        # IF NOT EXISTS: a fill stopped after putting back some of them goes on here.
        conn.execute(sql.replace("CREATE TRIGGER ", "CREATE TRIGGER IF NOT EXISTS ", 1))
    # New tickets after the fill continue after the seeded references.
    conn.execute(
        "INSERT INTO counters (name, value) VALUES ('ticket_reference', ?) "
        "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        (tickets,),
    )
    conn.close()
    state["complete"] = True
    state_file.write_text(json.dumps(state))


async def fill_postgres(url: str, state_file: Path, tickets: int, messages: int) -> None:
    """Fill (or go on filling) a PostgreSQL store with COPY; GIN indexes rebuilt at the end."""
    import asyncpg

    state = await asyncio.to_thread(_read_state, state_file)
    if state.get("complete"):
        return
    if not state:
        await _migrate(url)
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        await conn.execute("SET synchronous_commit = off")
        if "indexes" not in state:
            found = await conn.fetch(
                "SELECT indexname, indexdef FROM pg_indexes WHERE indexdef LIKE '%USING gin%' "
                "AND tablename IN ('tickets', 'messages')"
            )
            state = {"indexes": {r["indexname"]: r["indexdef"] for r in found}}
            await asyncio.to_thread(state_file.write_text, json.dumps(state))
            for name in state["indexes"]:
                await conn.execute(f"DROP INDEX {name}")
        started = time.perf_counter()
        done = await conn.fetchval("SELECT coalesce(max(id), 0) FROM tickets")
        for last, tables in _batches(done, tickets, messages):
            async with conn.transaction():
                for table, rows in tables.items():
                    columns = list(rows[0])
                    await conn.copy_records_to_table(
                        table, records=[tuple(r[c] for c in columns) for r in rows], columns=columns
                    )
            if last % (CHUNK * 10) == 0 or last == tickets:
                _progress(last - done, tickets - done, started)
        print("  indexing the texts for search (GIN) ...", flush=True)
        await conn.execute("SET maintenance_work_mem = '512MB'")
        for sql in state["indexes"].values():
            await conn.execute(sql.replace("CREATE INDEX ", "CREATE INDEX IF NOT EXISTS ", 1))
        for table in ("contacts", "tickets", "messages"):
            await conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608
                f"(SELECT max(id) FROM {table}))"
            )
        # New tickets after the fill continue after the seeded references (migration 0009: a
        # sequence on PostgreSQL).
        await conn.execute("SELECT setval('ticket_reference_seq', $1)", tickets)
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    state["complete"] = True
    await asyncio.to_thread(state_file.write_text, json.dumps(state))


async def _migrate(url: str) -> None:
    from store.migrate import upgrade

    db = Database(url)
    try:
        await upgrade(db)
    finally:
        await db.close()


async def _staff(url: str) -> str:
    """An operator (sees every department) with a password, and a new bearer token."""
    from store.users import UserError

    db = Database(url)
    try:
        try:
            async with db.session() as session:
                await create_user(session, STAFF_EMAIL, "operator", [], STAFF_PASSWORD)
        except UserError:
            pass  # made by an earlier run on this store
        async with db.session() as session:
            return await create_token(session, STAFF_EMAIL, name="bench")
    finally:
        await db.close()


# What is asked, by name: the query string of the API and of the web list.
QUERIES = (
    ("no filter", ""),
    ("status=open", "status=open"),
    ("department=environment", "department=environment"),
    ("channel=whatsapp", "channel=whatsapp"),
    ("status+department+channel", "status=open&department=technical-service&channel=email"),
    (f"q={RARE} (rare)", f"q={RARE}"),
    (f"q={MEDIUM} (medium)", f"q={MEDIUM}"),
    (f"q={COMMON} (common)", f"q={COMMON}"),
    (f"q={COMMON} + status=open", f"q={COMMON}&status=open"),
)


async def measure(port: int, token: str, repeat: int) -> list[tuple[str, str, list[float]]]:
    """Each query ``repeat`` times on the API and on the web list, one request at a time."""
    base = f"http://127.0.0.1:{port}"
    jar = aiohttp.CookieJar(unsafe=True)
    out = []
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        login = {"email": STAFF_EMAIL, "password": STAFF_PASSWORD, "next": "/"}
        async with http.post(f"{base}/login", data=login, allow_redirects=False) as r:
            if r.status != 303:
                raise SystemExit(f"signing in failed: {r.status}")
        # The web list's own "all" view, so it shows every department like the API does.
        for where, prefix, headers in (
            ("API", f"{base}/api/v1/tickets?", {"Authorization": f"Bearer {token}"}),
            ("web", f"{base}/?view=all&", {}),
        ):
            for name, query in QUERIES:
                times: list[float] = []
                for n in range(repeat + 2):
                    started = time.perf_counter()
                    async with http.get(prefix + query, headers=headers) as r:
                        body = await r.read()
                        if r.status != 200:
                            raise SystemExit(f"{where} {query}: {r.status}")
                    if n >= 2:  # the first two warm caches up
                        times.append((time.perf_counter() - started) * 1000)
                if where == "API":
                    # How many the first page shows, so a search that finds nothing is seen.
                    page = json.loads(body)
                    more = "+" if page.get("next_cursor") else ""
                    name = f"{name}, {len(page['items'])}{more} on the page"
                out.append((where, name, sorted(times)))
    return out


def run_engine(engine: str, url: str, tickets: int, messages: int, repeat: int,
               work: Path, state_file: Path) -> list[Row]:  # fmt: skip
    started = time.perf_counter()
    if engine == "SQLite":
        fill_sqlite(Path(url.removeprefix("sqlite:///")), tickets, messages)
    else:
        asyncio.run(fill_postgres(url, state_file, tickets, messages))
    fill_seconds = time.perf_counter() - started
    token = asyncio.run(_staff(url))
    main_yaml, env = bench_config(work / engine, url)
    migrate(main_yaml, env)
    port = free_port()
    server = start_meldpunt(main_yaml, env, port)
    try:
        wait_listening(server)
        results = asyncio.run(measure(port, token, repeat))
    finally:
        stop(server)
    rows = [Row(f"{engine}: {tickets:,} tickets, {messages:,} messages "
                f"(fill or check of the cached store: {fill_seconds:.0f} s)")]  # fmt: skip
    for where, name, times in results:
        p95 = percentile(times, 0.95)
        verdict = "met" if p95 < GOAL_P95_MS else f"missed: {p95 / GOAL_P95_MS:.1f}× the goal"
        rows.append(Row(f"{engine} {where} list, {name}", 1000 / (sum(times) / len(times)),
                        "req", percentile(times, 0.5), p95, "p95",
                        goal=f"p95 < {GOAL_P95_MS:.0f} ms: {verdict}"))  # fmt: skip
    return rows


def inbox_rows(
    engines: Sequence[str], tickets: int, messages: int, repeat: int, data: Path,
    database: str | None = None,
) -> list[Row]:  # fmt: skip
    """Fill (or reuse) the stores and measure; a missing PostgreSQL is a row saying so."""
    data.mkdir(parents=True, exist_ok=True)
    name = f"inbox-v{FILL_VERSION}-{tickets}-{messages}"
    work = Path(tempfile.mkdtemp(prefix="meldpunt-bench-inbox-"))
    rows: list[Row] = []
    try:
        if "sqlite" in engines:
            url = f"sqlite:///{data / (name + '.db')}"
            rows += run_engine("SQLite", url, tickets, messages, repeat, work, data / "unused")
        if "postgresql" in engines and database:
            state = data / f"{name}-{hashlib.sha256(database.encode()).hexdigest()[:8]}.json"
            rows += run_engine("PostgreSQL", database, tickets, messages, repeat, work, state)
        elif "postgresql" in engines:
            try:
                server = Postgres(data / "postgres", keep=True)
            except LookupError as exc:
                return [*rows, Row(f"PostgreSQL inbox: skipped ({exc})")]
            server.start()
            try:
                url = server.create_database(name.replace("-", "_"))
                state = data / f"{name}-postgres.json"
                rows += run_engine("PostgreSQL", url, tickets, messages, repeat, work, state)
            finally:
                server.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tickets", type=int, default=200_000)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=30, help="requests per query")
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--data", type=Path, default=ROOT / "var" / "bench",
                        help="where filled stores are kept between runs")  # fmt: skip
    parser.add_argument("--database", help="a PostgreSQL URL to fill and use instead")
    args = parser.parse_args(argv)
    rows = inbox_rows(args.engines.split(","), args.tickets, args.messages, args.repeat,
                      args.data, args.database)  # fmt: skip
    print(f"\n{machine()}; {args.repeat} requests per query, one at a time\n")
    print_rows(rows)


if __name__ == "__main__":
    main()
