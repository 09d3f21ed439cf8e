"""Intake throughput: the web form's JSON twin against a bare aiohttp handler, in the same run.

Starts both servers as separate processes and drives each with wrk (64 connections, a ~1 KB JSON
body, a unique submission id per request) for the most each can take. Then it offers both the
same fixed rate, half of what meldpunt took, open-loop: each request starts on its schedule
whether or not earlier ones were answered, and its latency counts from that moment, so a server
that falls behind shows it in p99 instead of slowing the generator down. Finally it checks that
every acknowledged request was stored.

    python bench/intake.py                      # SQLite, synchronous=FULL (the embedded default)
    python bench/intake.py --database postgresql://postgres@127.0.0.1:15432/bench
    python bench/intake.py --seconds 20 --connections 128 --rate 400
    python bench/intake.py --processes 1,2,4    # PostgreSQL, N processes on one port

``--processes`` starts N ``meldpunt serve`` processes on one PostgreSQL database (its own
throwaway server with the default, durable settings, unless ``--database`` names one), all
listening on one port with SO_REUSEPORT so the kernel spreads wrk's connections over them.

Needs wrk (Debian package ``wrk``); ``--processes`` needs PostgreSQL's server binaries.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.machine import machine  # noqa: E402
from store.db import Database  # noqa: E402

# What a goal says: the least a ratio may be, the most a latency may be.
GOAL_RATIO = 0.5
GOAL_P99_MS = 50.0

BARE_SERVER = textwrap.dedent(
    """
    import sys
    from aiohttp import web
    try:
        import uvloop; uvloop.install()
    except ImportError:
        pass

    async def contact(request):
        body = await request.json()
        return web.json_response({"reference": "X-" + body["submission_id"]}, status=201)

    async def ready(request):
        return web.json_response({"status": "ready"})

    app = web.Application()
    app.router.add_post("/contact", contact)
    app.router.add_get("/readyz", ready)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
    """
)

# Each wrk thread numbers its own requests; a prefix per run (letters and digits) and the thread
# id keep submission ids unique across runs on one database. The form keeps an id of 8 to 64
# letters and digits (and draws a random one otherwise), as browsers send: zero-padding makes
# every id long enough to be kept and checked for redelivery. ``tid`` must stay a global:
# ``thread:set`` sets the thread's global, which a ``local tid`` in the script would hide (every
# thread would then send the same ids, and meldpunt would drop them as redeliveries).
WRK_SCRIPT = textwrap.dedent(
    """
    local counter = 0
    local threads = 0
    local run = os.getenv("BENCH_RUN") or "r"
    function setup(thread)
      threads = threads + 1
      thread:set("tid", threads)
    end
    function init(args)
      counter = 0
    end
    local text = string.rep("De straatlamp in de Kerkstraat brandt al dagen niet meer. ", 14)
    request = function()
      counter = counter + 1
      local body = string.format(
        '{"kind":"report","subject":"Straatlamp","message":"%s","email":"%s%d-%d@example.be",'
        .. '"submission_id":"%s%dn%08d"}', text, run, tid, counter, run, tid, counter)
      return wrk.format("POST", "/contact", {["Content-Type"] = "application/json"}, body)
    end
    """
)

FORM_TEXT = "De straatlamp in de Kerkstraat brandt al dagen niet meer. " * 14


@dataclass
class Row:
    """One line of a results table."""

    path: str
    rate: float | None = None  # per second
    unit: str = "msg"
    p50: float | None = None  # ms
    tail: float | None = None  # ms, p99 (p95 where ``tail_name`` says so)
    tail_name: str = "p99"
    ratio: str = ""
    goal: str = ""


def print_rows(rows: Sequence[Row]) -> None:
    """A Markdown table, as bench/README.md keeps them."""
    print("| path | per second | p50 / tail | ratio | goal |")
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        rate = f"{r.rate:,.0f} {r.unit}" if r.rate is not None else ""
        lat = ""
        if r.p50 is not None and r.tail is not None:
            lat = f"{r.p50:.1f} / {r.tail:.1f} ms ({r.tail_name})"
        print(f"| {r.path} | {rate} | {lat} | {r.ratio} | {r.goal} |")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(port: int, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(600):
        if proc.poll() is not None:
            raise SystemExit(f"server exited early with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("server did not become ready")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_wrk(
    port: int, seconds: float, connections: int, script: Path, run: str = "r"
) -> dict[str, float]:
    out = subprocess.run(
        [
            "wrk", "-t2", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency",
            "-s", str(script), f"http://127.0.0.1:{port}/contact",
        ],
        capture_output=True, text=True, check=True, env={**os.environ, "BENCH_RUN": run},
    ).stdout  # fmt: skip
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)

    def ms(label: str) -> float:
        m = re.search(rf"\s{label}%\s+([\d.]+)(us|ms|s)", out)
        if not m:
            return float("nan")
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    return {
        "rps": rps,
        "total": total,
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "p50": ms("50"),
        "p99": ms("99"),
    }


def percentile(values: Sequence[float], fraction: float) -> float:
    """The value below which ``fraction`` of ``values`` (sorted) lie: nearest rank."""
    if not values:
        return float("nan")
    return values[min(len(values) - 1, max(0, int(len(values) * fraction + 0.5) - 1))]


async def open_loop(
    url: str, requests: Sequence[tuple[bytes, dict[str, str]]], rate: float
) -> dict[str, float]:
    """Start one request every ``1 / rate`` s, whatever the answers do; latency (ms) counts from
    the moment a request was due, so waiting for a free connection counts too.

    ``lag`` is how late the generator itself started requests at worst (ms): when it is large
    the load generator, not the server, was the limit and the run says little.
    """
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    ok = failed = 0
    lag = 0.0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=512)) as http:

        async def one(body: bytes, headers: dict[str, str], due: float) -> None:
            nonlocal ok, failed
            try:
                async with http.post(url, data=body, headers=headers) as response:
                    await response.read()
                    good = response.status < 300
            except aiohttp.ClientError:
                good = False
            latencies.append((loop.time() - due) * 1000)
            ok, failed = (ok + 1, failed) if good else (ok, failed + 1)

        started = loop.time() + 0.05
        tasks = []
        for n, (body, headers) in enumerate(requests):
            due = started + n / rate
            if (wait := due - loop.time()) > 0:
                await asyncio.sleep(wait)
            else:
                lag = max(lag, -wait * 1000)
            tasks.append(asyncio.create_task(one(body, headers, due)))
        await asyncio.gather(*tasks)
        elapsed = loop.time() - started
    latencies.sort()
    return {
        "rps": ok / elapsed,
        "offered": rate,
        "total": len(latencies),
        "ok": ok,
        "failed": failed,
        "p50": percentile(latencies, 0.50),
        "p99": percentile(latencies, 0.99),
        "lag": lag,
    }


def form_requests(count: int, run: str) -> list[tuple[bytes, dict[str, str]]]:
    """``count`` web-form submissions from different citizens, as JSON bodies."""
    headers = {"Content-Type": "application/json"}
    out = []
    for n in range(count):
        body = (
            f'{{"kind":"report","subject":"Straatlamp","message":"{FORM_TEXT}",'
            f'"email":"{run}{n}@example.be","submission_id":"{run}n{n:08d}"}}'
        )
        out.append((body.encode(), headers))
    return out


def bench_config(
    work: Path, db_url: str, extra_env: dict[str, str] | None = None
) -> tuple[Path, dict[str, str]]:
    """A copy of the sample configuration in ``work`` (rate limit off) and the environment."""
    shutil.copytree(ROOT / "config", work / "config")
    main_yaml = work / "config" / "meldpunt.yaml"
    text = main_yaml.read_text().replace(
        "rate_limit_per_minute: 10 ", "rate_limit_per_minute: 100000000 "
    )
    main_yaml.write_text(text.replace("data_dir: var", f"data_dir: {work / 'var'}"))
    env = {
        **os.environ,
        "MELDPUNT_DATABASE_URL": db_url,
        "MELDPUNT_LOG_LEVEL": "warning",
        "MELDPUNT_SECRET_KEY": "bench-secret-key-0123456789",
        **(extra_env or {}),
    }
    return main_yaml, env


def migrate(main_yaml: Path, env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "-m", "meldpunt", "--config", str(main_yaml), "migrate"],
        env=env, check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip


def start_meldpunt(
    main_yaml: Path, env: dict[str, str], port: int, *, shared_port: bool = False,
    role: str | None = None,
) -> subprocess.Popen[bytes]:  # fmt: skip
    serve = ["serve", "--port", str(port), *(["--role", role] if role else [])]
    if shared_port:
        serve.append("--reuse-port")  # the processes share one port (SO_REUSEPORT)
    return subprocess.Popen(
        [sys.executable, "-m", "meldpunt", "--config", str(main_yaml), *serve],
        env=env, stdout=subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip


def wait_listening(proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    """Until ``meldpunt serve`` says it listens (it does once its start-up hooks ran).

    Its output is read on by a thread to the end, so a chatty server never blocks on a full pipe.
    """
    assert proc.stdout is not None
    stdout = proc.stdout
    listening = threading.Event()

    def read() -> None:
        for line in stdout:
            if b"listening on" in line:
                listening.set()

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + timeout
    while not listening.wait(0.05):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"meldpunt did not start (exit code {proc.wait()})")


async def _count(url: str, statement: str) -> int:
    db = Database(url)
    try:
        async with db.engine.connect() as conn:
            return int((await conn.scalar(sa.text(statement))) or 0)
    finally:
        await db.close()


def count_rows(url: str, statement: str) -> int:
    return asyncio.run(_count(url, statement))


class Postgres:
    """A PostgreSQL server of this run's own on 127.0.0.1, with the default (durable) settings.

    The tests' cluster (tests/conftest.py) turns fsync off for speed; a benchmark must not.
    With ``keep`` the data folder outlives the server, so a filled database can be used again.
    """

    def __init__(self, root: Path | None = None, *, keep: bool = False) -> None:
        from tests.conftest import find_postgres_bindir

        bindir = find_postgres_bindir()
        if bindir is None:
            raise LookupError("PostgreSQL server binaries (initdb, pg_ctl) not found")
        self.bindir = bindir
        self.keep = keep
        self.root = (root or Path(tempfile.mkdtemp(prefix="meldpunt-bench-pg-"))).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.data = self.root / "data"
        self.port = 0
        self._as_owner: list[str] = []
        if os.geteuid() == 0:
            pwd.getpwnam("postgres")  # initdb refuses root: the server runs as 'postgres'
            shutil.chown(self.root, "postgres", "postgres")
            self._as_owner = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self._as_owner, *args], cwd=self.root, capture_output=True, text=True, check=False
        )

    def start(self) -> None:
        if not (self.data / "PG_VERSION").exists():
            done = self._run(
                str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres",
                "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8",
            )  # fmt: skip
            if done.returncode != 0:
                raise RuntimeError(f"initdb failed: {done.stderr}")
        self.port = free_port()
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {shlex.quote(str(self.root))} "
            "-c max_connections=200 -c shared_buffers=512MB"
        )
        done = self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "pg.log"),
            "-w", "-t", "120", "-o", options, "start",
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"PostgreSQL did not start: {done.stdout}{done.stderr}")

    def stop(self) -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)

    def create_database(self, name: str) -> str:
        """Create ``name`` unless it exists; its URL."""
        psql = [str(self.bindir / "psql"), "-X", "-q", "-h", str(self.root), "-p", str(self.port),
                "-U", "postgres", "-d", "postgres"]  # fmt: skip
        exists = f"SELECT 1 FROM pg_database WHERE datname = '{name}'"  # noqa: S608
        found = self._run(*psql, "-tAc", exists)
        if found.stdout.strip() != "1":
            done = self._run(*psql, "-c", f'CREATE DATABASE "{name}"')
            if done.returncode != 0:
                raise RuntimeError(done.stderr)
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"


@contextmanager
def postgres(root: Path | None = None, *, keep: bool = False) -> Iterator[Postgres]:
    server = Postgres(root, keep=keep)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def intake_rows(
    db_url: str | None, seconds: float, connections: int, rate: float | None, work: Path
) -> list[Row]:
    """Capacity of the bare handler and of meldpunt (wrk), then both at one fixed rate."""
    script = work / "post.lua"
    script.write_text(WRK_SCRIPT)
    (work / "bare.py").write_text(BARE_SERVER)
    db_url = db_url or f"sqlite:///{work / 'bench.db'}"
    backend = "PostgreSQL" if db_url.startswith("postgres") else "SQLite FULL"
    main_yaml, env = bench_config(work, db_url)
    if backend == "PostgreSQL":
        migrate(main_yaml, env)
    before = count_rows(db_url, "SELECT count(*) FROM tickets") if backend == "PostgreSQL" else 0

    bare_port, port = free_port(), free_port()
    bare = subprocess.Popen([sys.executable, str(work / "bare.py"), str(bare_port)])
    server = start_meldpunt(main_yaml, env, port)
    try:
        wait_ready(bare_port, bare)
        wait_listening(server)
        bare_max = run_wrk(bare_port, seconds, connections, script, "bare")
        mp_max = run_wrk(port, seconds, connections, script, "max")
        offered = rate or max(10.0, round(mp_max["rps"] / 2))
        count = int(offered * seconds)
        mp_fixed = asyncio.run(
            open_loop(f"http://127.0.0.1:{port}/contact", form_requests(count, "fixed"), offered)
        )
        bare_fixed = asyncio.run(
            open_loop(f"http://127.0.0.1:{bare_port}/contact", form_requests(count, "b"), offered)
        )
    finally:
        stop(server)
        stop(bare)

    acknowledged = int(mp_max["total"] - mp_max["non2xx"] + mp_fixed["ok"])
    stored = count_rows(db_url, "SELECT count(*) FROM tickets") - before
    ratio = mp_max["rps"] / bare_max["rps"]
    return [
        Row("bare aiohttp handler, JSON parse, no storage (wrk, most it takes)",
            bare_max["rps"], "req", bare_max["p50"], bare_max["p99"], ratio="1"),
        Row(f"meldpunt web-form intake, {backend} (wrk, most it takes)",
            mp_max["rps"], "msg", mp_max["p50"], mp_max["p99"], ratio=f"{ratio:.2f}",
            goal=goal_ratio(ratio)),
        *fixed_rows("web-form", backend, offered, bare_fixed, mp_fixed),
        Row(f"  web form: acknowledged {acknowledged}, stored {stored} tickets"
            + ("" if stored >= acknowledged else "  <-- LOST MESSAGES")),
    ]  # fmt: skip


def goal_ratio(ratio: float) -> str:
    verdict = "met" if ratio >= GOAL_RATIO else f"missed: {ratio / GOAL_RATIO:.2f} of it"
    return f"≥ {GOAL_RATIO} of bare: {verdict}"


def fixed_rows(
    what: str, backend: str, offered: float, bare: dict[str, float], mp: dict[str, float]
) -> list[Row]:
    """The two open-loop rows, with the generator's own lateness when it matters."""
    rows = []
    for label, r in (("bare aiohttp handler", bare), (f"meldpunt {what}, {backend}", mp)):
        note = f", {int(r['failed'])} failed" if r["failed"] else ""
        if r["lag"] > 10:
            note += f", generator up to {r['lag']:.0f} ms late"
        unit = "req" if label.startswith("bare") else "msg"
        row = Row(f"{label} at a fixed {offered:,.0f}/s (open loop{note})",
                  r["rps"], unit, r["p50"], r["p99"])  # fmt: skip
        if label.startswith("meldpunt"):
            verdict = (
                "met" if r["p99"] < GOAL_P99_MS else f"missed by {r['p99'] - GOAL_P99_MS:.0f} ms"
            )
            row.goal = f"p99 < {GOAL_P99_MS:.0f} ms: {verdict}"
            row.ratio = f"p99 {r['p99'] / bare['p99']:.1f}× bare's"
        rows.append(row)
    return rows


