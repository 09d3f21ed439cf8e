"""The web inbox: work actions on a ticket: assign, transfer, kind, priority, tags, status,
merging.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from inbox.schemas import TicketDetail
from inbox.web.sessions import SignedIn

if TYPE_CHECKING:
    from inbox.web.pages import WebInbox


class WorkActions:
    def __init__(self, inbox: WebInbox) -> None:
        self.inbox = inbox

    def routes(self) -> list[web.AbstractRouteDef]:
        return []

    async def ticket_context(
        self, session: AsyncSession, signed_in: SignedIn, detail: TicketDetail
    ) -> dict[str, Any]:
        return {}
