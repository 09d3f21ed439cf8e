"""The phone line through Twilio: what a caller hears, and what a call leaves behind.

Provider notes: Twilio posts to the number's voice webhook when a call comes in and plays the
TwiML it gets back; every later step (a key pressed in ``<Gather>``, the end of a ``<Dial>``,
a finished ``<Record>``) posts to that verb's ``action`` URL and plays the TwiML answered there.
All of these, the transcription callback and the call-status callback are signed like the
messaging webhook, over the full URL including its query string, so the kind chosen in the
menu travels safely in the query. Recordings sit behind the account's credentials at
``RecordingUrl`` (add ``.mp3``). The recording and the final call status both arrive as the
caller hangs up, in no guaranteed order. ``<Record transcribe>`` is made for English; Dutch
comes out as a rough approximation, so the text is labelled as automatic and can be switched off.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from urllib.parse import urlencode

import structlog
from aiohttp import web
from twilio.twiml.voice_response import VoiceResponse

from connectors.base import ConnectorContext
from connectors.twilio.messaging import Media, read_form
from connectors.twilio.options import VoiceOptions
from connectors.twilio.signature import SignatureCheck
from ingest.identity import InvalidIdentity, normalise_phone
from ingest.model import (
    Attachment,
    Channel,
    ContactRef,
    Identity,
    IdentityKind,
    InboundMessage,
    IntakeUnavailable,
    Kind,
    RawPayload,
    ThreadHints,
)

log = structlog.get_logger("meldpunt.twilio.voice")

FORM = "application/x-www-form-urlencoded"
LANGUAGE = "nl-BE"
VOICE_PATH = "/webhooks/twilio/voice"
MENU_PATH = f"{VOICE_PATH}/menu"
DIAL_PATH = f"{VOICE_PATH}/dial-status"
RECORDING_PATH = f"{VOICE_PATH}/recording"
TRANSCRIPTION_PATH = f"{VOICE_PATH}/transcription"
CALL_STATUS_PATH = f"{VOICE_PATH}/status"

# The keypad menu: the digit a caller presses, and the kind of ticket it stands for.
MENU: dict[str, Kind] = {"1": Kind.REPORT, "2": Kind.QUESTION, "3": Kind.COMPLAINT}
# Final call states in which nobody spoke to anyone.
MISSED_STATUSES = frozenset({"no-answer", "busy", "failed", "canceled"})
TRANSCRIPTION_NOTE = "Uitgeschreven tekst (automatisch, kan fouten bevatten)"
TRANSCRIPTION_FAILED = "Twilio kon de opname niet uitschrijven; beluister de opname."

# What a call has led to so far, remembered until its final status arrives.
Outcome = Literal["answered", "voicemail"]


def kind_of(value: str | None) -> Kind | None:
    """The kind carried in an action URL's query string, if it is one the menu offers."""
    return next((kind for kind in MENU.values() if kind.value == value), None)


@dataclass(frozen=True, slots=True)
class CallFlow:
    """Builds the TwiML of each step of a call; reads no clock and does no I/O."""

    options: VoiceOptions
    public_url: str

    def url(self, path: str, kind: Kind | None) -> str:
        query = f"?{urlencode({'kind': kind.value})}" if kind else ""
        return f"{self.public_url}{path}{query}"

    def answer(self, open_now: bool) -> str:
        """The first TwiML of a call: the greeting, the menu if any, then desk or voicemail."""
        response = VoiceResponse()
        response.say(self.options.greeting, language=LANGUAGE)
        if self.options.menu:
            gather = response.gather(
                num_digits=1, action=self.url(MENU_PATH, None), method="POST", timeout=6
            )
            gather.say(self.options.menu_prompt, language=LANGUAGE)
        # Reached when the caller pressed nothing: go on without a kind.
        self._onward(response, None, open_now)
        return str(response)

    def after_menu(self, kind: Kind | None, open_now: bool) -> str:
        response = VoiceResponse()
        self._onward(response, kind, open_now)
        return str(response)

    def voicemail(self, kind: Kind | None) -> str:
        response = VoiceResponse()
        self._voicemail(response, kind)
        return str(response)

    def goodbye(self, text: str | None = None) -> str:
        response = VoiceResponse()
        if text:
            response.say(text, language=LANGUAGE)
        response.hangup()
        return str(response)

    def _onward(self, response: VoiceResponse, kind: Kind | None, open_now: bool) -> None:
        number = self.options.front_desk_number
        if open_now and number:
            response.dial(
                number,
                timeout=self.options.ring_seconds,
                action=self.url(DIAL_PATH, kind),
                method="POST",
            )
        else:
            self._voicemail(response, kind)

    def _voicemail(self, response: VoiceResponse, kind: Kind | None) -> None:
        response.say(self.options.voicemail_prompt, language=LANGUAGE)
        transcription: dict[str, object] = (
            {"transcribe": True, "transcribe_callback": self.url(TRANSCRIPTION_PATH, kind)}
            if self.options.transcribe
            else {}
        )
        response.record(
            max_length=self.options.max_recording_seconds,
            action=self.url(RECORDING_PATH, kind),
            method="POST",
            play_beep=True,
            **transcription,
        )
        # Twilio goes on here only when nothing was recorded (silence): no action is posted.
        response.say("We hebben geen bericht ontvangen. Tot ziens.", language=LANGUAGE)
        response.hangup()


