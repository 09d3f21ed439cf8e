"""E-mail intake: a Dovecot mailbox of 5,000 mails into tickets, by a real ``meldpunt serve``.

Starts a throwaway Dovecot on 127.0.0.1 (as the tests do), appends the mails, then starts meldpunt
with the sample configuration pointed at that mailbox and measures how long it takes until every
mail is a ticket and flagged on the server. For reference it also times parsing alone (the same
mails through ``connectors.email.parse``) in this process.

    python bench/mail.py                     # 5,000 mails, SQLite with full fsync
    python bench/mail.py --mails 20000 --database postgresql://postgres@127.0.0.1:15432/bench

Needs Dovecot (Debian package ``dovecot-imapd``) and must run as root or a user Dovecot accepts.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.machine import machine  # noqa: E402
from connectors.email.parse import parse_mail  # noqa: E402
from tests.connectors.email.conftest import DovecotServer, find_dovecot  # noqa: E402

STREETS = (
    "Kerkstraat",
    "Beernemstraat",
    "Oude Pittemstraat",
    "Hulstedestraat",
    "Ruiseleedsesteenweg",
)
TOPICS = (
    ("Straatlamp kapot", "De straatlamp voor nummer {n} in de {street} brandt niet meer."),
    ("Afval niet opgehaald", "De gft-container in de {street} werd vandaag niet geleegd ({n})."),
    ("Put in de weg", "Er ligt een diepe put in de {street} ter hoogte van nummer {n}."),
    (
        "Vraag over identiteitskaart",
        "Mijn identiteitskaart vervalt. Moet ik een afspraak maken? ({n})",
    ),
)


def citizen_mail(n: int) -> bytes:
    """One of a few realistic shapes: plain text, HTML alternative, a small photo, a reply."""
    subject, body = TOPICS[n % len(TOPICS)]
    street = STREETS[n % len(STREETS)]
    text = (
        f"Goeiedag,\n\n{body.format(n=n, street=street)}\n\nMet vriendelijke groeten,\nBurger {n}\n"
    )
    msg = EmailMessage()
    msg["From"] = f"Burger {n} <burger{n}@example.be>"
    msg["To"] = "contactpunt@wingene.example"
    msg["Subject"] = f"{subject} ({street})"
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = make_msgid(idstring=f"bench{n}", domain="mail.example.be")
    if n % 4 == 3:
        text += (
            "\nOp ma 16 nov 2026 om 10:12 schreef Contactpunt 1750:\n> Bedankt voor uw bericht.\n"
        )
        msg["In-Reply-To"] = f"<earlier{n}@mail.example.be>"
    msg.set_content(text)
    if n % 3 == 1:
        html = "".join(f"<p>{line}</p>" for line in text.splitlines() if line)
        msg.add_alternative(f"<html><body>{html}</body></html>", subtype="html")
    if n % 10 == 5:
        msg.add_attachment(bytes(range(256)) * 64, maintype="image", subtype="jpeg",
                           filename=f"foto{n}.jpg")  # fmt: skip
    return msg.as_bytes()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tickets(db_file: Path) -> int:
    try:
        with sqlite3.connect(db_file) as conn:
            return int(conn.execute("SELECT count(*) FROM tickets").fetchone()[0])
    except sqlite3.OperationalError:
        return 0  # not migrated yet


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mails", type=int, default=5000)
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    binary = find_dovecot()
    if binary is None:
        raise SystemExit("Dovecot is needed: apt-get install dovecot-imapd")

    work = Path(tempfile.mkdtemp(prefix="meldpunt-mailbench-"))
    raws = [citizen_mail(n) for n in range(args.mails)]

    started = time.perf_counter()
    for raw in raws:
        parse_mail(raw, max_attachment_bytes=15 * 1024 * 1024)
    parse_seconds = time.perf_counter() - started

    server = DovecotServer(binary)
    server.start()
    proc: subprocess.Popen[bytes] | None = None
    try:
        account = server.new_account()
        started = time.perf_counter()
        with server.connect(account) as client:
            for first in range(0, len(raws), 500):
                client.multiappend("INBOX", raws[first : first + 500])
        append_seconds = time.perf_counter() - started

        shutil.copytree(ROOT / "config", work / "config")
        main_yaml = work / "config" / "meldpunt.yaml"
        main_yaml.write_text(
            main_yaml.read_text().replace("data_dir: var", f"data_dir: {work / 'var'}")
        )
        db_file = work / "bench.db"
        env = {
            **os.environ,
            "MELDPUNT_DATABASE_URL": f"sqlite:///{db_file}",
            "MELDPUNT_LOG_LEVEL": "warning",
            "IMAP_HOST": "127.0.0.1",
            "IMAP_PORT": str(server.port),
            "IMAP_TLS": "none",
            "IMAP_USER": account.user,
            "IMAP_PASSWORD": account.password,
        }
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "meldpunt", "--config", str(main_yaml),
             "serve", "--port", str(free_port())],
            env=env, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = started + args.timeout
        while (done := tickets(db_file)) < args.mails:
            if proc.poll() is not None:
                raise SystemExit(f"meldpunt exited with {proc.returncode}")
            if time.perf_counter() > deadline:
                raise SystemExit(f"only {done} of {args.mails} mails imported in {args.timeout} s")
            time.sleep(0.05)
        import_seconds = time.perf_counter() - started
        time.sleep(1)
        flagged = sum(1 for f in server.flags(account).values() if "\\Seen" in f)
        stored = tickets(db_file)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        server.close()
        shutil.rmtree(work, ignore_errors=True)

    n = args.mails
    print(f"\n{machine()}; {n} mails, SQLite with full fsync, one mailbox\n")
    print(f"{'step':58} {'seconds':>8} {'mails/s':>9}")
    print(f"{'parse only (connectors.email.parse, in-process)':58} "
          f"{parse_seconds:8.2f} {n / parse_seconds:9.0f}")  # fmt: skip
    print(f"{'IMAP APPEND into Dovecot (setting up)':58} "
          f"{append_seconds:8.2f} {n / append_seconds:9.0f}")  # fmt: skip
    print(f"{'meldpunt serve: mailbox to tickets, from process start':58} "
          f"{import_seconds:8.2f} {n / import_seconds:9.0f}")  # fmt: skip
    print(f"\nratio import / parse only: {parse_seconds / import_seconds:.2f}")
    print(f"tickets {stored}, flagged on the server {flagged}"
          + ("" if stored == flagged == n else "  <-- MISMATCH"))  # fmt: skip


if __name__ == "__main__":
    main()
