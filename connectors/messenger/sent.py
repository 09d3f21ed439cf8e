"""What meldpunt sent to each citizen on Messenger, kept to read Meta's receipts.

Messenger's read receipts name no message, only a moment (``watermark``): everything the Page
sent before it was read. Delivery receipts name messages, but not always. So the connector keeps,
per citizen (page-scoped id), the message ids it sent and when, in one connector cursor, and
turns a watermark back into the messages it covers. A long answer goes out as several Messenger
messages; they are all reported under the id the answer was stored with. The same cursor holds
the parts of an answer already sent when a later part failed, so a retry does not send them
twice.

The log is short (``KEEP`` messages per citizen): a receipt for something older is not matched.
It is an aid to staff, not a record: a lost update only means a status stays "sent".
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from connectors.base import CursorStore

KEEP = 50


def _key(psid: str) -> str:
    return f"messenger:psid:{psid}"


class SentLog:
    """The per-citizen log of sent message ids, on top of the connector cursors."""

    def __init__(self, cursors: CursorStore) -> None:
        self._cursors = cursors
        # One read-modify-write at a time in this process: receipts and sends interleave.
        self._lock = asyncio.Lock()

    async def _load(self, psid: str) -> dict[str, Any]:
        value = await self._cursors.load(_key(psid)) or {}
        sent = value.get("sent")
        partial = value.get("partial")
        return {
            "sent": [list(e) for e in sent] if isinstance(sent, list) else [],
            "partial": dict(partial) if isinstance(partial, dict) else {},
        }

    async def partial(self, psid: str, outbox_id: int) -> list[str]:
        """The parts of answer ``outbox_id`` already accepted by Messenger, in order."""
        async with self._lock:
            found = (await self._load(psid))["partial"].get(str(outbox_id), [])
        return [str(mid) for mid in found]

    async def save_partial(self, psid: str, outbox_id: int, mids: list[str]) -> None:
        async with self._lock:
            value = await self._load(psid)
            value["partial"][str(outbox_id)] = list(mids)
            await self._cursors.save(_key(psid), value)

    async def record(
        self, psid: str, outbox_id: int, mids: Iterable[str], provider_id: str, at_ms: int
    ) -> None:
        """Remember the Messenger messages of one answer, stored under ``provider_id``."""
        async with self._lock:
            value = await self._load(psid)
            value["partial"].pop(str(outbox_id), None)
            value["sent"] += [[mid, provider_id, at_ms, "sent"] for mid in mids]
            value["sent"] = value["sent"][-KEEP:]
            await self._cursors.save(_key(psid), value)

    async def delivered(self, psid: str, mids: Iterable[str], watermark: int) -> list[str]:
        """The stored ids to mark delivered: ``mids``, and all sent up to ``watermark``.

        A message id that is not in the log is returned as it is (it may be older than the log).
        """
        wanted = list(mids)
        async with self._lock:
            value = await self._load(psid)
            by_mid = {e[0]: e for e in value["sent"]}
            # A named message stands for its whole answer; an unknown one is passed on.
            found = [str(by_mid[m][1]) if m in by_mid else m for m in wanted]
            named = set(found)
            changed = False
            for entry in value["sent"]:
                if entry[3] != "sent":
                    continue
                if entry[1] in named or int(entry[2]) <= watermark:
                    found.append(str(entry[1]))
                    entry[3], changed = "delivered", True
            if changed:
                await self._cursors.save(_key(psid), value)
        return list(dict.fromkeys(found))

    async def read(self, psid: str, watermark: int) -> list[str]:
        """The stored ids of everything sent up to ``watermark``; they leave the log."""
        async with self._lock:
            value = await self._load(psid)
            covered = [e for e in value["sent"] if int(e[2]) <= watermark]
            if not covered:
                return []
            value["sent"] = [e for e in value["sent"] if int(e[2]) > watermark]
            await self._cursors.save(_key(psid), value)
        return list(dict.fromkeys(str(e[1]) for e in covered))
