"""The chat on the town's website: a WebSocket per open widget, uploads, files, the script.

Protocol: docs/channels/webchat-protocol.md. There is no provider: the widget talks to this
process directly, so the visitor token (signed with the secret key) is the only proof of who is
writing, and the ``Origin`` header of the WebSocket handshake decides which websites may embed
the chat. Frames that break the protocol are answered with an error frame, not quarantined: the
sender is on the line to be told, and an anonymous socket must not be able to fill the journal.

Sockets live in this process. A staff answer goes to every open socket of its visitor; a
visitor whose last socket closed less than ``grace_seconds`` ago (a page load) finds it in the
transcript when the widget reconnects; a visitor who has left makes the send raise
``WindowClosed``, so the dispatcher sends the answer to the e-mail address or phone number they
left, or parks it until they write in the chat again.

With several processes (``share``), each records its visitors in a shared presence, so the
process that sends (a worker) knows the visitor is still in the chat elsewhere: the answer is
``sent``, a notice goes out, and the process holding the visitor's sockets pushes it and marks
it delivered. A notice that got lost is made up for by a read every ``CATCH_UP_SECONDS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib.resources import files as package_files
from importlib.resources.abc import Traversable
from pathlib import PurePath
from typing import Any, ClassVar
from urllib.parse import quote, unquote, urlsplit

import structlog
from aiohttp import BodyPartReader, WSMsgType, web
from prometheus_client import Counter, Gauge

from connectors.base import Capabilities, Connector, ConnectorContext, WindowClosed
from connectors.webchat.limits import Rate, TokenBuckets, client_address, parse_networks
from connectors.webchat.options import WebChatOptions, web_origin
from connectors.webchat.presence import Notice, SharedPresence, decode_notice
from connectors.webchat.protocol import (
    EXTENSIONS,
    LANGUAGES,
    BadFrame,
    ChatText,
    ContactDetails,
    ErrorCode,
    Hello,
    OfflineMessage,
    Ping,
    Typing,
    client_id_of,
    error_frame,
    iso,
    kind_of,
    line_json,
    new_visitor_id,
    parse_frame,
    sniff_image,
    visitor_of,
    visitor_token,
)
from ingest.chat import (
    FILES_PATH,
    ChatLine,
    Reachability,
    Transcript,
    conversation_key,
    inbound_line_id,
    outbound_line_id,
)
from ingest.files import StorageFull, safe_filename
from ingest.identity import InvalidIdentity, normalise_email, normalise_phone
from ingest.model import (
    Attachment,
    Channel,
    ContactRef,
    DeliveryReport,
    DeliveryStatus,
    Identity,
    IdentityKind,
    InboundMessage,
    IntakeUnavailable,
    Kind,
    OutboundMessage,
    RawPayload,
    SendResult,
    ThreadHints,
)

log = structlog.get_logger("meldpunt.webchat")

WS_PATH = "/chat/ws"
UPLOAD_PATH = "/chat/upload"
WIDGET_PATH = "/chat/widget.js"
JSON = "application/json"

# The widget says hello at once; a socket that does not is dropped.
HELLO_SECONDS = 15.0
HEARTBEAT_SECONDS = 30.0
# A socket that cannot take a frame this fast is a dead one (or a client reading nothing).
PUSH_SECONDS = 5.0
# Open widgets of one visitor (tabs); more are refused.
SOCKETS_PER_VISITOR = 8
# Frames of any kind on one socket: beyond this a flood gets ``rate_limited`` errors only.
FRAMES = Rate(60, 10.0)
# Bursts of wake-ups (many messages at once) are served by one refresh.
COALESCE_SECONDS = 0.1
# Where the transcript stops: a long conversation shows its newest lines.
TRANSCRIPT_LINES = 200
# Shown in the browser as they are; anything else is offered as a download.
INLINE_TYPES = frozenset(EXTENSIONS)
CONTACT_EVENT = "contact_details_left"
FALLBACK = (Channel.EMAIL, Channel.SMS)
# With several processes (``share``): how often this process renews the presence of its
# visitors, and how long a row lasts unrenewed (a process that died stops counting after it).
PRESENCE_HEARTBEAT_SECONDS = 5.0
PRESENCE_TTL = timedelta(seconds=20)
# How often answers sent elsewhere are looked for, in case their notice was lost.
CATCH_UP_SECONDS = 2.0
# After a notice, how long to let the sender's dispatcher record the send before marking it
# delivered (it is pushed at once).
SETTLE_SECONDS = 0.25
# Answers sent this long before a widget's welcome are looked at too: hosts' clocks differ a little.
CATCH_UP_MARGIN = timedelta(seconds=60)

SOCKETS = Gauge("meldpunt_webchat_sockets", "Open web chat sockets in this process.")
CAUGHT_UP = Counter(
    "meldpunt_webchat_caught_up_total",
    "Answers sent by another process and pushed here without their notice (it was lost).",
)
REFUSED = Counter(
    "meldpunt_webchat_refused_total",
    "Web chat frames and uploads refused, by reason.",
    ["reason"],
)


@dataclass(frozen=True, slots=True)
class _Author:
    """Who wrote a message: the visitor, their language, the address they wrote from."""

    visitor: str
    lang: str
    address: str


@dataclass(eq=False)
class _Socket:
    """One open widget: its visitor, language and what it was last told about the queue."""

    ws: web.WebSocketResponse
    visitor: str
    lang: str
    address: str
    queue: int | None = None
    frames: TokenBuckets = field(default_factory=lambda: TokenBuckets(FRAMES, max_keys=1))
    # aiohttp may compress a frame in a worker thread: one frame at a time per socket.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Set once the welcome went out: nothing may reach the widget before it.
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    # When its welcome's transcript was read (None before): answers sent later are pushed.
    since: datetime | None = None
    # Line ids the widget has (its transcript, its own messages, lines pushed live), and those
    # pushed live: a line that reaches this process twice (a notice and the catch-up read, or
    # its own notice back) is pushed once.
    seen: set[str] = field(default_factory=set)
    pushed: set[str] = field(default_factory=set)

    @property
    def author(self) -> _Author:
        return _Author(self.visitor, self.lang, self.address)


class _Refused(Exception):
    """An upload refused, with the HTTP status and the code and words the widget gets."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _origin_of(url: str) -> str | None:
    parts = urlsplit(url)
    try:
        return web_origin(f"{parts.scheme}://{parts.netloc}")
    except ValueError:
        return None


