"""Real throwaway servers for tests: a Dovecot IMAP server and an aiosmtpd SMTP sink.

``DovecotServer`` runs one Dovecot on 127.0.0.1 with everything (config, sockets, state,
log, mail) under a temp dir; tests get a fresh passwd-file user each, so one server serves
the whole session.  ``SmtpSink`` keeps every envelope it receives and can be told to fail.
"""

from __future__ import annotations

import imaplib
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer, Envelope as AioEnvelope, Session

VMAIL_USER = "mailbot-vmail"
FOLDERS = ("Processed", "Failed", "Quarantine", "Sent")
SBIN_PATHS = ("/usr/sbin", "/usr/bin", "/sbin", "/bin")


class ServerUnavailable(RuntimeError):
    """A test server could not be installed or started; the message says why and what to do."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def quote_folder(name: str) -> str:
    """An IMAP astring for imaplib, which does not quote mailbox names itself."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path=os.pathsep.join(SBIN_PATHS))


def _ensure_vmail_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(VMAIL_USER)
    except KeyError:
        pass
    useradd = _which("useradd")
    if useradd is None:
        raise ServerUnavailable("useradd not found; cannot create the mail system user")
    subprocess.run(
        [useradd, "-r", "-M", "-s", "/usr/sbin/nologin", VMAIL_USER],
        check=False, capture_output=True,
    )
    try:
        return pwd.getpwnam(VMAIL_USER)
    except KeyError as exc:
        raise ServerUnavailable(f"could not create system user {VMAIL_USER!r}") from exc


@dataclass(frozen=True)
class ImapAccount:
    """Where and how a test logs in."""

    host: str
    port: int
    user: str
    password: str


