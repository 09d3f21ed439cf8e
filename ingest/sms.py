"""How many SMS segments a text costs: what staff see before an answer by SMS goes out.

A text of GSM 03.38 characters only is sent in 7-bit septets: 160 fit in one SMS, 153 per part
once it is split (the rest of each part holds the joining header). Any other character (é is in
the alphabet, but ë, ï, emoji and curly quotes are not) sends the whole text as UCS-2: 70 UTF-16
units, or 67 per part. Characters of the extension table (€, [, ], {, }, ~, ^, |, \\) take two
septets, and neither an escape pair nor a surrogate pair is split across parts.
"""

from __future__ import annotations

GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENSION = frozenset("\f^{}\\[~]|€")

SINGLE_GSM, PART_GSM = 160, 153
SINGLE_UCS2, PART_UCS2 = 70, 67


def _units(text: str) -> tuple[list[int], int, int] | None:
    """Each character's size in septets, or None when the text needs UCS-2."""
    sizes = []
    for char in text:
        if char in GSM_BASIC:
            sizes.append(1)
        elif char in GSM_EXTENSION:
            sizes.append(2)
        else:
            return None
    return sizes, SINGLE_GSM, PART_GSM


def _pack(sizes: list[int], part: int) -> int:
    parts, used = 1, 0
    for size in sizes:
        if used + size > part:
            parts, used = parts + 1, 0
        used += size
    return parts


def sms_segments(text: str) -> int:
    """The number of SMS parts ``text`` is sent in (an empty text still costs one)."""
    gsm = _units(text)
    if gsm is not None:
        sizes, single, part = gsm
    else:
        # A character outside the basic plane is a surrogate pair: two UTF-16 units.
        sizes = [2 if ord(char) > 0xFFFF else 1 for char in text]
        single, part = SINGLE_UCS2, PART_UCS2
    if sum(sizes) <= single:
        return 1
    return _pack(sizes, part)
