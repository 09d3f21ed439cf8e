"""The one place that normalises how citizens are recognised: e-mail addresses and phone numbers.

E-mail addresses are case-folded whole (mailboxes are case-insensitive in practice, and a citizen
who types a capital once must not become a second contact). Phone numbers become E.164, read with
Belgium as the default region, so 0470 12 34 56, +32 470 123456 and whatsapp:+32470123456 are the
same person.
"""

from __future__ import annotations

import re

import phonenumbers

from ingest.model import ContactRef, Identity, IdentityKind

DEFAULT_REGION = "BE"
_EMAIL = re.compile(r"^[^@\s<>(),;:\"\[\]]+@[^@\s<>(),;:\"\[\]]+\.[^@\s<>(),;:\"\[\]]+$")


class InvalidIdentity(ValueError):
    """An address that cannot identify anyone; the text says what is wrong in plain words."""


def normalise_email(value: str) -> str:
    address = value.strip().casefold()
    if len(address) > 254 or not _EMAIL.match(address):
        raise InvalidIdentity(f"'{value.strip()}' is not a valid e-mail address")
    return address


def normalise_phone(value: str, region: str = DEFAULT_REGION) -> str:
    raw = value.strip()
    for prefix in ("whatsapp:", "tel:", "sms:"):
        if raw.lower().startswith(prefix):
            raw = raw[len(prefix) :]
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        raise InvalidIdentity(f"'{value.strip()}' is not a phone number") from None
    if not phonenumbers.is_possible_number(number):
        raise InvalidIdentity(f"'{value.strip()}' is not a possible phone number")
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def normalise_identity(identity: Identity) -> Identity:
    if identity.kind is IdentityKind.EMAIL:
        return Identity(identity.kind, normalise_email(identity.value))
    if identity.kind is IdentityKind.PHONE:
        return Identity(identity.kind, normalise_phone(identity.value))
    value = identity.value.strip()
    if not value:
        raise InvalidIdentity(f"empty {identity.kind.value} id")
    return Identity(identity.kind, value)


def normalise_contact(ref: ContactRef) -> ContactRef:
    """The same reference with every identity normalised and duplicates dropped."""
    seen: dict[tuple[IdentityKind, str], Identity] = {}
    for identity in ref.identities:
        norm = normalise_identity(identity)
        seen.setdefault((norm.kind, norm.value), norm)
    return ContactRef(tuple(seen.values()), ref.display_name, ref.language)
