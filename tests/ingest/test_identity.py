"""One citizen, one contact: e-mail addresses and phone numbers in their normal form."""

from __future__ import annotations

import pytest

from ingest.identity import InvalidIdentity, normalise_contact, normalise_email, normalise_phone
from ingest.model import ContactRef, Identity, IdentityKind


@pytest.mark.parametrize(
    "written",
    [
        "0470 12 34 56",
        "+32 470 12 34 56",
        "0032470123456",
        "whatsapp:+32470123456",
        "tel:+32-470-123456",
    ],
)
def test_belgian_mobile_numbers_become_one_e164_number(written: str) -> None:
    assert normalise_phone(written) == "+32470123456"


def test_landlines_and_foreign_numbers() -> None:
    assert normalise_phone("051 65 91 11") == "+3251659111"
    assert normalise_phone("+31 6 12345678") == "+31612345678"


@pytest.mark.parametrize("written", ["12", "hallo", "", "+32 470"])
def test_impossible_numbers_are_refused(written: str) -> None:
    with pytest.raises(InvalidIdentity):
        normalise_phone(written)


def test_email_addresses_are_case_folded_and_checked() -> None:
    assert normalise_email("  An.Peeters@Wingene.BE ") == "an.peeters@wingene.be"
    for bad in ("an@", "an peeters@x.be", "<an@x.be>", "an@x", "a" * 250 + "@x.be"):
        with pytest.raises(InvalidIdentity):
            normalise_email(bad)


def test_a_contact_reference_loses_duplicates_after_normalising() -> None:
    ref = ContactRef(
        (
            Identity(IdentityKind.PHONE, "0470 12 34 56"),
            Identity(IdentityKind.PHONE, "+32470123456"),
            Identity(IdentityKind.EMAIL, "AN@x.be"),
        ),
        display_name="An",
    )
    assert normalise_contact(ref).identities == (
        Identity(IdentityKind.PHONE, "+32470123456"),
        Identity(IdentityKind.EMAIL, "an@x.be"),
    )
