"""The town's web form at ``/contact`` (HTML for citizens) and its JSON twin for the town's app.

Citizens are answered by e-mail when they give an address, else by SMS. The form is protected by
a signed double-submit CSRF token, a honeypot field and a per-address rate limit; uploads are read
as a stream and refused past the configured size, with the error shown next to the field. A hidden
submission id makes a double click or a refresh land on the same ticket instead of a second one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import secrets
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import jinja2
from aiohttp import BodyPartReader, web
from pydantic import BaseModel, ConfigDict, Field

from connectors.base import Capabilities, Connector, ConnectorContext
from ingest.files import PHOTO_AND_PDF_TYPES, StorageFull, safe_filename, size_in_words
from ingest.identity import InvalidIdentity, normalise_email, normalise_phone
from ingest.model import (
    Attachment,
    Channel,
    ContactRef,
    Identity,
    IdentityKind,
    InboundMessage,
    IntakeResult,
    IntakeUnavailable,
    Kind,
    Location,
    RawPayload,
)

CSRF_COOKIE = "meldpunt_csrf"
MAX_TEXT = 10_000
MAX_FIELD = 300

KIND_LABELS_NL: dict[Kind, str] = {
    Kind.REPORT: "Melding (er is iets stuk, vuil of gevaarlijk)",
    Kind.QUESTION: "Vraag",
    Kind.SUGGESTION: "Suggestie of idee",
    Kind.COMPLAINT: "Klacht",
    Kind.COMPLIMENT: "Compliment",
}

# Magic numbers of the file types a citizen usually sends, so a renamed executable is refused.
_SIGNATURES: dict[str, tuple[bytes, ...]] = {
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "application/pdf": (b"%PDF-",),
}


class WebFormOptions(BaseModel):
    """``channels.webform`` in meldpunt.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    max_attachment_bytes: int = Field(default=10 * 1024 * 1024, ge=0)
    max_attachments: int = Field(default=5, ge=0, le=20)
    allowed_types: list[str] = Field(default_factory=lambda: list(PHOTO_AND_PDF_TYPES))
    rate_limit_per_minute: int = Field(default=10, ge=1)
    trusted_proxies: list[str] = Field(default_factory=list)


@dataclass(slots=True)
class _Upload:
    filename: str
    content_type: str
    data: bytes


@dataclass(slots=True)
class _Submission:
    fields: dict[str, str] = field(default_factory=dict)
    uploads: list[_Upload] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)


class RateLimiter:
    """A token bucket per client address, in memory: enough to blunt a flood from one host."""

    def __init__(self, per_minute: int, max_clients: int = 50_000) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(per_minute)
        self.max_clients = max_clients
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, client: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.get(client, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - last) * self.rate)
        if len(self._buckets) >= self.max_clients and client not in self._buckets:
            self._buckets.clear()  # bounded memory beats perfect fairness under a spray attack
        if tokens < 1.0:
            self._buckets[client] = (tokens, now)
            return False
        self._buckets[client] = (tokens - 1.0, now)
        return True


