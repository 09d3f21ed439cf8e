"""Every benchmark in one command, one results table: ``python -m bench``.

Runs what the machine allows and says what it skipped and why (no wrk, no Dovecot, no
PostgreSQL server binaries):

- the router with 1,000 rules (``bench/router.py``);
- web-form intake against a bare aiohttp handler, most it takes and a fixed rate
  (``bench/intake.py``, needs wrk);
- signed Twilio SMS webhooks the same way (``bench/messaging.py``);
- a Dovecot mailbox of 5,000 mails into tickets (``bench/mail.py``, needs Dovecot);
- web-form intake with 1, 2 and 4 web processes on one PostgreSQL database
  (``bench/intake.py --processes``, needs wrk and PostgreSQL);
- the ticket list and search on 200,000 tickets and 1,000,000 messages, SQLite and PostgreSQL
  (``bench/inbox.py``; the filled stores are kept in ``var/bench/`` for the next run).

    python -m bench                      # everything, the issue's sizes
    python -m bench --quick              # short runs and a small store, to try it out
    python -m bench --only router,inbox --tickets 20000 --messages 100000

The load generators share the machine's cores with the servers; compare ratios within one run.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.inbox import inbox_rows  # noqa: E402
from bench.intake import Row, intake_rows, print_rows, process_rows  # noqa: E402
from bench.machine import machine  # noqa: E402
from bench.messaging import messaging_rows  # noqa: E402

BENCHMARKS = ("router", "intake", "messaging", "mail", "processes", "inbox")


def _script(name: str, *args: str) -> str:
    """Run ``bench/<name>.py`` with ``args``; its output, which it also shows as it comes."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / f"{name}.py"), *args],
        capture_output=True, text=True, check=False, cwd=ROOT,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"bench/{name}.py failed:\n{proc.stdout}{proc.stderr}")
    print(proc.stdout, end="", flush=True)
    return proc.stdout


def router_rows(messages: int) -> list[Row]:
    out = _script("router", "--messages", str(messages))
    rate = re.search(r"decisions per second of CPU \(one core\) \| ([\d,]+)", out)
    times = re.search(r"one decision p50 / p99 \| (\d+) / (\d+) µs", out)
    if not rate or not times:
        return [Row("router: could not read bench/router.py's output (shown above)")]
    value = float(rate.group(1).replace(",", ""))
    verdict = "met" if value >= 20000 else f"missed: {value / 20000:.2f} of it"
    return [Row("router, 1,000 rules, one core (CPU time)", value, "decisions",
                float(times.group(1)) / 1000, float(times.group(2)) / 1000,
                goal=f"≥ 20,000/s: {verdict}")]  # fmt: skip


def mail_rows(mails: int) -> list[Row]:
    from tests.connectors.email.conftest import find_dovecot

    if find_dovecot() is None:
        return [Row("e-mail: skipped, Dovecot is not installed (apt-get install dovecot-imapd)")]
    out = _script("mail", "--mails", str(mails))
    parse = re.search(r"parse only .*?\s([\d.]+)\s+(\d+)\s*$", out, re.M)
    load = re.search(r"meldpunt serve: mailbox to tickets.*?\s([\d.]+)\s+(\d+)\s*$", out, re.M)
    if not parse or not load:
        return [Row("e-mail: could not read bench/mail.py's output (shown above)")]
    ratio = float(load.group(2)) / float(parse.group(2))
    return [
        Row("e-mail: parsing alone, in-process", float(parse.group(2)), "mails"),
        Row(f"e-mail: Dovecot mailbox of {mails:,} mails to tickets, from process start",
            float(load.group(2)), "mails", ratio=f"{ratio:.2f} of parsing alone"),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="short runs, a small store")
    parser.add_argument("--only", help=f"comma-separated, of: {', '.join(BENCHMARKS)}")
    parser.add_argument("--seconds", type=float, help="length of each HTTP run (default 10)")
    parser.add_argument("--tickets", type=int, help="inbox store size (default 200,000)")
    parser.add_argument("--messages", type=int, help="inbox store size (default 1,000,000)")
    parser.add_argument("--data", type=Path, default=ROOT / "var" / "bench")
    args = parser.parse_args()
    only = args.only.split(",") if args.only else list(BENCHMARKS)
    if unknown := set(only) - set(BENCHMARKS):
        parser.error(f"unknown benchmark(s) {', '.join(sorted(unknown))}")
    quick = args.quick
    seconds = args.seconds or (3.0 if quick else 10.0)
    tickets = args.tickets or (5_000 if quick else 200_000)
    messages = args.messages or (25_000 if quick else 1_000_000)
    wrk = shutil.which("wrk") is not None
    from tests.conftest import find_postgres_bindir

    postgres = find_postgres_bindir() is not None
    no_wrk = "wrk is not installed (apt-get install wrk)"
    no_pg = "PostgreSQL server binaries not found (apt-get install postgresql)"

    def processes() -> list[Row]:
        if not (wrk and postgres):
            return [Row(f"PostgreSQL processes: skipped, {no_wrk if not wrk else no_pg}")]
        work = Path(tempfile.mkdtemp(prefix="meldpunt-bench-"))
        try:
            return process_rows(None, (1, 2, 4), seconds, 64, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def intake() -> list[Row]:
        if not wrk:
            return [Row(f"web-form intake: skipped, {no_wrk}")]
        work = Path(tempfile.mkdtemp(prefix="meldpunt-bench-"))
        try:
            return intake_rows(None, seconds, 64, None, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def inbox() -> list[Row]:
        engines = ["sqlite", "postgresql"] if postgres else ["sqlite"]
        rows = inbox_rows(engines, tickets, messages, 10 if quick else 30, args.data)
        return rows if postgres else [*rows, Row(f"PostgreSQL inbox: skipped, {no_pg}")]

    steps: dict[str, Callable[[], list[Row]]] = {
        "router": lambda: router_rows(5_000 if quick else 20_000),
        "intake": intake,
        "messaging": lambda: messaging_rows(None, seconds, 64, 60_000, None),
        "mail": lambda: mail_rows(500 if quick else 5_000),
        "processes": processes,
        "inbox": inbox,
    }
    rows: list[Row] = []
    took: list[str] = []
    for name in BENCHMARKS:
        if name not in only:
            continue
        print(f"\n== {name} ==", flush=True)
        started = time.perf_counter()
        try:
            rows += steps[name]()
        except (RuntimeError, OSError, SystemExit, subprocess.CalledProcessError) as exc:
            rows.append(Row(f"{name}: FAILED ({str(exc).splitlines()[0]})"))
        took.append(f"{name} {time.perf_counter() - started:.0f} s")
    print(f"\n{machine()}; {time.strftime('%Y-%m-%d')}; HTTP runs {seconds:g} s each\n")
    print_rows(rows)
    print(f"\ntime taken: {', '.join(took)}")


if __name__ == "__main__":
    main()
