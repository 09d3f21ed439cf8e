"""A real Dovecot IMAP server for the e-mail tests, in a temporary folder on a free port.

Follows RECIPES ("Dovecot (real IMAP) for tests"): passwd-file users, maildir, no TLS, plaintext
logins; as root the mail belongs to ``nobody``, otherwise everything runs as the current user.
Each server is stopped by its fixture, at interpreter exit, and, when pytest itself is killed, by
a watchdog shell that outlives it.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import grp
import os
import pwd
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP
from imapclient import IMAPClient
from pydantic import SecretStr

from connectors.email.options import MailboxOptions
from tests.conftest import free_port, unavailable

MISSING_DOVECOT = (
    "Dovecot with its IMAP service not found: install it "
    "(Debian: apt-get install dovecot-imapd; ./scripts/test does it for you)"
)
_LIBEXEC_DIRS = ("/usr/lib/dovecot", "/usr/libexec/dovecot", "/usr/local/libexec/dovecot")
# passwd-file is re-read only when its modification time changes, which is too coarse to add
# users one by one during a test run: every server starts with this many accounts ready.
ACCOUNTS_PER_SERVER = 64


def find_dovecot() -> str | None:
    """The dovecot binary, when it and its imap service are installed."""
    binary = shutil.which("dovecot") or next(
        (p for p in ("/usr/sbin/dovecot", "/usr/local/sbin/dovecot") if os.access(p, os.X_OK)),
        None,
    )
    if binary is None or not any(Path(d, "imap").is_file() for d in _LIBEXEC_DIRS):
        return None
    return binary


@dataclass(frozen=True, slots=True)
class Account:
    """One mail user of a test server; each test gets its own, so its mailbox starts empty."""

    user: str
    password: str

    @property
    def name(self) -> str:
        """A mailbox name for meldpunt's configuration (and metrics labels)."""
        return self.user.split("@", 1)[0]