class WebFormConnector(Connector):
    """Serves the citizen form and turns each submission into an ``InboundMessage``."""

    channel: ClassVar[Channel] = Channel.WEBFORM
    capabilities: ClassVar[Capabilities] = Capabilities(can_send=False, attachments_in=True)

    def __init__(self, context: ConnectorContext, options: WebFormOptions | None = None) -> None:
        super().__init__(context)
        self.options = options or WebFormOptions()
        self.limiter = RateLimiter(self.options.rate_limit_per_minute)
        self._proxies = [
            ipaddress.ip_network(p, strict=False) for p in self.options.trusted_proxies
        ]
        self._templates = jinja2.Environment(
            loader=jinja2.PackageLoader("connectors", "templates"),
            autoescape=jinja2.select_autoescape(default=True),
            undefined=jinja2.StrictUndefined,
        )

    def routes(self) -> Sequence[web.RouteDef]:
        return [web.get("/contact", self.show_form), web.post("/contact", self.submit_form)]

    # --- CSRF: a random nonce signed with the secret key, in a cookie and in the form -------

    def _csrf_token(self) -> str:
        nonce = secrets.token_urlsafe(18)
        return f"{nonce}.{self._sign(nonce)}"

    def _sign(self, nonce: str) -> str:
        mac = hmac.new(self.context.secret_key, b"csrf:" + nonce.encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(mac.digest()[:18]).decode()

    def _csrf_ok(self, request: web.Request, submitted: str | None) -> bool:
        cookie = request.cookies.get(CSRF_COOKIE, "")
        if not submitted or not cookie or not hmac.compare_digest(cookie, submitted):
            return False
        nonce, _, signature = submitted.partition(".")
        return bool(nonce) and hmac.compare_digest(signature, self._sign(nonce))

    def _client(self, request: web.Request) -> str:
        remote = request.remote or "unknown"
        try:
            addr = ipaddress.ip_address(remote)
        except ValueError:
            return remote
        if not any(addr in net for net in self._proxies):
            return remote
        # Behind a trusted proxy: the first address from the right that is not a proxy.
        hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",")]
        for hop in reversed([h for h in hops if h]):
            try:
                if not any(ipaddress.ip_address(hop) in net for net in self._proxies):
                    return hop
            except ValueError:
                return remote
        return remote

    # --- HTML --------------------------------------------------------------------------------

    def _render(
        self,
        name: str,
        status: int = 200,
        *,
        csrf: str | None = None,
        **values: Any,
    ) -> web.Response:
        html = self._templates.get_template(name).render(
            town=self.context.town_name,
            kinds=KIND_LABELS_NL,
            csrf_token=csrf or "",
            options=self.options,
            max_size=size_in_words(self.options.max_attachment_bytes),
            **values,
        )
        response = web.Response(text=html, status=status, content_type="text/html")
        response.headers["Cache-Control"] = "no-store"
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; style-src 'self' 'unsafe-inline'; form-action 'self'; "
            "frame-ancestors 'self'"
        )
        response.headers["X-Content-Type-Options"] = "nosniff"
        if csrf:
            response.set_cookie(
                CSRF_COOKIE,
                csrf,
                httponly=True,
                samesite="Strict",
                path="/contact",
                secure=self.context.public_url.startswith("https://"),
            )
        return response

    def _form(
        self,
        status: int = 200,
        *,
        values: Mapping[str, str] | None = None,
        errors: Mapping[str, str] | None = None,
        notice: str | None = None,
    ) -> web.Response:
        return self._render(
            "webform/form.html",
            status,
            csrf=self._csrf_token(),
            values=dict(values or {}),
            errors=dict(errors or {}),
            notice=notice,
            submission_id=(values or {}).get("submission_id") or uuid.uuid4().hex,
        )

    async def show_form(self, request: web.Request) -> web.Response:
        if self.disabled_reason:
            raise web.HTTPNotFound()
        return self._form()

    async def submit_form(self, request: web.Request) -> web.StreamResponse:
        if self.disabled_reason:
            raise web.HTTPNotFound()
        is_json = request.content_type == "application/json"
        if not self.limiter.allow(self._client(request)):
            if is_json:
                return _json_error(429, "rate_limited", "Te veel berichten na elkaar. Wacht even.")
            return self._render(
                "webform/message.html",
                429,
                title="Even geduld",
                text="U stuurde veel berichten na elkaar. Probeer het over een minuut opnieuw.",
            )
        if is_json:
            return await self._submit_json(request)
        return await self._submit_html(request)

    async def _submit_html(self, request: web.Request) -> web.StreamResponse:
        try:
            sub = await self._read_form(request)
        except _BadForm as exc:
            return self._form(400, notice=str(exc))
        if not self._csrf_ok(request, sub.fields.get("csrf_token")):
            return self._form(
                403,
                values=sub.fields,
                notice="Het formulier was verlopen. Kijk uw gegevens na en verstuur opnieuw.",
            )
        if sub.fields.get("website"):
            # Honeypot filled in: a bot. Answer as if all went well, store nothing.
            return self._render("webform/message.html", title="Bedankt", text="Bedankt.")
        try:
            message = await self._to_message(sub, request)
        except StorageFull:
            # The citizen is still here: better told now than a message without its photo.
            return self._render(
                "webform/message.html",
                503,
                title="Uw bericht is niet verstuurd",
                text="We konden uw bestand nu niet bewaren. Uw bericht is NIET aangekomen. "
                "Probeer het later opnieuw, of verstuur uw bericht zonder bestand.",
            )
        if sub.errors or message is None:
            return self._form(422, values=sub.fields, errors=sub.errors)
        try:
            result = await self.context.intake.submit(message)
        except IntakeUnavailable:
            return self._render(
                "webform/message.html",
                503,
                title="Uw bericht is niet verstuurd",
                text="Er is een storing bij ons. Uw bericht is NIET aangekomen. "
                "Probeer het over enkele minuten opnieuw.",
            )
        return self._done(result)

    def _done(self, result: IntakeResult) -> web.Response:
        return self._render(
            "webform/done.html", reference=result.ticket_reference, duplicate=result.duplicate
        )

    async def _submit_json(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _json_error(400, "invalid_json", "The body is not valid JSON.")
        if not isinstance(body, dict):
            return _json_error(400, "invalid_json", "The body must be a JSON object.")
        sub = _Submission(
            fields={k: str(v) for k, v in body.items() if isinstance(v, str | int | float)}
        )
        sub.fields.setdefault("submission_id", "")
        message = await self._to_message(sub, request)
        if sub.errors or message is None:
            return web.json_response(
                {
                    "error": {
                        "code": "invalid",
                        "message": "Some fields are not valid.",
                        "fields": sub.errors,
                    }
                },
                status=422,
            )
        try:
            result = await self.context.intake.submit(message)
        except IntakeUnavailable:
            return _json_error(503, "unavailable", "Nothing was stored; try again later.")
        return web.json_response(
            {"reference": result.ticket_reference, "duplicate": result.duplicate, "received": True},
            status=200 if result.duplicate else 201,
        )

    async def _read_form(self, request: web.Request) -> _Submission:
        sub = _Submission()
        if request.content_type == "application/x-www-form-urlencoded":
            posted = await request.post()
            sub.fields = {k: v for k, v in posted.items() if isinstance(v, str)}
            return sub
        if request.content_type != "multipart/form-data":
            raise _BadForm("Het formulier kwam niet goed aan. Probeer opnieuw.")
        reader = await request.multipart()
        limit = self.options.max_attachment_bytes
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader) or not part.name:
                continue
            if part.filename is not None:
                if not part.filename:
                    await part.release()  # an empty file input
                    continue
                if len(sub.uploads) >= self.options.max_attachments:
                    sub.errors["attachment"] = (
                        f"U kunt hoogstens {self.options.max_attachments} bestanden meesturen."
                    )
                    await part.release()
                    continue
                data = await _read_limited(part, limit)
                if data is None:
                    sub.errors["attachment"] = (
                        f"Het bestand '{safe_filename(part.filename) or 'bijlage'}' is te groot. "
                        f"Het mag hoogstens {size_in_words(limit)} zijn."
                    )
                    continue
                content_type = part.headers.get("Content-Type", "application/octet-stream")
                sub.uploads.append(
                    _Upload(
                        safe_filename(part.filename) or "bijlage", content_type.split(";")[0], data
                    )
                )
            else:
                value = await _read_limited(part, MAX_TEXT * 4)
                if value is None:
                    raise _BadForm("Een veld is te lang. Maak uw bericht korter.")
                sub.fields[part.name] = value.decode(part.get_charset("utf-8"), "replace")
        return sub

    async def _to_message(self, sub: _Submission, request: web.Request) -> InboundMessage | None:
        """Validate the fields (errors go to ``sub.errors``) and build the message."""
        f = {k: v.strip() for k, v in sub.fields.items()}
        errors = sub.errors
        name = f.get("name", "")
        if len(name) > MAX_FIELD:
            errors["name"] = "Uw naam is te lang."
        identities: list[Identity] = []
        email, phone = f.get("email", ""), f.get("phone", "")
        if email:
            try:
                identities.append(Identity(IdentityKind.EMAIL, normalise_email(email)))
            except InvalidIdentity:
                errors["email"] = "Dit e-mailadres klopt niet. Voorbeeld: naam@voorbeeld.be"
        if phone:
            try:
                identities.append(Identity(IdentityKind.PHONE, normalise_phone(phone)))
            except InvalidIdentity:
                errors["phone"] = "Dit telefoonnummer klopt niet. Voorbeeld: 0470 12 34 56"
        if not email and not phone:
            errors["email"] = (
                "Geef een e-mailadres of een telefoonnummer, zodat we u kunnen antwoorden."
            )
        kind_value = f.get("kind", "")
        kind = Kind(kind_value) if kind_value in Kind._value2member_map_ else None
        if kind is None:
            errors["kind"] = "Kies wat voor bericht het is."
        subject = f.get("subject", "")
        if len(subject) > MAX_FIELD:
            errors["subject"] = "Het onderwerp is te lang (hoogstens 300 tekens)."
        text = f.get("message", "")
        if len(text) < 3:
            errors["message"] = "Schrijf uw bericht."
        elif len(text) > MAX_TEXT:
            errors["message"] = f"Uw bericht is te lang (hoogstens {MAX_TEXT} tekens)."
        address = f.get("address", "")
        if len(address) > MAX_FIELD:
            errors["address"] = "Het adres is te lang."
        for upload in sub.uploads:
            problem = self._check_upload(upload)
            if problem:
                errors["attachment"] = problem
        if errors or kind is None:
            return None

        attachments = []
        for upload in sub.uploads:
            digest = await self.context.files.put(upload.data)
            attachments.append(
                Attachment(upload.filename, upload.content_type, len(upload.data), digest)
            )
        submission_id = f.get("submission_id", "")
        if not (8 <= len(submission_id) <= 64 and submission_id.isalnum()):
            submission_id = uuid.uuid4().hex
        now = self.context.clock()
        envelope: dict[str, object] = {
            k: v for k, v in f.items() if k not in ("csrf_token", "website")
        }
        envelope["attachments"] = [a.sha256 or "" for a in attachments]
        envelope["client"] = self._client(request)
        email_identity = next((i for i in identities if i.kind is IdentityKind.EMAIL), None)
        return InboundMessage(
            channel=Channel.WEBFORM,
            external_id=submission_id,
            sender=ContactRef(tuple(identities), display_name=name or None, language="nl"),
            received_at=now,
            text=text,
            subject=subject or None,
            kind=kind,
            location=Location(address=address) if address else None,
            attachments=tuple(attachments),
            language="nl",
            raw=RawPayload("application/json", json.dumps(envelope).encode()),
            reply_channel=Channel.EMAIL if email_identity else Channel.SMS,
            reply_address=email_identity.value if email_identity else identities[0].value,
        )

    def _check_upload(self, upload: _Upload) -> str | None:
        allowed = self.options.allowed_types
        if upload.content_type not in allowed:
            return (
                f"Het bestand '{upload.filename}' heeft een soort die we niet aanvaarden. "
                "Stuur een foto (JPG, PNG) of een PDF."
            )
        signatures = _SIGNATURES.get(upload.content_type)
        if signatures and not upload.data.startswith(signatures):
            return f"Het bestand '{upload.filename}' is geen geldige {upload.content_type}."
        return None


class _BadForm(Exception):
    pass


async def _read_limited(part: BodyPartReader, limit: int) -> bytes | None:
    """The part's bytes, or None (and the rest drained) once it is larger than ``limit``."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await part.read_chunk(64 * 1024):
        size += len(chunk)
        if size > limit:
            await part.release()
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _json_error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)
