"""The web inbox: work actions on a ticket: assign, transfer, kind, priority, tags, status,
merging.

Each action is a form on the ticket page posting to ``/tickets/{reference}/actions/<name>``
(with the session's CSRF token, checked by ``staff_only``), done by the business functions in
``inbox.tickets`` and ``inbox.work`` in one transaction, and answered with a redirect back to
the ticket (POST, redirect, GET) that says what happened at the top; a refused form shows the
ticket page again with what was wrong and what was typed. A ticket the staff member may not see
is "not found", exactly as on the ticket page.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from aiohttp import web
from multidict import MultiDictProxy
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from inbox import tickets, work
from inbox.errors import ApiError, NotFoundError
from inbox.schemas import StatusRequest, TicketDetail, TransferRequest
from inbox.web.pages import Part
from inbox.web.sessions import SignedIn
from inbox.web.texts import label, texts
from ingest.model import Kind, Priority, TicketStatus
from store.models import Ticket, User

Form = MultiDictProxy[Any]
REASON_LIMIT = 500
# Where a refused form leaves what was typed, for the ticket page shown again.
KEPT = web.RequestKey("actions_kept", dict[str, str])


@dataclass(frozen=True, slots=True)
class _Done:
    """What an action did: the notice, and where to go when not back to the same ticket."""

    notice: str
    reference: str | None = None
    to_list: bool = False


class _FormError(Exception):
    """A form that cannot be done as filled in; the text is for the staff member."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


# The error code of a business function → the key of the words explaining it.
_ERROR_WORDS: Mapping[str, str] = {
    "unchanged": "actions_error_unchanged",
    "not_assignable": "actions_error_not_assignable",
    "unknown_department": "actions_error_unknown_department",
    "reason_required": "actions_error_reason_required",
    "invalid_transition": "actions_error_invalid_transition",
    "invalid_tags": "actions_error_invalid_tags",
    "same_ticket": "actions_error_same_ticket",
    "already_merged": "actions_error_already_merged",
    "target_merged": "actions_error_target_merged",
    "same_contact": "actions_error_same_contact",
}


def _text(form: Form, name: str, limit: int = 200) -> str:
    value = form.get(name, "")
    return value.strip()[:limit] if isinstance(value, str) else ""


