"""Words of the conversation on the ticket page: sanitised HTML mail, attachments, routing, the
citizen's other tickets.
"""

from __future__ import annotations

from collections.abc import Mapping

WORDS: Mapping[str, Mapping[str, str]] = {"nl": {}, "fr": {}, "en": {}}