class DovecotServer:
    """Dovecot in a temporary folder, listening on 127.0.0.1 only, with helpers to inspect mail.

    Args:
        binary: The dovecot executable.
        tls: Also serve TLS: STARTTLS on ``port`` and implicit TLS on ``tls_port``, with a
            self-signed certificate for 127.0.0.1 in ``certificate``.
        extra_config: Settings appended to the configuration (e.g. ``imap_capability``).
    """

    def __init__(self, binary: str, *, tls: bool = False, extra_config: str = "") -> None:
        self.binary = binary
        self.root = Path(tempfile.mkdtemp(prefix="meldpunt-dovecot-"))
        self.mail = self.root / "mail"
        self.log = self.root / "dovecot.log"
        self.certificate = self.root / "cert.pem"
        self.port = 0
        self.tls_port = 0
        self._tls = tls
        self._extra_config = extra_config
        self._process: subprocess.Popen[bytes] | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._accounts = [
            Account(f"citizen{n:02d}@example.test", f"pw{n:02d}-{secrets.token_hex(4)}")
            for n in range(ACCOUNTS_PER_SERVER)
        ]
        self._handed_out = 0
        for folder in ("run", "state", "mail"):
            (self.root / folder).mkdir()
        (self.root / "users").write_text(
            "".join(f"{a.user}:{{PLAIN}}{a.password}\n" for a in self._accounts)
        )
        if os.geteuid() == 0:
            # The mail processes run as nobody: they must reach the mail through this folder.
            self.root.chmod(0o711)
            shutil.chown(self.mail, "nobody", "nogroup")
        atexit.register(self.close)
        self._start_watchdog()
        if tls:
            self._make_certificate()

    def _make_certificate(self) -> None:
        openssl = shutil.which("openssl")
        if openssl is None:
            self.close()
            unavailable("the TLS tests need the openssl command (Debian: apt-get install openssl)")
        made = subprocess.run(
            [
                openssl, "req", "-x509", "-nodes",
                "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                "-keyout", str(self.root / "key.pem"), "-out", str(self.certificate),
                "-days", "2", "-subj", "/CN=localhost",
                "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            ],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if made.returncode != 0:
            raise RuntimeError(f"openssl could not make a test certificate:\n{made.stderr}")

    # --- lifecycle ----------------------------------------------------------------------------

    def _config(self) -> str:
        root = self.root
        if os.geteuid() == 0:
            owner, unprivileged = "uid=nobody gid=nogroup", ""
        else:
            # Dovecot runs without root when every service runs as the one user there is.
            user = pwd.getpwuid(os.geteuid()).pw_name
            group = grp.getgrgid(os.getegid()).gr_name
            owner = f"uid={os.geteuid()} gid={os.getegid()}"
            unprivileged = (
                f"default_internal_user = {user}\ndefault_internal_group = {group}\n"
                f"default_login_user = {user}\nservice anvil {{\n  chroot =\n}}\n"
            )
        chroot = "" if os.geteuid() == 0 else "  chroot =\n"
        ssl = (
            f"ssl = yes\nssl_cert = <{self.certificate}\nssl_key = <{root}/key.pem\n"
            if self._tls
            else "ssl = no\n"
        )
        return f"""\
protocols = imap
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
log_path = {self.log}
{ssl}disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
mail_location = maildir:{root}/mail/%u/Maildir
mail_fsync = never
# IDLE learns of new mail by inotify; where that is missing, this bounds the wait.
mailbox_idle_check_interval = 1 secs
{unprivileged}passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users
}}
userdb {{
  driver = static
  args = {owner} home={root}/mail/%u
}}
service imap-login {{
{chroot}  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.tls_port}
  }}
}}
{self._extra_config}
"""

    def start(self) -> None:
        """Start on a free port, or on the same port again after ``stop``."""
        restarting = self.port != 0
        for _attempt in range(3):
            if not restarting:
                self.port = free_port()
                self.tls_port = free_port() if self._tls else 0
            config = self.root / "dovecot.conf"
            config.write_text(self._config())
            with (self.root / "dovecot.out").open("ab") as out:
                self._process = subprocess.Popen(
                    [self.binary, "-F", "-c", str(config)],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    cwd=self.root, start_new_session=True,
                )  # fmt: skip
            # The watchdog stops this process group if pytest dies without stopping it.
            (self.root / "pgid").write_text(str(self._process.pid))
            if self._wait_until_serving():
                return
            # Taken by someone else in the meantime, or (restarting) not yet let go by the
            # processes of the server just stopped.
            self.stop()
            if restarting:
                time.sleep(0.5)
        raise RuntimeError(f"Dovecot did not start on port {self.port}:\n{self._logs()}")

    def _wait_until_serving(self) -> bool:
        assert self._process is not None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    if sock.recv(64).startswith(b"* OK"):
                        return True
            except OSError:
                pass
            time.sleep(0.02)
        return False

    def stop(self) -> None:
        """Stop the server and drop every client connection, as a real restart does."""
        process, self._process = self._process, None
        if process is None:
            return
        (self.root / "pgid").unlink(missing_ok=True)
        # The whole process group: stopping only the master leaves logged-in sessions running.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def restart(self) -> None:
        """Stop, then start again on the same port with the same mail."""
        self.stop()
        self.start()

    def _start_watchdog(self) -> None:
        # atexit does not run when pytest is killed (a CI time-out, SIGKILL); this shell, in a
        # session of its own so Ctrl-C does not reach it, stops the server and removes the folder.
        script = (
            'while kill -0 "$1" 2>/dev/null; do sleep 1; done; '
            'if pg=$(cat "$0/pgid" 2>/dev/null); then '
            'kill -TERM -- "-$pg" 2>/dev/null; sleep 1; kill -KILL -- "-$pg" 2>/dev/null; fi; '
            'rm -rf "$0"'
        )
        self._watchdog = subprocess.Popen(
            ["sh", "-c", script, str(self.root), str(os.getpid())],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            cwd="/", start_new_session=True,
        )  # fmt: skip

    def close(self) -> None:
        """Stop the server and the watchdog and remove the folder; idempotent."""
        atexit.unregister(self.close)
        self.stop()
        if self._watchdog is not None:
            self._watchdog.kill()
            self._watchdog.wait()
            self._watchdog = None
        shutil.rmtree(self.root, ignore_errors=True)

    def _logs(self) -> str:
        parts = [p.read_text(errors="replace") for p in (self.root / "dovecot.out", self.log)]
        return "".join(p for p in parts if p) if any(parts) else "(no log)"

    # --- accounts and mail ----------------------------------------------------------------------

    def new_account(self) -> Account:
        """A user nobody used before on this server: an empty mailbox."""
        if self._handed_out == len(self._accounts):
            raise RuntimeError("this Dovecot has no fresh accounts left; raise ACCOUNTS_PER_SERVER")
        account = self._accounts[self._handed_out]
        self._handed_out += 1
        return account

    def mailbox_options(self, account: Account, **changes: Any) -> MailboxOptions:
        """meldpunt's configuration of ``account``'s mailbox on this server."""
        values: dict[str, Any] = {
            "name": account.name,
            "host": "127.0.0.1",
            "port": self.tls_port if changes.get("tls") == "ssl" else self.port,
            "tls": "none",
            "user": account.user,
            "password": SecretStr(account.password),
            "timeout_seconds": 5.0,
        }
        return MailboxOptions(**(values | changes))

    @contextlib.contextmanager
    def connect(self, account: Account) -> Iterator[Any]:
        """A logged-in IMAPClient for ``account`` (a second client, as a mail program would be)."""
        with IMAPClient("127.0.0.1", self.port, ssl=False, timeout=5) as client:
            client.login(account.user, account.password)
            yield client

    def append(
        self, account: Account, *messages: bytes, folder: str = "INBOX", flags: Sequence[bytes] = ()
    ) -> list[int]:
        """Store ``messages`` in ``folder`` (as an MTA would); returns their UIDs."""
        uids: list[int] = []
        with self.connect(account) as client:
            for message in messages:
                answer = client.append(folder, message, flags=flags)
                # b"[APPENDUID <uidvalidity> <uid>] Append completed."
                uids.append(int(answer.split(b"]", 1)[0].split()[-1]))
        return uids

    def folders(self, account: Account) -> list[str]:
        with self.connect(account) as client:
            return sorted(str(name) for _flags, _sep, name in client.list_folders())

    def flags(self, account: Account, folder: str = "INBOX") -> dict[int, set[str]]:
        """UID → flags of every mail in ``folder`` (``\\Recent`` left out: it is per session)."""
        with self.connect(account) as client:
            client.select_folder(folder, readonly=True)
            found = client.get_flags(client.search(["ALL"]))
        return {
            int(uid): {f.decode() for f in flags if f != b"\\Recent"}
            for uid, flags in found.items()
        }

    def messages(self, account: Account, folder: str = "INBOX") -> dict[int, bytes]:
        """UID → raw bytes of every mail in ``folder``, without touching ``\\Seen``."""
        with self.connect(account) as client:
            client.select_folder(folder, readonly=True)
            uids = client.search(["ALL"])
            found = client.fetch(uids, ["BODY.PEEK[]"]) if uids else {}
        return {int(uid): bytes(data[b"BODY[]"]) for uid, data in found.items()}

    def remove_flags(self, account: Account, flags: Sequence[bytes], folder: str = "INBOX") -> None:
        """Take ``flags`` off every mail in ``folder``, as someone in a mail program might."""
        with self.connect(account) as client:
            client.select_folder(folder)
            uids = client.search(["ALL"])
            if uids:
                client.remove_flags(uids, flags)

    def delete(self, account: Account, uids: Sequence[int], folder: str = "INBOX") -> None:
        """Delete and expunge mails, as someone cleaning up the mailbox would."""
        with self.connect(account) as client:
            client.select_folder(folder)
            client.delete_messages(list(uids))
            client.uid_expunge(list(uids))

    def uidvalidity(self, account: Account, folder: str = "INBOX") -> int:
        with self.connect(account) as client:
            return int(client.folder_status(folder, [b"UIDVALIDITY"])[b"UIDVALIDITY"])

    def change_uidvalidity(self, account: Account, folder: str = "INBOX") -> int:
        """Make Dovecot renumber ``folder`` as a rebuilt index does; returns the new UIDVALIDITY.

        A maildir folder's UIDVALIDITY and the UID of each of its files are kept in
        ``dovecot-uidlist``; the index files cache both. With all of them gone Dovecot rescans the
        folder: the mail and its flags stay, UIDs are handed out again from 1 under a new
        UIDVALIDITY (one above the last, from ``dovecot-uidvalidity``). A session that had the
        folder open gets only errors from then on (``NO [SERVERBUG]`` to SELECT, or a disconnect
        with "IMAP session state is inconsistent, please relogin") until it logs in again.
        """
        before = self.uidvalidity(account, folder)
        maildir = self.mail / account.user / "Maildir"
        if folder != "INBOX":
            maildir /= f".{folder}"
        for path in [maildir / "dovecot-uidlist", *maildir.glob("dovecot.index*")]:
            path.unlink()
        after = self.uidvalidity(account, folder)  # this STATUS makes Dovecot rebuild the list
        if after == before:
            raise AssertionError(f"Dovecot kept UIDVALIDITY {before} of {folder}")
        return after


def _dovecot_binary() -> str:
    binary = find_dovecot()
    if binary is None:
        unavailable(MISSING_DOVECOT)
    return binary


@contextlib.contextmanager
def running_dovecot(*, tls: bool = False, extra_config: str = "") -> Iterator[DovecotServer]:
    """A started server, stopped and removed afterwards; skips (fails in CI) without Dovecot."""
    server = DovecotServer(_dovecot_binary(), tls=tls, extra_config=extra_config)
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def dovecot() -> Iterator[DovecotServer]:
    """One Dovecot for the test module; tests keep apart by each using a ``new_account()``."""
    with running_dovecot() as server:
        yield server


@pytest.fixture
def own_dovecot() -> Iterator[DovecotServer]:
    """A Dovecot for one test: for restarts, and for failed logins, whose penalty Dovecot applies
    to every later login from 127.0.0.1 for a while."""
    with running_dovecot() as server:
        yield server


@pytest.fixture
def account(dovecot: DovecotServer) -> Account:
    """A fresh, empty mailbox on the module's Dovecot."""
    return dovecot.new_account()


# --- a real SMTP server (aiosmtpd) ------------------------------------------------------------

Start = Callable[..., Awaitable[int]]
"""Starts an aiosmtpd server with a handler on a free (or given) port; returns the port."""


@dataclass(slots=True)
class Received:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    session: object
    encrypted: bool


class Recorder:
    """Accepts everything, except the commands given a scripted reply."""

    def __init__(
        self, *, mail: str | None = None, rcpt: str | None = None, data: str | None = None
    ) -> None:
        self.replies = {"MAIL": mail, "RCPT": rcpt, "DATA": data}
        self.received: list[Received] = []

    async def handle_MAIL(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if reply := self.replies["MAIL"]:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if reply := self.replies["RCPT"]:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any
    ) -> str:
        if reply := self.replies["DATA"]:
            return reply
        encrypted = server.transport.get_extra_info("ssl_object") is not None
        self.received.append(
            Received(
                envelope.mail_from, list(envelope.rcpt_tos), envelope.content, session, encrypted
            )
        )
        return "250 2.0.0 Ok: queued as 4711"


@pytest.fixture
async def start_smtp() -> AsyncIterator[Start]:
    """Starts aiosmtpd servers on free ports (``ssl`` for implicit TLS); closes them after."""
    servers: list[asyncio.Server] = []
    loop = asyncio.get_running_loop()

    async def start(
        handler: Recorder,
        *,
        ssl_context: ssl.SSLContext | None = None,
        port: int = 0,
        **smtp: Any,
    ) -> int:
        server = await loop.create_server(
            lambda: SMTP(handler, hostname="mail.test", loop=loop, **smtp),
            "127.0.0.1",
            port,
            ssl=ssl_context,
        )
        servers.append(server)
        bound: int = server.sockets[0].getsockname()[1]
        return bound

    yield start
    for server in servers:
        server.close()
        # wait_closed() also waits for open client connections; the service under test may be
        # torn down only after this fixture and still hold one, so do not wait for it forever.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 2)


def imap_env(monkeypatch: pytest.MonkeyPatch, dovecot: DovecotServer, account: Account) -> None:
    """Point meldpunt's mailbox at ``account`` on ``dovecot`` (plain IMAP on 127.0.0.1)."""
    for name, value in {
        "IMAP_HOST": "127.0.0.1",
        "IMAP_PORT": str(dovecot.port),
        "IMAP_TLS": "none",
        "IMAP_USER": account.user,
        "IMAP_PASSWORD": account.password,
    }.items():
        monkeypatch.setenv(name, value)
