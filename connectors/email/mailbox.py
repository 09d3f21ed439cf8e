"""Reads one IMAP mailbox: hands every new mail to ingest, and only then marks, moves or deletes it.

IMAP as servers really speak it (RFC 3501, 2177 IDLE, 4315 UIDPLUS, 6851 MOVE):

- ``UID N:*`` also matches the newest message when its UID is below N, so UIDs from a search are
  filtered here, never trusted.
- A UID only means something together with the folder's UIDVALIDITY. A new UIDVALIDITY (an index
  rebuilt, a mailbox restored or migrated) renumbers the folder: it is read again from the start
  and ingest's Message-ID dedupe drops what it already has.
- ``BODY.PEEK[]`` leaves ``\\Seen`` alone; ``BODY[]`` would mark mail read before it is stored.
- While IDLE no other command may be sent, so DONE always comes first; IDLE is renewed well within
  the 30 minutes after which servers may drop an idle client.
- imapclient blocks. One worker thread per mailbox owns the connection, so commands never overlap
  and a cancelled task cannot leave half a command on the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import random
import re
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal, TypeVar, TypeVarTuple

import structlog
from imapclient import IMAPClient
from imapclient.exceptions import LoginError
from prometheus_client import Counter, Gauge

from connectors.base import CursorStore
from connectors.email.options import MailboxOptions

__all__ = [
    "IMPORTED_KEYWORD",
    "TRUNCATED_HEADER",
    "CursorStoreFailed",
    "Deliver",
    "DeliveryFailed",
    "MailboxReader",
    "MailboxState",
    "MailboxStatus",
    "failure_reason",
    "truncated_message",
]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

Deliver = Callable[[bytes], Awaitable[None]]
"""Hands one raw mail to ingest; returns once it is durably stored (or quarantined), else raises."""

MailboxState = Literal["starting", "connected", "idle", "polling", "retrying", "stopped"]

log = structlog.get_logger("meldpunt.email.imap")

IMPORTED = Counter(
    "meldpunt_imap_imported_total",
    "Mails read from an IMAP mailbox and stored by ingest.",
    ["mailbox"],
)
FAILURES = Counter(
    "meldpunt_imap_failures_total",
    "Failed IMAP sync attempts, by mailbox and reason.",
    ["mailbox", "reason"],
)
CONNECTED = Gauge(
    "meldpunt_imap_connected",
    "1 while meldpunt is logged in to the mailbox, else 0.",
    ["mailbox"],
)

IMPORTED_KEYWORD: Final = b"$MeldpuntImported"
TRUNCATED_HEADER: Final = "X-Meldpunt-Truncated"
SEEN: Final = b"\\Seen"
FLAGGED: Final = b"\\Flagged"
DELETED: Final = b"\\Deleted"

FETCH_CHUNK: Final = 50
# Bodies are fetched in batches of at most this many bytes (and at least one mail), so a backlog
# of large mails never sits in memory at once.
FETCH_BUDGET_BYTES: Final = 16 * 1024 * 1024
# How often the worker looks up from IDLE to see whether it should stop: the bound on how long
# cancelling run() or calling close() waits for the connection.
IDLE_CHECK_SECONDS: Final = 1.0
IDLE_RENEW_SECONDS: Final = 25 * 60.0
# The longest back-off after a failure on meldpunt's side (the database or the attachment storage
# refused a mail): the server is not to blame and is asked little (a SELECT and the mail again), so
# mail catches up within seconds once the database is back or the disk has room again.
LOCAL_RETRY_MAX_SECONDS: Final = 10.0
LOGOUT_TIMEOUT_SECONDS: Final = 5.0

_FailureReason = Literal["login", "connection", "protocol", "deliver", "cursor", "unexpected"]
_WHAT: Final[dict[_FailureReason, str]] = {
    "login": "imap login failed",
    "connection": "imap connection failed",
    "protocol": "imap server refused a command",
    "deliver": "storing an imported mail failed",
    "cursor": "the imap cursor could not be read or saved",
    "unexpected": "imap sync failed unexpectedly",
}
# A CONTENT header of the original cannot describe the note that replaces a body too large to read.
_CONTENT_FIELDS: Final = frozenset({b"content-type", b"content-transfer-encoding"})


class DeliveryFailed(Exception):
    """``deliver`` raised for a mail: it stays on the server unmarked; the cursor stops there.

    That includes a full attachment storage (``ingest.files.StorageFull``). Such a mail is left
    on the server rather than imported with its file noted as not kept: until the disk has room
    the mailbox holds the only complete copy, and marking the mail done would leave staff a
    ticket whose file exists nowhere they can reach. Its text waits at most a few seconds longer
    than the disk (``LOCAL_RETRY_MAX_SECONDS``), and mails without files are imported meanwhile.
    """

    def __init__(self, uid: int) -> None:
        super().__init__(f"storing the mail with UID {uid} failed")
        self.uid = uid


class CursorStoreFailed(Exception):
    """The cursor store raised while loading or saving this mailbox's cursor."""