def content_disposition(kind: str, filename: str) -> str:
    """``inline`` or ``attachment`` with a file name no browser can misread."""
    name = safe_filename(filename) or "bestand"
    fallback = name.encode("ascii", "replace").decode().replace("?", "_")
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


class WebChatConnector(Connector):
    """Serves the chat widget's socket, uploads and files; pushes staff answers live."""

    channel: ClassVar[Channel] = Channel.WEBCHAT
    capabilities: ClassVar[Capabilities] = Capabilities(
        can_send=True, conversational=True, attachments_in=True, attachments_out=True
    )

    def __init__(self, context: ConnectorContext, options: WebChatOptions | None = None) -> None:
        super().__init__(context)
        self.options = options = options or WebChatOptions()
        # Office hours and timestamps are read from this clock; tests set it.
        self.clock: Callable[[], datetime] = context.clock
        # Written by the widget's own build; served from the installed package.
        self.widget_path: Traversable = package_files("connectors.webchat") / "static/widget.js"
        own = _origin_of(context.public_url)
        self._origins = frozenset([*([own] if own else []), *options.allowed_origins])
        self._proxies = parse_networks(options.trusted_proxies)
        self._sockets: dict[str, set[_Socket]] = {}
        self._left: dict[str, float] = {}
        self._visitor_messages = TokenBuckets(Rate(options.messages_per_minute, 60))
        self._visitor_uploads = TokenBuckets(Rate(options.uploads_per_ten_minutes, 600))
        self._address_visitors = TokenBuckets(Rate(options.new_visitors_per_address_per_hour, 3600))
        self._address_messages = TokenBuckets(Rate(options.messages_per_address_per_minute, 60))
        self._open: bool | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Across processes (``share``); None: this process is the only one.
        self.shared: SharedPresence | None = None
        self._serves_sockets = False
        self._follow = asyncio.Event()
        self._shared_tasks: list[asyncio.Task[None]] = []
        self._presence_lock = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._reported: set[str] = set()

    def routes(self) -> Sequence[web.RouteDef]:
        return [
            web.get(WS_PATH, self.on_socket),
            web.post(UPLOAD_PATH, self.on_upload),
            web.options(UPLOAD_PATH, self.on_preflight),
            web.get(f"{FILES_PATH}/{{id}}", self.on_file),
            web.get(WIDGET_PATH, self.on_widget),
        ]

    def share(self, presence: SharedPresence, *, sockets: bool) -> None:
        """Work alongside other processes of the same service (PostgreSQL, ``--role``).

        ``presence`` is shared by all of them. ``sockets``: this process serves the chat's
        sockets (a web process), so it records its visitors there and listens for answers the
        others send; a worker only asks whether a visitor is present somewhere.
        """
        self.shared = presence
        self._serves_sockets = sockets

    async def start(self) -> None:
        self._task = asyncio.create_task(self._refresh_loop(), name="meldpunt-webchat-refresh")
        if self.shared is not None and self._serves_sockets:
            self._shared_tasks = [
                asyncio.create_task(self._follow_loop(), name="meldpunt-webchat-follow"),
                asyncio.create_task(
                    self.shared.listen(self._on_notice, self._follow.set),
                    name="meldpunt-webchat-listen",
                ),
            ]

    async def stop(self) -> None:
        self._stopping = True
        tasks = [
            *([self._task] if self._task is not None else []),
            *self._shared_tasks,
            *self._background,
        ]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task, self._shared_tasks = None, []
        sockets = [s for group in self._sockets.values() for s in group]
        visitors = list(self._sockets)
        await asyncio.gather(
            *(s.ws.close(code=1001, message=b"meldpunt is restarting") for s in sockets),
            return_exceptions=True,
        )
        if self.shared is not None and self._serves_sockets and visitors:
            # The widgets reconnect, maybe to another process: a page load's grace.
            try:
                await self.shared.gone(visitors, timedelta(seconds=self.options.grace_seconds))
            except Exception:
                log.exception("web chat: presence not given up; it expires")

    # --- who is here --------------------------------------------------------------------------

    def present(self, visitor: str) -> bool:
        """Whether the visitor has a socket open, or closed one less than the grace ago."""
        if self._sockets.get(visitor):
            return True
        left = self._left.get(visitor)
        return left is not None and time.monotonic() - left <= self.options.grace_seconds

    def _join(self, socket: _Socket) -> None:
        self._sockets.setdefault(socket.visitor, set()).add(socket)
        self._left.pop(socket.visitor, None)
        SOCKETS.inc()

    def _leave(self, socket: _Socket) -> None:
        sockets = self._sockets.get(socket.visitor)
        if sockets is None or socket not in sockets:
            return
        sockets.discard(socket)
        SOCKETS.dec()
        if not sockets:
            del self._sockets[socket.visitor]
            self._left[socket.visitor] = time.monotonic()

    def _allowed_origin(self, origin: str | None) -> bool:
        if origin is None:
            return False
        try:
            return web_origin(origin) in self._origins
        except ValueError:
            return False

    # --- the socket ---------------------------------------------------------------------------

    async def on_socket(self, request: web.Request) -> web.StreamResponse:
        """``GET /chat/ws``: one open widget, from hello to close."""
        if not self._allowed_origin(request.headers.get("Origin")):
            REFUSED.labels("origin").inc()
            raise web.HTTPForbidden(
                text="this website may not embed the chat (channels.webchat.allowed_origins)"
            )
        ws = web.WebSocketResponse(
            heartbeat=HEARTBEAT_SECONDS, max_msg_size=self.options.max_chars * 4 + 4096
        )
        await ws.prepare(request)
        address = client_address(request, self._proxies)
        socket = await self._hello(ws, address)
        if socket is None:
            return ws
        first = not self._sockets.get(socket.visitor)
        self._join(socket)
        try:
            if first:
                await self._share_presence(socket.visitor)
            await self._welcome(socket)
            async for frame in ws:
                if frame.type is WSMsgType.TEXT:
                    await self._on_frame(socket, frame.data)
                elif frame.type is WSMsgType.BINARY:
                    await self._error(socket, "bad_frame")
        finally:
            self._leave(socket)
            if socket.visitor not in self._sockets:
                self._spawn(self._share_presence(socket.visitor))
        return ws

    async def _hello(self, ws: web.WebSocketResponse, address: str) -> _Socket | None:
        """Wait for the hello frame; the socket of a known or a new visitor, or None (closed)."""
        try:
            async with asyncio.timeout(HELLO_SECONDS):
                first = await ws.receive()
        except TimeoutError:
            await _turn_away(ws, None, 1008, "hello expected")
            return None
        if first.type is not WSMsgType.TEXT:
            await _turn_away(ws, None, 1008, "hello expected")
            return None
        try:
            hello = parse_frame(first.data)
        except BadFrame:
            hello = None
        if not isinstance(hello, Hello):
            await _turn_away(ws, error_frame("bad_frame", "nl"), 1008, "hello expected")
            return None
        visitor = visitor_of(self.context.secret_key, hello.visitor)
        if visitor is None:
            # A new visitor costs nothing until they write, but a script opening sockets
            # in a loop should not mint tokens without end.
            if not self._address_visitors.allow(address):
                REFUSED.labels("new_visitors").inc()
                refused = error_frame("rate_limited", hello.lang)
                await _turn_away(ws, refused, 1013, "too many new visitors")
                return None
            visitor = new_visitor_id()
        elif len(self._sockets.get(visitor, ())) >= SOCKETS_PER_VISITOR:
            REFUSED.labels("sockets").inc()
            await _turn_away(ws, error_frame("rate_limited", hello.lang), 1013, "too many tabs")
            return None
        return _Socket(ws, visitor, hello.lang, address)

    async def _welcome(self, socket: _Socket) -> None:
        visitor = socket.visitor
        now = self.clock()
        calendar = self.context.calendar
        is_open = calendar.is_open(now)
        socket.since = now
        transcript = await self._read_transcript(visitor)
        socket.seen.update(line.id for line in transcript.lines)
        socket.queue = (await self._queue_positions([visitor])).get(visitor)
        options = self.options
        welcomed = await self._push(
            socket,
            {
                "type": "welcome",
                "visitor": visitor_token(self.context.secret_key, visitor),
                "lang": socket.lang,
                "open": is_open,
                "next_open": None if is_open else iso(calendar.next_open(now)),
                "schedule": [
                    {"day": day, "spans": spans} for day, spans in calendar.office_hours.schedule()
                ],
                "timezone": calendar.zone.key,
                "transcript": [line_json(line) for line in transcript.lines],
                "queue": {"position": socket.queue} if socket.queue is not None else None,
                "reference": transcript.reference,
                "contact": {
                    "email": transcript.reachable.email,
                    "phone": transcript.reachable.phone,
                },
                "limits": {
                    "max_chars": options.max_chars,
                    "max_upload_bytes": options.max_upload_bytes,
                    "upload_types": list(options.upload_types),
                },
            },
            welcome=True,
        )
        if welcomed:
            socket.ready.set()

    async def _on_frame(self, socket: _Socket, text: str) -> None:
        if not socket.frames.allow("frames"):
            REFUSED.labels("frames").inc()
            await self._error(socket, "rate_limited")
            return
        try:
            frame = parse_frame(text)
        except BadFrame as exc:
            await self._error(socket, "bad_frame", exc.client_id)
            return
        if isinstance(frame, Ping):
            await self._push(socket, {"type": "pong"})
        elif isinstance(frame, ChatText):
            await self._on_text(socket, frame)
        elif isinstance(frame, ContactDetails):
            await self._on_contact(socket, frame)
        elif isinstance(frame, OfflineMessage):
            await self._on_offline(socket, frame)
        elif isinstance(frame, Hello):
            await self._error(socket, "bad_frame")
        else:
            assert isinstance(frame, Typing)  # nobody is shown typing yet

    async def _error(self, socket: _Socket, code: ErrorCode, client_id: str | None = None) -> None:
        values = {"max_chars": self.options.max_chars}
        await self._push(socket, error_frame(code, socket.lang, client_id, **values))

    def _text_problem(self, text: str) -> ErrorCode | None:
        if not text:
            return "empty"
        return "too_long" if len(text) > self.options.max_chars else None

    def _spend(self, socket: _Socket) -> bool:
        """Take one message from the visitor's and the address's allowance."""
        if self._visitor_messages.allow(socket.visitor) and self._address_messages.allow(
            socket.address
        ):
            return True
        REFUSED.labels("messages").inc()
        return False

    async def _on_text(self, socket: _Socket, frame: ChatText) -> None:
        text = frame.text.strip()
        if problem := self._text_problem(text):
            await self._error(socket, problem, frame.client_id)
            return
        if not self._spend(socket):
            await self._error(socket, "rate_limited", frame.client_id)
            return
        raw = {"type": "message", "client_id": frame.client_id, "text": frame.text}
        if frame.kind is not None:
            raw["kind"] = frame.kind.value
        await self._submit_frame(socket, frame.client_id, text, (), raw, frame.kind)

    async def _submit_frame(
        self,
        socket: _Socket,
        client_id: str,
        text: str,
        addresses: tuple[Identity, ...],
        frame: dict[str, Any],
        kind: Kind | None = None,
    ) -> bool:
        try:
            received, _ = await self._submit(
                socket.author,
                client_id,
                text,
                frame,
                addresses=addresses,
                sender=socket,
                kind=kind,
            )
        except IntakeUnavailable:
            await self._error(socket, "unavailable", client_id)
            return False
        await self._push(socket, received)
        return True

    async def _submit(
        self,
        author: _Author,
        client_id: str,
        text: str,
        frame: dict[str, Any],
        *,
        addresses: tuple[Identity, ...] = (),
        attachments: tuple[Attachment, ...] = (),
        sender: _Socket | None = None,
        kind: Kind | None = None,
    ) -> tuple[dict[str, Any], ChatLine]:
        """Hand one message to intake; the ``received`` frame and the message's line.

        The visitor's other open widgets (tabs) are shown the line; ``sender`` has it already.
        ``kind`` is the visitor's choice; intake keeps it only when the message opens a ticket.

        Raises:
            IntakeUnavailable: nothing was stored; the widget keeps the message and retries.
        """
        visitor, lang = author.visitor, author.lang
        now = self.clock()
        envelope = {"visitor": visitor, "lang": lang, "client": author.address, "frame": frame}
        message = InboundMessage(
            channel=Channel.WEBCHAT,
            external_id=f"{visitor}:{client_id}",
            sender=ContactRef((Identity(IdentityKind.WEBCHAT, visitor), *addresses), language=lang),
            received_at=now,
            text=text,
            raw=RawPayload(JSON, json.dumps(envelope, ensure_ascii=False).encode()),
            kind=kind,
            attachments=attachments,
            language=lang,
            hints=ThreadHints(conversation=conversation_key(visitor)),
        )
        try:
            result = await self.context.intake.submit(message)
        except InvalidIdentity as exc:  # every address was checked already: intake is at odds
            raise IntakeUnavailable(str(exc)) from exc
        self._wake.set()  # the visitor may have joined the queue
        line = ChatLine(inbound_line_id(client_id), "visitor", text, now, client_id=client_id)
        if attachments and self.context.chats is not None:
            # The links to the stored files name their rows: read the line back.
            try:
                line = await self.context.chats.inbound_line(visitor, client_id) or line
            except Exception:
                log.exception("web chat: uploaded line not read back")
        if sender is not None:
            sender.seen.add(line.id)
        others = [s for s in self._sockets.get(visitor, ()) if s is not sender]
        if others:
            await self._push_line(others, line)
        if self.shared is not None:
            # The visitor's tabs in other processes show it too.
            self._spawn(self._announce(Notice(visitor, client_id=client_id)))
        received = {
            "type": "received",
            "client_id": client_id,
            "id": line.id,
            # None only when intake kept the message aside for staff (it is stored all the same).
            "reference": result.ticket_reference,
            "at": iso(now),
        }
        return received, line

    def _addresses(
        self, email: str | None, phone: str | None
    ) -> tuple[tuple[Identity, ...], ErrorCode | None]:
        identities: list[Identity] = []
        if email:
            try:
                identities.append(Identity(IdentityKind.EMAIL, normalise_email(email)))
            except InvalidIdentity:
                return (), "invalid_email"
        if phone:
            try:
                identities.append(Identity(IdentityKind.PHONE, normalise_phone(phone)))
            except InvalidIdentity:
                return (), "invalid_phone"
        return tuple(identities), None if identities else "need_address"

    async def _leave_addresses(
        self, socket: _Socket, addresses: tuple[Identity, ...], frame: dict[str, Any]
    ) -> None:
        """Record on the visitor's contact the addresses they left for an answer.

        Unknown addresses join the visitor's contact (ingest's rule); an address that already
        belongs to another contact stays there and is only recorded in the event, so typing
        someone else's address does not merge two people.

        Raises:
            IntakeUnavailable: nothing was stored.
        """
        visitor = socket.visitor
        digest = hashlib.sha256(
            "\n".join(f"{a.kind.value}:{a.value}" for a in addresses).encode()
        ).hexdigest()[:16]
        envelope = {"visitor": visitor, "client": socket.address, "frame": frame}
        await self.context.intake.record_contact_event(
            Channel.WEBCHAT,
            # The same addresses left twice are one event.
            f"{visitor}:contact:{digest}",
            ContactRef((Identity(IdentityKind.WEBCHAT, visitor), *addresses), language=socket.lang),
            CONTACT_EVENT,
            {
                "visitor": visitor,
                **{a.kind.value: a.value for a in addresses},
            },
            RawPayload(JSON, json.dumps(envelope, ensure_ascii=False).encode()),
        )

    async def _contact_saved(self, socket: _Socket, addresses: tuple[Identity, ...]) -> None:
        # What the contact can really be reached by, which is not what was typed when the
        # address belongs to someone else.
        reachable = Reachability(
            any(a.kind is IdentityKind.EMAIL for a in addresses),
            any(a.kind is IdentityKind.PHONE for a in addresses),
        )
        if self.context.chats is not None:
            try:
                reachable = await self.context.chats.reachable(socket.visitor)
            except Exception:
                log.exception("web chat: contact details not read back")
        await self._push(
            socket, {"type": "contact_saved", "email": reachable.email, "phone": reachable.phone}
        )

    async def _on_contact(self, socket: _Socket, frame: ContactDetails) -> None:
        addresses, problem = self._addresses(frame.email, frame.phone)
        if problem:
            await self._error(socket, problem)
            return
        if not self._spend(socket):
            await self._error(socket, "rate_limited")
            return
        raw = {"type": "contact", "email": frame.email, "phone": frame.phone}
        try:
            await self._leave_addresses(socket, addresses, raw)
        except IntakeUnavailable:
            await self._error(socket, "unavailable")
            return
        await self._contact_saved(socket, addresses)

    async def _on_offline(self, socket: _Socket, frame: OfflineMessage) -> None:
        text = frame.text.strip()
        problem = self._text_problem(text)
        addresses: tuple[Identity, ...] = ()
        if problem is None:
            addresses, problem = self._addresses(frame.email, frame.phone)
        if problem:
            await self._error(socket, problem, frame.client_id)
            return
        if not self._spend(socket):
            await self._error(socket, "rate_limited", frame.client_id)
            return
        raw = {
            "type": "offline_message",
            "client_id": frame.client_id,
            "text": frame.text,
            "email": frame.email,
            "phone": frame.phone,
        }
        if frame.kind is not None:
            raw["kind"] = frame.kind.value
        try:
            await self._leave_addresses(socket, addresses, raw)
        except IntakeUnavailable:
            await self._error(socket, "unavailable", frame.client_id)
            return
        # Answered by ``received`` alone: the welcome tells a returning widget what was kept.
        await self._submit_frame(socket, frame.client_id, text, addresses, raw, frame.kind)

    # --- pushing to the widget ----------------------------------------------------------------

    async def _push(self, socket: _Socket, frame: dict[str, Any], *, welcome: bool = False) -> bool:
        if socket.ws.closed:
            return False
        try:
            async with asyncio.timeout(PUSH_SECONDS):
                if not welcome:
                    await socket.ready.wait()
                async with socket.lock:
                    await socket.ws.send_json(frame)
        except (ConnectionError, RuntimeError, TimeoutError) as exc:
            log.info("web chat socket gone", error=type(exc).__name__)
            return False
        return True

    async def _push_all(self, sockets: Iterable[_Socket], frame: dict[str, Any]) -> int:
        done = await asyncio.gather(*(self._push(s, frame) for s in list(sockets)))
        return sum(done)

    async def _push_line(
        self, sockets: Iterable[_Socket], line: ChatLine, choices: Sequence[str] = ()
    ) -> int:
        """Push a line of the conversation live; how many sockets took it."""
        targets = list(sockets)
        for socket in targets:
            # Taken before the push: a second path with the same line skips these sockets.
            socket.pushed.add(line.id)
            socket.seen.add(line.id)
        return await self._push_all(targets, {"type": "message", **line_json(line, choices)})

    async def _read_transcript(self, visitor: str) -> Transcript:
        if self.context.chats is None:
            return Transcript()
        try:
            return await self.context.chats.transcript(visitor, TRANSCRIPT_LINES)
        except Exception:
            # The chat still opens; the visitor only misses the history this once.
            log.exception("web chat: transcript not read")
            return Transcript()

    async def _queue_positions(self, visitors: list[str]) -> dict[str, int | None]:
        if self.context.chats is None or not visitors:
            return {}
        try:
            return await self.context.chats.queue_positions(visitors)
        except Exception:
            log.exception("web chat: queue not read")
            return {}

    async def _refresh_loop(self) -> None:
        while True:
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("web chat refresh failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.options.queue_refresh_seconds):
                    await self._wake.wait()
            if self._wake.is_set():
                await asyncio.sleep(COALESCE_SECONDS)
                self._wake.clear()

    async def refresh(self) -> None:
        """Push ``hours`` when the chat opened or closed, and ``queue`` where a place changed."""
        now = self.clock()
        calendar = self.context.calendar
        is_open = calendar.is_open(now)
        if self._open is not None and is_open != self._open:
            frame = {
                "type": "hours",
                "open": is_open,
                "next_open": None if is_open else iso(calendar.next_open(now)),
            }
            await self._push_all((s for group in self._sockets.values() for s in group), frame)
        self._open = is_open
        positions = await self._queue_positions(list(self._sockets))
        pushes = []
        for visitor, sockets in list(self._sockets.items()):
            if visitor not in positions:
                continue  # not read (the database is away): keep what they were told
            position = positions[visitor]
            for socket in list(sockets):
                # A socket still being welcomed gets its place in the welcome.
                if socket.ready.is_set() and socket.queue != position:
                    socket.queue = position
                    pushes.append(self._push(socket, {"type": "queue", "position": position}))
        await asyncio.gather(*pushes)
        self._forget_departed()

    def _forget_departed(self) -> None:
        cutoff = time.monotonic() - self.options.grace_seconds
        self._left = {v: at for v, at in self._left.items() if at >= cutoff}
        for buckets in (
            self._visitor_messages,
            self._visitor_uploads,
            self._address_visitors,
            self._address_messages,
        ):
            buckets.prune()

    # --- sending ------------------------------------------------------------------------------

    async def send(self, message: OutboundMessage) -> SendResult:
        """Push an answer to the visitor's open widgets.

        With other processes (``share``) the answer is also announced, so the process holding
        the visitor's other sockets pushes it; when this process has none, the answer is
        ``sent`` as long as the visitor is present in another one.

        Raises:
            WindowClosed: the visitor has left the chat; the dispatcher sends a person's answer
                by e-mail or SMS when they left an address, else parks it until they write in
                the chat again. Automatic messages (the acknowledgement) are not moved: they
                are in the transcript when the visitor comes back.
        """
        visitor = message.recipient
        provider_id = outbound_line_id(message.outbox_id)
        notice = Notice(visitor, outbox_id=message.outbox_id, choices=message.choices)
        sockets = self._sockets.get(visitor)
        if sockets:
            line = await self._line_of(message)
            # Answer buttons are offered live only; after a reload the text says how to answer.
            if await self._push_line(sockets, line, message.choices):
                self._wake.set()  # an answer takes the visitor out of the queue
                await self._announce(notice)
                return SendResult(provider_id, DeliveryStatus.DELIVERED)
        if (
            self.present(visitor)
            or message.automatic
            # A database error here is raised: the dispatcher tries again later.
            or (self.shared is not None and await self.shared.present(visitor))
        ):
            # Reloading the page: the widget reconnects and finds it in the transcript. In
            # another process: that one pushes it on the notice.
            await self._announce(notice)
            return SendResult(provider_id, DeliveryStatus.SENT)
        raise WindowClosed(
            "the visitor has left the chat",
            fallback=FALLBACK,
            waiting_for="to open the chat again",
        )

    # --- with other processes -----------------------------------------------------------------

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        if self._stopping:
            work.close()  # ``stop`` gives up the presence of every visitor itself
            return
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _announce(self, notice: Notice) -> None:
        if self.shared is None:
            return
        try:
            await self.shared.announce(notice.encode())
        except Exception:
            # The holder of the visitor's sockets finds it on its next catch-up read.
            log.exception("web chat: notice not sent")

    async def _share_presence(self, visitor: str) -> None:
        """Write whether this process holds a socket of ``visitor``, as it is when written."""
        shared = self.shared
        if shared is None or not self._serves_sockets:
            return
        try:
            # One write at a time, each saying the state of its moment: the last one is right.
            async with self._presence_lock:
                if self._sockets.get(visitor):
                    await shared.here([visitor], PRESENCE_TTL)
                else:
                    grace = timedelta(seconds=self.options.grace_seconds)
                    await shared.gone([visitor], grace)
        except Exception:
            # The heartbeat writes it again; a row not given up expires.
            log.exception("web chat: presence not recorded")

    def _on_notice(self, payload: str) -> None:
        """A notice from a process (this one too): show the line on this process's sockets."""
        notice = decode_notice(payload)
        if notice is None:
            return
        if notice.outbox_id is not None:
            self._wake.set()  # an answer moves the queue
        if notice.visitor in self._sockets:
            self._spawn(self._show(notice))

    async def _show(self, notice: Notice) -> None:
        chats = self.context.chats
        if chats is None:
            return
        try:
            if notice.outbox_id is not None:
                line = await chats.outbound_line(notice.outbox_id, notice.visitor)
            elif notice.client_id is not None:
                line = await chats.inbound_line(notice.visitor, notice.client_id)
            else:
                return
        except Exception:
            log.exception("web chat: the line of a notice not read")
            return
        if line is None:
            return
        # A widget still being welcomed finds it in its transcript. An answer already in a
        # transcript is pushed all the same, as when this process sends it (the widget shows a
        # line once); what the visitor wrote, their own widget has.
        targets = [
            s
            for s in self._sockets.get(notice.visitor, ())
            if s.since is not None
            and line.id not in (s.pushed if notice.outbox_id is not None else s.seen)
        ]
        pushed = bool(targets) and await self._push_line(targets, line, notice.choices) > 0
        if pushed and notice.outbox_id is not None:
            self._wake.set()
            self._follow.set()  # mark it delivered once its sender recorded the send

    async def _follow_loop(self) -> None:
        heartbeat_due = 0.0
        while True:
            try:
                if time.monotonic() >= heartbeat_due:
                    heartbeat_due = time.monotonic() + PRESENCE_HEARTBEAT_SECONDS
                    await self._heartbeat()
                await self.catch_up()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # The database away, most likely: said once a pass, tried again the next.
                log.warning(
                    "web chat: catching up with other processes failed",
                    error=f"{type(exc).__name__}: {exc}",
                )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CATCH_UP_SECONDS):
                    await self._follow.wait()
            if self._follow.is_set():
                await asyncio.sleep(SETTLE_SECONDS)
                self._follow.clear()

    async def _heartbeat(self) -> None:
        shared = self.shared
        assert shared is not None
        async with self._presence_lock:
            await shared.here(list(self._sockets), PRESENCE_TTL)
        await shared.expire()

    async def catch_up(self) -> None:
        """Push answers sent elsewhere that this process missed, and mark delivered what the
        widgets here have: pushed live, or shown in their welcome after it was sent."""
        shared, chats = self.shared, self.context.chats
        sockets = [s for group in self._sockets.values() for s in group if s.since is not None]
        if shared is None or chats is None or not sockets:
            return
        since = min(s.since for s in sockets if s.since is not None) - CATCH_UP_MARGIN
        sent = await shared.sent_since({s.visitor for s in sockets}, since)
        # Reported once each: a report that finds no message (a row settled by hand) is not
        # tried again every few seconds.
        self._reported &= {outbound_line_id(outbox_id) for _, outbox_id, _ in sent}
        for visitor, outbox_id, delivered in sent:
            line_id = outbound_line_id(outbox_id)
            here = [s for s in self._sockets.get(visitor, ()) if s.since is not None]
            missing = [s for s in here if line_id not in s.seen]
            if missing:
                line = await chats.outbound_line(outbox_id, visitor)
                if line is not None and await self._push_line(missing, line):
                    CAUGHT_UP.inc()
                    self._wake.set()
            if (
                not delivered
                and line_id not in self._reported
                and any(line_id in s.seen for s in here)
            ):
                await self._report_delivered(line_id)
                self._reported.add(line_id)

    async def _report_delivered(self, provider_id: str) -> None:
        holder = self.shared.holder if self.shared is not None else None
        await self.context.intake.report_delivery(
            DeliveryReport(
                Channel.WEBCHAT,
                provider_id,
                DeliveryStatus.DELIVERED,
                self.clock(),
                detail="shown in the visitor's open chat",
                raw=RawPayload(JSON, json.dumps({"shown_by": holder}).encode()),
            )
        )

    async def _line_of(self, message: OutboundMessage) -> ChatLine:
        """The transcript's line of the message (same id, time and file links), pushed live."""
        if self.context.chats is not None:
            try:
                line = await self.context.chats.outbound_line(message.outbox_id, message.recipient)
            except Exception:
                log.exception("web chat: outbound line not read")
                line = None
            if line is not None:
                return line
        return ChatLine(
            outbound_line_id(message.outbox_id),
            "system" if message.automatic else "staff",
            message.text,
            self.clock(),
        )

    # --- HTTP: uploads, files, the script -----------------------------------------------------

    def _cors(self, request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is not None and self._allowed_origin(origin):
            response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Vary"] = "Origin"
        return response

    def _refused(self, request: web.Request, refused: _Refused) -> web.StreamResponse:
        REFUSED.labels(refused.code).inc()
        body = {"error": refused.code, "message": refused.message}
        return self._cors(request, web.json_response(body, status=refused.status))

    async def on_preflight(self, request: web.Request) -> web.StreamResponse:
        """``OPTIONS /chat/upload``: what a browser asks before a cross-site upload."""
        if not self._allowed_origin(request.headers.get("Origin")):
            raise web.HTTPForbidden(text="this website may not embed the chat")
        response = web.Response(status=204)
        response.headers["Access-Control-Allow-Methods"] = "POST"
        response.headers["Access-Control-Allow-Headers"] = "Content-Type"
        response.headers["Access-Control-Max-Age"] = "600"
        return self._cors(request, response)

    async def on_upload(self, request: web.Request) -> web.StreamResponse:
        """``POST /chat/upload``: one photo, with the visitor's token and optional text."""
        try:
            return self._cors(request, web.json_response(await self._upload(request)))
        except _Refused as refused:
            return self._refused(request, refused)

    async def _upload(self, request: web.Request) -> dict[str, Any]:
        origin = request.headers.get("Origin")
        if origin is not None and not self._allowed_origin(origin):
            raise _Refused(403, "forbidden", "this website may not embed the chat")
        limit = self.options.max_upload_bytes
        too_large = _Refused(413, "too_large", f"the photo may be at most {limit} bytes")
        if request.content_type != "multipart/form-data":
            raise _Refused(400, "bad_request", "send the photo as multipart/form-data")
        if request.content_length is not None and request.content_length > limit + 64 * 1024:
            raise too_large
        fields, upload = await self._read_upload(request, too_large)
        visitor = visitor_of(self.context.secret_key, fields.get("visitor"))
        if visitor is None:
            raise _Refused(403, "forbidden", "no valid visitor token")
        try:
            client_id = client_id_of(fields.get("client_id"))
            # A form field cannot be null: an empty one is no choice.
            kind = kind_of(fields.get("kind") or None, client_id)
        except BadFrame as exc:
            raise _Refused(400, "bad_frame", str(exc)) from None
        if upload is None:
            raise _Refused(400, "empty", "no file was sent")
        filename, data = upload
        text = fields.get("text", "").strip()
        if len(text) > self.options.max_chars:
            raise _Refused(400, "too_long", f"at most {self.options.max_chars} characters")
        # The upload carries no language: the visitor's open widget says which they chose.
        lang = next((s.lang for s in self._sockets.get(visitor, ())), LANGUAGES[0])
        author = _Author(visitor, lang, client_address(request, self._proxies))
        if not (
            self._visitor_uploads.allow(visitor) and self._address_messages.allow(author.address)
        ):
            raise _Refused(429, "rate_limited", "too many photos in a short time; wait a while")
        content_type = sniff_image(data)
        if content_type is None or content_type not in self.options.upload_types:
            allowed = ", ".join(t.removeprefix("image/").upper() for t in self.options.upload_types)
            raise _Refused(415, "unsupported_type", f"send a photo ({allowed})")
        # Some clients percent-encode the name (aiohttp does); browsers only escape quotes.
        stem = PurePath(safe_filename(unquote(filename))).stem or "foto"
        name = f"{stem}{EXTENSIONS[content_type]}"
        try:
            digest = await self.context.files.put(data)
        except StorageFull:
            # Shown as any outage: the visitor is told it did not arrive and may try again.
            raise _Refused(
                503, "unavailable", "the photo could not be stored; try again later"
            ) from None
        frame = {"type": "upload", "client_id": client_id, "text": text, "file": name}
        if kind is not None:
            frame["kind"] = kind.value
        attachment = Attachment(name, content_type, len(data), digest)
        try:
            received, line = await self._submit(
                author, client_id, text, frame, attachments=(attachment,), kind=kind
            )
        except IntakeUnavailable:
            raise _Refused(503, "unavailable", "nothing was stored; try again shortly") from None
        return received | {"attachments": line_json(line)["attachments"]}

    async def _read_upload(
        self, request: web.Request, too_large: _Refused
    ) -> tuple[dict[str, str], tuple[str, bytes] | None]:
        fields: dict[str, str] = {}
        upload: tuple[str, bytes] | None = None
        field_limit = self.options.max_chars * 4 + 256
        try:
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                if not isinstance(part, BodyPartReader) or not part.name:
                    continue
                if part.name == "file":
                    if upload is not None:
                        raise _Refused(400, "bad_request", "one photo per upload")
                    data = await _read_limited(part, self.options.max_upload_bytes)
                    if data is None:
                        if request.content_length is not None:
                            # At most a little over the limit (checked above): read it all, so
                            # the browser gets the answer instead of a connection reset.
                            await part.release()
                        raise too_large
                    upload = (part.filename or "", data) if data else None
                elif part.name in ("visitor", "client_id", "text", "kind"):
                    value = await _read_limited(part, field_limit)
                    if value is None:
                        raise _Refused(400, "too_long", f"the field {part.name} is too long")
                    fields[part.name] = value.decode("utf-8", "replace")
                else:
                    await part.release()
        except (ValueError, AssertionError) as exc:
            # aiohttp's multipart reader says a malformed body with these.
            raise _Refused(
                400, "bad_request", f"the upload is not valid multipart: {exc}"
            ) from None
        return fields, upload

    async def on_file(self, request: web.Request) -> web.StreamResponse:
        """``GET /chat/files/{id}?visitor=…``: a photo of the visitor's own conversation."""
        visitor = visitor_of(self.context.secret_key, request.query.get("visitor"))
        if visitor is None:
            raise web.HTTPForbidden(text="no valid visitor token")
        raw_id = request.match_info["id"]
        if not raw_id.isdigit() or len(raw_id) > 18 or self.context.chats is None:
            raise web.HTTPNotFound()
        found = await self.context.chats.attachment(visitor, int(raw_id))
        if found is None:
            raise web.HTTPNotFound()
        try:
            data = await self.context.files.get(found.sha256)
        except (OSError, ValueError):
            raise web.HTTPNotFound(text="the file is no longer stored") from None
        inline = found.content_type in INLINE_TYPES
        response = web.Response(body=data, content_type=found.content_type)
        response.headers.update(
            {
                "Content-Disposition": content_disposition(
                    "inline" if inline else "attachment", found.filename
                ),
                "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": "default-src 'none'; sandbox",
                "Cache-Control": "private, max-age=86400",
                "Referrer-Policy": "no-referrer",
                "Cross-Origin-Resource-Policy": "cross-origin",
            }
        )
        return self._cors(request, response)

    async def on_widget(self, request: web.Request) -> web.StreamResponse:
        """``GET /chat/widget.js``: the widget, from the installed package."""
        try:
            script = await asyncio.to_thread(self.widget_path.read_bytes)
        except OSError:
            return web.Response(
                status=503,
                text="// The web chat widget is not installed: connectors/webchat/static/widget.js "
                "is missing from this meldpunt build.\n",
                content_type="text/javascript",
                headers={"Cache-Control": "no-store"},
            )
        etag = f'"{hashlib.sha256(script).hexdigest()[:20]}"'
        headers = {
            # The URL has no version in it: a short cache, then a cheap revalidation.
            "Cache-Control": "public, max-age=300",
            "ETag": etag,
            "X-Content-Type-Options": "nosniff",
            "Cross-Origin-Resource-Policy": "cross-origin",
        }
        if etag in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers=headers)
        return web.Response(
            body=script, content_type="text/javascript", charset="utf-8", headers=headers
        )


async def _turn_away(
    ws: web.WebSocketResponse, frame: dict[str, Any] | None, code: int, reason: str
) -> None:
    """Close a socket that is not let in, after saying why (if it is still there to hear it)."""
    with contextlib.suppress(ConnectionError, RuntimeError):
        if frame is not None:
            await ws.send_json(frame)
        await ws.close(code=code, message=reason.encode())


async def _read_limited(part: BodyPartReader, limit: int) -> bytes | None:
    """The part's bytes, or None once it is larger than ``limit``."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await part.read_chunk(64 * 1024):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


__all__ = ["WebChatConnector", "content_disposition"]
