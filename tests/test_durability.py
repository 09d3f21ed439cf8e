"""A real ``meldpunt serve`` process, killed with SIGKILL under load, loses no accepted message."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import free_port
from tests.service import sample_config, start_server


def report(n: int) -> dict[str, str]:
    return {
        "kind": "report",
        "message": f"Melding nummer {n}: sluikstort aan de container.",
        "email": f"burger{n}@example.be",
        "submission_id": f"kill{n:08d}",
    }


class Load:
    """Posts reports and signals once ``threshold`` of them were answered."""

    def __init__(self, url: str, threshold: int) -> None:
        self.url = url
        self.threshold = threshold
        self.answered = 0
        self.enough = asyncio.Event()

    async def post(self, http: aiohttp.ClientSession, n: int) -> str | None:
        try:
            async with http.post(self.url, json=report(n)) as response:
                if response.status == 201:
                    return str((await response.json())["reference"])
        except (aiohttp.ClientError, TimeoutError):
            pass
        finally:
            self.answered += 1
            if self.answered >= self.threshold:
                self.enough.set()
        return None


async def test_sigkill_after_acceptance_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db_file = tmp_path / "kill.db"
    config = sample_config(
        tmp_path,
        f"sqlite:///{db_file}",
        monkeypatch,
        replace={"rate_limit_per_minute: 10 ": "rate_limit_per_minute: 1000000 "},
    )
    env = {**os.environ, "MELDPUNT_DATABASE_URL": f"sqlite:///{db_file}"}
    port = free_port()
    load = Load(f"http://127.0.0.1:{port}/contact", threshold=150)
    proc = await start_server(config.config_file, port, env)
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=32)) as http:
            tasks = [asyncio.create_task(load.post(http, n)) for n in range(600)]
            # Kill while requests are in flight: after some answers, long before the last one.
            await load.enough.wait()
            proc.kill()
            results = await asyncio.gather(*tasks)
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
    accepted = [r for r in results if r]
    assert len(accepted) >= 100
    assert len(accepted) < 600, "the kill came too late to prove anything"

    with sqlite3.connect(db_file) as conn:
        stored = {r for (r,) in conn.execute("SELECT reference FROM tickets")}
        [messages] = conn.execute("SELECT count(*) FROM messages WHERE direction = 'in'").fetchone()
        [journal] = conn.execute(
            "SELECT count(*) FROM journal WHERE state = 'processed'"
        ).fetchone()
        [first_stored] = conn.execute(
            "SELECT count(*) FROM messages WHERE external_id = 'kill00000000'"
        ).fetchone()
    missing = set(accepted) - stored
    assert not missing, f"{len(missing)} acknowledged messages were lost: {sorted(missing)[:5]}"
    assert len(stored) == messages == journal  # no half-written ticket

    # After a restart the numbering continues and a resent message is recognised.
    proc = await start_server(config.config_file, port, env)
    try:
        async with aiohttp.ClientSession() as http:
            fresh = await load.post(http, 10_000)
            async with http.post(load.url, json=report(0)) as again:
                resent = await again.json()
    finally:
        proc.terminate()
        await proc.wait()
    assert fresh is not None
    assert fresh not in stored
    assert int(fresh.split("-")[1]) == len(stored) + 1
    assert resent["duplicate"] is bool(first_stored)
