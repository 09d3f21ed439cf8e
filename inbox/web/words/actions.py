"""Words of work actions on a ticket: assign, transfer, kind, priority, tags, status, merging."""

from __future__ import annotations

from collections.abc import Mapping

WORDS: Mapping[str, Mapping[str, str]] = {"nl": {}, "fr": {}, "en": {}}
