"""Headless Chromium for browser tests: Debian's Chromium driven by Playwright, never downloaded.

One Chromium process serves the whole session; each test gets its own Playwright connection to it
(pytest-asyncio runs every test in an event loop of its own, and a Playwright connection belongs to
the loop it was made in) and fresh browser contexts, so cookies and storage never leak between
tests. When a test fails, every page it opened is saved as a screenshot in its tmp dir and under
``var/test-artefacts/``.

Use it from a conftest.py next to the tests::

    from tests.browser import (  # noqa: F401 - fixtures and the hook they need
        browser_fixture, chromium_fixture, new_context_fixture, page_fixture,
        pytest_runtest_makereport,
    )

and ask for ``page``, ``new_context``, ``browser`` or ``chromium`` in tests and fixtures (the
``_fixture`` names keep those names free for the parameters). ``pytest_runtest_makereport`` must
be imported too: it tells the fixtures whether the test failed.
Without Chromium the tests are skipped, except in CI, where they fail.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from tests.conftest import unavailable

# Debian's /usr/bin/chromium is a shell wrapper that adds desktop flags from /etc/chromium.d;
# the binary itself is more predictable. Other systems have only /usr/bin/chromium.
CHROMIUM_PATHS = (Path("/usr/lib/chromium/chromium"), Path("/usr/bin/chromium"))
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Containers often give /dev/shm 64 MB, too little for Chromium (Debian bug 1072299).
    "--disable-dev-shm-usage",
)
MISSING_CHROMIUM = (
    "Chromium not found at /usr/bin/chromium or /usr/lib/chromium/chromium: install Debian's "
    "(apt-get install chromium); never 'playwright install'"
)
ARTEFACTS = Path(__file__).resolve().parent.parent / "var" / "test-artefacts"

# Where pytest_runtest_makereport leaves each phase's report for the fixtures' teardown.
_PHASE_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    item.stash.setdefault(_PHASE_REPORTS, {})[report.when] = report
    return report


def failed(request: pytest.FixtureRequest) -> bool:
    """Whether the test (its set-up or its body) failed, read in a fixture's teardown."""
    reports = request.node.stash.get(_PHASE_REPORTS, {})
    return any(r.failed for r in reports.values())


def find_chromium() -> Path | None:
    return next((p for p in CHROMIUM_PATHS if p.is_file()), None)


@dataclass(frozen=True)
class Chromium:
    """The session's Chromium process and the DevTools endpoint Playwright connects to."""

    process: subprocess.Popen[bytes]
    endpoint: str
    profile: Path


def _start_chromium(executable: Path, profile: Path, log: Path) -> Chromium:
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(executable), *CHROMIUM_ARGS, f"--user-data-dir={profile}",
             "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=out,
        )  # fmt: skip
    # Chromium writes the port it chose (and the browser's path) to DevToolsActivePort.
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        lines = port_file.read_text().splitlines() if port_file.exists() else []
        if len(lines) >= 2 and re.fullmatch(r"\d+", lines[0]):
            return Chromium(process, f"ws://127.0.0.1:{lines[0]}{lines[1]}", profile)
        time.sleep(0.05)
    process.kill()
    process.wait()
    raise RuntimeError(f"Chromium did not start:\n{log.read_text(errors='replace')[-4000:]}")


@pytest.fixture(scope="session", name="chromium")
def chromium_fixture() -> Iterator[Chromium]:
    """One headless Chromium for the session, with a fresh profile of its own."""
    executable = find_chromium()
    if executable is None:
        unavailable(MISSING_CHROMIUM)
    root = Path(tempfile.mkdtemp(prefix="meldpunt-chromium-"))
    browser = _start_chromium(executable, root / "profile", root / "chromium.log")
    try:
        yield browser
    finally:
        browser.process.terminate()
        try:
            browser.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            browser.process.kill()
            browser.process.wait()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(name="browser")
async def browser_fixture(chromium: Chromium) -> AsyncIterator[Browser]:
    """The session's Chromium, reached from this test's event loop."""
    # expect() waits 5 s by default: little on a busy two-core CI runner.
    expect.set_options(timeout=10_000)
    async with async_playwright() as playwright:
        connected = await playwright.chromium.connect_over_cdp(chromium.endpoint)
        try:
            yield connected
        finally:
            # Over CDP, close() disconnects and leaves the shared browser running.
            await connected.close()


NewContext = Callable[..., Awaitable[BrowserContext]]


def _screenshot_name(request: pytest.FixtureRequest, number: int) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{request.node.name}-{number}") + ".png"


@pytest.fixture(name="new_context")
async def new_context_fixture(
    browser: Browser, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[NewContext]:
    """Call it for a fresh browser context (a visitor of its own: own storage, own cookies).

    Keyword arguments go to ``Browser.new_context`` (``viewport``, ``locale``...). Every context
    is closed after the test; on failure each of its pages is saved as a screenshot first.
    """
    contexts: list[BrowserContext] = []

    async def make(**options: Any) -> BrowserContext:
        options.setdefault("viewport", {"width": 1280, "height": 800})
        context = await browser.new_context(**options)
        context.set_default_timeout(10_000)
        contexts.append(context)
        return context

    try:
        yield make
    finally:
        if failed(request):
            await _save_screenshots(request, tmp_path, contexts)
        for context in contexts:
            await context.close()


async def _save_screenshots(
    request: pytest.FixtureRequest, tmp_path: Path, contexts: list[BrowserContext]
) -> None:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    pages = [p for c in contexts for p in c.pages if not p.is_closed()]
    for number, page in enumerate(pages, start=1):
        try:
            shot = await page.screenshot(full_page=True, timeout=5_000)
        except Exception as exc:  # a crashed page must not hide the test's own failure
            shot = None
            request.node.add_report_section("teardown", "screenshot", f"page {number}: {exc}")
        if shot is None:
            continue
        name = _screenshot_name(request, number)
        for target in (tmp_path / name, ARTEFACTS / name):
            target.write_bytes(shot)
        request.node.add_report_section(
            "teardown", "screenshot", f"page {number} ({page.url}): {ARTEFACTS / name}"
        )


@pytest.fixture(name="page")
async def page_fixture(new_context: NewContext) -> Page:
    """A page in a fresh browser context."""
    context = await new_context()
    return await context.new_page()
