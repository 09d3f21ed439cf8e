"""Words of the reply box: answer on a channel of the contact, canned answers, notes, resolve with
an answer.
"""

from __future__ import annotations

from collections.abc import Mapping

WORDS: Mapping[str, Mapping[str, str]] = {"nl": {}, "fr": {}, "en": {}}
