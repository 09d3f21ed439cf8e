"""A real ``meldpunt serve`` process, killed with SIGKILL under load, loses no accepted message."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.service import sample_config


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def start_server(config_file: Path, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "meldpunt", "--config", str(config_file), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    async with aiohttp.ClientSession() as http:
        for _ in range(200):
            if proc.poll() is not None:
                raise AssertionError(f"server exited: {proc.stderr.read().decode() if proc.stderr else ''}")
            try:
                async with http.get(f"http://127.0.0.1:{port}/readyz") as r:
                    if r.status == 200:
                        return proc
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.05)
    proc.kill()
    raise AssertionError("server did not become ready")


async def post(http: aiohttp.ClientSession, url: str, n: int) -> str | None:
    body = {
        "kind": "report",
        "message": f"Melding nummer {n}: sluikstort aan de container.",
        "email": f"burger{n}@example.be",
        "submission_id": f"kill{n:08d}",
    }
    try:
        async with http.post(url, json=body) as response:
            if response.status == 201:
                return str((await response.json())["reference"])
    except (aiohttp.ClientError, asyncio.TimeoutError):
        pass
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
    url = f"http://127.0.0.1:{port}/contact"
    proc = await start_server(config.config_file, port, env)
    accepted: list[str] = []
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=32)) as http:
            tasks = [asyncio.create_task(post(http, url, n)) for n in range(600)]
            # Kill while requests are in flight: after some answers, long before the last one.
            while sum(t.done() for t in tasks) < 150:
                await asyncio.sleep(0.005)
            proc.send_signal(signal.SIGKILL)
            results = await asyncio.gather(*tasks)
            accepted = [r for r in results if r]
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert len(accepted) >= 150
    assert len(accepted) < 600, "the kill came too late to prove anything"

    with sqlite3.connect(db_file) as conn:
        stored = {r for (r,) in conn.execute("SELECT reference FROM tickets")}
        messages = conn.execute("SELECT count(*) FROM messages WHERE direction = 'in'").fetchone()[0]
        journal = conn.execute("SELECT count(*) FROM journal WHERE state = 'processed'").fetchone()[0]
        first_stored = conn.execute(
            "SELECT count(*) FROM messages WHERE external_id = 'kill00000000'"
        ).fetchone()[0]
    missing = set(accepted) - stored
    assert not missing, f"{len(missing)} acknowledged messages were lost: {sorted(missing)[:5]}"
    assert len(stored) == messages == journal  # no half-written ticket

    # After a restart the numbering continues and a resent message is recognised.
    proc = await start_server(config.config_file, port, env)
    try:
        async with aiohttp.ClientSession() as http:
            fresh = await post(http, url, 10_000)
            async with http.post(url, json={
                "kind": "report", "message": "Melding nummer 0: sluikstort aan de container.",
                "email": "burger0@example.be", "submission_id": "kill00000000",
            }) as again:
                resent = await again.json()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    assert fresh is not None and fresh not in stored
    assert int(fresh.split("-")[1]) == len(stored) + 1
    assert resent["duplicate"] is bool(first_stored)
