"""Builders for normalised messages and a small rule set, shared by the tests."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

from ingest.model import (
    Channel,
    ContactRef,
    Identity,
    IdentityKind,
    InboundMessage,
    Kind,
    Location,
    RawPayload,
    ThreadHints,
)
from meldpunt.yamlsource import load_yaml_text
from router.rules import RuleSet, compile_rules

_ids = itertools.count(1)

DEPARTMENTS = {"front-desk", "technical-service", "environment", "complaints"}

RULES_YAML = """
rules:
  - id: complaints
    when: {kind: complaint}
    then: {department: complaints}
  - id: street-lights
    when: {words: [straatlamp, "lamp*"]}
    then: {department: technical-service, tags: [verlichting]}
  - id: waste
    when: {words: [afval, vuilniszak]}
    then: {department: environment, tags: [afval]}
"""


def sample_rules() -> RuleSet:
    doc = load_yaml_text(RULES_YAML, "routing.yaml")
    return compile_rules(
        doc.data,
        file="routing.yaml",
        line_of=doc.line_of,
        departments=DEPARTMENTS,
        default_department="front-desk",
    )


def inbound(
    text: str = "De straatlamp in de Kerkstraat brandt niet.",
    *,
    channel: Channel = Channel.WEBFORM,
    external_id: str | None = None,
    email: str | None = "burger@example.be",
    phone: str | None = None,
    chat: str | None = None,
    kind: Kind | None = Kind.REPORT,
    subject: str | None = "Straatlamp kapot",
    hints: ThreadHints | None = None,
    received_at: datetime | None = None,
    **extra: Any,
) -> InboundMessage:
    identities = []
    if email:
        identities.append(Identity(IdentityKind.EMAIL, email))
    if phone:
        identities.append(Identity(IdentityKind.PHONE, phone))
    if chat:
        identities.append(Identity(IdentityKind.TELEGRAM, chat))
    return InboundMessage(
        channel=channel,
        external_id=external_id or f"ext-{next(_ids)}",
        sender=ContactRef(tuple(identities), display_name="An Peeters"),
        received_at=received_at or datetime.now(UTC),
        text=text,
        subject=subject,
        kind=kind,
        hints=hints or ThreadHints(),
        raw=RawPayload("application/json", b'{"sample": true}'),
        **extra,
    )


__all__ = ["Location", "inbound", "sample_rules"]
