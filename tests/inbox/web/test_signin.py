"""Signing in to the staff web inbox, over HTTP against the whole service.

Each test runs the assembled service (sample configuration) on SQLite and on PostgreSQL, with a
clock the test moves by hand. A ``Visitor`` keeps its own cookies, like one browser, so a test can
have the same staff member signed in twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import re
from datetime import timedelta
from http.cookies import SimpleCookie
from pathlib import Path

import aiohttp
import pytest
import sqlalchemy as sa
from sqlmodel import col
from yarl import URL

from inbox.web.sessions import COOKIE
from meldpunt.app import RUNTIME, create_app
from store.models import User, WebSession
from store.users import create_user
from tests.conftest import rows
from tests.inbox.web.conftest import PASSWORD, ClientFactory, Town, Visitor
from tests.service import sample_config

WRONG_LOGIN = "Het e-mailadres of het wachtwoord klopt niet."
LOCKED = "Te veel mislukte pogingen. Probeer opnieuw na {time}."
# The test clock starts at 10:00 UTC on a Monday in November: 11:00 in Brussels.
LOCKED_UNTIL_1115 = LOCKED.format(time="11:15")


def sends_to_sign_in(response: aiohttp.ClientResponse, then: str = "/") -> bool:
    """Whether ``response`` sends the browser to the sign-in page, to come back to ``then``."""
    # aiohttp writes the Location through yarl, which leaves "/" unescaped in a query:
    # "/login?next=/" is the same address as "/login?next=%2F".
    if response.status != 303:
        return False
    target = URL(response.headers["Location"])
    return target.path == "/login" and target.query.get("next") == then


def stays_on_site(location: str) -> bool:
    """Whether a browser sent to ``location`` stays on this site, read as browsers read it."""
    # Browsers drop tabs and line breaks from an address and take "\\" for "/" (WHATWG URL).
    seen = re.sub(r"[\t\n\r]", "", location).replace("\\", "/")
    here = URL("http://meldpunt.wingene.example/login")
    there = here.join(URL(seen))
    return (there.scheme, there.host, there.port) == (here.scheme, here.host, here.port)


def session_cookie(response: aiohttp.ClientResponse) -> SimpleCookie | None:
    """The Set-Cookie of the session cookie, parsed, or None when the response sets none."""
    for header in response.headers.getall("Set-Cookie", []):
        cookie = SimpleCookie()
        cookie.load(header)
        if COOKIE in cookie:
            return cookie
    return None


# --- signing in ------------------------------------------------------------------------------


async def test_the_inbox_sends_a_visitor_without_a_session_to_sign_in(town: Town) -> None:
    visitor = town.visitor()
    response = await visitor.get("/")
    assert sends_to_sign_in(response)

    form = await visitor.get("/login?next=%2F")
    assert form.status == 200
    assert '<input type="hidden" name="next" value="/">' in visitor.html
    assert 'name="email"' in visitor.html and 'name="password"' in visitor.html


async def test_the_right_password_sets_a_safe_cookie_and_goes_to_next(town: Town) -> None:
    visitor = town.visitor()
    response = await visitor.sign_in("AN@Wingene.example ", next_page="/account/password")
    assert response.status == 303
    assert response.headers["Location"] == "/account/password"
    cookie = session_cookie(response)
    assert cookie is not None
    morsel = cookie[COOKIE]
    assert morsel["httponly"] is True
    assert morsel["samesite"] == "Lax"
    assert morsel["path"] == "/"
    # The sample public URL is http://: a Secure cookie would never come back.
    assert not morsel["secure"]

    page = await visitor.get("/account/password")
    assert page.status == 200
    assert "An Peeters" in visitor.html


async def test_the_cookie_is_secure_when_the_service_is_reached_over_https(
    aiohttp_client: ClientFactory,
    tmp_path: Path,
    sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MELDPUNT_PUBLIC_URL", "https://meldpunt.wingene.example")
    config = sample_config(tmp_path, sqlite_url, monkeypatch)
    client = await aiohttp_client(
        create_app(config, migrate=True), cookie_jar=aiohttp.DummyCookieJar()
    )
    async with client.app[RUNTIME].db.session() as session:
        await create_user(session, "an@wingene.example", "admin", [], PASSWORD)
    response = await Visitor(client).sign_in("an@wingene.example")
    assert response.status == 303
    cookie = session_cookie(response)
    assert cookie is not None
    assert cookie[COOKIE]["secure"] is True


@pytest.mark.parametrize(
    "next_page",
    [
        "//evil.example/x",
        "https://evil.example",
        "/\\evil.example/x",  # browsers read a backslash as a slash: //evil.example/x
        "/\t/evil.example",  # and drop tabs: //evil.example
        "javascript:alert(1)",
        "evil.example",
    ],
)
async def test_signing_in_never_goes_to_another_site(town: Town, next_page: str) -> None:
    visitor = town.visitor()
    response = await visitor.sign_in("an@wingene.example", next_page=next_page)
    assert response.status == 303
    assert stays_on_site(response.headers["Location"])


async def test_the_sign_in_form_does_not_carry_a_foreign_next(town: Town) -> None:
    visitor = town.visitor()
    await visitor.get("/login?next=%2F%2Fevil.example%2Fx")
    assert '<input type="hidden" name="next" value="/">' in visitor.html


async def test_a_wrong_password_gets_the_generic_error_and_no_cookie(town: Town) -> None:
    visitor = town.visitor()
    response = await visitor.sign_in("an@wingene.example", "niet-het-wachtwoord")
    assert response.status == 401
    assert visitor.error() == WRONG_LOGIN
    assert session_cookie(response) is None
    assert await rows(town.db, WebSession) == []
    # What was typed stays, except the password.
    assert 'value="an@wingene.example"' in visitor.html
    assert "niet-het-wachtwoord" not in visitor.html


async def test_an_unknown_address_gets_the_same_error(town: Town) -> None:
    known = town.visitor()
    unknown = town.visitor()
    wrong = await known.sign_in("an@wingene.example", "niet-het-wachtwoord")
    nobody = await unknown.sign_in("niemand@wingene.example", "niet-het-wachtwoord")
    assert (nobody.status, unknown.error()) == (wrong.status, known.error())
    assert session_cookie(nobody) is None
    # The same page but for the address typed in.
    assert unknown.html.replace("niemand@", "an@") == known.html


async def test_an_account_without_a_password_cannot_sign_in(town: Town) -> None:
    await town.add_user("robot@wingene.example", "operator", (), password=None)
    visitor = town.visitor()
    response = await visitor.sign_in("robot@wingene.example", "")
    assert response.status == 401
    assert visitor.error() == WRONG_LOGIN


# --- the lock-out ----------------------------------------------------------------------------


async def test_five_wrong_passwords_lock_the_account_for_15_minutes(town: Town) -> None:
    visitor = town.visitor()
    for _ in range(4):
        assert (await visitor.sign_in("an@wingene.example", "raden-maar")).status == 401
        assert visitor.error() == WRONG_LOGIN
    assert (await visitor.sign_in("an@wingene.example", "raden-maar")).status == 401
    assert visitor.error() == LOCKED_UNTIL_1115

    # Now even the right password does not open it.
    response = await visitor.sign_in("an@wingene.example")
    assert response.status == 401
    assert visitor.error() == LOCKED_UNTIL_1115
    assert session_cookie(response) is None

    town.clock.now += timedelta(minutes=14, seconds=59)
    assert (await visitor.sign_in("an@wingene.example")).status == 401
    assert visitor.error() == LOCKED_UNTIL_1115

    town.clock.now += timedelta(seconds=1)
    response = await visitor.sign_in("an@wingene.example")
    assert response.status == 303
    assert session_cookie(response) is not None
    assert (await visitor.get("/")).status == 200

    # The count started afresh: one more mistake is just a mistake.
    other = town.visitor()
    await other.sign_in("an@wingene.example", "raden-maar")
    assert other.error() == WRONG_LOGIN


async def test_only_wrong_passwords_in_a_row_count(town: Town) -> None:
    visitor = town.visitor()
    for _ in range(4):
        await visitor.sign_in("an@wingene.example", "raden-maar")
    assert (await visitor.sign_in("an@wingene.example")).status == 303
    for _ in range(4):
        await visitor.sign_in("an@wingene.example", "raden-maar")
    assert visitor.error() == WRONG_LOGIN
    assert (await visitor.sign_in("an@wingene.example")).status == 303


async def test_wrong_passwords_sent_all_at_once_still_lock_the_account(town: Town) -> None:
    # Someone guessing does not wait for each answer; every guess must count.
    guesses = [town.visitor().sign_in("an@wingene.example", f"gok-{n}") for n in range(10)]
    answers = await asyncio.gather(*guesses)
    assert {a.status for a in answers} == {401}
    visitor = town.visitor()
    assert (await visitor.sign_in("an@wingene.example")).status == 401
    assert visitor.error() == LOCKED_UNTIL_1115


async def test_a_lock_on_one_account_leaves_the_others_alone(town: Town) -> None:
    await town.add_user("bert@wingene.example")
    visitor = town.visitor()
    for _ in range(5):
        await visitor.sign_in("an@wingene.example", "raden-maar")
    assert (await visitor.sign_in("bert@wingene.example")).status == 303


# --- what the database keeps -----------------------------------------------------------------


async def test_the_database_keeps_only_a_hash_of_the_session_token(town: Town) -> None:
    visitor = await town.signed_in("an@wingene.example")
    token = visitor.cookies[COOKIE]
    assert len(token) >= 32
    [stored] = await rows(town.db, WebSession)
    assert stored["token_hash"] == hashlib.sha256(token.encode()).hexdigest()
    assert token not in {str(v) for v in stored.values()}
    # The hash itself opens nothing.
    forger = town.visitor()
    forger.cookies[COOKIE] = stored["token_hash"]
    assert (await forger.get("/")).status == 303


async def test_each_sign_in_gets_a_new_token(town: Town) -> None:
    first = await town.signed_in("an@wingene.example")
    second = await town.signed_in("an@wingene.example")
    assert first.cookies[COOKIE] != second.cookies[COOKIE]
    assert first.csrf() != second.csrf()
    assert len(await rows(town.db, WebSession)) == 2


# --- signing out -----------------------------------------------------------------------------


async def test_signing_out_needs_the_form_token(town: Town) -> None:
    visitor = await town.signed_in("an@wingene.example")
    csrf = visitor.csrf()
    assert (await visitor.post("/logout", {})).status == 403
    assert (await visitor.post("/logout", {"csrf": csrf[:-1] + "x"})).status == 403
    # Another session's token is no good either.
    other = await town.signed_in("an@wingene.example")
    assert (await visitor.post("/logout", {"csrf": other.csrf()})).status == 403
    assert (await visitor.get("/")).status == 200


async def test_signing_out_ends_the_session(town: Town) -> None:
    visitor = await town.signed_in("an@wingene.example")
    old_cookie = visitor.cookies[COOKIE]
    response = await visitor.post("/logout", {"csrf": visitor.csrf()})
    assert response.status == 303
    assert COOKIE not in visitor.cookies
    assert (await visitor.get(response.headers["Location"])).status == 200
    assert visitor.notice() == "U bent afgemeld."
    assert await rows(town.db, WebSession) == []

    # The old cookie, kept by someone, opens nothing any more.
    replay = town.visitor()
    replay.cookies[COOKIE] = old_cookie
    response = await replay.get("/")
    assert sends_to_sign_in(response)


async def test_the_language_links_after_signing_out_work(town: Town) -> None:
    visitor = await town.signed_in("an@wingene.example")
    response = await visitor.post("/logout", {"csrf": visitor.csrf()})
    response = await visitor.get(response.headers["Location"])
    french = await visitor.get(language_link(visitor, response, "fr"))
    assert french.status == 200
    assert "Se connecter" in visitor.html


async def test_switching_language_on_the_sign_in_page_keeps_where_to_go_next(
    town: Town,
) -> None:
    visitor = town.visitor()
    page = await visitor.get("/login?next=%2Faccount%2Fpassword")
    await visitor.get(language_link(visitor, page, "en"))
    assert "Sign in" in visitor.html
    assert '<input type="hidden" name="next" value="/account/password">' in visitor.html


def language_link(visitor: Visitor, page: aiohttp.ClientResponse, code: str) -> str:
    """Where the language link ``code`` of the page seen last leads, resolved as a browser does."""
    found = re.search(rf'<a href="([^"]*)" lang="{code}"', visitor.html)
    assert found is not None, f"no link to {code}"
    return page.url.join(URL(html.unescape(found.group(1)))).path_qs


async def test_a_post_without_a_session_is_refused(town: Town) -> None:
    visitor = town.visitor()
    assert (await visitor.post("/logout", {"csrf": "x"})).status == 403
    assert (await visitor.post("/account/password", {"csrf": "x"})).status == 403


# --- changing the password -------------------------------------------------------------------


async def change_password(
    visitor: Visitor, current: str, new: str, repeat: str | None = None
) -> aiohttp.ClientResponse:
    await visitor.get("/account/password")
    return await visitor.post(
        "/account/password",
        {"csrf": visitor.csrf(), "current": current, "new": new, "repeat": repeat or new},
    )


@pytest.mark.parametrize(
    ("current", "new", "repeat", "error"),
    [
        ("fout-wachtwoord-123", "nieuw-en-lang-genoeg", None, "Het huidige wachtwoord klopt niet."),
        (PASSWORD, "kort-11tkns", None, "Het nieuwe wachtwoord moet minstens 12 tekens hebben."),
        (PASSWORD, "nieuw-en-lang-genoeg", "nieuw-en-lang-genoeG", "De twee nieuwe wachtwoorden"),
    ],
    ids=["wrong-current", "too-short", "not-repeated"],
)
async def test_a_password_change_that_is_refused_changes_nothing(
    town: Town, current: str, new: str, repeat: str | None, error: str
) -> None:
    visitor = await town.signed_in("an@wingene.example")
    other = await town.signed_in("an@wingene.example")
    response = await change_password(visitor, current, new, repeat)
    assert response.status == 422
    assert (visitor.error() or "").startswith(error)
    assert (await other.get("/")).status == 200
    assert (await town.visitor().sign_in("an@wingene.example")).status == 303
    assert (await town.visitor().sign_in("an@wingene.example", new)).status == 401


async def test_a_password_change_needs_the_form_token(town: Town) -> None:
    visitor = await town.signed_in("an@wingene.example")
    response = await visitor.post(
        "/account/password",
        {"current": PASSWORD, "new": "nieuw-en-lang-genoeg", "repeat": "nieuw-en-lang-genoeg"},
    )
    assert response.status == 403
    assert (await town.visitor().sign_in("an@wingene.example")).status == 303


async def test_a_password_change_ends_the_other_sessions_only(town: Town) -> None:
    here = await town.signed_in("an@wingene.example")
    elsewhere = await town.signed_in("an@wingene.example")
    await town.add_user("bert@wingene.example")
    colleague = await town.signed_in("bert@wingene.example")

    response = await change_password(here, PASSWORD, "een-heel-nieuw-wachtwoord")
    assert response.status == 200
    assert here.notice() == "Uw wachtwoord is gewijzigd. Andere sessies zijn afgemeld."

    assert (await here.get("/")).status == 200
    assert (await elsewhere.get("/")).status == 303
    assert (await colleague.get("/")).status == 200
    assert (await town.visitor().sign_in("an@wingene.example")).status == 401
    assert (
        await town.visitor().sign_in("an@wingene.example", "een-heel-nieuw-wachtwoord")
    ).status == 303


# --- sessions that end by themselves ---------------------------------------------------------


async def test_a_disabled_user_is_signed_out_and_cannot_sign_in(town: Town) -> None:
    visitor = await town.signed_in("an@wingene.example")
    async with town.db.session() as session:
        await session.execute(
            sa.update(User).where(col(User.email) == "an@wingene.example").values(active=False)
        )
    response = await visitor.get("/")
    assert sends_to_sign_in(response)
    again = town.visitor()
    assert (await again.sign_in("an@wingene.example")).status == 401
    assert again.error() == WRONG_LOGIN


async def test_a_session_left_alone_for_nine_hours_has_expired(town: Town) -> None:
    visitor = await town.signed_in("an@wingene.example")
    town.clock.now += timedelta(hours=9)
    response = await visitor.get("/account/password")
    assert sends_to_sign_in(response, then="/account/password")
    assert await rows(town.db, WebSession) == []


async def test_a_session_in_use_stays_open(town: Town) -> None:
    visitor = await town.signed_in("an@wingene.example")
    for _ in range(3):
        town.clock.now += timedelta(hours=7)
        assert (await visitor.get("/")).status == 200
    town.clock.now += timedelta(hours=8, seconds=1)
    assert (await visitor.get("/")).status == 303


# --- the pages -------------------------------------------------------------------------------


def policy(header: str) -> dict[str, list[str]]:
    directives = (d.split() for d in header.split(";") if d.strip())
    return {d[0]: d[1:] for d in directives}


async def test_the_pages_carry_the_security_headers(town: Town) -> None:
    visitor = town.visitor()
    pages = [await visitor.get("/login")]
    await visitor.sign_in("an@wingene.example")
    pages += [await visitor.get("/"), await visitor.get("/account/password")]
    pages.append(await visitor.post("/logout", {}))  # the refusal is a page too
    for response in pages:
        assert response.headers["Cache-Control"] == "no-store", response.url
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        csp = policy(response.headers["Content-Security-Policy"])
        scripts = csp.get("script-src", csp["default-src"])
        assert "'unsafe-inline'" not in scripts and "'unsafe-eval'" not in scripts
        assert "*" not in scripts
        assert csp["frame-ancestors"] == ["'none'"]
        assert csp["object-src"] == ["'none'"]


async def test_the_stylesheet_is_served(town: Town) -> None:
    response = await town.visitor().get("/inbox/static/inbox.css")
    assert response.status == 200
    assert response.content_type == "text/css"


async def test_the_language_links_switch_and_remember_the_language(town: Town) -> None:
    visitor = await town.signed_in("an@wingene.example")
    await visitor.get("/?lang=fr")
    assert '<html lang="fr">' in visitor.html
    assert "Se déconnecter" in visitor.html
    await visitor.get("/account/password")
    assert "Changer le mot de passe" in visitor.html


# --- the ticket list -------------------------------------------------------------------------


async def test_an_agent_sees_only_the_tickets_of_their_department(town: Town) -> None:
    waste = await town.submit(
        "De vuilniszakken zijn niet opgehaald in de Kerkstraat.", "Afval", "jan@example.be"
    )
    light = await town.submit(
        "De straatlamp voor nummer 12 brandt niet.", "Straatlamp", "mie@example.be"
    )
    await town.add_user("milieu@wingene.example", "agent", ("environment",))
    await town.add_user("td@wingene.example", "agent", ("technical-service",))
    await town.add_user("beheer@wingene.example", "operator", ())

    environment = await town.signed_in("milieu@wingene.example")
    assert waste in environment.html
    assert light not in environment.html
    assert "Milieu en afval" in environment.html

    technical = await town.signed_in("td@wingene.example")
    assert light in technical.html
    assert waste not in technical.html

    operator = await town.signed_in("beheer@wingene.example")
    assert waste in operator.html and light in operator.html

    # An at the front desk has neither.
    front = await town.signed_in("an@wingene.example")
    assert waste not in front.html and light not in front.html
    assert "Geen tickets." in front.html


async def test_what_a_citizen_wrote_is_shown_as_text(town: Town) -> None:
    reference = await town.submit(
        "Afval naast de glasbol.", '<img src=x onerror="alert(1)">afval', "jan@example.be"
    )
    await town.add_user("milieu@wingene.example", "agent", ("environment",))
    visitor = await town.signed_in("milieu@wingene.example")
    assert reference in visitor.html
    assert "<img" not in visitor.html
    assert "&lt;img src=x onerror=" in visitor.html


async def test_a_broken_page_link_goes_back_to_the_first_page(town: Town) -> None:
    visitor = await town.signed_in("an@wingene.example")
    response = await visitor.get("/?cursor=niet-geldig")
    assert response.status == 303
    assert response.headers["Location"] == "/"
