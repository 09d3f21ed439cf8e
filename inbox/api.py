"""The staff and integrator REST API: an aiohttp sub-application mounted at ``/api/v1``.

Handlers parse the request, call the ticket actions in ``inbox.tickets`` in one transaction and
answer JSON; every error is ``{"error": {"code", "message", "details"}}``.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import BaseModel, ValidationError

from inbox import contact_events, quarantine, stats, tickets, uncertain, work
from inbox.auth import STAFF, bearer_auth
from inbox.errors import ApiError, BadRequestError, UnprocessableError
from inbox.openapi import DEFAULT_LIMIT, MAX_LIMIT, PUBLIC_OPERATIONS, build_document
from inbox.schemas import (
    MAX_REPLY_ATTACHMENTS,
    AssignRequest,
    CalledBackRequest,
    ContactEventTicketRequest,
    ContactMergeOut,
    ContactMergeRequest,
    Department,
    DepartmentList,
    DetailsRequest,
    ErrorDetail,
    ErrorResponse,
    JournalState,
    Me,
    MergeRequest,
    NoteRequest,
    OutboxState,
    ReplyRequest,
    StatusRequest,
    TicketMergeOut,
    TransferRequest,
)
from ingest.files import AttachmentStore
from ingest.followup import FollowUp
from ingest.model import Channel, Kind, TicketStatus
from store.db import Database
from store.models import utcnow

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

MAX_QUERY_LENGTH = 200
# The same default as channels.email.max_attachment_bytes, which the service passes in.
DEFAULT_MAX_ATTACHMENT_BYTES = 15 * 1024 * 1024
# Room for a reply's text and the JSON around it; aiohttp's own default body limit.
REPLY_TEXT_ROOM = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ApiContext:
    """What the API needs from the running service.

    Attributes:
        db: the process's database.
        departments: department id → display name, in the order operators configured them.
        files: where the files staff attach to replies are stored.
        retry_quarantined: processes a quarantined message again (see ``inbox.quarantine``);
            without it the API lists the quarantine but cannot retry from it.
        max_attachment_bytes: the most bytes one file attached to a reply may have.
        submit: intake's ``submit``, through which a contact event becomes a ticket; without
            it the API lists contact events but cannot make tickets of them.
    """

    db: Database
    departments: Mapping[str, str]
    files: AttachmentStore
    retry_quarantined: quarantine.RetryHook | None = None
    max_attachment_bytes: int = DEFAULT_MAX_ATTACHMENT_BYTES
    submit: contact_events.Submit | None = None
    # The town's deadlines and notices: resolving, pausing and reopening move the ticket's
    # timers and send the "it's done" notice. Without it status changes only change status.
    followup: FollowUp | None = None

    def __post_init__(self) -> None:
        # A read-only copy: the context is shared by every request.
        object.__setattr__(self, "departments", MappingProxyType(dict(self.departments)))


CONTEXT = web.AppKey("meldpunt.api.context", ApiContext)
OPENAPI_DOCUMENT = web.AppKey("meldpunt.api.openapi", bytes)


# Responses and errors


def _json(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(
        text=model.model_dump_json(), status=status, content_type="application/json"
    )


def _error(
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    body = ErrorResponse(error=ErrorDetail(code=code, message=message, details=details))
    response = _json(body, status)
    response.headers.update(headers or {})
    return response


_HTTP_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render every failure as the API's JSON error shape."""
    try:
        return await handler(request)
    except ApiError as exc:
        return _error(exc.status, exc.code, exc.message, exc.details, exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return _error(
            exc.status, _HTTP_CODES.get(exc.status, "http_error"), exc.reason, None, headers
        )
    except Exception:
        # Clients get a stable shape; the details go to the log, not to the caller.
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _error(500, "internal_error", "something went wrong on our side; it was logged")


# Request parsing


async def _body(request: web.Request, model: type[M], *, max_size: int | None = None) -> M:
    """The JSON body as ``model``; ``max_size`` raises the app's body limit for this request."""
    if max_size is not None:
        request = request.clone(client_max_size=max_size)
    raw = await request.read()
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        problems = exc.errors(include_url=False, include_input=False, include_context=False)
        if any(p["type"] == "json_invalid" for p in problems):
            raise BadRequestError("invalid_json", "the body is not valid JSON") from None
        raise _invalid_body([(".".join(map(str, p["loc"])), p["msg"]) for p in problems]) from None


def _invalid_body(problems: Sequence[tuple[str, str]]) -> UnprocessableError:
    """A 422 naming each field (dotted path, empty for the body itself) and what is wrong."""
    return UnprocessableError(
        "invalid_body",
        "; ".join(f"{field or 'body'}: {message}" for field, message in problems),
        [{"field": field, "message": message} for field, message in problems],
    )


def _reply_body_limit(max_attachment_bytes: int) -> int:
    """The largest reply body worth reading: every file at the limit, plus the text.

    Allows for base64 broken into 76-character lines with an escaped CRLF after each, as the
    ``base64`` tool and MIME encoders write it.
    """
    encoded = 4 * -(-max_attachment_bytes // 3)
    # Four characters for each escaped CRLF; 1 kB for the name, the type and the punctuation.
    per_file = encoded + encoded // 76 * 4 + 1024
    return MAX_REPLY_ATTACHMENTS * per_file + REPLY_TEXT_ROOM


def _reply_files(body: ReplyRequest, max_bytes: int) -> list[tickets.ReplyFile]:
    """The reply's files decoded and within ``max_bytes`` each; every problem is reported."""
    files: list[tickets.ReplyFile] = []
    problems: list[tuple[str, str]] = []
    for n, attachment in enumerate(body.attachments):
        field = f"attachments.{n}.content_base64"
        try:
            data = base64.b64decode("".join(attachment.content_base64.split()), validate=True)
        except ValueError:
            # binascii.Error for a bad character or padding; ValueError for non-ASCII text.
            problems.append((field, "not valid base64 (standard alphabet, with padding)"))
            continue
        if not data:
            problems.append((field, "the file is empty"))
        elif len(data) > max_bytes:
            problems.append(
                (field, f"the file has {len(data)} bytes; at most {max_bytes} are allowed")
            )
        else:
            files.append(tickets.ReplyFile(attachment.filename, attachment.content_type, data))
    if problems:
        raise _invalid_body(problems)
    return files


def _invalid(parameter: str, message: str, **details: Any) -> BadRequestError:
    return BadRequestError("invalid_parameter", message, {"parameter": parameter, **details})


def _only_known(request: web.Request, known: Collection[str]) -> None:
    """Refuse unknown query parameters, so a typo does not silently return everything."""
    unknown = sorted(set(request.query) - set(known))
    if unknown:
        raise _invalid(
            unknown[0],
            f"unknown query parameter(s) {', '.join(unknown)}; valid: {', '.join(known)}",
            valid=list(known),
        )


def _many(request: web.Request, name: str, valid: Collection[str]) -> list[str]:
    values = [
        value.strip()
        for raw in request.query.getall(name, [])
        for value in raw.split(",")
        if value.strip()
    ]
    invalid = [v for v in values if v not in valid]
    if invalid:
        raise _invalid(
            name,
            f"invalid {name} {', '.join(invalid)}; valid values: {', '.join(valid)}",
            invalid=invalid,
            valid=list(valid),
        )
    return values


def _flag(request: web.Request, name: str) -> bool | None:
    value = request.query.get(name)
    if value is None:
        return None
    if value not in ("true", "false"):
        raise _invalid(name, f"{name} must be true or false", got=value)
    return value == "true"


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_LIMIT:
        raise _invalid("limit", f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return value


def _context(request: web.Request) -> ApiContext:
    return request.app[CONTEXT]


# Handlers


async def get_openapi(request: web.Request) -> web.Response:
    return web.Response(body=request.app[OPENAPI_DOCUMENT], content_type="application/json")


async def get_me(request: web.Request) -> web.Response:
    staff = request[STAFF]
    return _json(
        Me(
            id=staff.id,
            email=staff.email,
            name=staff.name,
            role=staff.role,
            departments=sorted(staff.departments),
        )
    )


async def list_departments(request: web.Request) -> web.Response:
    departments = _context(request).departments
    return _json(
        DepartmentList(items=[Department(id=key, name=name) for key, name in departments.items()])
    )


async def list_tickets(request: web.Request) -> web.Response:
    ctx = _context(request)
    _only_known(
        request, ("status", "department", "kind", "channel", "overdue", "q", "limit", "cursor")
    )
    query = request.query.get("q", "").strip()
    if len(query) > MAX_QUERY_LENGTH:
        raise _invalid("q", f"q may be at most {MAX_QUERY_LENGTH} characters")
    filters = tickets.TicketFilter(
        statuses=_many(request, "status", list(TicketStatus)),
        departments=_many(request, "department", list(ctx.departments)),
        kinds=_many(request, "kind", list(Kind)),
        channels=_many(request, "channel", list(Channel)),
        search=query or None,
        overdue=_flag(request, "overdue"),
    )
    limit = _limit(request)
    async with ctx.db.session() as session:
        page = await tickets.list_tickets(
            session,
            request[STAFF],
            ctx.departments,
            filters,
            limit,
            request.query.get("cursor"),
        )
    return _json(page)


async def get_ticket(request: web.Request) -> web.Response:
    ctx = _context(request)
    async with ctx.db.session() as session:
        detail = await tickets.ticket_detail(
            session, request[STAFF], ctx.departments, request.match_info["reference"]
        )
    return _json(detail)


async def reply_to_ticket(request: web.Request) -> web.Response:
    ctx = _context(request)
    body = await _body(request, ReplyRequest, max_size=_reply_body_limit(ctx.max_attachment_bytes))
    # Like every other body error, a bad file is reported before the ticket is looked at.
    files = _reply_files(body, ctx.max_attachment_bytes)
    async with ctx.db.session() as session:
        message = await tickets.reply(
            session,
            request[STAFF],
            request.match_info["reference"],
            body,
            store=ctx.files,
            attachments=files,
            followup=ctx.followup,
        )
    return _json(message, 201)


async def add_note(request: web.Request) -> web.Response:
    body = await _body(request, NoteRequest)
    async with _context(request).db.session() as session:
        message = await tickets.add_note(
            session, request[STAFF], request.match_info["reference"], body
        )
    return _json(message, 201)


async def record_called_back(request: web.Request) -> web.Response:
    # The note is optional, and so is the body that would carry it.
    body = await _body(request, CalledBackRequest) if await request.read() else CalledBackRequest()
    async with _context(request).db.session() as session:
        event = await tickets.called_back(
            session, request[STAFF], request.match_info["reference"], body
        )
    return _json(event, 201)


async def transfer_ticket(request: web.Request) -> web.Response:
    ctx = _context(request)
    body = await _body(request, TransferRequest)
    async with ctx.db.session() as session:
        summary = await tickets.transfer(
            session, request[STAFF], ctx.departments, request.match_info["reference"], body
        )
    return _json(summary)


async def change_ticket_status(request: web.Request) -> web.Response:
    ctx = _context(request)
    body = await _body(request, StatusRequest)
    async with ctx.db.session() as session:
        summary = await tickets.change_status(
            session,
            request[STAFF],
            ctx.departments,
            request.match_info["reference"],
            body,
            followup=ctx.followup,
        )
    return _json(summary)


async def assign_ticket(request: web.Request) -> web.Response:
    ctx = _context(request)
    body = await _body(request, AssignRequest)
    async with ctx.db.session() as session:
        ticket = await work.assign(
            session, request[STAFF], request.match_info["reference"], body.assignee_id
        )
        summary = await tickets.ticket_summary(session, ticket, ctx.departments)
    return _json(summary)


async def change_ticket_details(request: web.Request) -> web.Response:
    ctx = _context(request)
    body = await _body(request, DetailsRequest)
    async with ctx.db.session() as session:
        ticket = await work.change_details(
            session,
            request[STAFF],
            request.match_info["reference"],
            kind=body.kind,
            priority=body.priority,
            tags=body.tags,
        )
        summary = await tickets.ticket_summary(session, ticket, ctx.departments)
    return _json(summary)


async def merge_ticket(request: web.Request) -> web.Response:
    ctx = _context(request)
    body = await _body(request, MergeRequest)
    async with ctx.db.session() as session:
        merged = await work.merge_tickets(
            session, request[STAFF], ctx.departments, request.match_info["reference"], body.into
        )
    return _json(
        TicketMergeOut(source=merged.source, target=merged.target, messages=merged.messages)
    )


async def merge_contact(request: web.Request) -> web.Response:
    body = await _body(request, ContactMergeRequest)
    async with _context(request).db.session() as session:
        merged = await work.merge_contacts(
            session, request[STAFF], _row_id(request), body.contact_id
        )
    return _json(
        ContactMergeOut(
            contact_id=merged.contact_id,
            merged_id=merged.merged_id,
            tickets=merged.tickets,
            identities_moved=merged.identities_moved,
        )
    )


async def list_outbox(request: web.Request) -> web.Response:
    ctx = _context(request)
    _only_known(request, ("state", "limit", "cursor"))
    states = _many(request, "state", list(OutboxState))
    limit = _limit(request)
    async with ctx.db.session() as session:
        page = await tickets.list_outbox(
            session, request[STAFF], states, limit, request.query.get("cursor")
        )
    return _json(page)


async def _settle(request: web.Request, decision: uncertain.Decision) -> web.Response:
    async with _context(request).db.session() as session:
        settled = await uncertain.settle_uncertain(
            session, request[STAFF], _row_id(request), decision, utcnow()
        )
    return _json(settled.item)


async def resend_outbox_message(request: web.Request) -> web.Response:
    return await _settle(request, "resend")


async def confirm_outbox_message(request: web.Request) -> web.Response:
    return await _settle(request, "confirm")


async def list_quarantine(request: web.Request) -> web.Response:
    ctx = _context(request)
    _only_known(request, ("state", "limit", "cursor"))
    states = _many(request, "state", list(JournalState))
    limit = _limit(request)
    async with ctx.db.session() as session:
        page = await quarantine.list_quarantine(
            session, request[STAFF], states, limit, request.query.get("cursor")
        )
    return _json(page)


def _row_id(request: web.Request) -> int:
    # The route admits digits only.
    return int(request.match_info["id"])


async def download_quarantined(request: web.Request) -> web.Response:
    async with _context(request).db.session() as session:
        download = await quarantine.raw_payload(session, request[STAFF], _row_id(request))
    return web.Response(
        body=download.body,
        headers={
            "Content-Type": download.content_type,
            "Content-Disposition": f'attachment; filename="{download.filename}"',
            # Citizen bytes under our origin: never let a browser sniff them into a page or run
            # them, whatever type they claim.
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "sandbox",
        },
    )


async def retry_quarantined(request: web.Request) -> web.Response:
    ctx = _context(request)
    journal_id = _row_id(request)
    async with ctx.db.session() as session:
        await quarantine.check_retryable(session, request[STAFF], journal_id)
    # Outside the session: the retry commits through intake, in transactions of its own.
    return _json(await quarantine.retry(ctx.retry_quarantined, journal_id))


async def list_contact_events(request: web.Request) -> web.Response:
    ctx = _context(request)
    _only_known(request, ("limit",))
    limit = _limit(request)
    async with ctx.db.session() as session:
        events = await contact_events.list_contact_events(
            session, request[STAFF], _row_id(request), limit
        )
    return _json(events)


async def make_ticket_of_contact_event(request: web.Request) -> web.Response:
    ctx = _context(request)
    staff, event_id = request[STAFF], _row_id(request)
    body = await _body(request, ContactEventTicketRequest)
    async with ctx.db.session() as session:
        message = await contact_events.ticket_message(
            session, staff, ctx.departments, event_id, body
        )
    # Outside a session: intake commits the ticket in a transaction of its own.
    reference = await contact_events.submit_ticket(ctx.submit, message)
    async with ctx.db.session() as session:
        event = await contact_events.link_ticket(
            session, staff, event_id, reference, body.department
        )
    return _json(event, 201)


async def get_stats(request: web.Request) -> web.Response:
    ctx = _context(request)
    _only_known(request, ("from", "to", "department", "channel", "kind"))
    now = utcnow()
    start, end = stats.parse_period(request.query.get("from"), request.query.get("to"), now)
    query = stats.StatsQuery(
        start,
        end,
        departments=_many(request, "department", list(ctx.departments)),
        channels=_many(request, "channel", list(Channel)),
        kinds=_many(request, "kind", list(Kind)),
    )
    async with ctx.db.session() as session:
        result = await stats.ticket_stats(session, request[STAFF], query, now)
    return _json(result)


# Route names are the OpenAPI operation ids; a test keeps this table and the document in step.
ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("GET", "/openapi.json", get_openapi),
    ("GET", "/me", get_me),
    ("GET", "/departments", list_departments),
    ("GET", "/tickets", list_tickets),
    ("GET", "/tickets/{reference}", get_ticket),
    ("POST", "/tickets/{reference}/replies", reply_to_ticket),
    ("POST", "/tickets/{reference}/notes", add_note),
    ("POST", "/tickets/{reference}/called-back", record_called_back),
    ("POST", "/tickets/{reference}/transfer", transfer_ticket),
    ("POST", "/tickets/{reference}/status", change_ticket_status),
    ("POST", "/tickets/{reference}/assign", assign_ticket),
    ("POST", "/tickets/{reference}/details", change_ticket_details),
    ("POST", "/tickets/{reference}/merge", merge_ticket),
    ("GET", "/outbox", list_outbox),
    ("POST", r"/outbox/{id:\d+}/resend", resend_outbox_message),
    ("POST", r"/outbox/{id:\d+}/confirm", confirm_outbox_message),
    ("GET", "/quarantine", list_quarantine),
    ("GET", r"/quarantine/{id:\d+}/raw", download_quarantined),
    ("POST", r"/quarantine/{id:\d+}/retry", retry_quarantined),
    ("GET", r"/contacts/{id:\d+}/events", list_contact_events),
    ("POST", r"/contact-events/{id:\d+}/ticket", make_ticket_of_contact_event),
    ("POST", r"/contacts/{id:\d+}/merge", merge_contact),
    ("GET", "/stats", get_stats),
)


def create_api(context: ApiContext) -> web.Application:
    """Build the API sub-application; mount it with ``app.add_subapp("/api/v1", ...)``."""
    app = web.Application(
        middlewares=[error_middleware, bearer_auth(context.db, PUBLIC_OPERATIONS)]
    )
    app[CONTEXT] = context
    app[OPENAPI_DOCUMENT] = json.dumps(build_document()).encode()
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler, name=handler.__name__)
    return app