def _twiml(text: str) -> web.Response:
    return web.Response(text=text, content_type="text/xml")


Download = Callable[[Media, str], Awaitable[Attachment]]


class VoiceLine:
    """The voice webhooks of the Twilio connector: call flow in, tickets out.

    ``clock`` is the time the office hours are read at; tests freeze it.
    """

    def __init__(
        self,
        context: ConnectorContext,
        options: VoiceOptions,
        signature: SignatureCheck,
        download: Download,
    ) -> None:
        self.context = context
        self.options = options
        self.flow = CallFlow(options, context.public_url.rstrip("/"))
        self.clock: Callable[[], datetime] = context.clock
        self._signature = signature
        self._download = download

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post(VOICE_PATH, self.on_call),
            web.post(MENU_PATH, self.on_menu),
            web.post(DIAL_PATH, self.on_dial_status),
            web.post(RECORDING_PATH, self.on_recording),
            web.post(TRANSCRIPTION_PATH, self.on_transcription),
            web.post(CALL_STATUS_PATH, self.on_call_status),
        ]

    def open_now(self) -> bool:
        return self.context.calendar.is_open(self.clock())

    async def _signed(self, request: web.Request) -> tuple[bytes, dict[str, str]]:
        body = await request.read()
        form = read_form(body)
        if not self._signature.valid(request, form):
            raise web.HTTPForbidden(text="invalid or missing Twilio signature")
        return body, form

    # --- the call flow ------------------------------------------------------------------------

    async def on_call(self, request: web.Request) -> web.StreamResponse:
        """``POST /webhooks/twilio/voice``: a call comes in."""
        await self._signed(request)
        return _twiml(self.flow.answer(self.open_now()))

    async def on_menu(self, request: web.Request) -> web.StreamResponse:
        """``POST …/voice/menu``: the key pressed in the menu sets the ticket's kind."""
        _, form = await self._signed(request)
        kind = MENU.get(form.get("Digits", "").strip())
        return _twiml(self.flow.after_menu(kind, self.open_now()))

    async def on_dial_status(self, request: web.Request) -> web.StreamResponse:
        """``POST …/voice/dial-status``: the front desk answered, or the caller leaves a message."""
        body, form = await self._signed(request)
        call_sid = form.get("CallSid", "")
        kind = kind_of(request.query.get("kind"))
        dial_status = form.get("DialCallStatus", "")
        try:
            if dial_status == "completed":
                await self._remember(call_sid, "answered")
                await self._answered(call_sid, form, RawPayload(FORM, body))
                return _twiml(self.flow.goodbye())
        except IntakeUnavailable:
            raise web.HTTPServiceUnavailable(text="intake unavailable, try again") from None
        log.info("front desk did not answer", call_sid=call_sid, dial_status=dial_status)
        return _twiml(self.flow.voicemail(kind))

    async def _answered(self, call_sid: str, form: Mapping[str, str], raw: RawPayload) -> None:
        # Staff spoke to the caller, so no ticket: the call is kept on the contact, and the
        # front desk may turn it into a ticket when the caller asked for something.
        external_id = f"answered:{call_sid}"
        try:
            number = normalise_phone(form.get("From", ""))
        except InvalidIdentity:
            await self.context.intake.ignore(
                Channel.VOICE,
                external_id,
                raw,
                "call from a hidden number answered at the front desk",
            )
            return
        duration = form.get("DialCallDuration", "")
        await self.context.intake.record_contact_event(
            Channel.VOICE,
            external_id,
            ContactRef((Identity(IdentityKind.PHONE, number),)),
            "call_answered",
            {
                "caller": number,
                "duration_seconds": int(duration) if duration.isdigit() else None,
                "call_sid": call_sid,
                "answered_by": self.options.front_desk_number or None,
                "answered_call_sid": form.get("DialCallSid") or None,
            },
            raw,
        )

    # --- what a call leaves behind ------------------------------------------------------------

    async def on_recording(self, request: web.Request) -> web.StreamResponse:
        """``POST …/voice/recording``: a voicemail, which becomes a ticket."""
        body, _ = await self._signed(request)
        try:
            await self.deliver_recording(RawPayload(FORM, body), kind_of(request.query.get("kind")))
        except IntakeUnavailable:
            raise web.HTTPServiceUnavailable(text="intake unavailable, try again") from None
        return _twiml(self.flow.goodbye("Bedankt voor uw bericht. Tot ziens."))

    async def deliver_recording(self, raw: RawPayload, kind: Kind | None) -> None:
        """Turn a signed recording callback into a voicemail message; returns once durable.

        Raises:
            IntakeUnavailable: nothing was stored.
        """
        form = read_form(raw.body)
        call_sid, url = form.get("CallSid", ""), form.get("RecordingUrl", "")
        if not call_sid or not url:
            await self.context.intake.quarantine(
                Channel.VOICE,
                form.get("RecordingSid") or call_sid or "unknown-recording",
                raw,
                "a recording callback without CallSid or RecordingUrl",
            )
            return
        try:
            number = normalise_phone(form.get("From", ""))
        except InvalidIdentity as exc:
            # A hidden number identifies nobody; staff can still listen to it in quarantine.
            await self.context.intake.quarantine(
                Channel.VOICE, call_sid, raw, f"voicemail from a hidden or invalid number: {exc}"
            )
            return
        seconds = form.get("RecordingDuration", "?")
        attachment = await self._download(
            Media(f"{url}.mp3", "audio/mpeg"), f"voicemail-{call_sid}"
        )
        text = f"Voicemail van {number} ({seconds} s)."
        if self.options.transcribe:
            text += " De uitgeschreven tekst volgt."
        await self.context.intake.submit(
            self._message(call_sid, number, text, raw, kind, attachments=(attachment,))
        )
        await self._remember(call_sid, "voicemail")

    async def on_transcription(self, request: web.Request) -> web.StreamResponse:
        """``POST …/voice/transcription``: the voicemail's text, added to its message."""
        body, form = await self._signed(request)
        call_sid = form.get("CallSid", "")
        status = form.get("TranscriptionStatus", "")
        text = form.get("TranscriptionText", "").strip()
        if status != "completed" or not text:
            text = TRANSCRIPTION_FAILED
        try:
            found = await self.context.intake.add_text(
                Channel.VOICE,
                call_sid,
                text,
                TRANSCRIPTION_NOTE,
                RawPayload(FORM, body),
                event="transcription_added",
            )
        except IntakeUnavailable:
            raise web.HTTPServiceUnavailable(text="intake unavailable, try again") from None
        if not found:
            log.warning("transcription for an unknown call", call_sid=call_sid)
        return _twiml(str(VoiceResponse()))

    async def on_call_status(self, request: web.Request) -> web.StreamResponse:
        """``POST …/voice/status``: a call ended; one nobody took and no voicemail is a ticket."""
        body, form = await self._signed(request)
        call_sid, status = form.get("CallSid", ""), form.get("CallStatus", "")
        try:
            if status in MISSED_STATUSES or (
                status == "completed" and call_sid and await self._outcome(call_sid) is None
            ):
                await self._missed(call_sid, form, RawPayload(FORM, body))
        except IntakeUnavailable:
            raise web.HTTPServiceUnavailable(text="intake unavailable, try again") from None
        return web.Response(status=204)

    async def _missed(self, call_sid: str, form: Mapping[str, str], raw: RawPayload) -> None:
        external_id = f"missed:{call_sid}"
        try:
            number = normalise_phone(form.get("From", ""))
        except InvalidIdentity:
            await self.context.intake.ignore(
                Channel.VOICE, external_id, raw, "missed call from a hidden number"
            )
            return
        text = f"Gemiste oproep van {number}: terugbellen."
        # Not acknowledged by default (``automatic``): the caller asked for nothing in writing.
        automatic = not self.options.acknowledge_missed_calls
        await self.context.intake.submit(
            self._message(external_id, number, text, raw, None, automatic=automatic)
        )

    def _message(
        self,
        external_id: str,
        number: str,
        text: str,
        raw: RawPayload,
        kind: Kind | None,
        *,
        attachments: tuple[Attachment, ...] = (),
        automatic: bool = False,
    ) -> InboundMessage:
        return InboundMessage(
            channel=Channel.VOICE,
            external_id=external_id,
            sender=ContactRef((Identity(IdentityKind.PHONE, number),)),
            received_at=self.clock(),
            text=text,
            raw=raw,
            kind=kind,
            attachments=attachments,
            # A second call (or a voicemail after a missed call) continues the open ticket.
            hints=ThreadHints(conversation=f"{Channel.VOICE.value}:{number}"),
            # Without an explicit route the pipeline answers a voice ticket by SMS.
            reply_channel=None if self.options.reply_by_sms else Channel.EMAIL,
            automatic=automatic,
        )

    # A call's outcome is kept as a connector cursor: small, durable, keyed by the call.
    async def _remember(self, call_sid: str, outcome: Outcome) -> None:
        if not call_sid:
            return
        try:
            await self.context.cursors.save(f"twilio:call:{call_sid}", {"outcome": outcome})
        except Exception as exc:
            raise IntakeUnavailable(f"call state not saved: {exc}") from exc

    async def _outcome(self, call_sid: str) -> str | None:
        try:
            saved = await self.context.cursors.load(f"twilio:call:{call_sid}")
        except Exception as exc:
            raise IntakeUnavailable(f"call state unreadable: {exc}") from exc
        return str(saved["outcome"]) if saved else None
