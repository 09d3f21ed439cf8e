"""Telegram through a bot: updates in on a webhook, answers out through the Bot API.

Provider notes: Telegram posts each update as JSON to the one URL registered with ``setWebhook``
(``meldpunt telegram set-webhook``), carrying the secret given there in
``X-Telegram-Bot-Api-Secret-Token``. Any answer but 2xx makes it deliver the update again later.
Files are not in the update: ``getFile`` gives a download path, for files up to 20 MB. A bot may
write only to people who started a chat with it and have not blocked it (403 otherwise); there is
no reply window and there are no delivery reports. Only private chats are read: a bot added to a
group would otherwise turn the group's chatter into tickets.

``/start`` (and ``/help``) get a welcome with a button per kind and open no ticket. A button
press starts a new matter: the citizen's next message opens a ticket of the chosen kind, and the
messages after it continue that ticket, even when an older one is still open.
"""

from __future__ import annotations

import contextlib
import hmac
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog
from aiohttp import web
from telegram import (
    Chat,
    InlineKeyboardMarkup,
    InputFile,
    Message,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
    Update,
)
from telegram.error import TelegramError

from connectors.base import Capabilities, Connector, ConnectorContext, SendError
from connectors.telegram.api import (
    WEBHOOK_PATH,
    BotClient,
    build_bot,
    describe,
    send_error,
    split_text,
)
from connectors.telegram.options import TelegramOptions
from connectors.telegram.parse import (
    JSON,
    WELCOME_COMMANDS,
    ChatMessage,
    FileRef,
    NotForUs,
    Unreadable,
    language_of,
    message_key,
    read_message,
    read_update,
    update_type,
)
from connectors.telegram.welcome import label, prompt, welcome
from ingest.files import STORAGE_FULL, StorageFull
from ingest.identity import InvalidIdentity
from ingest.model import (
    Attachment,
    Channel,
    ContactRef,
    DeliveryStatus,
    Identity,
    IdentityKind,
    InboundMessage,
    IntakeUnavailable,
    Kind,
    OutboundAttachment,
    OutboundMessage,
    RawPayload,
    SendResult,
    ThreadHints,
    chosen_kind,
)

log = structlog.get_logger("meldpunt.telegram")

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 - a header name
# sendPhoto takes these up to 10 MB; anything else goes out as a document.
PHOTO_TYPES = frozenset({"image/jpeg", "image/png", "image/webp"})
MAX_PHOTO_BYTES = 10 * 1024 * 1024
# A kind chosen with a button and never followed by a message does not colour one a day later.
KIND_VALID = timedelta(hours=24)
# Answer buttons, at most five a row: the survey's five ("1 😞" to "5 😀") fit a phone's width.
CHOICES_PER_ROW = 5

Handler = Callable[[BotClient, Update, RawPayload], Awaitable[None]]


def conversation_of(chat_id: int) -> str:
    return f"{Channel.TELEGRAM.value}:{chat_id}"


