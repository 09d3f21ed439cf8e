"""Words of registering a ticket by hand: a desk visit, a phone call, a field report."""

from __future__ import annotations

from collections.abc import Mapping

WORDS: Mapping[str, Mapping[str, str]] = {
    "nl": {"register_ticket": "Nieuw ticket"},
    "fr": {"register_ticket": "Nouveau ticket"},
    "en": {"register_ticket": "New ticket"},
}
