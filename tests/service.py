"""The service as tests run it: a throwaway copy of the sample configuration, and a real
``meldpunt serve`` process for tests that kill it."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestClient

from meldpunt.app import RUNTIME
from meldpunt.config import LoadedConfig, load_config
from store.db import Database
from store.users import create_token, create_user
from tests.conftest import Clock, rows

SAMPLE = Path(__file__).resolve().parent.parent / "config"


def sample_config(
    folder: Path,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    *,
    replace: dict[str, str] | None = None,
) -> LoadedConfig:
    """Copy the shipped sample config to ``folder`` and load it against ``database_url``."""
    target = folder / "config"
    shutil.copytree(SAMPLE, target)
    main = target / "meldpunt.yaml"
    text = main.read_text(encoding="utf-8").replace("data_dir: var", f"data_dir: {folder / 'var'}")
    for old, new in (replace or {}).items():
        assert old in text, f"{old!r} is not in the sample config"
        text = text.replace(old, new)
    main.write_text(text, encoding="utf-8")
    monkeypatch.setenv("MELDPUNT_DATABASE_URL", database_url)
    monkeypatch.setenv("MELDPUNT_SECRET_KEY", "test-secret-key-0123456789")
    return load_config(main)


async def start_server(
    config_file: Path, port: int, env: dict[str, str], *, log: Path | None = None
) -> asyncio.subprocess.Process:
    """``meldpunt serve`` in a process of its own, returned once ``/readyz`` says ready.

    ``log``: append what the server writes (its JSON log too) to this file instead of a pipe
    nobody reads, for a server that runs long enough to fill one.
    """
    with contextlib.ExitStack() as files:
        output = files.enter_context(log.open("ab")) if log else None
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "meldpunt", "--config", str(config_file),
            "serve", "--port", str(port),
            env=env,
            stdout=output or asyncio.subprocess.DEVNULL,
            stderr=output or asyncio.subprocess.PIPE,
        )  # fmt: skip
    async with aiohttp.ClientSession() as http:
        for _ in range(300):
            if proc.returncode is not None:
                if proc.stderr is not None:
                    err = await proc.stderr.read()
                else:
                    assert log is not None
                    err = await asyncio.to_thread(log.read_bytes)
                raise AssertionError(f"server exited: {err.decode(errors='replace')}")
            try:
                async with http.get(f"http://127.0.0.1:{port}/readyz") as r:
                    if r.status == 200:
                        return proc
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.05)
    proc.kill()
    raise AssertionError("server did not become ready")


async def until(check: Callable[[], Awaitable[bool]], what: str, within: float = 20.0) -> None:
    """Wait until ``check`` says yes; fail naming ``what`` after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        await asyncio.sleep(0.05)


class ServiceProbe:
    """What tests ask of a running service's database; ``db`` says where it is."""

    _token: str | None = None

    @property
    def db(self) -> Database:
        raise NotImplementedError

    async def rows(self, model: type, *where: sa.ColumnElement[bool]) -> list[sa.RowMapping]:
        return await rows(self.db, model, *where)

    async def wait_for_rows(
        self, count: int, model: type, *where: sa.ColumnElement[bool]
    ) -> list[sa.RowMapping]:
        found: list[sa.RowMapping] = []

        async def enough() -> bool:
            nonlocal found
            found = await self.rows(model, *where)
            return len(found) >= count

        await until(enough, f"{count} {model.__name__} row(s)")
        return found

    async def staff_token(self) -> str:
        """A bearer token of an operator, created on first use."""
        if self._token is None:
            async with self.db.session() as session:
                await create_user(
                    session, "els@wingene.example", "operator", [], "lang-wachtwoord-1"
                )
            async with self.db.session() as session:
                self._token = await create_token(session, "els@wingene.example")
        return self._token

    async def reply_over_http(self, base: str, reference: str, text: str) -> None:
        """A member of staff answers through the REST API of the service at ``base``."""
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{base}/api/v1/tickets/{reference}/replies",
                json={"text": text},
                headers={"Authorization": f"Bearer {await self.staff_token()}"},
            ) as response,
        ):
            assert response.status == 201, await response.text()


@dataclass
class RunningService(ServiceProbe):
    """The whole service in-process (an aiohttp test client), and what tests ask of it."""

    client: TestClient[web.Request, web.Application]

    @property
    def db(self) -> Database:
        return self.client.app[RUNTIME].db

    async def staff_api(
        self, method: str, path: str, body: Any = None, **params: str
    ) -> tuple[int, Any]:
        """Staff (an operator) calling ``/api/v1{path}``: the status and the JSON answer."""
        response = await self.client.request(
            method,
            f"/api/v1{path}",
            json=body,
            params=params,
            headers={"Authorization": f"Bearer {await self.staff_token()}"},
        )
        return response.status, await response.json()

    async def ticket(self, reference: str) -> dict[str, Any]:
        """The ticket as the API shows it to staff."""
        status, body = await self.staff_api("GET", f"/tickets/{reference}")
        assert status == 200, body
        found: dict[str, Any] = body
        return found

    async def outbox(self, purpose: str) -> list[dict[str, Any]]:
        """Outbox rows of ``purpose``, oldest first, as an operator reads them in the API."""
        status, page = await self.staff_api("GET", "/outbox?limit=200")
        assert status == 200, page
        return [r for r in reversed(page["items"]) if r["purpose"] == purpose]

    async def let_time_pass(self, clock: Clock, moment: datetime) -> int:
        """Let time pass to ``moment``; run the timers due then, as the service's loop would."""
        clock.now = moment
        ran: int = await self.client.app[RUNTIME].timers.run_once()
        return ran
