"""Web chat presence shared by several processes, and the notices that wake them.

A visitor's chat socket lives in the one web process that accepted it. So that a worker (or
another web process) can tell whether the visitor is still in the chat, each process records its
visitors in ``chat_presence`` (one row per visitor and process, renewed on a heartbeat, kept for
the grace of a page load after the last socket closed). A row whose process died stops being
renewed and expires.

On PostgreSQL, ``announce`` sends a ``NOTIFY`` on one channel and every web process ``listen``s
on a connection of its own, so the process holding a socket pushes an answer sent elsewhere at
once. A notice can be lost (the listening connection dropped for a moment): the connector reads
what it missed on a timer, so a lost notice only delays. SQLite runs one process and needs none
of this; there ``announce`` does nothing.

Expiry is judged by the clocks of the processes (UTC), as for leases: keep hosts in step (NTP).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Collection
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import sqlalchemy as sa
import structlog
from prometheus_client import Gauge
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from store.chat import DatabaseChats
from store.leases import process_holder
from store.models import ChatPresence, table_of

PRESENCE = table_of(ChatPresence)
# The one channel every web process listens on (PostgreSQL's NOTIFY payload: under 8000 bytes).
NOTICE_CHANNEL = "meldpunt_webchat"
# A connection that says nothing for this long is asked whether it is still there.
_PROBE_SECONDS = 15.0
_RETRY_SECONDS = (0.2, 0.5, 1.0, 2.0, 5.0)

log = structlog.get_logger("meldpunt.presence")

LISTENING = Gauge(
    "meldpunt_webchat_listening", "1 while this process listens for web chat notices."
)


class DatabasePresence:
    """Records this process's chat visitors and carries notices between processes.

    Args:
        engine: The database.
        holder: This process; defaults to ``process_holder()`` (host, process id, start).
        clock: The time of day (UTC); tests move it to let rows expire.
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
        self._chats = DatabaseChats(engine)

    @property
    def shared(self) -> bool:
        """Whether notices travel between processes (PostgreSQL); SQLite has one process."""
        return self._engine.dialect.name == "postgresql"

    async def here(self, visitors: Collection[str], ttl: timedelta) -> None:
        """Record that this process holds sockets of ``visitors``, until now + ``ttl``."""
        if not visitors:
            return
        until = self._clock() + ttl
        rows = [
            {"visitor": v, "holder": self.holder, "connected": True, "expires_at": until}
            for v in visitors
        ]
        async with self._engine.begin() as conn:
            insert = postgresql_insert if conn.dialect.name == "postgresql" else sqlite_insert
            statement = insert(PRESENCE)
            await conn.execute(
                statement.on_conflict_do_update(
                    index_elements=["visitor", "holder"],
                    set_={"connected": True, "expires_at": statement.excluded.expires_at},
                ),
                rows,
            )

    async def gone(self, visitors: Collection[str], grace: timedelta) -> None:
        """Record that this process's last socket of each of ``visitors`` closed.

        The row lasts ``grace`` more (a page being reloaded reconnects, maybe to another
        process); without a grace it goes at once.
        """
        if not visitors:
            return
        mine = sa.and_(PRESENCE.c.holder == self.holder, PRESENCE.c.visitor.in_(visitors))
        async with self._engine.begin() as conn:
            if grace > timedelta(0):
                await conn.execute(
                    sa.update(PRESENCE)
                    .where(mine)
                    .values(connected=False, expires_at=self._clock() + grace)
                )
            else:
                await conn.execute(sa.delete(PRESENCE).where(mine))

    async def present(self, visitor: str) -> bool:
        """Whether any process holds a socket of ``visitor``, or did a grace ago at most."""
        async with self._engine.connect() as conn:
            found = await conn.scalar(
                sa.select(PRESENCE.c.holder)
                .where(PRESENCE.c.visitor == visitor, PRESENCE.c.expires_at > self._clock())
                .limit(1)
            )
        return found is not None

    async def expire(self) -> int:
        """Delete rows nobody renewed in time (their process died or lost the database)."""
        async with self._engine.begin() as conn:
            gone = await conn.execute(
                sa.delete(PRESENCE).where(PRESENCE.c.expires_at <= self._clock())
            )
        return int(gone.rowcount or 0)

    async def sent_since(
        self, visitors: Collection[str], since: datetime
    ) -> list[tuple[str, int, bool]]:
        """Chat answers sent to ``visitors`` since ``since``: (visitor, outbox id, delivered)."""
        return await self._chats.sent_since(visitors, since)

    async def announce(self, payload: str) -> None:
        """Tell every listening process ``payload`` (PostgreSQL ``NOTIFY``; nothing on SQLite).

        Delivered when this statement's transaction commits, which is at once.
        """
        if not self.shared:
            return
        async with self._engine.begin() as conn:
            await conn.execute(sa.select(sa.func.pg_notify(NOTICE_CHANNEL, payload)))

    async def listen(
        self, on_notice: Callable[[str], None], on_listening: Callable[[], None]
    ) -> None:
        """Hand every notice to ``on_notice``, on a connection of its own, until cancelled.

        A dropped connection is opened again (after a short, growing pause); ``on_listening`` is
        called each time listening (re)starts, so the caller can read what it missed meanwhile.
        Returns at once on SQLite, where there is nothing to listen to.
        """
        if not self.shared:
            return
        url = self._engine.url.set(drivername="postgresql")
        dsn = url.render_as_string(hide_password=False)
        failures = 0
        while True:
            conn: Any = None
            try:
                conn = await asyncpg.connect(
                    dsn,
                    timeout=10,
                    server_settings={"application_name": "meldpunt-webchat-listener"},
                )
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _conn, lost=lost: lost.set())
                await conn.add_listener(
                    NOTICE_CHANNEL, lambda _conn, _pid, _channel, payload: on_notice(payload)
                )
                LISTENING.set(1)
                if failures:
                    log.info("listening for web chat notices again")
                failures = 0
                on_listening()
                await _until_lost(conn, lost)
                log.warning("web chat notices: the listening connection was lost")
            except Exception as exc:
                # Whatever broke the connection (refused, reset, the server restarting), the
                # answer is the same: open a new one shortly.
                log.warning("web chat notices: cannot listen", error=f"{type(exc).__name__}: {exc}")
            finally:
                LISTENING.set(0)
                if conn is not None and not conn.is_closed():
                    conn.terminate()
            await asyncio.sleep(_RETRY_SECONDS[min(failures, len(_RETRY_SECONDS) - 1)])
            failures += 1


async def _until_lost(conn: Any, lost: asyncio.Event) -> None:
    """Return once the connection is closed, or does not answer a probe in time.

    A connection cut without a word (a host gone, a firewall's idle timeout) is only noticed by
    using it, hence the probe when nothing arrived for a while.
    """
    while not lost.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(lost.wait(), _PROBE_SECONDS)
            return
        try:
            async with asyncio.timeout(5):
                await conn.fetchval("SELECT 1")
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return


__all__ = ["NOTICE_CHANNEL", "DatabasePresence"]
