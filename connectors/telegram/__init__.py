"""Telegram through a bot: updates arrive on a webhook, answers go out through the Bot API.

python-telegram-bot 22 warns on every read of a duration (a voice note's length) and on every
flood-control error unless ``PTB_TIMEDELTA`` opts in to the ``timedelta`` form it will use from
its next major version on. meldpunt reads durations as ``timedelta`` (``parse.seconds``), so it
opts in here, before any of this package's modules use the library.
"""

from __future__ import annotations

import os

os.environ.setdefault("PTB_TIMEDELTA", "true")
