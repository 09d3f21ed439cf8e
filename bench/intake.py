"""Intake throughput: the web form's JSON twin against a bare aiohttp handler, in the same run.

Starts both servers as separate processes and drives each with wrk (64 connections, a ~1 KB JSON
body, a unique submission id per request), then checks that every acknowledged request was stored.

    python bench/intake.py                      # SQLite, synchronous=FULL (the embedded default)
    python bench/intake.py --database postgresql://postgres@127.0.0.1:15432/bench
    python bench/intake.py --seconds 20 --connections 128

Needs wrk (Debian package ``wrk``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

BARE_SERVER = textwrap.dedent(
    """
    import sys
    from aiohttp import web
    try:
        import uvloop; uvloop.install()
    except ImportError:
        pass

    async def contact(request):
        body = await request.json()
        return web.json_response({"reference": "X-" + body["submission_id"]}, status=201)

    async def ready(request):
        return web.json_response({"status": "ready"})

    app = web.Application()
    app.router.add_post("/contact", contact)
    app.router.add_get("/readyz", ready)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
    """
)

# Each wrk thread numbers its own requests; the thread id keeps submission ids unique.
WRK_SCRIPT = textwrap.dedent(
    """
    local counter = 0
    local tid = 0
    local threads = {}
    function setup(thread)
      tid = tid + 1
      thread:set("tid", tid)
    end
    function init(args)
      counter = 0
    end
    local text = string.rep("De straatlamp in de Kerkstraat brandt al dagen niet meer. ", 14)
    request = function()
      counter = counter + 1
      local body = string.format(
        '{"kind":"report","subject":"Straatlamp","message":"%s","email":"b%d-%d@example.be",'
        .. '"submission_id":"b%dn%d"}', text, tid, counter, tid, counter)
      return wrk.format("POST", "/contact", {["Content-Type"] = "application/json"}, body)
    end
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(port: int, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(300):
        if proc.poll() is not None:
            raise SystemExit(f"server exited early with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("server did not become ready")


def run_wrk(port: int, seconds: int, connections: int, script: Path) -> dict[str, float]:
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}/contact",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)

    def ms(label: str) -> float:
        m = re.search(rf"\s{label}%\s+([\d.]+)(us|ms|s)", out)
        if not m:
            return float("nan")
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    return {
        "rps": rps,
        "total": total,
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "p50": ms("50"),
        "p99": ms("99"),
        "socket_errors": 1.0 if errors else 0.0,
    }


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--database", help="database URL (default: a fresh SQLite file)")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install wrk")

    work = Path(tempfile.mkdtemp(prefix="meldpunt-bench-"))
    script = work / "post.lua"
    script.write_text(WRK_SCRIPT)
    (work / "bare.py").write_text(BARE_SERVER)
    shutil.copytree(ROOT / "config", work / "config")
    main_yaml = work / "config" / "meldpunt.yaml"
    text = main_yaml.read_text().replace(
        "rate_limit_per_minute: 10 ", "rate_limit_per_minute: 100000000 "
    )
    main_yaml.write_text(text.replace("data_dir: var", f"data_dir: {work / 'var'}"))
    db_url = args.database or f"sqlite:///{work / 'bench.db'}"
    env = {**os.environ, "MELDPUNT_DATABASE_URL": db_url, "MELDPUNT_LOG_LEVEL": "warning"}

    results: dict[str, dict[str, float]] = {}
    port = free_port()
    bare = subprocess.Popen([sys.executable, str(work / "bare.py"), str(port)])
    try:
        wait_ready(port, bare)
        results["bare aiohttp handler (JSON parse, no storage)"] = run_wrk(
            port, args.seconds, args.connections, script
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
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "meldpunt",
            "--config",
            str(main_yaml),
            "serve",
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_ready(port, server)
        backend = "PostgreSQL" if db_url.startswith("postgresql") else "SQLite FULL"
        label = f"meldpunt web-form intake ({backend})"
        results[label] = run_wrk(port, args.seconds, args.connections, script)
    finally:
        stop(server)

    print(f"\n{args.connections} connections, {args.seconds} s each, ~1 KB JSON body\n")
    print(f"{'path':60} {'msg/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8}")
    for name, r in results.items():
        print(f"{name:60} {r['rps']:9.0f} {r['p50']:8.1f} {r['p99']:8.1f} {int(r['non2xx']):8d}")
    (bare_r, mp_r) = results.values()
    print(f"\nratio meldpunt / bare handler: {mp_r['rps'] / bare_r['rps']:.2f}")

    acknowledged = int(mp_r["total"] - mp_r["non2xx"])
    if db_url.startswith("sqlite"):
        with sqlite3.connect(work / "bench.db") as conn:
            stored = conn.execute("SELECT count(*) FROM tickets").fetchone()[0]
        print(
            f"acknowledged {acknowledged}, stored {stored} tickets"
            + ("" if stored >= acknowledged else "  <-- LOST MESSAGES")
        )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