class _ServerClosed(ConnectionError):
    """The server ended the session while meldpunt was idling."""


@dataclass(slots=True)
class MailboxStatus:
    """What a mailbox reader is doing, for the health page and the logs."""

    name: str
    state: MailboxState = "starting"
    last_error: str | None = None
    last_sync_at: datetime | None = None
    consecutive_failures: int = 0
    imported: int = 0


@dataclass(slots=True)
class _Session:
    client: Any  # imapclient.IMAPClient, which ships no type hints
    can_idle: bool
    can_move: bool
    can_uid_expunge: bool
    keywords: bool = True  # whether PERMANENTFLAGS allow our own keyword; refreshed by each SELECT
    move_folder_ready: bool = False


@dataclass(slots=True)
class _Cursor:
    uidvalidity: int
    last_uid: int

    def as_dict(self) -> dict[str, Any]:
        return {"uidvalidity": self.uidvalidity, "last_uid": self.last_uid}


@dataclass(frozen=True, slots=True)
class _Planned:
    uid: int
    size: int
    action: Literal["skip", "full", "headers"]


def _now() -> datetime:
    return datetime.now(UTC)


def failure_reason(error: BaseException) -> _FailureReason:
    """The ``reason`` label of ``meldpunt_imap_failures_total`` for an error a sync raised."""
    if isinstance(error, DeliveryFailed):
        return "deliver"
    if isinstance(error, CursorStoreFailed):
        return "cursor"
    if isinstance(error, LoginError):
        return "login"
    # imaplib's abort means the connection is unusable; ssl and socket errors are OSErrors.
    if isinstance(error, OSError | imaplib.IMAP4.abort):
        return "connection"
    if isinstance(error, imaplib.IMAP4.error):
        return "protocol"
    return "unexpected"


def _describe(error: BaseException) -> str:
    text = str(error)
    # imapclient passes the server's answer on as the repr of bytes: show the server's own words.
    if match := re.fullmatch(r"b(['\"])(.*)\1", text, re.DOTALL):
        text = match.group(2)
    if not text:
        text = type(error).__name__
    elif isinstance(error, OSError) and not isinstance(error, _ServerClosed):
        text = f"{type(error).__name__}: {text}"  # "timed out" alone does not say what did
    if isinstance(error, DeliveryFailed | CursorStoreFailed) and error.__cause__ is not None:
        text = f"{text} ({_describe(error.__cause__)})"
    return text


def _mails(count: int) -> str:
    return "1 mail" if count == 1 else f"{count} mails"


def _seconds(value: float) -> str:
    return f"{value:.1f} s" if value < 2 else f"{round(value)} s"


def _human_size(size: int) -> str:
    if size >= 1_000_000:
        return f"{size / 1_000_000:.1f} MB"
    if size >= 1_000:
        return f"{size / 1_000:.0f} kB"
    return f"{size} bytes"


def _flag(value: object) -> bytes:
    return (value if isinstance(value, bytes) else str(value).encode()).lower()


def _already_imported(flags: set[bytes], keywords: bool) -> bool:
    if IMPORTED_KEYWORD.lower() in flags:
        return True
    # Without keywords the mark is \Seen plus \Flagged; both together, to skip as little as can be.
    return not keywords and {SEEN.lower(), FLAGGED.lower()} <= flags


