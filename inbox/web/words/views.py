"""Words of the ticket list's views, counts, full-text search and live updates."""

from __future__ import annotations

from collections.abc import Mapping

WORDS: Mapping[str, Mapping[str, str]] = {"nl": {}, "fr": {}, "en": {}}
