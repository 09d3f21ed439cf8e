"""The web inbox's ticket list: views with counts, filters, sorting, full-text search, live updates.

The list is a GET form, so a filtered list is a link one can keep. Live updates poll the
database, not the process: ``/inbox/changes`` answers with when a ticket the staff member may
see last changed (one index lookup), and only when that moved does the page fetch the list's
rows again (``/inbox/rows``, the same rendering as the page). That works with any number of
meldpunt processes on one database, and the page stays a plain list without JavaScript.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from inbox import tickets
from inbox.auth import Staff
from inbox.errors import ApiError
from inbox.web.pages import SECURITY_HEADERS, Part
from inbox.web.sessions import SignedIn
from inbox.web.texts import label, texts
from ingest.model import Channel, Kind, TicketStatus
from store.models import User

if TYPE_CHECKING:
    pass

PAGE_SIZE = 50
MAX_SEARCH_LENGTH = 200
MAX_TAG_LENGTH = 64
# The status filter's values besides one status: open work (the default) and every status.
OPEN_WORK, ANY_STATUS = "", "all"


@dataclass(frozen=True, slots=True)
class Colleague:
    id: int
    name: str


@dataclass(slots=True)
class ListRequest:
    """What the list's address asks for, every value checked; anything else is ignored."""

    view: str
    search: str = ""
    status: str = OPEN_WORK
    kind: str = ""
    channel: str = ""
    department: str = ""
    assignee: str = ""
    tag: str = ""
    created_from: date | None = None
    created_to: date | None = None
    sort: str = "newest"
    overdue: bool = False
    cursor: str | None = None
    kept: list[tuple[str, str]] = field(default_factory=list)


def _date(value: str) -> date | None:
    """A day from a date field; far-off years are ignored (their midnight would not fit in a
    datetime once moved to UTC)."""
    try:
        day = date.fromisoformat(value)
    except ValueError:
        return None
    return day if 1900 <= day.year <= 2999 else None


