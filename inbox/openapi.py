"""The OpenAPI 3.1 document of the staff API: a hand-written path table, pydantic-made schemas.

Request and response schemas come from the models in ``inbox.schemas`` that also validate and
build the bodies; enum parameters reuse the same enums. A test checks the table against the routes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from inbox.schemas import (
    MAX_REPLY_ATTACHMENTS,
    AssignRequest,
    CalledBackRequest,
    ContactEventList,
    ContactEventOut,
    ContactEventTicketRequest,
    ContactMergeOut,
    ContactMergeRequest,
    DepartmentList,
    DetailsRequest,
    ErrorResponse,
    EventOut,
    Me,
    MergeRequest,
    MessageOut,
    NoteRequest,
    OutboxItem,
    OutboxPage,
    QuarantinePage,
    ReplyRequest,
    RetryResult,
    Stats,
    StatusRequest,
    TicketDetail,
    TicketMergeOut,
    TicketPage,
    TicketSummary,
    TransferRequest,
)
from inbox.tickets import describe_transitions

API_VERSION = "1.0.0"
REF = "#/components/schemas/{model}"
DEFAULT_LIMIT = 50
MAX_LIMIT = 200
SECURITY_SCHEME = "bearer"

ERROR_DESCRIPTIONS: Mapping[int, str] = {
    400: "A query parameter or the JSON itself is invalid; the error names the parameter.",
    401: "The bearer token is missing, unknown or revoked.",
    403: "Your role may not do this.",
    404: "No such ticket, or it is outside your departments.",
    409: "The ticket's current state does not allow this.",
    413: "The body is larger than this endpoint reads.",
    422: "The body does not match the schema, or asks for something impossible.",
    503: "A part of the service this needs is not running; nothing was done. Try again later.",
}


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    description: str
    schema: dict[str, Any]
    location: Literal["query", "path"] = "query"
    required: bool = False


@dataclass(frozen=True, slots=True)
class Operation:
    """One documented endpoint; ``operation_id`` is also the name of its aiohttp route."""

    method: str
    path: str
    operation_id: str
    tag: str
    summary: str
    response: type[BaseModel] | None
    description: str = ""
    status: int = 200
    params: tuple[Param, ...] = ()
    body: type[BaseModel] | None = None
    errors: tuple[int, ...] = ()
    public: bool = False
    extra_responses: Mapping[int, str] = field(default_factory=dict)
    # Overrides ERROR_DESCRIPTIONS where this operation means something more specific.
    error_descriptions: Mapping[int, str] = field(default_factory=dict)
    # Set for an operation whose 200 answer is a file rather than JSON: what the file is.
    download: str | None = None


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": REF.format(model=name)}


def _many(name: str, description: str, items: dict[str, Any]) -> Param:
    return Param(
        name,
        f"{description} Repeat the parameter or separate values by commas.",
        {"type": "array", "items": items},
    )


REFERENCE = Param(
    "reference", "The ticket reference.", {"type": "string"}, location="path", required=True
)
LIMIT = Param(
    "limit",
    f"Page size, 1 to {MAX_LIMIT}.",
    {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
)
CURSOR = Param(
    "cursor", "The next_cursor of the previous page; opaque, pass it unchanged.", {"type": "string"}
)
JOURNAL_ID = Param(
    "id",
    "The entry's id, from GET /quarantine.",
    {"type": "integer", "minimum": 1},
    location="path",
    required=True,
)
CONTACT_ID = Param(
    "id",
    "The contact's id (a ticket's contact.id).",
    {"type": "integer", "minimum": 1},
    location="path",
    required=True,
)
CONTACT_EVENT_ID = Param(
    "id",
    "The event's id, from GET /contacts/{id}/events.",
    {"type": "integer", "minimum": 1},
    location="path",
    required=True,
)
OUTBOX_ID = Param(
    "id",
    "The outbox row's id (a message's outbox.id, or an id from GET /outbox).",
    {"type": "integer", "minimum": 1},
    location="path",
    required=True,
)
_SETTLE_ERRORS = {
    404: "No outbox row with this id, or its ticket is outside your departments.",
    409: "The message's delivery is not uncertain (code not_uncertain); nothing was changed.",
}
TICKET_ERRORS = (404,)
WRITE_ERRORS = (400, 404, 409, 422)

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "GET",
        "/openapi.json",
        "get_openapi",
        "meta",
        "This document",
        None,
        public=True,
        extra_responses={200: "The OpenAPI 3.1 document."},
    ),
    Operation(
        "GET",
        "/me",
        "get_me",
        "meta",
        "The user the token belongs to",
        Me,
    ),
    Operation(
        "GET",
        "/departments",
        "list_departments",
        "meta",
        "Configured departments",
        DepartmentList,
        description="Every department, also those outside an agent's own: agents may transfer "
        "tickets to any of them.",
    ),
    Operation(
        "GET",
        "/tickets",
        "list_tickets",
        "tickets",
        "List tickets, newest first",
        TicketPage,
        description="Agents see only tickets of their departments; admins and operators see all. "
        "Pages are stable under new tickets arriving: follow next_cursor until it is null.",
        params=(
            _many("status", "Only tickets with these statuses.", _ref("TicketStatus")),
            _many("department", "Only tickets of these department ids.", {"type": "string"}),
            _many("kind", "Only tickets of these kinds.", _ref("Kind")),
            _many("channel", "Only tickets that came in on these channels.", _ref("Channel")),
            Param(
                "q",
                "Full-text search: only tickets with every word of this text in their subject "
                "or in one of their messages (internal notes included), ignoring case and "
                "accents; words of three letters or more also match as the start of a longer "
                "word. Quotes, '*', '-', 'OR' and the like are read as plain text.",
                {
                    "type": "string",
                    "maxLength": 200,
                },
            ),
            LIMIT,
            CURSOR,
        ),
        errors=(400,),
    ),
    Operation(
        "GET",
        "/tickets/{reference}",
        "get_ticket",
        "tickets",
        "A ticket with its contact, messages and history",
        TicketDetail,
        description="Outbound messages carry their outbox state and reason, so staff see why a "
        "reply has not gone out yet.",
        params=(REFERENCE,),
        errors=TICKET_ERRORS,
    ),
    Operation(
        "POST",
        "/tickets/{reference}/replies",
        "reply_to_ticket",
        "tickets",
        "Reply to the citizen",
        MessageOut,
        status=201,
        description="Queues the reply in the outbox, addressed to the ticket's reply channel and "
        "address, or with 'channel' to the contact's identity for that channel (422 if the "
        "contact has none). A new ticket becomes open unless 'status' asks otherwise; the status "
        "change follows the rules of POST /tickets/{reference}/status. A closed ticket must be "
        "reopened first (409).\n\n"
        f"'attachments' carries up to {MAX_REPLY_ATTACHMENTS} files, base64-encoded; they are "
        "stored with the reply and listed on it, and e-mail sends them as attachments. Too many "
        "files, a file over the size limit, invalid base64, an unusable file name or media type: "
        "422 naming the field, e.g. 'attachments.0.content_base64'.",
        params=(REFERENCE,),
        body=ReplyRequest,
        errors=(*WRITE_ERRORS, 403, 413),
        error_descriptions={413: "The body is larger than the most files allowed could make it."},
    ),
    Operation(
        "POST",
        "/tickets/{reference}/notes",
        "add_note",
        "tickets",
        "Add an internal note",
        MessageOut,
        status=201,
        description="Notes are for staff only and are never sent to the citizen.",
        params=(REFERENCE,),
        body=NoteRequest,
        errors=(400, 404, 422),
    ),
    Operation(
        "POST",
        "/tickets/{reference}/called-back",
        "record_called_back",
        "tickets",
        "Record that the citizen was phoned back",
        EventOut,
        status=201,
        description="For staff who called the citizen (after a missed call or a voicemail): "
        "leaves a 'called_back' event with the staff member and the optional note. The body "
        "may be left out.",
        params=(REFERENCE,),
        body=CalledBackRequest,
        errors=(400, 404, 422),
    ),
    Operation(
        "POST",
        "/tickets/{reference}/transfer",
        "transfer_ticket",
        "tickets",
        "Transfer to another department",
        TicketSummary,
        description="The reason is required. An agent may hand a ticket to a department outside "
        "their own and then no longer sees it. Unknown department: 422 listing the valid ids; "
        "the same department: 409.",
        params=(REFERENCE,),
        body=TransferRequest,
        errors=WRITE_ERRORS,
    ),
    Operation(
        "POST",
        "/tickets/{reference}/status",
        "change_ticket_status",
        "tickets",
        "Change the status",
        TicketSummary,
        description=describe_transitions()
        + "\n\nA change not in the table, or to the current status, is a 409; an agent "
        "reopening a closed ticket gets a 403.",
        params=(REFERENCE,),
        body=StatusRequest,
        errors=(*WRITE_ERRORS, 403),
    ),
    Operation(
        "POST",
        "/tickets/{reference}/assign",
        "assign_ticket",
        "tickets",
        "Assign to a colleague, or to nobody",
        TicketSummary,
        description="The assignee must be an active agent of the ticket's department, an admin "
        "or an operator (422 not_assignable otherwise); the same assignee again is a 409. "
        "Leaves an 'assigned' event with the previous and the new assignee.",
        params=(REFERENCE,),
        body=AssignRequest,
        errors=WRITE_ERRORS,
    ),
    Operation(
        "POST",
        "/tickets/{reference}/details",
        "change_ticket_details",
        "tickets",
        "Change kind, priority and tags",
        TicketSummary,
        description="Fields left out stay. Each change leaves an event (kind_changed, "
        "priority_changed, tags_changed); nothing to change is a 409. The deadlines set when the "
        "ticket came in stay as they are.",
        params=(REFERENCE,),
        body=DetailsRequest,
        errors=WRITE_ERRORS,
    ),
    Operation(
        "POST",
        "/tickets/{reference}/merge",
        "merge_ticket",
        "tickets",
        "Merge a duplicate ticket into another one",
        TicketMergeOut,
        description="The ticket's messages (with their files and outbox rows) move to 'into', "
        "where they take their place by time. The ticket is closed with a 'merged_into' event "
        "and its pending timers are cancelled; 'into' gets a 'merged' event. A mail answering "
        "one of the moved messages joins 'into'. Both tickets must be visible to the caller "
        "(404 otherwise). 409 already_merged or target_merged; 422 same_ticket.",
        params=(REFERENCE,),
        body=MergeRequest,
        errors=WRITE_ERRORS,
    ),
    Operation(
        "GET",
        "/outbox",
        "list_outbox",
        "outbox",
        "Outbound messages and their sending state",
        OutboxPage,
        description="Admins and operators only. Newest first; 'reason' says why a message is "
        "still pending or why it failed.",
        params=(
            _many("state", "Only rows in these states.", _ref("OutboxState")),
            LIMIT,
            CURSOR,
        ),
        errors=(400, 403),
    ),
    Operation(
        "POST",
        "/outbox/{id}/resend",
        "resend_outbox_message",
        "outbox",
        "Send a message whose delivery is uncertain again",
        OutboxItem,
        description="No body. For a message in state 'uncertain' only (its send was interrupted "
        "or timed out, and the provider could not tell whether it arrived): it goes back to "
        "'pending' and is sent as usual. The ticket's history records who decided.",
        params=(OUTBOX_ID,),
        errors=(404, 409),
        error_descriptions=_SETTLE_ERRORS,
    ),
    Operation(
        "POST",
        "/outbox/{id}/confirm",
        "confirm_outbox_message",
        "outbox",
        "Record that a message whose delivery is uncertain arrived",
        OutboxItem,
        description="No body. For a message in state 'uncertain' only: it becomes 'sent' "
        "without being sent again (say, the citizen confirmed they got it). The ticket's "
        "history records who decided.",
        params=(OUTBOX_ID,),
        errors=(404, 409),
        error_descriptions=_SETTLE_ERRORS,
    ),
    Operation(
        "GET",
        "/quarantine",
        "list_quarantine",
        "quarantine",
        "Input that did not become a ticket, newest first",
        QuarantinePage,
        description="Admins and operators only. Quarantined entries could not be processed; "
        "'error' says why, in full. Ignored ones are not a citizen writing (meldpunt's own mail "
        "come back, a mail loop); replayed ones were quarantined and have been retried. Entries "
        "that were never parsed ('parsed' false) can only be retried by their channel's "
        "connector.",
        params=(
            _many(
                "state",
                "Only entries in these states; quarantined when not given.",
                _ref("JournalState"),
            ),
            LIMIT,
            CURSOR,
        ),
        errors=(400, 403),
    ),
    Operation(
        "GET",
        "/quarantine/{id}/raw",
        "download_quarantined",
        "quarantine",
        "Download the raw payload of an entry",
        None,
        description="Admins and operators only. The bytes as received, with their content type "
        "(message/rfc822 for e-mail), as an attachment: for looking at what came in.",
        params=(JOURNAL_ID,),
        errors=(403, 404),
        error_descriptions={404: "No such entry among those GET /quarantine lists."},
        download="The raw payload, in the content type it was received with.",
    ),
    Operation(
        "POST",
        "/quarantine/{id}/retry",
        "retry_quarantined",
        "quarantine",
        "Process a quarantined entry again",
        RetryResult,
        description="Admins and operators only; no body. Once the cause is fixed (rules, "
        "configuration, a connector upgrade), a parsed entry is submitted to intake again, an "
        "unparsed one goes back to its channel's connector. The entry becomes 'replayed'; a "
        "new failure is a new quarantine entry. 409 when this server cannot retry or the "
        "entry's channel is not enabled or cannot read stored input again.",
        params=(JOURNAL_ID,),
        errors=(403, 404, 409, 503),
        error_descriptions={
            404: "No quarantined entry with this id (a retried one is replayed, not quarantined).",
            409: "The entry cannot be retried here; the message says why.",
        },
    ),
    Operation(
        "GET",
        "/contacts/{id}/events",
        "list_contact_events",
        "contacts",
        "What happened with a citizen outside any ticket, newest first",
        ContactEventList,
        description="Admins and operators only. Today: the calls the front desk answered "
        "(call_answered), with the ticket made of each, if any.",
        params=(CONTACT_ID, LIMIT),
        errors=(400, 403, 404),
        error_descriptions={404: "No contact with this id."},
    ),
    Operation(
        "POST",
        "/contact-events/{id}/ticket",
        "make_ticket_of_contact_event",
        "contacts",
        "Turn a contact event into a ticket",
        ContactEventOut,
        status=201,
        description="Admins and operators only: the front desk registers what a caller wanted. "
        "The ticket is made as for an inbound message (its reference, the routing rules unless "
        "a department is given, answers by SMS to the caller's number) but no acknowledgement "
        "is sent: the citizen was on the phone. A department given is recorded as a "
        "'transferred' event after the 'routed' one. The answer is the event with "
        "ticket_reference set.",
        params=(CONTACT_EVENT_ID,),
        body=ContactEventTicketRequest,
        errors=(400, 403, 404, 409, 422, 503),
        error_descriptions={
            404: "No contact event with this id.",
            409: "The event is already a ticket.",
        },
    ),
    Operation(
        "POST",
        r"/contacts/{id}/merge",
        "merge_contact",
        "contacts",
        "Merge another contact into this one (the same citizen)",
        ContactMergeOut,
        description="The other contact's identities, tickets and contact events move to this "
        "one, which keeps its name and language unless it has none; the other contact is "
        "deleted. Every ticket of both gets a 'contact_merged' event. Admins and operators may "
        "merge any two contacts; an agent only two whose every ticket lies in their "
        "departments (403 when one does not; 404 for a contact without any ticket they see).",
        params=(CONTACT_ID,),
        body=ContactMergeRequest,
        errors=(400, 403, 404, 422),
        error_descriptions={404: "No such contact, or none you may see."},
    ),
    Operation(
        "GET",
        "/stats",
        "get_stats",
        "stats",
        "Statistics over the tickets created in a period",
        Stats,
        description="Counts per channel, kind, department, status and ISO week (UTC), response "
        "times, deadlines, satisfaction and transfers, over the tickets created from 'from' "
        "(included) to 'to' (not included) that match the filters. Agents get statistics of "
        "their own departments only (403 when they ask for another); admins and operators of "
        "all. Departments are the ones the tickets are with now. Compliments count in the "
        "totals but not in response times: they are closed as they arrive.",
        params=(
            Param(
                "from",
                "Start of the period, included: a date (2026-11-01, midnight UTC) or a date-time "
                "with an offset (2026-11-01T08:00:00Z). Default: 30 days before 'to'.",
                {"type": "string"},
            ),
            Param(
                "to",
                "End of the period, not included, written like 'from'. Default: now.",
                {"type": "string"},
            ),
            _many("department", "Only tickets of these department ids.", {"type": "string"}),
            _many("channel", "Only tickets that came in on these channels.", _ref("Channel")),
            _many("kind", "Only tickets of these kinds.", _ref("Kind")),
        ),
        errors=(400, 403),
        error_descriptions={403: "An agent asked for a department outside their own."},
    ),
)

PUBLIC_OPERATIONS = frozenset(op.operation_id for op in OPERATIONS if op.public)


SchemaRefs = Mapping[tuple[Any, JsonSchemaMode], dict[str, Any]]


def _schemas() -> tuple[SchemaRefs, dict[str, Any]]:
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = [(ErrorResponse, "serialization")]
    for op in OPERATIONS:
        if op.body is not None:
            models.append((op.body, "validation"))
        if op.response is not None:
            models.append((op.response, "serialization"))
    refs, definitions = models_json_schema(list(dict.fromkeys(models)), ref_template=REF)
    return refs, definitions.get("$defs", {})


def _json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _operation(op: Operation, refs: SchemaRefs) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "operationId": op.operation_id,
        "tags": [op.tag],
        "summary": op.summary,
    }
    if op.description:
        doc["description"] = op.description
    if op.params:
        doc["parameters"] = [
            {
                "name": p.name,
                "in": p.location,
                "required": p.required,
                "description": p.description,
                "schema": p.schema,
                **({"style": "form", "explode": True} if p.schema.get("type") == "array" else {}),
            }
            for p in op.params
        ]
    if op.body is not None:
        doc["requestBody"] = {
            "required": True,
            "content": _json_content(refs[(op.body, "validation")]),
        }
    responses: dict[str, Any] = {}
    if op.response is not None:
        responses[str(op.status)] = {
            "description": "Created." if op.status == 201 else "OK.",
            "content": _json_content(refs[(op.response, "serialization")]),
        }
    if op.download is not None:
        responses["200"] = {
            "description": op.download,
            "headers": {
                "Content-Disposition": {
                    "description": "attachment, with a file name.",
                    "schema": {"type": "string"},
                }
            },
            "content": {"*/*": {"schema": {}}},
        }
    for status, text in op.extra_responses.items():
        responses[str(status)] = {"description": text, "content": _json_content({"type": "object"})}
    error_statuses = set(op.errors) | (set() if op.public else {401})
    for status in sorted(error_statuses):
        response: dict[str, Any] = {
            "description": op.error_descriptions.get(status, ERROR_DESCRIPTIONS[status]),
            "content": _json_content(refs[(ErrorResponse, "serialization")]),
        }
        if status == 401:
            response["headers"] = {
                "WWW-Authenticate": {
                    "description": "Bearer challenge.",
                    "schema": {"type": "string"},
                }
            }
        responses[str(status)] = response
    doc["responses"] = responses
    if op.public:
        doc["security"] = []
    return doc


def build_document(server_url: str = "/api/v1") -> dict[str, Any]:
    """The OpenAPI 3.1 document, with paths relative to ``server_url``."""
    refs, definitions = _schemas()
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, refs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "meldpunt staff API",
            "version": API_VERSION,
            "description": "Tickets, replies, notes, transfers and status for staff and "
            "integrators. Send 'Authorization: Bearer <token>' (create one with "
            '\'meldpunt token create\'). Errors are {"error": {"code", "message", '
            '"details"}}.',
        },
        "servers": [{"url": server_url}],
        "security": [{SECURITY_SCHEME: []}],
        "tags": [
            {"name": "meta", "description": "Who you are and what exists."},
            {"name": "tickets", "description": "Reading and handling tickets."},
            {"name": "outbox", "description": "Outbound messages waiting or sent."},
            {
                "name": "quarantine",
                "description": "Input that could not become a ticket: read it, retry it.",
            },
            {
                "name": "contacts",
                "description": "What happened with a citizen outside tickets: calls answered.",
            },
            {"name": "stats", "description": "Counts, response times, deadlines, satisfaction."},
        ],
        "paths": paths,
        "components": {
            "schemas": definitions,
            "securitySchemes": {
                SECURITY_SCHEME: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API token from 'meldpunt token create'.",
                }
            },
        },
    }