def make_certificate(directory: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """A throwaway self-signed certificate for ``host`` (IP SAN): (cert.pem, key.pem)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    if not cert.exists():
        openssl = _which("openssl")
        if openssl is None:
            raise ServerUnavailable("openssl not found; run scripts/install-test-deps")
        subprocess.run(
            [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={host}",
             "-addext", f"subjectAltName=IP:{host}", "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True, timeout=60)
        key.chmod(0o644)  # the Dovecot login process reads it as the mail user in these tests
    return cert, key


@dataclass
class DovecotServer:
    """A throwaway Dovecot 2.3 on 127.0.0.1; plaintext auth, Maildir, passwd-file users.

    With ``tls`` it requires TLS before any login (``ssl = required``, ``disable_plaintext_auth``).
    Dovecot counts a connection whose local and remote address are equal as secure and would
    let it log in unencrypted, so a TLS server should listen on another loopback address
    (``host="127.0.0.2"``): clients then connect from 127.0.0.1 and must use TLS."""

    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="mailbot-dovecot-")))
    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    tls: bool = False  # STARTTLS on ``port`` and implicit TLS on ``tls_port`` with ``cert_path``
    tls_port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        self.dovecot_path = _which("dovecot")
        self.doveadm_path = _which("doveadm")
        if not self.dovecot_path or not self.doveadm_path:
            raise ServerUnavailable(
                "dovecot/doveadm not found; run scripts/install-test-deps "
                "(or set MAILBOT_SKIP_SERVERS=1 to skip server tests)"
            )
        self._users: dict[str, str] = {}
        self._proc: subprocess.Popen[bytes] | None = None
        self._vmail = _ensure_vmail_user()
        self.root.chmod(0o755)  # the vmail user must traverse it
        self.config_path = self.root / "dovecot.conf"
        self.users_path = self.root / "users"
        self.log_path = self.root / "dovecot.log"
        self.base_dir = self.root / "run"
        self.state_dir = self.root / "state"
        self.homes = self.root / "home"
        for d in (self.base_dir, self.state_dir, self.homes):
            d.mkdir(exist_ok=True)
        os.chown(self.homes, self._vmail.pw_uid, self._vmail.pw_gid)
        # One passwd-file per user: Dovecot re-reads a changed file at most once a second,
        # so users added to one shared file within that second would fail to log in.
        self.users_path.mkdir(exist_ok=True)
        self.users_path.chmod(0o755)
        self.cert_path: Path | None = None
        self.key_path: Path | None = None
        if self.tls:
            self.cert_path, self.key_path = make_certificate(self.root, self.host)
        self._write_config()

    # ---- lifecycle -------------------------------------------------------------------

    def _write_config(self) -> None:
        folders = "".join(
            f"  mailbox {name} {{\n    auto = create\n"
            + ("    special_use = \\Sent\n" if name == "Sent" else "")
            + "  }\n"
            for name in FOLDERS
        )
        self.config_path.write_text(
            f"""\
base_dir = {self.base_dir}
state_dir = {self.state_dir}
log_path = {self.log_path}
info_log_path = {self.log_path}
protocols = imap
listen = {self.host}
{f"ssl = required{chr(10)}ssl_cert = <{self.cert_path}{chr(10)}ssl_key = <{self.key_path}" if self.tls else "ssl = no"}
disable_plaintext_auth = {"yes" if self.tls else "no"}
auth_mechanisms = plain login
auth_failure_delay = 0
first_valid_uid = {self._vmail.pw_uid}
first_valid_gid = {self._vmail.pw_gid}
default_login_user = {VMAIL_USER}
default_internal_user = {VMAIL_USER}
mail_location = maildir:~/Maildir
mail_fsync = never
mailbox_idle_check_interval = 1 secs
shutdown_clients = yes
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.users_path}/%u
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {self.users_path}/%u
}}
service imap-login {{
  inet_listener imap {{
    address = {self.host}
    port = {self.port}
  }}
  inet_listener imaps {{
    address = {self.host}
    port = {self.tls_port if self.tls else 0}{chr(10) + "    ssl = yes" if self.tls else ""}
  }}
}}
protocol imap {{
  mail_max_userip_connections = 200
}}
namespace inbox {{
  inbox = yes
{folders}}}
"""
        )

    def start(self, timeout: float = 15.0) -> None:
        """Start Dovecot and wait until it greets on the IMAP port."""
        # Foreground (-F) as our child, so stop() can reap it; output to a file, never a pipe.
        err_path = self.root / "start.err"
        with err_path.open("wb") as err:
            self._proc = subprocess.Popen(
                [self.dovecot_path, "-F", "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL, stdout=err, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((self.host, self.port), timeout=1) as s:
                    if s.recv(200).startswith(b"* OK"):
                        return
            except OSError:
                pass
            if self._proc.poll() is not None:
                raise ServerUnavailable(
                    f"dovecot failed to start (rc={self._proc.returncode}): "
                    f"{err_path.read_text(errors='replace').strip()}\n{self.log_tail()}"
                )
            time.sleep(0.05)
        self.stop()
        raise ServerUnavailable(f"dovecot did not answer on {self.host}:{self.port}\n{self.log_tail()}")

    def _master_pid(self) -> int | None:
        try:
            return int((self.base_dir / "master.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def _processes(self) -> dict[int, str]:
        """pid -> start time of the master and its children (imap, auth, log, ...)."""
        master = self._master_pid()
        if master is None:
            return {}
        found = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            pid, ppid, started = int(entry), int(fields[1]), fields[19]
            if pid == master or ppid == master:
                found[pid] = started
        return found

    @staticmethod
    def _alive(pid: int, started: str) -> bool:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return False
        return fields[19] == started and fields[0] != "Z"

    def stop(self, timeout: float = 10.0) -> None:
        """Stop Dovecot and every process it started, so existing connections are cut.

        Killing only the master would leave its imap processes serving old connections."""
        procs = self._processes()
        for pid in procs:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(self._alive(p, t) for p, t in procs.items()):
            time.sleep(0.02)
        for pid, started in procs.items():
            if self._alive(pid, started):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if self._proc is not None:
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        (self.base_dir / "master.pid").unlink(missing_ok=True)

    def restart(self) -> None:
        """Stop and start again on the same port; existing client connections are cut."""
        self.stop()
        self.start()

    def cleanup(self) -> None:
        """Stop the server and remove its temp dir."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no dovecot log)"

    # ---- users -----------------------------------------------------------------------

    def add_user(self, user: str | None = None, password: str | None = None) -> ImapAccount:
        """Create a passwd-file user (Dovecot re-reads the file on change)."""
        user = user or f"u{uuid.uuid4().hex[:10]}"
        password = password or uuid.uuid4().hex
        home = self.homes / user
        home.mkdir(exist_ok=True)
        os.chown(home, self._vmail.pw_uid, self._vmail.pw_gid)
        entry = self.users_path / user
        entry.write_text(f"{user}:{{PLAIN}}{password}:{self._vmail.pw_uid}:{self._vmail.pw_gid}::{home}\n")
        entry.chmod(0o644)
        self._users[user] = password
        return ImapAccount(self.host, self.port, user, password)

    def account(self, user: str) -> ImapAccount:
        return ImapAccount(self.host, self.port, user, self._users[user])

    def _default_user(self) -> str:
        if not self._users:
            self.add_user("mailbot")
        return next(iter(self._users))

    def connect(self, user: str | None = None) -> imaplib.IMAP4:
        """A logged-in imaplib connection (caller logs out)."""
        user = user or self._default_user()
        conn = imaplib.IMAP4(self.host, self.port, timeout=10)
        if self.tls:
            conn.starttls(ssl.create_default_context(cafile=str(self.cert_path)))
        conn.login(user, self._users[user])
        return conn

    # ---- mail ------------------------------------------------------------------------

    def append(
        self,
        raw: bytes,
        internaldate: datetime,
        folder: str = "INBOX",
        user: str | None = None,
        flags: Sequence[str] = (),
    ) -> int:
        """APPEND ``raw`` with the given arrival time (INTERNALDATE); returns the new UID."""
        conn = self.connect(user)
        try:
            typ, data = conn.append(
                quote_folder(folder),
                f"({' '.join(flags)})" if flags else None,
                imaplib.Time2Internaldate(internaldate),
                raw,
            )
            if typ != "OK":
                raise RuntimeError(f"APPEND to {folder} failed: {data!r}")
            m = re.search(rb"APPENDUID \d+ (\d+)", data[0] or b"")
            return int(m.group(1)) if m else 0
        finally:
            conn.logout()

    def list_folder(self, folder: str = "INBOX", user: str | None = None) -> list[tuple[int, bytes, tuple[str, ...]]]:
        """Every message in ``folder`` as (uid, raw, flags), without changing flags."""
        conn = self.connect(user)
        try:
            typ, data = conn.select(quote_folder(folder), readonly=True)
            if typ != "OK":
                raise RuntimeError(f"cannot select {folder}: {data!r}")
            if int(data[0]) == 0:
                return []
            typ, data = conn.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[])")
            result = []
            for item in data:
                if not isinstance(item, tuple):
                    continue
                meta = item[0].decode()
                uid = int(re.search(r"UID (\d+)", meta).group(1))
                flags_m = re.search(r"FLAGS \(([^)]*)\)", meta)
                flags = tuple(flags_m.group(1).split()) if flags_m else ()
                result.append((uid, item[1], flags))
            # FLAGS may follow the literal; refetch flags separately to be exact.
            typ, fdata = conn.uid("FETCH", "1:*", "(UID FLAGS)")
            flag_map = {}
            for line in fdata:
                text = line.decode() if isinstance(line, bytes) else line[0].decode()
                m = re.search(r"UID (\d+)", text)
                f = re.search(r"FLAGS \(([^)]*)\)", text)
                if m and f:
                    flag_map[int(m.group(1))] = tuple(x for x in f.group(1).split() if x != "\\Recent")
            return sorted((uid, raw, flag_map.get(uid, flags)) for uid, raw, flags in result)
        finally:
            conn.logout()

    def folders(self, user: str | None = None) -> list[str]:
        """Names of the user's folders."""
        conn = self.connect(user)
        try:
            typ, data = conn.list()
            names = []
            for line in data:
                if isinstance(line, tuple):  # name sent as a literal
                    names.append(line[1].decode())
                elif line:
                    m = re.search(r'(?:"((?:[^"\\]|\\.)*)"|(\S+))$', line.decode())
                    names.append(m.group(1) if m.group(1) is not None else m.group(2))
            return sorted(names)
        finally:
            conn.logout()

    def delete_folder(self, folder: str, user: str | None = None) -> None:
        conn = self.connect(user)
        try:
            conn.delete(quote_folder(folder))
        finally:
            conn.logout()

    def doveadm(self, *args: str) -> str:
        proc = subprocess.run(
            [self.doveadm_path, "-c", str(self.config_path), *args], capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise RuntimeError(f"doveadm {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc.stdout

    def set_uidvalidity(self, folder: str, n: int, user: str | None = None) -> None:
        """Change a folder's UIDVALIDITY (clients must then refetch everything)."""
        user = user or self._default_user()
        self.doveadm("mailbox", "update", "-u", user, "--uid-validity", str(n), folder)


# ---- SMTP ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceivedMail:
    """One envelope the sink accepted."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes


class _SinkHandler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: AioEnvelope) -> str:
        return self.sink._on_data(server, envelope)


class SmtpSink:
    """An aiosmtpd server on 127.0.0.1 that keeps every message and can be told to fail.

    ``fail_next(n, code=451)`` answers 4xx to the next n messages, ``reject_next(n)`` 5xx,
    ``drop_next(n)`` cuts the connection after DATA without answering.  ``messages`` holds the
    accepted ones, in order.
    """

    def __init__(self, host: str = "127.0.0.1", port: int | None = None, *, tls: str = "none",
                 cert: tuple[Path, Path] | None = None) -> None:
        """``tls``: "none", "starttls" (required) or "implicit", with ``cert`` = (cert, key)."""
        self.host = host
        self.port = port or free_port()
        self.messages: list[ReceivedMail] = []
        self.attempts = 0  # DATA commands seen, failed ones included
        self._faults: list[tuple[str, int]] = []  # ("fail"|"reject"|"drop", code) per message
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        params: dict = {}
        if tls != "none":
            import ssl

            assert cert is not None, "TLS needs a certificate"
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(cert[0]), str(cert[1]))
            params = {"ssl_context": context} if tls == "implicit" else \
                {"tls_context": context, "require_starttls": True}
        self._controller = Controller(_SinkHandler(self), hostname=host, port=self.port, **params)

    def start(self) -> SmtpSink:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def fail_next(self, n: int = 1, code: int = 451) -> None:
        with self._lock:
            self._faults.extend([("fail", code)] * n)

    def reject_next(self, n: int = 1, code: int = 550) -> None:
        with self._lock:
            self._faults.extend([("reject", code)] * n)

    def drop_next(self, n: int = 1) -> None:
        with self._lock:
            self._faults.extend([("drop", 0)] * n)

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()
            self._faults.clear()
            self.attempts = 0

    def wait_for(self, count: int, timeout: float = 5.0) -> list[ReceivedMail]:
        """Wait until at least ``count`` messages were accepted; return them all."""
        with self._arrived:
            self._arrived.wait_for(lambda: len(self.messages) >= count, timeout)
            return list(self.messages)

    def _on_data(self, server: SMTPServer, envelope: AioEnvelope) -> str:
        with self._lock:
            self.attempts += 1
            kind, code = self._faults.pop(0) if self._faults else ("ok", 250)
            if kind == "ok":
                raw = envelope.original_content or envelope.content or b""
                if isinstance(raw, str):
                    raw = raw.encode("utf-8", "surrogateescape")
                self.messages.append(
                    ReceivedMail(envelope.mail_from or "", tuple(envelope.rcpt_tos), bytes(raw))
                )
                self._arrived.notify_all()
                return "250 OK queued"
        if kind == "fail":
            return f"{code} 4.3.0 Try again later (test sink)"
        if kind == "reject":
            return f"{code} 5.7.1 Rejected (test sink)"
        # drop: abort the TCP connection before any reply to DATA
        server.transport.abort()
        return "421 4.4.2 connection dropped (test sink)"

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = [
    "DovecotServer",
    "ImapAccount",
    "ReceivedMail",
    "ServerUnavailable",
    "SmtpSink",
    "free_port",
]
