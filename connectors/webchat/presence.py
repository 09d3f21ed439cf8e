"""What the web chat needs to work across processes: shared presence and notices between them.

A visitor's socket lives in the web process that accepted it; the dispatcher may run in another
(a worker). The wiring hands the connector a ``SharedPresence`` (``store.presence`` implements
it on the database) when several processes may serve one town; without one the chat is what it
is in a single process. Notices are small JSON texts: "an answer to this visitor was sent" and
"this visitor wrote", so the process holding the visitor's other tabs can show it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol


class SharedPresence(Protocol):
    """Presence of chat visitors across processes, and notices between those processes."""

    holder: str

    async def here(self, visitors: Collection[str], ttl: timedelta) -> None:
        """Record that this process holds sockets of ``visitors``, until now + ``ttl``."""
        ...

    async def gone(self, visitors: Collection[str], grace: timedelta) -> None:
        """Record that this process's last socket of each visitor closed; kept ``grace`` more."""
        ...

    async def present(self, visitor: str) -> bool:
        """Whether any process holds a socket of ``visitor`` (or did, a grace ago at most)."""
        ...

    async def expire(self) -> int:
        """Forget visitors of processes that stopped renewing them."""
        ...

    async def sent_since(
        self, visitors: Collection[str], since: datetime
    ) -> list[tuple[str, int, bool]]:
        """Answers sent to ``visitors`` at ``since`` or later: (visitor, outbox id, delivered)."""
        ...

    async def announce(self, payload: str) -> None:
        """Tell every listening process ``payload``."""
        ...

    async def listen(
        self, on_notice: Callable[[str], None], on_listening: Callable[[], None]
    ) -> None:
        """Hand every notice to ``on_notice`` until cancelled; ``on_listening`` on each start."""
        ...


@dataclass(frozen=True, slots=True)
class Notice:
    """An answer (``outbox_id``) or a visitor's own message (``client_id``) to show live."""

    visitor: str
    outbox_id: int | None = None
    client_id: str | None = None
    # An answer's buttons (a survey's 1 to 5): offered live only, so they travel with it.
    choices: tuple[str, ...] = ()

    def encode(self) -> str:
        body: dict[str, object] = {"visitor": self.visitor}
        if self.outbox_id is not None:
            body["outbox"] = self.outbox_id
            if self.choices:
                body["choices"] = list(self.choices)
        if self.client_id is not None:
            body["client_id"] = self.client_id
        return json.dumps(body, separators=(",", ":"))


def decode_notice(payload: str) -> Notice | None:
    """The notice in ``payload``, or None for anything this version does not understand."""
    try:
        body = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(body, dict) or not isinstance(visitor := body.get("visitor"), str):
        return None
    outbox = body.get("outbox")
    client_id = body.get("client_id")
    if isinstance(outbox, int) and not isinstance(outbox, bool):
        choices = body.get("choices")
        if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
            choices = []
        return Notice(visitor, outbox_id=outbox, choices=tuple(choices))
    if isinstance(client_id, str):
        return Notice(visitor, client_id=client_id)
    return None


__all__ = ["Notice", "SharedPresence", "decode_notice"]
