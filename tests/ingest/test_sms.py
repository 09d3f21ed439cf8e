"""SMS segment counting: GSM-7 and UCS-2 limits, escapes and surrogate pairs kept whole."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.sms import sms_segments


@pytest.mark.parametrize(
    ("text", "segments"),
    [
        ("", 1),
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        # é, è, à, ä, ö, ü, ñ are in the GSM alphabet; a Flemish text with them stays 7-bit.
        ("Uw aanvraag is ontvangen. Café, één, à la carte." * 3, 1),
        # ë is not: the whole text goes as UCS-2.
        ("ë" * 70, 1),
        ("ë" * 71, 2),
        ("ë" * 134, 2),
        ("ë" * 135, 3),
        # € takes two septets.
        ("€" * 80, 1),
        ("€" * 81, 2),
        # An escape pair is not split: 152 plain + one € does not fit the first part.
        ("a" * 152 + "€" + "a" * 10, 2),
        ("a" * 152 + "€" + "a" * 152, 3),
        # An emoji is two UTF-16 units.
        ("🙂" * 35, 1),
        ("🙂" * 36, 2),
    ],
)
def test_segments(text: str, segments: int) -> None:
    assert sms_segments(text) == segments


@given(st.text(max_size=2000))
def test_segments_grow_with_the_text(text: str) -> None:
    count = sms_segments(text)
    assert count >= 1
    assert sms_segments(text + text) >= count
