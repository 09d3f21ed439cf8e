"""The acknowledgement a citizen gets at once: their reference, what happens next, and when.

``TemplatedAcknowledgement`` writes it from the town's templates (``ingest.templates``): in the
citizen's language, in the form of the channel it goes out on, with the kind's own text where the
town wrote one (a complaint names the complaint procedure). It says by when an answer can be
expected, from the first matching deadline policy counted on the town's calendar
(``ingest.deadlines``), and, outside office hours, when the office opens again. Citizens who wrote
by web form or e-mail get a copy of their own words.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import structlog

from ingest.deadlines import Calendar, Duration
from ingest.model import Channel, Kind
from ingest.templates import Notice, TemplateProblem, Templates

log = structlog.get_logger("meldpunt.acknowledge")

# Where the citizen typed a longer text they may want to keep: a copy goes with the receipt.
_COPY_FROM = {Channel.WEBFORM, Channel.EMAIL}


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    subject: str | None
    text: str


@dataclass(frozen=True, slots=True)
class AckRequest:
    """What the acknowledgement of a new ticket is written from."""

    reference: str
    kind: str
    language: str | None
    # The channel the citizen wrote on, and the one the acknowledgement goes out on.
    source: Channel
    channel: Channel
    received_at: datetime
    department: str | None = None
    name: str | None = None
    text: str | None = None
    # When the first answer is due, when intake already knows it (the ticket's deadline).
    expected: datetime | None = None


@dataclass(frozen=True, slots=True)
class DeadlinePolicy:
    """When a first answer and a resolution are due, for some kinds and departments.

    Empty ``kinds`` or ``departments`` match every kind or department.
    """

    name: str
    first_answer: Duration | None = None
    resolution: Duration | None = None
    kinds: tuple[str, ...] = ()
    departments: tuple[str, ...] = ()

    def applies(self, kind: str, department: str | None) -> bool:
        return (not self.kinds or kind in self.kinds) and (
            not self.departments or department in self.departments
        )


def policy_for(
    policies: Sequence[DeadlinePolicy], kind: str, department: str | None
) -> DeadlinePolicy | None:
    """The first policy that applies, in the order the town wrote them."""
    return next((p for p in policies if p.applies(kind, department)), None)


def minimal_acknowledgement(request: AckRequest) -> Acknowledgement:
    """A short plain-language receipt, for when the town has no templates (tests, tools)."""
    reference = request.reference
    if request.language == "fr":
        return Acknowledgement(
            f"Nous avons bien reçu votre message [{reference}]",
            f"Merci. Nous avons bien reçu votre message. Votre numéro est {reference}. "
            "Nous vous répondrons dès que possible.",
        )
    if request.language == "en":
        return Acknowledgement(
            f"We received your message [{reference}]",
            f"Thank you. We received your message. Your reference is {reference}. "
            "We will answer you as soon as we can.",
        )
    return Acknowledgement(
        f"We hebben uw bericht goed ontvangen [{reference}]",
        f"Bedankt. We hebben uw bericht goed ontvangen. Uw nummer is {reference}. "
        "We antwoorden u zo snel mogelijk.",
    )


class TemplatedAcknowledgement:
    """Writes acknowledgements from the town's templates, deadline policies and calendar."""

    def __init__(
        self,
        templates: Templates,
        calendar: Calendar,
        policies: Sequence[DeadlinePolicy],
        *,
        town: Mapping[str, Any],
        departments: Mapping[str, str],
    ) -> None:
        self.templates = templates
        self.calendar = calendar
        self.policies = tuple(policies)
        self.town = dict(town)
        self.departments = dict(departments)

    def expected(self, request: AckRequest) -> datetime | None:
        """When the first answer is due, in the town's time; None without a policy for it."""
        policy = policy_for(self.policies, request.kind, request.department)
        if policy is None or policy.first_answer is None:
            return None
        return self.calendar.deadline(request.received_at, policy.first_answer)

    def __call__(self, request: AckRequest) -> Acknowledgement:
        received = request.received_at
        open_now = self.calendar.is_open(received)
        opens = None if open_now else self.calendar.next_open(received)
        values = {
            "reference": request.reference,
            "name": request.name,
            "town": self.town,
            "department": self.departments.get(request.department or "", ""),
            "expected": (
                request.expected.astimezone(self.calendar.zone)
                if request.expected is not None
                else self.expected(request)
            ),
            "opens": opens.astimezone(self.calendar.zone) if opens else None,
            "message": request.text if request.source in _COPY_FROM else None,
        }
        notice = Notice.ACKNOWLEDGEMENT if open_now else Notice.ACKNOWLEDGEMENT_CLOSED
        if request.kind == Kind.COMPLIMENT.value:
            # A compliment needs no answer: the citizen is thanked and it goes to the team.
            notice = Notice.COMPLIMENT_THANKS
        elif (
            notice is Notice.ACKNOWLEDGEMENT_CLOSED
            and not self.templates.has_kind_text(notice, request.kind, request.language)
            and self.templates.has_kind_text(Notice.ACKNOWLEDGEMENT, request.kind, request.language)
        ):
            # What the kind's own text says (a complaint procedure) matters more than the hour.
            notice = Notice.ACKNOWLEDGEMENT
        try:
            rendered = self.templates.render(
                notice,
                language=request.language,
                channel=request.channel,
                kind=request.kind,
                values=values,
            )
        except TemplateProblem as exc:
            # The citizen still hears that their message arrived; the operator reads why not
            # in the town's words (check-config reports the same before it ever happens).
            log.error("acknowledgement template failed, sent the plain one", problem=str(exc))
            return minimal_acknowledgement(request)
        return Acknowledgement(rendered.subject, rendered.text)


def sample_values(town: Mapping[str, Any], timezone: str) -> dict[str, Any]:
    """Values every notice template may use, for checking the templates before they are used."""
    moment = datetime(2026, 12, 2, 16, 30, tzinfo=ZoneInfo(timezone))
    return {
        "reference": "1750-000001",
        "name": "An Peeters",
        "town": dict(town),
        "department": "Technische dienst",
        "expected": moment,
        "opens": moment,
        "message": "Er ligt glas op het fietspad.",
        "reply": "We hebben het glas opgeruimd.",
        "survey_url": "https://meldpunt.example/survey/example",
        "ombudsman": {"name": "de ombudsdienst", "email": "", "phone": "", "url": ""},
        "score": 2,
        # Only the notices to staff (``STAFF_NOTICES``) use these.
        "subject": "Glas op het fietspad",
        "ticket_url": "https://meldpunt.example/tickets/1750-000001",
        "deadline": "first_answer",
        "due": moment,
        "comment": "Het duurde veel te lang.",
    }