class WorkActions(Part):
    def routes(self) -> list[web.AbstractRouteDef]:
        actions: dict[str, Callable[[web.Request, SignedIn], Awaitable[web.StreamResponse]]] = {
            "assign": self.assign,
            "transfer": self.transfer,
            "details": self.details,
            "status": self.status,
            "merge": self.merge,
            "merge-contact": self.merge_contact,
        }
        return [
            web.post(f"/tickets/{{reference}}/actions/{name}", self.inbox.staff_only(handler))
            for name, handler in actions.items()
        ]

    # The ticket page

    async def ticket_context(
        self,
        request: web.Request,
        session: AsyncSession,
        signed_in: SignedIn,
        detail: TicketDetail,
    ) -> dict[str, Any]:
        staff = signed_in.staff
        assignee_id = await session.scalar(
            sa.select(col(Ticket.assignee_id)).where(col(Ticket.reference) == detail.reference)
        )
        assignee = await session.get(User, assignee_id) if assignee_id is not None else None
        current = TicketStatus(detail.status)
        statuses = (
            []
            if current == TicketStatus.CLOSED and not staff.sees_all
            else [s for s in TicketStatus if s in tickets.TRANSITIONS[current]]
        )
        merged_into = next(
            (
                str(e.data.get("into"))
                for e in reversed(detail.events)
                if e.type == work.MERGED_INTO
            ),
            None,
        )
        departments = self.inbox.departments
        values: dict[str, Any] = {
            "actions": {
                "assignee": (assignee.name or assignee.email) if assignee else None,
                "assigned_to_me": assignee_id == staff.id,
                "colleagues": [
                    c
                    for c in await work.colleagues(session, detail.department)
                    if c.id != assignee_id
                ],
                "departments": [(k, v) for k, v in departments.items() if k != detail.department],
                "kinds": [k.value for k in Kind],
                "priorities": [p.value for p in Priority],
                "statuses": [s.value for s in statuses],
                "merged_into": merged_into,
                "merged_from": [
                    str(e.data.get("from")) for e in detail.events if e.type == work.MERGED
                ],
                "form": {
                    **dict.fromkeys(("status", "reason", "department", "into", "other"), ""),
                    "tags": ", ".join(detail.tags),
                },
            }
        }
        values["actions"]["form"].update(request.get(KEPT, {}))
        return values

    # Actions

    async def _act(
        self,
        request: web.Request,
        signed_in: SignedIn,
        action: Callable[[AsyncSession, Form, Mapping[str, str]], Awaitable[_Done]],
        kept: tuple[str, ...] = (),
    ) -> web.StreamResponse:
        """Run ``action`` in one transaction and go back to the ticket (or where the action
        says), with its notice or the error and the values to fill in again."""
        reference = request.match_info["reference"]
        t = texts(self.inbox.lang(request))
        form = await request.post()
        target = f"/tickets/{quote(reference, safe='')}#acties"
        try:
            async with self.inbox.db.session() as session:
                # Not found as the ticket page would be: guessed references learn nothing.
                await tickets.visible_ticket(session, signed_in.staff, reference)
                done = await action(session, form, t)
        except NotFoundError:
            raise self.inbox.not_found() from None
        except (_FormError, ApiError) as problem:
            error = problem.text if isinstance(problem, _FormError) else self._explain(problem, t)
            request[KEPT] = {k: _text(form, k, REASON_LIMIT) for k in kept}
            return await self.inbox.ticket_page(request, signed_in, status=422, error=error)
        if done.to_list:
            # The ticket left the staff member's departments: its page would be a 404.
            target = "/"
        elif done.reference is not None:
            target = f"/tickets/{quote(done.reference, safe='')}"
        raise self.inbox.after_post(target, done.notice)

    def _explain(self, problem: ApiError, t: Mapping[str, str]) -> str:
        details = problem.details if isinstance(problem.details, dict) else {}
        if problem.code == "forbidden":
            key = (
                "actions_error_contact_scope"
                if "contact_id" in details
                else "actions_error_forbidden_reopen"
            )
            return t[key]
        words = _ERROR_WORDS.get(problem.code)
        if words is None:
            return problem.message
        return t[words].format(into=details.get("into", ""))

    async def assign(self, request: web.Request, signed_in: SignedIn) -> web.StreamResponse:
        async def action(session: AsyncSession, form: Form, t: Mapping[str, str]) -> _Done:
            choice = _text(form, "assignee")
            if choice == "me":
                assignee: int | None = signed_in.staff.id
            elif choice in ("", "none"):
                assignee = None
            elif choice.isdigit() and int(choice) <= tickets.MAX_ROW_ID:
                assignee = int(choice)
            else:
                raise _FormError(t["actions_error_bad_choice"])
            await work.assign(session, signed_in.staff, request.match_info["reference"], assignee)
            if assignee is None:
                return _Done(t["actions_done_unassigned"])
            user = await session.get_one(User, assignee)
            return _Done(t["actions_done_assigned"].format(name=user.name or user.email))

        return await self._act(request, signed_in, action)

    async def transfer(self, request: web.Request, signed_in: SignedIn) -> web.StreamResponse:
        departments = self.inbox.departments

        async def action(session: AsyncSession, form: Form, t: Mapping[str, str]) -> _Done:
            department = _text(form, "department", 64)
            reason = _text(form, "reason", 10_000)
            if department not in departments:
                raise _FormError(t["actions_error_unknown_department"])
            if not reason:
                raise _FormError(t["actions_error_reason_needed"])
            if len(reason) > REASON_LIMIT:
                reason = reason[:REASON_LIMIT]
            reference = request.match_info["reference"]
            await tickets.transfer(
                session,
                signed_in.staff,
                departments,
                reference,
                TransferRequest(department=department, reason=reason),
            )
            name = departments[department]
            if not signed_in.staff.can_see(department):
                away = t["actions_done_transferred_away"]
                return _Done(away.format(reference=reference, department=name), to_list=True)
            return _Done(t["actions_done_transferred"].format(department=name))

        return await self._act(request, signed_in, action, ("department", "reason"))

    async def details(self, request: web.Request, signed_in: SignedIn) -> web.StreamResponse:
        async def action(session: AsyncSession, form: Form, t: Mapping[str, str]) -> _Done:
            kind = _text(form, "kind")
            priority = _text(form, "priority")
            if kind not in set(Kind) or priority not in set(Priority):
                raise _FormError(t["actions_error_bad_choice"])
            await work.change_details(
                session,
                signed_in.staff,
                request.match_info["reference"],
                kind=Kind(kind),
                priority=Priority(priority),
                tags=work.normalise_tags(_text(form, "tags", 2000)),
            )
            return _Done(t["actions_done_details"])

        return await self._act(request, signed_in, action, ("tags",))

    async def status(self, request: web.Request, signed_in: SignedIn) -> web.StreamResponse:
        lang = self.inbox.lang(request)

        async def action(session: AsyncSession, form: Form, t: Mapping[str, str]) -> _Done:
            status = _text(form, "status")
            if status not in set(TicketStatus):
                raise _FormError(t["actions_error_bad_choice"])
            reason = _text(form, "reason", REASON_LIMIT) or None
            await tickets.change_status(
                session,
                signed_in.staff,
                self.inbox.departments,
                request.match_info["reference"],
                StatusRequest(status=TicketStatus(status), reason=reason),
                followup=self.inbox.context.followup,
            )
            return _Done(t["actions_done_status"].format(status=label(lang, status)))

        return await self._act(request, signed_in, action, ("status", "reason"))

    async def merge(self, request: web.Request, signed_in: SignedIn) -> web.StreamResponse:
        async def action(session: AsyncSession, form: Form, t: Mapping[str, str]) -> _Done:
            into = _text(form, "into", 32).upper()
            await self._other_ticket(session, signed_in, into, t)
            merged = await work.merge_tickets(
                session,
                signed_in.staff,
                self.inbox.departments,
                request.match_info["reference"],
                into,
            )
            # The staff member goes on with the ticket that holds everything now.
            text = t["actions_done_merged"].format(source=merged.source, count=merged.messages)
            return _Done(text, reference=merged.target)

        return await self._act(request, signed_in, action, ("into",))

    async def merge_contact(self, request: web.Request, signed_in: SignedIn) -> web.StreamResponse:
        async def action(session: AsyncSession, form: Form, t: Mapping[str, str]) -> _Done:
            other_reference = _text(form, "other", 32).upper()
            staff = signed_in.staff
            this = await tickets.visible_ticket(session, staff, request.match_info["reference"])
            other = await self._other_ticket(session, signed_in, other_reference, t)
            if other.contact_id == this.contact_id:
                raise _FormError(t["actions_error_same_contact"])
            merged = await work.merge_contacts(session, staff, this.contact_id, other.contact_id)
            return _Done(t["actions_done_contacts"].format(count=len(merged.tickets)))

        return await self._act(request, signed_in, action, ("other",))

    async def _other_ticket(
        self, session: AsyncSession, signed_in: SignedIn, reference: str, t: Mapping[str, str]
    ) -> Ticket:
        """The other ticket a merge names; one the staff member may not see is "no ticket"."""
        if not reference:
            raise _FormError(t["actions_error_no_ticket"].format(reference=""))
        try:
            return await tickets.visible_ticket(session, signed_in.staff, reference)
        except NotFoundError:
            raise _FormError(t["actions_error_no_ticket"].format(reference=reference)) from None
