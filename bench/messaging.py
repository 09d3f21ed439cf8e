"""Twilio messaging intake: signed SMS webhooks into durable tickets, against a bare handler.

Starts a real ``meldpunt serve`` (Twilio configured, nothing to send with, so acknowledgements
wait in the outbox) and a bare aiohttp handler that only parses the form, each as a process of
its own, and drives both with the same load generator, then checks that every acknowledged
webhook was stored.

    python bench/messaging.py               # SQLite, synchronous=FULL (the embedded default)
    python bench/messaging.py --database postgresql://postgres@127.0.0.1:15432/bench
    python bench/messaging.py --seconds 20 --connections 128

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
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
from twilio.request_validator import RequestValidator

# Run as a script, this folder is on the path, not the repository with the bench package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.intake import free_port, stop, wait_ready

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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--requests", type=int, default=60_000, help="signed bodies per server")
    parser.add_argument("--database", help="database URL (default: a fresh SQLite file)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="meldpunt-bench-messaging-"))
    (work / "bare.py").write_text(BARE_SERVER)
    shutil.copytree(ROOT / "config", work / "config")
    main_yaml = work / "config" / "meldpunt.yaml"
    main_yaml.write_text(
        main_yaml.read_text().replace("data_dir: var", f"data_dir: {work / 'var'}")
    )
    db_url = args.database or f"sqlite:///{work / 'bench.db'}"
    env = {
        **os.environ,
        "MELDPUNT_DATABASE_URL": db_url,
        "MELDPUNT_PUBLIC_URL": PUBLIC_URL,
        "MELDPUNT_LOG_LEVEL": "warning",
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
    }
    # No number to send from: acknowledgements are queued (and stored) but not sent.
    for name in ("TWILIO_SMS_NUMBER", "TWILIO_WHATSAPP_SENDER", "TWILIO_API_BASE"):
        env.pop(name, None)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    print(f"signing {2 * args.requests} webhooks ...", flush=True)
    bare_requests = signed_requests(args.requests, 0)
    meldpunt_requests = signed_requests(args.requests, args.requests)

    results: dict[str, dict[str, float]] = {}
    port = free_port()
    bare = subprocess.Popen([sys.executable, str(work / "bare.py"), str(port)])
    try:
        wait_ready(port, bare)
        results["bare aiohttp handler (form parse, no signature, no storage)"] = asyncio.run(
            drive(port, bare_requests, args.seconds, args.connections)
        )
    finally:
        stop(bare)

    if db_url.startswith("postgresql"):
        subprocess.run(
            [sys.executable, "-m", "meldpunt", "--config", str(main_yaml), "migrate"],
            env=env,
            check=True,
        )
    port = free_port()
    serve = ["serve", "--port", str(port)]
    server = subprocess.Popen(
        [sys.executable, "-m", "meldpunt", "--config", str(main_yaml), *serve],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_ready(port, server)
        backend = "PostgreSQL" if db_url.startswith("postgresql") else "SQLite FULL"
        results[f"meldpunt signed SMS webhook to ticket ({backend})"] = asyncio.run(
            drive(port, meldpunt_requests, args.seconds, args.connections)
        )
    finally:
        stop(server)

    print(f"\n{args.connections} connections, {args.seconds:g} s each, ~550 B form body\n")
    print(f"{'path':62} {'msg/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'non-200':>8}")
    for name, r in results.items():
        bad = int(r["total"] - r["ok"])
        print(f"{name:62} {r['rps']:8.0f} {r['p50']:8.1f} {r['p99']:8.1f} {bad:8d}")
    bare_r, mp_r = results.values()
    print(f"\nratio meldpunt / bare handler: {mp_r['rps'] / bare_r['rps']:.2f}")
    for name, r in results.items():
        if r["total"] >= args.requests:
            print(f"note: {name}: all {args.requests} bodies used before the time was up")

    if db_url.startswith("sqlite"):
        with sqlite3.connect(work / "bench.db") as conn:
            stored = conn.execute("SELECT count(*) FROM messages WHERE direction = 'in'")
            count = stored.fetchone()[0]
        acknowledged = int(mp_r["ok"])
        print(
            f"acknowledged {acknowledged}, stored {count} messages"
            + ("" if count >= acknowledged else "  <-- LOST MESSAGES")
        )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
