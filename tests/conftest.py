"""Shared fixtures: a throwaway PostgreSQL server per session, SQLite files, and ``database``.

``database`` runs a test once on SQLite and once on real PostgreSQL, each time with a freshly
upgraded, empty schema of its own.
"""

from __future__ import annotations

import asyncio
import atexit
import itertools
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import pytest
import sqlalchemy as sa

from store.db import Database
from store.migrate import upgrade
from store.models import table_of

T = TypeVar("T")

IN_CI = os.environ.get("CI") == "true"


def unavailable(reason: str) -> NoReturn:
    """A real server or tool the test needs is not installed: skip here, fail in CI."""
    if IN_CI:
        pytest.fail(f"CI runs every test: {reason}", pytrace=False)
    pytest.skip(reason)


MISSING_POSTGRES = (
    "PostgreSQL server binaries (initdb, pg_ctl) not found: install them "
    "(Debian: apt-get install postgresql; ./scripts/test does it for you)"
)


def find_postgres_bindir() -> Path | None:
    """The folder with initdb and pg_ctl: pg_config's, else Debian's newest, else on PATH."""
    candidates: list[Path] = []
    if pg_config := shutil.which("pg_config"):
        found = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, check=False
        ).stdout.strip()
        if found:
            candidates.append(Path(found))
    debian = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if p.parent.name.isdigit()]
    candidates += sorted(debian, key=lambda p: int(p.parent.name), reverse=True)
    if initdb := shutil.which("initdb"):
        candidates.append(Path(initdb).parent)
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
            return bindir
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PostgresCluster:
    """A PostgreSQL server in a temporary folder, trusting local connections, on a free port.

    Tuned for speed (no fsync), never for durability: tests that measure durability need their
    own server with the defaults.
    """

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="meldpunt-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.port = 0
        self._running = False
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._numbers = itertools.count(1)
        # Where test databases are dropped after their test (``drop_database_later``).
        self._dropping = ThreadPoolExecutor(max_workers=1, thread_name_prefix="postgres-drop")
        # initdb refuses to run as root; the server must not either.
        self._as_owner: list[str] = []
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError(
                    "running as root needs a 'postgres' user to own the server"
                ) from None
            shutil.chown(self.root, "postgres", "postgres")
            self._as_owner = ["runuser", "-u", "postgres", "--"]

    def _server_command(self, *args: str) -> subprocess.CompletedProcess[str]:
        # cwd: the server's user may not be allowed into the directory pytest runs from.
        return subprocess.run(
            [*self._as_owner, *args], cwd=self.root, capture_output=True, text=True, check=False
        )

    def start(self) -> None:
        initdb = self._server_command(
            str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
            "-E", "UTF8", "--locale=C.UTF-8", "--no-sync",
        )  # fmt: skip
        if initdb.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{initdb.stdout}{initdb.stderr}")
        # The port is free when asked and taken a moment later by the server; another process
        # may win that race, so a start that fails is retried on a new port.
        for _attempt in range(3):
            self.port = free_port()
            options = (
                f"-c listen_addresses=127.0.0.1 -p {self.port} -k {shlex.quote(str(self.root))} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            )
            started = self._server_command(
                str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                "-w", "-t", "60", "-o", options, "start",
            )  # fmt: skip
            if started.returncode == 0:
                self._running = True
                atexit.register(self.stop)
                self._start_watchdog()
                return
        log = self.log.read_text(errors="replace") if self.log.exists() else ""
        raise RuntimeError(f"PostgreSQL did not start:\n{started.stdout}{started.stderr}\n{log}")

    def _stop_command(self) -> list[str]:
        return [*self._as_owner, str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m",
                "immediate", "-w", "stop"]  # fmt: skip

    def _start_watchdog(self) -> None:
        # atexit does not run when pytest is killed (a CI time-out, SIGTERM); this shell outlives
        # it, in a session of its own so Ctrl-C does not reach it, and stops the server then.
        script = 'while kill -0 "$1" 2>/dev/null; do sleep 1; done; shift; "$@"; rm -rf "$0"'
        self._watchdog = subprocess.Popen(
            ["sh", "-c", script, str(self.root), str(os.getpid()), *self._stop_command()],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            cwd=self.root, start_new_session=True,
        )  # fmt: skip

    def stop(self) -> None:
        """Stop at once (nothing here needs to survive) and remove the folder; idempotent."""
        self._dropping.shutdown(wait=True, cancel_futures=True)
        if self._watchdog is not None:
            self._watchdog.kill()
            self._watchdog.wait()
            self._watchdog = None
        if self._running:
            self._running = False
            atexit.unregister(self.stop)
            subprocess.run(self._stop_command(), cwd=self.root, capture_output=True, check=False)
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def sql(self, statement: str) -> None:
        """Run one statement as the superuser, outside a transaction (as CREATE DATABASE needs)."""
        done = subprocess.run(
            [
                str(self.bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
                "-h", str(self.root), "-p", str(self.port), "-U", "postgres", "-d", "postgres",
                "-c", statement,
            ],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"psql: {statement}: {done.stderr.strip()}")

    def new_database(self, *, name: str | None = None, template: str | None = None) -> str:
        """Create an empty database (or a copy of ``template``) and return its URL."""
        name = name or f"test_{next(self._numbers)}"
        copy = f' TEMPLATE "{template}"' if template else ""
        self.sql(f'CREATE DATABASE "{name}"{copy}')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        # FORCE: a test that leaked a connection must not leave the next one a failed teardown.
        self.sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def drop_database_later(self, url: str) -> None:
        """``drop_database`` off the caller's path, for a test's teardown: nothing waits for
        it, and whatever is left goes with the cluster at the end."""
        self._dropping.submit(self.drop_database, url)


def _run_blocking(coro: Coroutine[Any, Any, T]) -> T:
    # Session fixtures are synchronous; a thread of its own keeps this asyncio.run() away from
    # the event loops pytest-asyncio runs the tests in.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def _migrate(url: str) -> None:
    database = Database(url)
    try:
        await upgrade(database)
    finally:
        await database.close()


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """A running PostgreSQL server for the whole session; skips (fails in CI) without one."""
    yield from running_postgres()


def running_postgres() -> Iterator[PostgresCluster]:
    """A PostgreSQL server started for the caller and stopped when it is done with it; skips
    (fails in CI) without one."""
    bindir = find_postgres_bindir()
    if bindir is None:
        unavailable(MISSING_POSTGRES)
    cluster = PostgresCluster(bindir)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def postgres_url(postgres_cluster: PostgresCluster) -> Callable[[], str]:
    """Call it for the URL of a new, empty PostgreSQL database (no schema): ``postgres_url()``."""
    return postgres_cluster.new_database


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """The URL of a SQLite file that does not exist yet (no schema)."""
    return f"sqlite:///{tmp_path / 'meldpunt.db'}"


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file upgraded to head once per session; copied for every test."""
    path = tmp_path_factory.mktemp("sqlite-template") / "meldpunt.db"
    _run_blocking(_migrate(f"sqlite:///{path}"))
    return path


@pytest.fixture(scope="session")
def postgres_template(postgres_cluster: PostgresCluster) -> str:
    """The name of a PostgreSQL database upgraded to head once per session; cloned per test."""
    name = "meldpunt_template"
    _run_blocking(_migrate(postgres_cluster.new_database(name=name)))
    return name


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a database of this test's own, upgraded to head, on each backend in turn."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        target = tmp_path / "meldpunt.db"
        # The template's engine is closed, so its WAL is checkpointed and normally gone.
        for suffix in ("", "-wal"):
            if (source := Path(f"{template}{suffix}")).exists():
                shutil.copyfile(source, f"{target}{suffix}")
        yield f"sqlite:///{target}"
        return
    cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
    url = cluster.new_database(template=request.getfixturevalue("postgres_template"))
    yield url
    cluster.drop_database_later(url)


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    """An open ``store.db.Database`` on an upgraded, empty schema: SQLite, then PostgreSQL."""
    db = Database(database_url)
    try:
        yield db
    finally:
        await db.close()


class Clock:
    """A clock tests move by hand; starts on a Monday morning in November 2026."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 16, 10, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def rows(db: Database, model: type, *where: sa.ColumnElement[bool]) -> list[sa.RowMapping]:
    """The rows of ``model``'s table matching ``where``, in primary-key order."""
    table = table_of(model)
    async with db.engine.connect() as conn:
        result = await conn.execute(sa.select(table).where(*where).order_by(next(iter(table.c))))
        return list(result.mappings())