def process_rows(
    db_url: str | None, counts: Sequence[int], seconds: float, connections: int, work: Path
) -> list[Row]:
    """Web-form intake with N processes sharing one port and one PostgreSQL database."""
    script = work / "post.lua"
    script.write_text(WRK_SCRIPT)
    with postgres() if db_url is None else _given(db_url) as server:
        url = server.create_database("bench_processes") if isinstance(server, Postgres) else server
        main_yaml, env = bench_config(work / "processes", url)
        migrate(main_yaml, env)
        rows: list[Row] = []
        first = 0.0
        for n in counts:
            port = free_port()
            # As compose.yaml runs it: web processes, and one worker for the background work.
            procs = [
                start_meldpunt(main_yaml, env, port, shared_port=True, role="web") for _ in range(n)
            ]
            procs.append(start_meldpunt(main_yaml, env, free_port(), role="worker"))
            try:
                for proc in procs:
                    wait_listening(proc)
                # A new process's first requests are slow (imports, templates): not measured.
                run_wrk(port, 1, connections, script, f"w{n}x")
                before = count_rows(url, "SELECT count(*) FROM tickets")
                result = run_wrk(port, seconds, connections, script, f"p{n}x")
            finally:
                for proc in procs:
                    stop(proc)
            stored = count_rows(url, "SELECT count(*) FROM tickets") - before
            acknowledged = int(result["total"] - result["non2xx"])
            first = first or result["rps"]
            lost = "" if stored >= acknowledged else f", {acknowledged - stored} LOST"
            rows.append(Row(
                f"meldpunt web-form intake, PostgreSQL, {n} web process{'es' if n > 1 else ''} "
                f"on one port and a worker ({int(result['non2xx'])} non-2xx{lost})",
                result["rps"], "msg", result["p50"], result["p99"],
                ratio=f"{result['rps'] / first:.2f} of 1 process",
            ))  # fmt: skip
    return rows


@contextmanager
def _given(url: str) -> Iterator[str]:
    yield url


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rate", type=float, help="fixed offered rate (default: half of max)")
    parser.add_argument("--database", help="database URL (default: a fresh SQLite file)")
    parser.add_argument(
        "--processes", help="e.g. 1,2,4: only the PostgreSQL run with that many processes"
    )
    args = parser.parse_args(argv)
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install wrk")
    work = Path(tempfile.mkdtemp(prefix="meldpunt-bench-"))
    try:
        if args.processes:
            counts = [int(n) for n in args.processes.split(",")]
            rows = process_rows(args.database, counts, args.seconds, args.connections, work)
        else:
            rows = intake_rows(args.database, args.seconds, args.connections, args.rate, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{machine()}; {args.connections} connections, {args.seconds:g} s a run, ~1 KB body\n")
    print_rows(rows)


if __name__ == "__main__":
    main()