class TelegramConnector(Connector):
    """Receives a Telegram bot's private chats and button presses; sends answers."""

    channel: ClassVar[Channel] = Channel.TELEGRAM
    unconfigured: ClassVar[str] = "no Telegram bot configured"
    capabilities: ClassVar[Capabilities] = Capabilities(
        can_send=True, conversational=True, attachments_in=True, attachments_out=True
    )

    def __init__(self, context: ConnectorContext, options: TelegramOptions | None = None) -> None:
        super().__init__(context)
        self.options = options or TelegramOptions()
        self._client: BotClient | None = None
        try:
            self._zone: ZoneInfo | None = ZoneInfo(context.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            self._zone = None
        # Keyed on the update's one content field; every other kind is journalled and ignored.
        self._handlers: dict[str, Handler] = {
            "message": self._on_message,
            "edited_message": self._on_edit,
            "callback_query": self._on_button,
        }

    @property
    def can_send(self) -> bool:
        return self.disabled_reason is None

    def routes(self) -> Sequence[web.RouteDef]:
        return [web.post(WEBHOOK_PATH, self.on_update)]

    async def start(self) -> None:
        # No getMe here: the service starts also while Telegram cannot be reached.
        self._client = build_bot(self.options)

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.close()
        self._client = None

    @contextlib.asynccontextmanager
    async def _bot(self) -> AsyncIterator[BotClient]:
        if self._client is not None:
            yield self._client
            return
        # Not started: 'meldpunt quarantine --retry' parses again without a running service.
        client = build_bot(self.options)
        try:
            yield client
        finally:
            await client.close()

    # --- inbound ----------------------------------------------------------------------------

    def _secret_valid(self, request: web.Request) -> bool:
        expected = self.options.webhook_secret.get_secret_value().encode()
        given = request.headers.get(SECRET_HEADER, "").encode()
        return bool(expected) and hmac.compare_digest(given, expected)

    async def on_update(self, request: web.Request) -> web.StreamResponse:
        """``POST /webhooks/telegram``: one update, answered once it is durable."""
        if not self._secret_valid(request):
            raise web.HTTPForbidden(text="invalid or missing Telegram secret token")
        body = await request.read()
        try:
            await self.deliver(RawPayload(JSON, body))
        except IntakeUnavailable:
            # Nothing stored: Telegram delivers the update again later.
            raise web.HTTPServiceUnavailable(text="intake unavailable, try again") from None
        return web.Response(status=200)

    async def redeliver(self, raw: RawPayload) -> None:
        await self.deliver(raw)

    async def deliver(self, raw: RawPayload) -> None:
        """Hand one update to intake (or journal why not); returns once that is durable.

        Raises:
            IntakeUnavailable: nothing was stored.
        """
        intake = self.context.intake
        async with self._bot() as client:
            try:
                update = read_update(raw.body, client.bot)
            except Unreadable as exc:
                await intake.quarantine(Channel.TELEGRAM, exc.external_id, raw, str(exc))
                return
            field = update_type(update)
            handler = self._handlers.get(field or "")
            if handler is None:
                what = f"a {field} update" if field else "an update without content"
                await intake.ignore(
                    Channel.TELEGRAM,
                    f"update:{update.update_id}",
                    raw,
                    f"{what}: meldpunt reads private messages and its own buttons only",
                )
                return
            try:
                await handler(client, update, raw)
            except (TypeError, ValueError, AttributeError, KeyError) as exc:
                # An update of a shape this code does not expect: kept for staff and a retry
                # once the code reads it, instead of an error Telegram would retry for hours.
                error = client.scrub(
                    f"update {update.update_id} could not be read: {type(exc).__name__}: {exc}"
                )
                log.error("telegram update not read", update_id=update.update_id, error=error)
                await intake.quarantine(Channel.TELEGRAM, f"update:{update.update_id}", raw, error)

    async def _on_message(self, client: BotClient, update: Update, raw: RawPayload) -> None:
        message = update.message
        assert message is not None
        try:
            parsed = read_message(message)
        except NotForUs as exc:
            await self._ignore(message, raw, exc.reason)
            return
        if parsed.command in WELCOME_COMMANDS:
            await self.context.intake.ignore(
                Channel.TELEGRAM,
                parsed.external_id,
                raw,
                f"the /{parsed.command} command: welcome sent, no ticket",
            )
            text, keyboard = welcome(self.options.welcome, self.context.town_name, parsed.language)
            await self._say(client, parsed.chat_id, text, keyboard)
            return
        await self._submit(client, parsed, raw)

    async def _on_edit(self, client: BotClient, update: Update, raw: RawPayload) -> None:
        message = update.edited_message
        assert message is not None
        try:
            parsed = read_message(message, edited=True)
        except NotForUs as exc:
            await self._ignore(message, raw, exc.reason, suffix=":edit")
            return
        await self._submit(client, parsed, raw)

    async def _ignore(
        self, message: Message, raw: RawPayload, reason: str, suffix: str = ""
    ) -> None:
        external_id = message_key(message.chat.id, message.message_id) + suffix
        await self.context.intake.ignore(Channel.TELEGRAM, external_id, raw, reason)

    async def _submit(self, client: BotClient, parsed: ChatMessage, raw: RawPayload) -> None:
        state = await self._load_state(parsed.chat_id)
        kind = None if parsed.edited_at is not None else _pending_kind(state)
        attachments: tuple[Attachment, ...] = ()
        if parsed.content.file is not None:
            attachments = (await self._download(client, parsed.content.file),)
        conversation = state.get("conversation") or conversation_of(parsed.chat_id)
        message = self._inbound(parsed, raw, attachments, kind, str(conversation))
        try:
            await self.context.intake.submit(message)
        except InvalidIdentity as exc:
            await self.context.intake.quarantine(
                Channel.TELEGRAM, parsed.external_id, raw, str(exc)
            )
            return
        if kind is not None:
            # The choice was for this message; the ones after it follow its ticket.
            rest = {k: v for k, v in state.items() if k not in ("kind", "chosen_at")}
            await self._save_state(parsed.chat_id, rest)

    def _local(self, when: datetime) -> str:
        return when.astimezone(self._zone or UTC).strftime("%d-%m-%Y %H:%M")

    def _inbound(
        self,
        parsed: ChatMessage,
        raw: RawPayload,
        attachments: tuple[Attachment, ...],
        kind: Kind | None,
        conversation: str,
    ) -> InboundMessage:
        content = parsed.content
        identities = [Identity(IdentityKind.TELEGRAM, str(parsed.user_id))]
        if content.phone:
            # The citizen's own number: their SMS, WhatsApp and calls join this contact.
            identities.append(Identity(IdentityKind.PHONE, content.phone))
        text = content.text
        earlier: list[int] = []
        if parsed.edited_at is not None:
            text = (
                f"[Bewerkt bericht: de burger paste zijn bericht van "
                f"{self._local(parsed.sent_at)} aan. Nieuwe tekst:]\n{text}"
            )
            earlier.append(parsed.message_id)
        if parsed.reply_to is not None:
            earlier.append(parsed.reply_to)
        return InboundMessage(
            channel=Channel.TELEGRAM,
            external_id=parsed.external_id,
            sender=ContactRef(
                tuple(identities), display_name=parsed.display_name, language=parsed.language
            ),
            received_at=parsed.edited_at or parsed.sent_at,
            text=text,
            raw=raw,
            kind=kind,
            location=content.location,
            attachments=attachments,
            hints=ThreadHints(
                message_ids=tuple(message_key(parsed.chat_id, m) for m in earlier),
                conversation=conversation,
            ),
        )

    async def _download(self, client: BotClient, ref: FileRef) -> Attachment:
        """Fetch one file within limits; a file refused or not fetched is noted with the reason."""

        def removed(size: int, reason: str) -> Attachment:
            return Attachment(ref.filename, ref.content_type, size, None, removed_reason=reason)

        limit = self.options.max_file_bytes
        if ref.content_type not in self.options.allowed_media_types:
            return removed(ref.size or 0, f"file type {ref.content_type} is not accepted")
        if ref.size is not None and ref.size > limit:
            return removed(ref.size, f"larger than {limit} bytes")
        try:
            found = await client.bot.get_file(ref.file_id)
            if found.file_size is not None and found.file_size > limit:
                return removed(found.file_size, f"larger than {limit} bytes")
            data = await found.download_as_bytearray()
        except TelegramError as exc:
            return removed(
                ref.size or 0, f"could not be downloaded from Telegram ({describe(exc, client)})"
            )
        except RuntimeError:
            return removed(ref.size or 0, "Telegram gave no path to download it from")
        if len(data) > limit:
            return removed(len(data), f"larger than {limit} bytes")
        try:
            sha256 = await self.context.files.put(bytes(data))
        except StorageFull:
            # The text is kept rather than the whole update refused for a file.
            return removed(len(data), STORAGE_FULL)
        return Attachment(ref.filename, ref.content_type, len(data), sha256)

    async def _on_button(self, client: BotClient, update: Update, raw: RawPayload) -> None:
        query = update.callback_query
        assert query is not None
        intake = self.context.intake
        external_id = f"callback:{query.id}"
        chat = query.message.chat if query.message is not None else None
        if chat is not None and chat.type != Chat.PRIVATE:
            await intake.ignore(Channel.TELEGRAM, external_id, raw, "a button in a group chat")
            await self._answer(client, query.id, None)
            return
        chosen = chosen_kind(query.data)
        if chosen is None:
            reason = f"a button with data {query.data!r}, which meldpunt never sends"
            await intake.ignore(Channel.TELEGRAM, external_id, raw, reason)
            await self._answer(client, query.id, None)
            return
        chat_id = chat.id if chat is not None else query.from_user.id
        state = await self._load_state(chat_id)
        await self._save_state(
            chat_id,
            {
                **state,
                "kind": chosen.value,
                "chosen_at": datetime.now(UTC).isoformat(),
                # A new matter: the next message opens a ticket instead of joining an open one.
                "conversation": f"{conversation_of(chat_id)}:{update.update_id}",
            },
        )
        await intake.ignore(
            Channel.TELEGRAM,
            external_id,
            raw,
            f"kind chosen with a button: {chosen.value}; the next message opens a ticket of it",
        )
        lang = language_of(query.from_user.language_code)
        await self._answer(client, query.id, label(chosen, lang))
        await self._say(client, chat_id, prompt(chosen, lang))

    # --- what the bot says by itself ---------------------------------------------------------

    async def _say(
        self,
        client: BotClient,
        chat_id: int,
        text: str,
        keyboard: InlineKeyboardMarkup | None = None,
    ) -> None:
        # Not a ticket's message: a failure is logged, and the citizen can always just write.
        try:
            await client.bot.send_message(chat_id, text, reply_markup=keyboard)
        except TelegramError as exc:
            log.warning("telegram message not sent", chat=chat_id, error=describe(exc, client))

    async def _answer(self, client: BotClient, query_id: str, text: str | None) -> None:
        # Telegram shows a spinner on the button until the press is answered.
        try:
            await client.bot.answer_callback_query(query_id, text=text)
        except TelegramError as exc:
            log.warning("telegram button not answered", error=describe(exc, client))

    # --- per-chat state ----------------------------------------------------------------------

    async def _load_state(self, chat_id: int) -> dict[str, Any]:
        try:
            return await self.context.cursors.load(_state_key(chat_id)) or {}
        except Exception as exc:
            raise IntakeUnavailable(f"the chat's state cannot be read: {exc}") from exc

    async def _save_state(self, chat_id: int, state: dict[str, Any]) -> None:
        try:
            await self.context.cursors.save(_state_key(chat_id), state)
        except Exception as exc:
            raise IntakeUnavailable(f"the chat's state cannot be saved: {exc}") from exc

    # --- outbound ---------------------------------------------------------------------------

    async def send(self, message: OutboundMessage) -> SendResult:
        client = self._client
        if client is None:
            raise SendError("the Telegram bot is not running (the service is stopping)")
        try:
            chat_id = int(message.recipient)
        except ValueError:
            raise SendError(
                f"'{message.recipient}' is not a Telegram chat id", permanent=True
            ) from None
        parts = split_text(message.text)
        if not parts and not message.attachments:
            raise SendError("the message is empty", permanent=True)
        # The keyboard goes with the last message only: what the citizen answers comes last.
        last = len(parts) + len(message.attachments) - 1
        markup = answer_keyboard(message.choices)
        first: int | None = None
        try:
            for n, part in enumerate(parts):
                keyboard = markup if n == last else None
                sent = await client.bot.send_message(chat_id, part, reply_markup=keyboard)
                first = sent.message_id if first is None else first
            for n, attachment in enumerate(message.attachments, start=len(parts)):
                keyboard = markup if n == last else None
                sent = await self._send_file(client, chat_id, attachment, keyboard)
                first = sent.message_id if first is None else first
        except TelegramError as exc:
            raise send_error(exc, client) from exc
        # Named like inbound messages, so a citizen's reply to this one finds its ticket.
        provider_id = message_key(chat_id, first) if first is not None else None
        return SendResult(provider_id=provider_id, status=DeliveryStatus.SENT)

    async def _send_file(
        self,
        client: BotClient,
        chat_id: int,
        attachment: OutboundAttachment,
        keyboard: ReplyKeyboardMarkup | ReplyKeyboardRemove | None = None,
    ) -> Message:
        try:
            data = await self.context.files.get(attachment.sha256)
        except OSError as exc:
            raise SendError(
                f"the file {attachment.filename} is missing from the attachment store",
                permanent=True,
            ) from exc
        upload = InputFile(data, filename=attachment.filename)
        if attachment.content_type in PHOTO_TYPES and len(data) <= MAX_PHOTO_BYTES:
            return await client.bot.send_photo(chat_id, upload, reply_markup=keyboard)
        return await client.bot.send_document(chat_id, upload, reply_markup=keyboard)


def answer_keyboard(choices: Sequence[str]) -> ReplyKeyboardMarkup | ReplyKeyboardRemove:
    """The answers offered as a reply keyboard; without answers, a stale keyboard taken away.

    A reply keyboard's button sends its label as the citizen's own message, which intake reads
    like a typed answer. Telegram keeps a keyboard (even a one-time one, behind an icon) until
    the bot sends another: a survey's buttons tapped weeks later would reopen the matter, so a
    message without answers removes whatever keyboard the chat still has.
    """
    labels = [c for c in (choice.strip() for choice in choices) if c]
    if not labels:
        return ReplyKeyboardRemove()
    rows = [labels[n : n + CHOICES_PER_ROW] for n in range(0, len(labels), CHOICES_PER_ROW)]
    return ReplyKeyboardMarkup(rows, one_time_keyboard=True, resize_keyboard=True)


def _state_key(chat_id: int) -> str:
    return f"telegram:chat:{chat_id}"


def _pending_kind(state: dict[str, Any]) -> Kind | None:
    """The kind chosen with a button for the next message, while the choice is fresh."""
    try:
        kind = Kind(str(state["kind"]))
        chosen_at = datetime.fromisoformat(str(state["chosen_at"]))
    except (KeyError, ValueError):
        return None
    return kind if datetime.now(UTC) - chosen_at <= KIND_VALID else None


__all__ = ["TelegramConnector"]