def _header_fields(header: bytes) -> Iterator[list[bytes]]:
    """The header block's fields, each as its lines (the first plus folded ones), without EOLs."""
    field: list[bytes] = []
    for raw in header.split(b"\n"):
        line = raw.rstrip(b"\r")
        if not line:
            break
        if line[:1] in (b" ", b"\t") and field:
            field.append(line)
            continue
        if field:
            yield field
        field = [line]
    if field:
        yield field


def truncated_message(header: bytes, size: int, limit: int, *, mailbox: str, folder: str) -> bytes:
    """What is delivered instead of a mail larger than ``limit``: its header and a note.

    The header gets ``X-Meldpunt-Truncated: <size>`` (the full size in bytes) and a plain-text
    content type, so the ticket shows who wrote about what and that the body was not imported.
    """
    lines = [f"{TRUNCATED_HEADER}: {size}".encode()]
    for field in _header_fields(header):
        name = field[0].split(b":", 1)[0].strip().lower()
        if name not in _CONTENT_FIELDS:
            lines.extend(field)
    lines += [b"Content-Type: text/plain; charset=utf-8", b"Content-Transfer-Encoding: 8bit", b""]
    note = (
        f"Dit bericht is {_human_size(size)} groot, meer dan de {_human_size(limit)} die meldpunt "
        "per e-mail inleest. Alleen de kopregels (afzender, onderwerp, datum) zijn overgenomen; "
        f"het volledige bericht staat nog in map '{folder}' van mailbox '{mailbox}'."
    )
    return b"\r\n".join(lines) + b"\r\n" + note.encode() + b"\r\n"


def _batches(plan: Sequence[_Planned], budget: int) -> Iterator[list[_Planned]]:
    batch: list[_Planned] = []
    weight = 0
    for item in plan:
        size = item.size if item.action == "full" else 0
        if batch and weight + size > budget:
            yield batch
            batch, weight = [], 0
        batch.append(item)
        weight += size
    if batch:
        yield batch


def _close_quietly(client: Any) -> None:
    # The connection is being thrown away, usually because it already broke.
    with contextlib.suppress(Exception):
        client.shutdown()


def _logout_quietly(client: Any, timeout: float) -> None:
    with contextlib.suppress(Exception):
        client.socket().settimeout(timeout)
    try:
        client.logout()
    except Exception:  # a dead server must not hold up shutting down
        _close_quietly(client)