class ListViews(Part):
    """The ticket list at ``/``, its rows as a fragment and the changes it polls for."""

    def routes(self) -> list[web.AbstractRouteDef]:
        staff_only = self.inbox.staff_only
        return [
            web.get("/", staff_only(self.ticket_list)),
            web.get("/inbox/rows", staff_only(self.rows)),
            web.get("/inbox/changes", staff_only(self.changes)),
        ]

    # Reading the request

    def _visible_departments(self, staff: Staff) -> dict[str, str]:
        departments = self.inbox.departments
        if staff.sees_all:
            return dict(departments)
        return {k: v for k, v in departments.items() if k in staff.departments}

    def _default_view(self, staff: Staff) -> str:
        return "departments" if staff.departments or not staff.sees_all else "all"

    def _read(
        self, query: Mapping[str, str], staff: Staff, colleagues: list[Colleague]
    ) -> ListRequest:
        views = tickets.available_views(staff)
        view = query.get("view", "")
        wanted = ListRequest(view=view if view in views else self._default_view(staff))
        wanted.search = query.get("q", "").strip()[:MAX_SEARCH_LENGTH]
        status = query.get("status", "")
        if status in set(TicketStatus) or status == ANY_STATUS:
            wanted.status = status
        wanted.kind = query.get("kind", "") if query.get("kind") in set(Kind) else ""
        wanted.channel = query.get("channel", "") if query.get("channel") in set(Channel) else ""
        department = query.get("department", "")
        if department in self._visible_departments(staff):
            wanted.department = department
        assignee = query.get("assignee", "")
        if assignee in ("me", "none") or assignee in {str(c.id) for c in colleagues}:
            wanted.assignee = assignee
        wanted.tag = query.get("tag", "").strip()[:MAX_TAG_LENGTH]
        wanted.created_from = _date(query.get("from", ""))
        wanted.created_to = _date(query.get("to", ""))
        sort = query.get("sort", "")
        wanted.sort = sort if sort in tickets.SORTS else "newest"
        wanted.overdue = query.get("overdue") == "1"
        wanted.cursor = query.get("cursor") or None
        wanted.kept = [
            (key, value)
            for key, value in (
                ("view", wanted.view if view else ""),
                ("q", wanted.search),
                ("status", wanted.status),
                ("kind", wanted.kind),
                ("channel", wanted.channel),
                ("department", wanted.department),
                ("assignee", wanted.assignee),
                ("tag", wanted.tag),
                ("from", wanted.created_from.isoformat() if wanted.created_from else ""),
                ("to", wanted.created_to.isoformat() if wanted.created_to else ""),
                ("sort", wanted.sort if wanted.sort != "newest" else ""),
                ("overdue", "1" if wanted.overdue else ""),
            )
            if value
        ]
        return wanted

    def _local_midnight(self, day: date) -> datetime:
        return datetime.combine(day, time(0), tzinfo=self.inbox.zone).astimezone(UTC)

    def _filter(self, wanted: ListRequest, staff: Staff) -> tickets.TicketFilter:
        if wanted.status == OPEN_WORK:
            statuses: tuple[str, ...] = tickets.OPEN_STATUSES
        elif wanted.status == ANY_STATUS:
            statuses = ()
        else:
            statuses = (wanted.status,)
        assignees: tuple[int, ...] = ()
        if wanted.assignee == "me":
            assignees = (staff.id,)
        elif wanted.assignee.isdigit():
            assignees = (int(wanted.assignee),)
        return tickets.TicketFilter(
            statuses=statuses,
            kinds=(wanted.kind,) if wanted.kind else (),
            channels=(wanted.channel,) if wanted.channel else (),
            departments=(wanted.department,) if wanted.department else (),
            search=wanted.search or None,
            overdue=True if wanted.overdue else None,
            assignees=assignees,
            unassigned=wanted.assignee == "none",
            tags=(wanted.tag,) if wanted.tag else (),
            created_from=(
                self._local_midnight(wanted.created_from) if wanted.created_from else None
            ),
            # "To" a day includes that whole day in the town's time zone.
            created_before=(
                self._local_midnight(wanted.created_to + timedelta(days=1))
                if wanted.created_to
                else None
            ),
            view=wanted.view,
        )

    async def _colleagues(self, session: AsyncSession, staff: Staff) -> list[Colleague]:
        """Who tickets in the staff member's sight can be assigned to: active users sharing a
        department with them (everyone, for those who see all), by name."""
        users = await session.scalars(sa.select(User).where(col(User.active)))
        found = [
            Colleague(user.id, user.name or user.email)
            for user in users
            if user.id is not None
            and user.id != staff.id
            and (staff.sees_all or staff.departments & set(user.departments))
        ]
        return sorted(found, key=lambda c: c.name.lower())

    # Pages

    async def _list_values(self, request: web.Request, signed_in: SignedIn) -> dict[str, Any]:
        staff = signed_in.staff
        async with self.inbox.db.session() as session:
            colleagues = await self._colleagues(session, staff)
            wanted = self._read(request.query, staff, colleagues)
            try:
                page = await tickets.list_tickets(
                    session,
                    staff,
                    self.inbox.departments,
                    self._filter(wanted, staff),
                    PAGE_SIZE,
                    wanted.cursor,
                    wanted.sort,
                )
            except ApiError:
                # A cursor from another sort, or made up: the first page instead.
                raise web.HTTPSeeOther("/?" + urlencode(wanted.kept)) from None
            counts = await tickets.view_counts(session, staff)
            latest = await tickets.latest_change(session, staff)
        return {
            "page": page,
            "wanted": wanted,
            "colleagues": colleagues,
            "counts": counts,
            "marker": _marker(latest),
            "staff_views": tickets.available_views(staff),
            "departments": self._visible_departments(staff),
            "options": {
                "status": [s.value for s in TicketStatus],
                "kind": [k.value for k in Kind],
                "channel": [c.value for c in Channel],
                "sort": list(tickets.SORTS),
            },
            "view_links": {view: "/?" + urlencode([("view", view)]) for view in tickets.VIEWS},
            "rows_link": "/inbox/rows?" + urlencode(wanted.kept),
            "first_link": "/?" + urlencode(wanted.kept),
            "next_link": (
                "/?" + urlencode([*wanted.kept, ("cursor", page.next_cursor)])
                if page.next_cursor
                else None
            ),
        }

    async def ticket_list(self, request: web.Request, signed_in: SignedIn) -> web.Response:
        """The tickets of the chosen view (my departments by default), open work first unless
        the status filter says otherwise, narrowed by the filter form."""
        values = await self._list_values(request, signed_in)
        return self.inbox.render(request, "web/list.html", signed_in=signed_in, **values)

    async def rows(self, request: web.Request, signed_in: SignedIn) -> web.Response:
        """The list's results alone (the same block of the same template), for live updates."""
        values = await self._list_values(request, signed_in)
        lang = self.inbox.lang(request)
        template = self.inbox.env.get_template("web/list.html")
        context = template.new_context(
            {"t": texts(lang), "label": lambda value: label(lang, value), "lang": lang, **values}
        )
        html = "".join(template.blocks["results"](context))
        return web.Response(text=html, content_type="text/html", headers=SECURITY_HEADERS)

    async def changes(self, request: web.Request, signed_in: SignedIn) -> web.Response:
        """``{"marker", "changed", "counts"}``: whether a ticket the staff member may see changed
        since ``since`` (the marker the page or the last answer gave); the counts of the views
        only when something did, so an idle list costs one index lookup per poll."""
        async with self.inbox.db.session() as session:
            marker = _marker(await tickets.latest_change(session, signed_in.staff))
            changed = marker != request.query.get("since", "")
            counts = await tickets.view_counts(session, signed_in.staff) if changed else None
        body: dict[str, Any] = {"marker": marker, "changed": changed, "counts": counts}
        return web.Response(
            text=json.dumps(body), content_type="application/json", headers=SECURITY_HEADERS
        )


def _marker(latest: datetime | None) -> str:
    """The moment of the last change, as text safe in an address (no "+")."""
    return latest.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ") if latest else ""
