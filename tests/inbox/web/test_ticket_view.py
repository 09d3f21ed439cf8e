"""The ticket page of the web inbox: what staff read, and who may read it.

The whole service in-process (``town`` from tests/inbox/web/conftest.py), on SQLite and
PostgreSQL; tickets arrive through the real intake.
"""

from __future__ import annotations

from tests.inbox.web.conftest import Town


async def test_staff_read_the_conversation_and_history_of_their_department(town: Town) -> None:
    light = await town.submit(
        "De straatlamp voor nummer 12 brandt niet.", "Straatlamp", "mie@example.be"
    )
    await town.add_user("td@wingene.example", "agent", ("technical-service",))
    staff = await town.signed_in("td@wingene.example")
    response = await staff.get(f"/tickets/{light}")
    assert response.status == 200
    html = staff.html
    assert f"{light} — Straatlamp" in html
    assert "De straatlamp voor nummer 12 brandt niet." in html
    assert "mie@example.be" in html
    assert "Technische dienst" in html
    # The acknowledgement the citizen got is part of the conversation, and the history says
    # how the ticket came and was routed.
    assert "We hebben uw bericht" in html
    assert "Doorgestuurd naar Technische dienst" in html
    assert response.headers["Cache-Control"] == "no-store"
    # The list links to it.
    await staff.get("/")
    assert f'href="/tickets/{light}"' in staff.html


async def test_another_departments_ticket_is_not_found_even_by_its_address(town: Town) -> None:
    waste = await town.submit(
        "De vuilniszakken zijn niet opgehaald in de Kerkstraat.", "Afval", "jan@example.be"
    )
    await town.add_user("td@wingene.example", "agent", ("technical-service",))
    staff = await town.signed_in("td@wingene.example")
    assert (await staff.get(f"/tickets/{waste}")).status == 404
    assert "vuilniszakken" not in staff.html
    # Exactly as a reference that does not exist.
    assert (await staff.get("/tickets/1750-999999")).status == 404
    # Without a session the page asks to sign in first, and says nothing of the ticket.
    stranger = town.visitor()
    response = await stranger.get(f"/tickets/{waste}")
    assert response.status == 303
    assert "vuilniszakken" not in stranger.html


async def test_what_a_citizen_wrote_is_shown_as_text_never_as_markup(town: Town) -> None:
    sneaky = await town.submit(
        'Kapotte lamp <script>alert("x")</script><img src="https://tracker.example/p.gif">',
        "<b>Straatlamp</b>",
        "mie@example.be",
    )
    await town.add_user("beheer@wingene.example", "operator", ())
    staff = await town.signed_in("beheer@wingene.example")
    assert (await staff.get(f"/tickets/{sneaky}")).status == 200
    html = staff.html
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert '<img src="https://tracker.example' not in html
    assert "&lt;b&gt;Straatlamp&lt;/b&gt;" in html