class MailboxReader:
    """Imports one mailbox folder into meldpunt, mail by mail, without ever losing one.

    A mail is marked, moved or deleted on the server only after ``deliver`` returned for it, and
    the cursor is saved only after that, so a crash at any point means at most a second delivery
    (which ingest drops by Message-ID), never a lost mail.

    Args:
        options: The mailbox's configuration.
        cursors: Where the (UIDVALIDITY, last UID) bookmark is kept, under ``imap:<name>``.
        deliver: Stores one raw mail; see ``Deliver``.
        max_message_bytes: Larger mails are delivered as their header plus a note
            (see ``truncated_message``).
        clock: Current time, for ``status.last_sync_at``.
        retry_initial_seconds: First back-off after a failure; it doubles with each failure.
        retry_max_seconds: Longest back-off.
    """

    def __init__(
        self,
        options: MailboxOptions,
        cursors: CursorStore,
        deliver: Deliver,
        *,
        max_message_bytes: int,
        clock: Callable[[], datetime] = _now,
        retry_initial_seconds: float = 1.0,
        retry_max_seconds: float = 300.0,
    ) -> None:
        self.options = options
        self.status = MailboxStatus(options.name)
        self._cursors = cursors
        self._deliver = deliver
        self._max_bytes = max_message_bytes
        self._clock = clock
        self._retry_initial = retry_initial_seconds
        self._retry_max = retry_max_seconds
        self._key = f"imap:{options.name}"
        self._log = log.bind(mailbox=options.name)
        self._connected = CONNECTED.labels(mailbox=options.name)
        self._connected.set(0)
        self._executor: ThreadPoolExecutor | None = None
        # Assigned only in the worker thread, which is the one place the connection is used.
        self._session: _Session | None = None
        self._lock = asyncio.Lock()
        self._closing = asyncio.Event()
        # Read by the worker thread between IDLE checks: stop means close(), wake means a sync
        # wants the connection.
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._last_reason: _FailureReason = "unexpected"
        self._last_detail = ""
        self._saved_cursor: _Cursor | None = None  # as last loaded or saved, to skip idle writes
        self._told_no_idle = False

    # --- public API -----------------------------------------------------------------------

    async def sync_once(self) -> int:
        """Connect if needed, import everything new, apply ``after_import`` and save the cursor.

        Returns:
            How many mails were delivered.

        Raises:
            DeliveryFailed: ``deliver`` raised; mails delivered before it are marked and counted.
            CursorStoreFailed: The cursor could not be loaded or saved.
            Exception: Connection, login and protocol errors as imapclient raises them.
        """
        if self._closing.is_set():
            raise RuntimeError(f"the reader of mailbox {self.options.name!r} is closed")
        async with self._lock:
            # An IDLE that run() started holds the connection; it looks at this flag every second.
            self._wake.set()
            try:
                delivered = await self._sync()
            except Exception as error:
                await self._failed(error)
                raise
            finally:
                self._wake.clear()
        if self.status.consecutive_failures:
            failures = self.status.consecutive_failures
            self._log.info(
                f"imap mailbox works again after {failures} failed "
                f"{'attempt' if failures == 1 else 'attempts'}"
            )
        self.status.consecutive_failures = 0
        self.status.last_error = None
        self.status.last_sync_at = self._clock()
        if delivered:
            self._log.info(f"imported {_mails(delivered)} from imap", count=delivered)
        return delivered

    async def run(self) -> None:
        """Sync, then wait for mail (IDLE or polling), forever; on errors retry with back-off.

        Never raises except ``CancelledError``; closes the reader when it ends.
        """
        try:
            while not self._closing.is_set():
                try:
                    await self.sync_once()
                except Exception:  # recorded by sync_once; a failure is retried, never fatal
                    await self._back_off()
                    continue
                try:
                    await self._wait_for_mail()
                except Exception as error:
                    await self._failed(error)
                    await self._back_off()
        finally:
            await self.close()

    async def close(self) -> None:
        """Finish the mail in hand, leave IDLE, log out and stop the worker thread. Idempotent."""
        self._closing.set()
        self._stop.set()
        async with self._lock:
            executor, self._executor = self._executor, None
            try:
                if executor is not None:
                    loop = asyncio.get_running_loop()
                    await loop.run_in_executor(executor, self._disconnect, True)
            finally:
                if executor is not None:
                    executor.shutdown(wait=False)
                self._connected.set(0)
                self.status.state = "stopped"

    # --- one sync ---------------------------------------------------------------------------

    async def _sync(self) -> int:
        reused = self._session is not None
        session = await self._connect_async()
        try:
            uidvalidity = await self._call(self._select, session)
        except (OSError, imaplib.IMAP4.error) as error:
            if not reused:
                raise
            # Servers drop quiet connections (auto-logout, NAT time-outs), and a session that
            # outlived a rebuilt index gets only errors (Dovecot: "[SERVERBUG]"): one fresh try.
            self._log.info("imap session no longer usable; reconnecting", error=_describe(error))
            await self._call(self._disconnect, False)
            session = await self._connect_async()
            uidvalidity = await self._call(self._select, session)

        stored = await self._load_cursor()
        cursor = _Cursor(uidvalidity, 0)
        if stored is None:
            self._log.info(
                "no imap cursor yet; reading the whole folder", folder=self.options.folder
            )
        elif stored.uidvalidity != uidvalidity:
            self._log.warning(
                "imap folder was renumbered (UIDVALIDITY changed); reading it again from the "
                "start, ingest drops the mails it already has",
                folder=self.options.folder,
                old_uidvalidity=stored.uidvalidity,
                new_uidvalidity=uidvalidity,
            )
        else:
            cursor.last_uid = stored.last_uid

        delivered = 0
        while not self._stop.is_set():
            uids = await self._call(self._new_uids, session, cursor.last_uid)
            if not uids:
                break
            for start in range(0, len(uids), FETCH_CHUNK):
                delivered += await self._import_chunk(
                    session, uids[start : start + FETCH_CHUNK], cursor
                )
                if self._stop.is_set():
                    break
        if cursor != self._saved_cursor:  # e.g. a new UIDVALIDITY in a folder with nothing new
            await self._save_cursor(cursor)
        return delivered

    async def _connect_async(self) -> _Session:
        fresh = self._session is None
        session = await self._call(self._connect)
        self.status.state = "connected"
        if fresh:
            self._log.info(
                "imap mailbox connected",
                host=self.options.host,
                folder=self.options.folder,
                idle=session.can_idle,
            )
        return session

    async def _import_chunk(self, session: _Session, uids: list[int], cursor: _Cursor) -> int:
        plan = await self._call(self._plan, session, uids)
        delivered = 0
        for batch in _batches(plan, FETCH_BUDGET_BYTES):
            raw_mails = await self._call(self._fetch, session, batch)
            if self._stop.is_set():
                break
            # Skipped: already imported, or expunged meanwhile.
            wanted = [
                item
                for item in batch
                if item.action != "skip" and raw_mails.get(item.uid) is not None
            ]
            # Handed over together, so ingest stores the whole batch with one commit.
            outcomes = await asyncio.gather(
                *(self._deliver(raw_mails[item.uid]) for item in wanted), return_exceptions=True
            )
            for outcome in outcomes:
                if isinstance(outcome, BaseException) and not isinstance(outcome, Exception):
                    raise outcome  # cancelled or stopping: mark nothing, as a crash would
            result_of = {item.uid: outcome for item, outcome in zip(wanted, outcomes, strict=True)}
            stored = [item for item in wanted if result_of[item.uid] is None]
            handled: list[_Planned] = []  # the unbroken run the cursor may move past
            failure: tuple[int, BaseException] | None = None  # (UID, what deliver raised)
            for item in batch:
                outcome = result_of.get(item.uid)
                if isinstance(outcome, BaseException):
                    failure = (item.uid, outcome)
                    break
                handled.append(item)
            delivered += len(stored)
            self.status.imported += len(stored)
            IMPORTED.labels(mailbox=self.options.name).inc(len(stored))
            # Only now, with every mail in `stored` safely in ingest, may the server forget them
            # (also those after a failed one: they are stored, the cursor just stops before it).
            if stored:
                await self._call(self._after_import, session, stored)
            if handled:
                cursor.last_uid = handled[-1].uid
                await self._save_cursor(cursor)
            if failure is not None:
                raise DeliveryFailed(failure[0]) from failure[1]
            if self._stop.is_set():
                break
        return delivered

    async def _load_cursor(self) -> _Cursor | None:
        try:
            value = await self._cursors.load(self._key)
        except Exception as error:
            raise CursorStoreFailed(f"loading {self._key} failed") from error
        self._saved_cursor = None
        if value is None:
            return None
        try:
            cursor = _Cursor(int(value["uidvalidity"]), int(value["last_uid"]))
        except (KeyError, TypeError, ValueError):
            self._log.warning("imap cursor unreadable; reading the whole folder", cursor=value)
            return None
        self._saved_cursor = _Cursor(cursor.uidvalidity, cursor.last_uid)
        return cursor

    async def _save_cursor(self, cursor: _Cursor) -> None:
        try:
            await self._cursors.save(self._key, cursor.as_dict())
        except Exception as error:
            raise CursorStoreFailed(f"saving {self._key} failed") from error
        self._saved_cursor = _Cursor(cursor.uidvalidity, cursor.last_uid)

    # --- waiting and failing ----------------------------------------------------------------

    async def _wait_for_mail(self) -> None:
        if self._closing.is_set():
            return
        session = self._session
        if self.options.idle and session is not None and session.can_idle:
            self.status.state = "idle"
            await self._call(self._idle, session, IDLE_RENEW_SECONDS)
            return
        if self.options.idle and not self._told_no_idle:
            self._told_no_idle = True
            self._log.info(
                f"imap server does not offer IDLE; checking every "
                f"{_seconds(self.options.poll_seconds)}"
            )
        self.status.state = "polling"
        await self._pause(self.options.poll_seconds)

    async def _failed(self, error: Exception) -> None:
        reason = failure_reason(error)
        self._last_reason, self._last_detail = reason, _describe(error)
        self.status.consecutive_failures += 1
        self.status.last_error = f"{_WHAT[reason]}: {self._last_detail}"
        FAILURES.labels(mailbox=self.options.name, reason=reason).inc()
        if reason == "unexpected":
            self._log.error("imap sync failed unexpectedly", exc_info=error)
        if reason not in ("deliver", "cursor") and self._executor is not None:
            # After a network or protocol error the session's state is unknown: start afresh.
            await self._call(self._disconnect, False)

    async def _back_off(self) -> None:
        failures = max(self.status.consecutive_failures, 1)
        delay = self._retry_initial * 2 ** min(failures - 1, 30)
        ceiling = self._retry_max
        if self._last_reason in ("deliver", "cursor"):
            ceiling = min(ceiling, max(self._retry_initial, LOCAL_RETRY_MAX_SECONDS))
        # Jitter keeps many mailboxes on one server from reconnecting in the same instant.
        delay = min(ceiling, delay * random.uniform(0.8, 1.2))  # noqa: S311 - not crypto
        self.status.state = "retrying"
        self._log.warning(
            f"{_WHAT[self._last_reason]}; retrying in {_seconds(delay)}",
            error=self._last_detail,
            failures=failures,
        )
        await self._pause(delay)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)

    async def _call(self, work: Callable[[*Ts], T], *args: *Ts) -> T:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix=f"imap-{self.options.name}"
            )
        return await asyncio.get_running_loop().run_in_executor(self._executor, work, *args)

    # --- the worker thread: everything below blocks ------------------------------------------

    def _connect(self) -> _Session:
        if self._session is not None:
            return self._session
        options = self.options
        context = ssl.create_default_context() if options.tls != "none" else None
        client = IMAPClient(
            options.host,
            port=options.effective_port,
            ssl=options.tls == "ssl",
            ssl_context=context,
            timeout=options.timeout_seconds,
        )
        try:
            if options.tls == "starttls":
                # Before LOGIN: a server that does not offer STARTTLS never sees the password.
                client.starttls(context)
            client.login(options.user, options.password.get_secret_value())
            capabilities = {_flag(c) for c in client.capabilities()}
        except BaseException:
            _close_quietly(client)
            raise
        self._session = _Session(
            client,
            can_idle=b"idle" in capabilities,
            can_move=b"move" in capabilities,
            can_uid_expunge=b"uidplus" in capabilities,
        )
        self._connected.set(1)
        return self._session

    def _disconnect(self, graceful: bool) -> None:
        session, self._session = self._session, None
        if session is None:
            return
        self._connected.set(0)
        if graceful:
            _logout_quietly(
                session.client, min(LOGOUT_TIMEOUT_SECONDS, self.options.timeout_seconds)
            )
        else:
            _close_quietly(session.client)

    def _select(self, session: _Session) -> int:
        info = session.client.select_folder(self.options.folder)
        permanent = info.get(b"PERMANENTFLAGS")
        # RFC 3501: without PERMANENTFLAGS every flag may be stored; "\*" allows new keywords.
        session.keywords = permanent is None or bool(
            {b"\\*", IMPORTED_KEYWORD.lower()} & {_flag(f) for f in permanent}
        )
        return int(info[b"UIDVALIDITY"])

    def _new_uids(self, session: _Session, last_uid: int) -> list[int]:
        found = session.client.search(["UID", f"{last_uid + 1}:*"])
        return sorted(uid for uid in (int(u) for u in found) if uid > last_uid)

    def _plan(self, session: _Session, uids: list[int]) -> list[_Planned]:
        meta = session.client.fetch(uids, ["RFC822.SIZE", "FLAGS"])
        check_marks = self.options.after_import == "flag"
        plan: list[_Planned] = []
        for uid in uids:
            info = meta.get(uid)
            if info is None:  # expunged by someone else since the search
                continue
            size = int(info.get(b"RFC822.SIZE") or 0)
            flags = {_flag(f) for f in info.get(b"FLAGS", ())}
            if check_marks and _already_imported(flags, session.keywords):
                plan.append(_Planned(uid, size, "skip"))
            elif size > self._max_bytes:
                plan.append(_Planned(uid, size, "headers"))
            else:
                plan.append(_Planned(uid, size, "full"))
        return plan

    def _fetch(self, session: _Session, batch: list[_Planned]) -> dict[int, bytes]:
        client = session.client
        raw_mails: dict[int, bytes] = {}
        full = [item.uid for item in batch if item.action == "full"]
        if full:
            for uid, data in client.fetch(full, ["BODY.PEEK[]"]).items():
                if (body := data.get(b"BODY[]")) is not None:
                    raw_mails[int(uid)] = bytes(body)
        too_large = [item for item in batch if item.action == "headers"]
        if too_large:
            headers = client.fetch([item.uid for item in too_large], ["BODY.PEEK[HEADER]"])
            where = self.options.move_to if self.options.after_import == "move" else None
            for item in too_large:
                header = headers.get(item.uid, {}).get(b"BODY[HEADER]")
                if header is None:
                    continue
                self._log.warning(
                    "imap mail too large; importing its header only",
                    uid=item.uid,
                    size=item.size,
                    limit=self._max_bytes,
                )
                raw_mails[item.uid] = truncated_message(
                    bytes(header),
                    item.size,
                    self._max_bytes,
                    mailbox=self.options.name,
                    folder=where or self.options.folder,
                )
        return raw_mails

    def _after_import(self, session: _Session, stored: list[_Planned]) -> None:
        uids = [item.uid for item in stored]
        mode = self.options.after_import
        if mode == "flag":
            self._mark(session, uids)
        elif mode == "move":
            self._move(session, uids)
        else:
            # Deleting a mail whose body was too large to import would lose the body for good.
            keep = [item.uid for item in stored if item.action == "headers"]
            drop = [item.uid for item in stored if item.action != "headers"]
            if keep:
                self._mark(session, keep)
            if drop:
                self._delete(session, drop)

    def _mark(self, session: _Session, uids: list[int]) -> None:
        mark = IMPORTED_KEYWORD if session.keywords else FLAGGED
        session.client.add_flags(uids, [SEEN, mark], silent=True)

    def _move(self, session: _Session, uids: list[int]) -> None:
        client = session.client
        target = self.options.move_to
        if not session.move_folder_ready:
            if not client.folder_exists(target):
                try:
                    client.create_folder(target)
                    self._log.info("created imap folder for imported mail", folder=target)
                except imaplib.IMAP4.error:
                    if not client.folder_exists(target):  # else another client just made it
                        raise
            session.move_folder_ready = True
        if session.can_move:
            client.move(uids, target)
        else:
            client.copy(uids, target)
            self._delete(session, uids)

    def _delete(self, session: _Session, uids: list[int]) -> None:
        client = session.client
        client.add_flags(uids, [DELETED], silent=True)
        if session.can_uid_expunge:
            client.uid_expunge(uids)
        else:
            # Without UIDPLUS, EXPUNGE also removes mail others marked \Deleted in this folder.
            client.expunge()

    def _idle(self, session: _Session, renew_after: float) -> bool:
        """IDLE until new mail, ``renew_after`` seconds, or a stop or wake request.

        Returns:
            Whether the server announced new mail.

        Raises:
            _ServerClosed: The server said BYE or closed the connection.
        """
        if self._stop.is_set() or self._wake.is_set():
            return False
        client = session.client
        client.idle()
        deadline = time.monotonic() + renew_after
        new_mail = False
        closed: str | None = None
        silent_wakeups = 0
        try:
            while not (self._stop.is_set() or self._wake.is_set()):
                wait = min(IDLE_CHECK_SECONDS, deadline - time.monotonic())
                if wait <= 0:
                    break
                started = time.monotonic()
                responses = client.idle_check(timeout=wait)
                for response in responses:
                    if len(response) > 1 and isinstance(response[0], int):
                        new_mail = new_mail or _flag(response[1]) == b"exists"
                    elif response and _flag(response[0]) == b"bye":
                        words = [
                            w.decode(errors="replace") for w in response[1:] if isinstance(w, bytes)
                        ]
                        closed = "the server ended the session: " + " ".join(words)
                if closed or new_mail:
                    break
                # imapclient reports end-of-stream as "nothing yet", at once and again and again.
                if not responses and time.monotonic() - started < wait / 2:
                    silent_wakeups += 1
                    if silent_wakeups >= 3:
                        closed = "the server closed the connection"
                        break
                else:
                    silent_wakeups = 0
        finally:
            if closed is None:
                client.idle_done()
        if closed is not None:
            raise _ServerClosed(closed)
        return new_mail
