"""Leases: one process at a time runs a background job that must not run twice at once.

A lease is a row (key, holder, expires_at). It is taken, and renewed, by one atomic statement
that succeeds only when the row is free, expired or already the caller's, so it works the same on
SQLite and PostgreSQL. A holder that dies (SIGKILL, a lost host) stops renewing and the lease
expires; a holder that stops cleanly gives it back at once.

Why rows and not PostgreSQL advisory locks: an advisory lock lives as long as one database
connection, which a process must then keep open and out of its pool, and it does not exist on
SQLite. A process whose job hangs while its connection lives would keep the lock forever; a lease
must be renewed, so it also ends when the renewing stops. And ``SELECT * FROM leases`` shows who
holds what. The price: after a crash the others wait until the lease expires (``ttl``).

Expiry is judged by the clocks of the processes (UTC); hosts must keep their clocks in step
(NTP), well within the lease's duration.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
import structlog
from prometheus_client import Gauge
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from store.models import Lease, table_of

LEASES = table_of(Lease)

log = structlog.get_logger("meldpunt.leases")

HELD = Gauge("meldpunt_lease_held", "1 while this process holds the lease.", ["key"])


def _start_of(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, from /proc), or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    # Field 22 of stat(5), counted after the command name, which may itself hold spaces.
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


# None where there is no /proc: then a dead holder's lease is always waited out.
_SELF_START = _start_of(os.getpid())


def process_holder() -> str:
    """A name no other holder (in this process, another one, or on another host) will have.

    ``host:pid:start:token``: with the process's start, a holder on this host can tell that
    the holder of a lease died, and take it over without waiting for it to expire.
    """
    return f"{socket.gethostname()}:{os.getpid()}:{_SELF_START or 0}:{secrets.token_hex(3)}"


@dataclass(frozen=True, slots=True)
class LeaseState:
    """A lease as stored."""

    key: str
    holder: str
    acquired_at: datetime
    expires_at: datetime


class Leases:
    """Takes, renews and gives back leases in the name of one holder (this process).

    Args:
        engine: The database.
        holder: Who is asking; defaults to ``process_holder()``.
        clock: The time of day (UTC); tests move it to let a lease expire.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        holder: str | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._engine = engine
        self.holder = holder or process_holder()
        self._clock = clock or (lambda: datetime.now(UTC))
        # The keys this holder believes it holds: for /readyz, without asking the database.
        self.held: set[str] = set()

    async def acquire(self, key: str, ttl: timedelta) -> bool:
        """Take ``key`` for ``ttl`` when it is free or expired, or renew it when it is ours.

        Returns:
            Whether this holder holds the lease until now + ``ttl``.
        """
        now = self._clock()
        until = now + ttl
        mine = LEASES.c.holder == self.holder
        async with self._engine.begin() as conn:
            taken = await conn.execute(
                sa.update(LEASES)
                .where(LEASES.c.key == key, sa.or_(mine, LEASES.c.expires_at < now))
                .values(
                    holder=self.holder,
                    expires_at=until,
                    # Kept while renewed: how long one process has been reading, say.
                    acquired_at=sa.case((mine, LEASES.c.acquired_at), else_=now),
                )
            )
            if taken.rowcount == 0:
                insert = postgresql_insert if conn.dialect.name == "postgresql" else sqlite_insert
                statement = insert(LEASES).values(
                    key=key, holder=self.holder, acquired_at=now, expires_at=until
                )
                taken = await conn.execute(statement.on_conflict_do_nothing(index_elements=["key"]))
            if taken.rowcount == 0:
                holder = await conn.scalar(sa.select(LEASES.c.holder).where(LEASES.c.key == key))
                if holder is not None and self._gone(holder):
                    # A process on this host that died (this one before a restart, say): no need
                    # to wait for its lease to run out. Only if it still holds it.
                    taken = await conn.execute(
                        sa.update(LEASES)
                        .where(LEASES.c.key == key, LEASES.c.holder == holder)
                        .values(holder=self.holder, acquired_at=now, expires_at=until)
                    )
        ok = taken.rowcount == 1
        if ok:
            self.held.add(key)
        else:
            self.held.discard(key)
        HELD.labels(key).set(1 if ok else 0)
        return ok

    def _gone(self, holder: str) -> bool:
        """Whether ``holder`` names a process of this host that no longer runs.

        Holders are ``host:pid:start:token`` (``process_holder``). On the same host, a process
        id that does not exist, or exists but started at another moment (the number was used
        again, e.g. a restarted container whose process is again number 1), is a dead holder.
        """
        theirs = holder.rsplit(":", 3)
        if len(theirs) != 4 or theirs[0] != socket.gethostname() or _SELF_START is None:
            return False
        try:
            pid = int(theirs[1])
        except ValueError:
            return False
        return _start_of(pid) != theirs[2]

    async def release(self, key: str) -> None:
        """Give ``key`` back at once, if this holder still holds it."""
        self.held.discard(key)
        HELD.labels(key).set(0)
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.delete(LEASES).where(LEASES.c.key == key, LEASES.c.holder == self.holder)
            )

    async def all(self) -> list[LeaseState]:
        """Every lease row, expired ones too, by key."""
        async with self._engine.connect() as conn:
            found = await conn.execute(sa.select(LEASES).order_by(LEASES.c.key))
            return [LeaseState(r.key, r.holder, r.acquired_at, r.expires_at) for r in found]


async def hold(
    leases: Leases,
    key: str,
    work: Callable[[], Awaitable[None]],
    *,
    ttl: timedelta,
    retry_seconds: float | None = None,
) -> None:
    """Run ``work`` only while holding ``key``, forever: until cancelled.

    Without the lease it asks again every ``retry_seconds`` (default: a third of ``ttl``). With
    it, ``work`` starts and the lease is renewed every third of ``ttl``. When a renewal finds
    another holder, or the lease could not be renewed in time (the database away), ``work`` is
    cancelled before the lease can have run out, and the waiting starts again. Cancelling
    ``hold`` cancels ``work`` and gives the lease back.
    """
    every = ttl.total_seconds() / 3
    retry = every if retry_seconds is None else retry_seconds
    bound = log.bind(lease=key, holder=leases.holder)
    while True:
        started = time.monotonic()
        try:
            taken = await leases.acquire(key, ttl)
        except Exception as exc:
            bound.warning("lease could not be asked for", error=f"{type(exc).__name__}: {exc}")
            taken = False
        if not taken:
            await asyncio.sleep(retry)
            continue
        bound.info("lease taken; starting its work")
        valid_until = started + ttl.total_seconds()
        task: asyncio.Future[None] = asyncio.ensure_future(work())
        try:
            while not task.done():
                await asyncio.wait({task}, timeout=every)
                if task.done():
                    break
                started = time.monotonic()
                try:
                    if not await leases.acquire(key, ttl):
                        bound.warning("lease taken over by another process; stopping its work")
                        break
                    valid_until = started + ttl.total_seconds()
                except Exception as exc:
                    bound.warning("lease not renewed", error=f"{type(exc).__name__}: {exc}")
                # Stop a renewal early rather than run on a lease another may already have.
                if time.monotonic() + every > valid_until:
                    bound.warning("lease could not be renewed in time; stopping its work")
                    break
        finally:
            if not task.done():
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                try:
                    await task
                except Exception:
                    bound.exception("work under a lease failed")
            with contextlib.suppress(Exception):
                # Shielded: also when hold() itself is being cancelled, give the lease back.
                await asyncio.shield(leases.release(key))
        await asyncio.sleep(retry)
