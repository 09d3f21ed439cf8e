"""Twilio messaging intake: signed SMS webhooks into durable tickets, against a bare handler.

Starts a real ``meldpunt serve`` (Twilio configured, nothing to send with, so acknowledgements
wait in the outbox) and a bare aiohttp handler that only parses the form, each as a process of
its own, and drives both with the same load generator for the most each can take. Then it
offers both the same fixed rate, half of what meldpunt took, open-loop (requests start on their
schedule whether or not earlier ones were answered; see ``bench.intake.open_loop``) for p50/p99
at that load, and checks that every acknowledged webhook was stored.

    python bench/messaging.py               # SQLite, synchronous=FULL (the embedded default)
    python bench/messaging.py --database postgresql://postgres@127.0.0.1:15432/bench
    python bench/messaging.py --seconds 20 --connections 128 --rate 400

Why not wrk, as ``bench/intake.py`` uses: every webhook needs its own ``X-Twilio-Signature``
(HMAC-SHA1 over the URL and the fields) and its own ``MessageSid`` (a repeated one is dropped
as a redelivery, which would measure deduplication instead). wrk's Lua cannot compute HMAC, and
a pre-signed table for a run of tens of thousands of requests would not fit a script. The load
generator here is aiohttp in one process, with every body signed before the clock starts. It
costs CPU on the same cores as the server, so absolute numbers are below wrk's; the ratio
against the bare handler, driven the same way in the same run, is the number to watch.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
from twilio.request_validator import RequestValidator

# Run as a script, this folder is on the path, not the repository with the bench package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.intake import (
    Row,
    bench_config,
    count_rows,
    fixed_rows,
    free_port,
    goal_ratio,
    migrate,
    open_loop,
    print_rows,
    start_meldpunt,
    stop,
    wait_listening,
    wait_ready,
)
from bench.machine import machine

ROOT = Path(__file__).resolve().parent.parent
PUBLIC_URL = "https://meldpunt.bench.example"
PATH = "/webhooks/twilio/messaging"
ACCOUNT_SID = "AC" + "0" * 32
# A throwaway token for this run's own server, not a credential.
AUTH_TOKEN = "bench-auth-token-0123456789abcdef"  # noqa: S105

BARE_SERVER = textwrap.dedent(
    """
    import sys
    from aiohttp import web
    try:
        import uvloop; uvloop.install()
    except ImportError:
        pass

    async def messaging(request):
        form = await request.post()
        assert form["MessageSid"]
        return web.Response(text="<Response/>", content_type="text/xml")

    async def ready(request):
        return web.json_response({"status": "ready"})

    app = web.Application()
    app.router.add_post("/webhooks/twilio/messaging", messaging)
    app.router.add_get("/readyz", ready)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
    """
)


def signed_requests(count: int, offset: int) -> list[tuple[bytes, str]]:
    """``count`` SMS webhooks from different citizens, each with its body and signature."""
    validator = RequestValidator(AUTH_TOKEN)
    text = "De vuilbak aan de kerk is al drie dagen niet geledigd. " * 4
    out = []
    for n in range(offset, offset + count):
        form = {
            "ToCountry": "BE",
            "SmsMessageSid": f"SM{n:032x}",
            "NumMedia": "0",
            "SmsSid": f"SM{n:032x}",
            "SmsStatus": "received",
            "Body": text,
            "FromCountry": "BE",
            "To": "+3250123456",
            "NumSegments": "2",
            "MessageSid": f"SM{n:032x}",
            "AccountSid": ACCOUNT_SID,
            "From": f"+32470{n % 1_000_000:06d}",
            "ApiVersion": "2010-04-01",
        }
        out.append((urlencode(form).encode(), validator.compute_signature(PUBLIC_URL + PATH, form)))
    return out


async def drive(
    port: int, requests: list[tuple[bytes, str]], seconds: float, connections: int
) -> dict[str, float]:
    """Post the requests from ``connections`` workers for ``seconds``; latencies in ms."""
    url = f"http://127.0.0.1:{port}{PATH}"
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    queue = iter(requests)
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def worker() -> None:
            for body, signature in queue:
                if time.perf_counter() > deadline:
                    return
                headers = {
                    "Content-Type": "application/x-www-form-urlencoded",
                    "X-Twilio-Signature": signature,
                }
                started = time.perf_counter()
                async with http.post(url, data=body, headers=headers) as response:
                    await response.read()
                latencies.append((time.perf_counter() - started) * 1000)
                statuses[response.status] = statuses.get(response.status, 0) + 1

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - began
    latencies.sort()
    return {
        "rps": len(latencies) / elapsed,
        "total": len(latencies),
        "ok": statuses.get(200, 0),
        "p50": statistics.median(latencies),
        "p99": latencies[int(len(latencies) * 0.99) - 1],
    }


def signed_headers(requests: list[tuple[bytes, str]]) -> list[tuple[bytes, dict[str, str]]]:
    return [
        (body, {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": sig})
        for body, sig in requests
    ]


def messaging_rows(
    db_url: str | None, seconds: float, connections: int, count: int, rate: float | None
) -> list[Row]:
    """Capacity of the bare handler and of meldpunt, then both at one fixed rate (open loop)."""
    work = Path(tempfile.mkdtemp(prefix="meldpunt-bench-messaging-"))
    try:
        return _messaging_rows(work, db_url, seconds, connections, count, rate)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _messaging_rows(
    work: Path, db_url: str | None, seconds: float, connections: int, count: int,
    rate: float | None,
) -> list[Row]:  # fmt: skip
    (work / "bare.py").write_text(BARE_SERVER)
    db_url = db_url or f"sqlite:///{work / 'bench.db'}"
    backend = "PostgreSQL" if db_url.startswith("postgres") else "SQLite FULL"
    main_yaml, env = bench_config(work, db_url, {
        "MELDPUNT_PUBLIC_URL": PUBLIC_URL,
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
    })  # fmt: skip
    # No number to send from: acknowledgements are queued (and stored) but not sent.
    for name in ("TWILIO_SMS_NUMBER", "TWILIO_WHATSAPP_SENDER", "TWILIO_API_BASE"):
        env.pop(name, None)
    if backend == "PostgreSQL":
        migrate(main_yaml, env)
    inbound = "SELECT count(*) FROM messages WHERE direction = 'in'"
    before = count_rows(db_url, inbound) if backend == "PostgreSQL" else 0
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    print(f"signing {2 * count} webhooks ...", flush=True)
    bare_requests = signed_requests(count, 0)
    meldpunt_requests = signed_requests(count, count)
    bare_port, port = free_port(), free_port()
    bare = subprocess.Popen([sys.executable, str(work / "bare.py"), str(bare_port)])
    server = start_meldpunt(main_yaml, env, port)
    try:
        wait_ready(bare_port, bare)
        wait_listening(server)
        bare_max = asyncio.run(drive(bare_port, bare_requests, seconds, connections))
        mp_max = asyncio.run(drive(port, meldpunt_requests, seconds, connections))
        offered = rate or max(10.0, round(mp_max["rps"] / 2))
        fixed = int(offered * seconds)
        # Bodies the capacity runs did not use: each MessageSid must be new to meldpunt.
        unused = meldpunt_requests[int(mp_max["total"]) :][:fixed]
        if len(unused) < fixed:
            unused = signed_requests(fixed, 2 * count)
        url = f"http://127.0.0.1:{{}}{PATH}"
        mp_fixed = asyncio.run(open_loop(url.format(port), signed_headers(unused), offered))
        bare_fixed = asyncio.run(
            open_loop(url.format(bare_port), signed_headers(bare_requests[:fixed]), offered)
        )
    finally:
        stop(server)
        stop(bare)

    stored = count_rows(db_url, inbound) - before
    acknowledged = int(mp_max["ok"] + mp_fixed["ok"])
    ratio = mp_max["rps"] / bare_max["rps"]
    used_up = [r for r in (bare_max, mp_max) if r["total"] >= count]
    note = f" (all {count} bodies used before the time was up)" if used_up else ""
    return [
        Row(f"bare aiohttp handler, form parse, no signature, no storage (Python generator, "
            f"{connections} connections){note}", bare_max["rps"], "req", bare_max["p50"],
            bare_max["p99"], ratio="1"),
        Row(f"meldpunt signed SMS webhook to ticket, {backend} (Python generator)",
            mp_max["rps"], "msg", mp_max["p50"], mp_max["p99"], ratio=f"{ratio:.2f}",
            goal=goal_ratio(ratio)),
        *fixed_rows("signed SMS webhook", backend, offered, bare_fixed, mp_fixed),
        Row(f"  SMS: acknowledged {acknowledged}, stored {stored} inbound messages"
            + ("" if stored >= acknowledged else "  <-- LOST MESSAGES")),
    ]  # fmt: skip


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--requests", type=int, default=60_000, help="signed bodies per server")
    parser.add_argument("--rate", type=float, help="fixed offered rate (default: half of max)")
    parser.add_argument("--database", help="database URL (default: a fresh SQLite file)")
    args = parser.parse_args(argv)
    rows = messaging_rows(args.database, args.seconds, args.connections, args.requests, args.rate)
    print(f"\n{machine()}; {args.seconds:g} s a run, ~550 B form body\n")
    print_rows(rows)


if __name__ == "__main__":
    main()
