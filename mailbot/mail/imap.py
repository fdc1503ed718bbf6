"""The IMAP mailbox: fetch by UIDVALIDITY+UID with BODY.PEEK, move/flag after recording, IDLE.

The only module importing imap-tools.  imap-tools opens, logs in and selects; commands whose
exact bytes matter (UID FETCH with INTERNALDATE, STATUS, STORE without EXPUNGE, IDLE) go
through its imaplib client directly, so the raw message is the server's literal, untouched.

Connections are lazy and re-made after network errors: an idempotent command (STATUS, a fetch
batch, MOVE, STORE) is retried once on a fresh connection; APPEND is not (it could duplicate).
"""

from __future__ import annotations

import imaplib
import re
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import TypeVar

from imap_tools import BaseMailBox, MailBox, MailBoxStartTls, MailBoxUnencrypted
from imap_tools.errors import ImapToolsError
from imap_tools.utils import encode_folder

from mailbot.errors import MailboxError
from mailbot.mail.source import FetchedMessage, ImapSettings

T = TypeVar("T")

#: Errors meaning "the connection is gone", as opposed to a server's NO/BAD answer.
NETWORK_ERRORS = (imaplib.IMAP4.abort, OSError, EOFError)
MAX_IDLE_SECONDS = 25 * 60  # RFC 2177: re-issue IDLE at least every 29 minutes

_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}
_INTERNALDATE = re.compile(
    rb'INTERNALDATE "\s?(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)"')
_UID = re.compile(rb"\bUID (\d+)")
_STATUS = re.compile(rb"\b(UIDVALIDITY|UIDNEXT) (\d+)")


def parse_internaldate(meta: bytes) -> datetime:
    """The INTERNALDATE in a FETCH response as an aware datetime, keeping the server's offset."""
    m = _INTERNALDATE.search(meta)
    if m is None:
        raise MailboxError(f"FETCH response without INTERNALDATE: {meta[:200]!r}")
    day, mon, year, hh, mm, ss, sign, oh, om = m.groups()
    offset = timedelta(hours=int(oh), minutes=int(om)) * (-1 if sign == b"-" else 1)
    return datetime(int(year), _MONTHS[mon.decode().title()], int(day), int(hh), int(mm), int(ss),
                    tzinfo=timezone(offset))


def parse_fetch(data: list) -> list[tuple[int, datetime, bytes]]:
    """(uid, internaldate, raw) for each FETCH response carrying a message literal.

    imaplib gives a literal as a tuple ``(b'N (UID u INTERNALDATE ... BODY[] {n}', raw)``
    followed by its trailer bytes (``b')'`` or more items); FETCH responses without a literal
    (unsolicited flag updates) are plain bytes and are skipped.
    """
    found: list[tuple[bytes, bytes]] = []  # (meta incl. trailer, raw)
    after_literal = False
    for item in data:
        if isinstance(item, tuple):
            found.append((item[0], item[1]))
            after_literal = True
        elif isinstance(item, bytes) and after_literal:
            found[-1] = (found[-1][0] + b" " + item, found[-1][1])
            after_literal = False
        else:
            after_literal = False
    result = []
    for meta, raw in found:
        m = _UID.search(meta)
        if m is None:
            raise MailboxError(f"FETCH response without UID: {meta[:200]!r}")
        result.append((int(m.group(1)), parse_internaldate(meta), raw))
    return result


def parse_arrivals(data: list) -> list[tuple[int, datetime]]:
    """(uid, internaldate) from the answer to ``UID FETCH ... (UID INTERNALDATE)``; responses
    without both (unsolicited flag updates) are skipped."""
    found = []
    for item in data:
        meta = item[0] if isinstance(item, tuple) else item
        if not isinstance(meta, bytes):
            continue
        uid = _UID.search(meta)
        if uid is not None and _INTERNALDATE.search(meta):
            found.append((int(uid.group(1)), parse_internaldate(meta)))
    return found


class ImapSource:
    """A folder on an IMAP server as a :class:`~mailbot.mail.source.MailSource`."""

    def __init__(self, settings: ImapSettings) -> None:
        self.settings = settings
        self.name = settings.source_name
        self._mb: BaseMailBox | None = None
        self._capabilities: frozenset[str] = frozenset()
        self._lock = threading.RLock()
        self._closed = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)

    def __repr__(self) -> str:
        return f"ImapSource({self.name!r})"

    # ---- connection ------------------------------------------------------------------

    def _where(self) -> str:
        return f"{self.settings.host}:{self.settings.port} as {self.settings.user}"

    def _connect(self) -> BaseMailBox:
        s = self.settings
        try:
            if s.tls == "implicit":
                mb: BaseMailBox = MailBox(s.host, s.port, timeout=s.timeout,
                                          ssl_context=ssl.create_default_context(cafile=s.ca_file))
            elif s.tls == "starttls":
                mb = MailBoxStartTls(s.host, s.port, timeout=s.timeout,
                                     ssl_context=ssl.create_default_context(cafile=s.ca_file))
            else:
                mb = MailBoxUnencrypted(s.host, s.port, timeout=s.timeout)
        except (*NETWORK_ERRORS, imaplib.IMAP4.error, ImapToolsError) as exc:
            raise MailboxError(f"cannot connect to IMAP {self._where()} ({s.tls}): {exc}") from exc
        try:
            mb.login(s.user, s.password.get_secret_value(), initial_folder=None)
        except ImapToolsError as exc:
            self._drop(mb)
            raise MailboxError(f"IMAP login failed for {self._where()}: server said no") from exc
        except (*NETWORK_ERRORS, imaplib.IMAP4.error) as exc:
            self._drop(mb)
            raise MailboxError(f"IMAP login to {self._where()} failed: {exc}") from exc
        try:
            # Capabilities change after login (MOVE, UIDPLUS...): ask again.
            typ, dat = mb.client.capability()
            self._capabilities = frozenset(dat[-1].decode().upper().split()) if typ == "OK" else frozenset()
            typ, dat = mb.client.select(encode_folder(s.folder))
            if typ != "OK":
                raise MailboxError(f"cannot select folder {s.folder!r} on {self._where()}: {dat!r}")
            mb.client.untagged_responses.pop("EXISTS", None)  # the count at SELECT is not news
        except NETWORK_ERRORS as exc:
            self._drop(mb)
            raise MailboxError(f"IMAP {self._where()} dropped during setup: {exc}") from exc
        except MailboxError:
            self._drop(mb)
            raise
        return mb

    @staticmethod
    def _drop(mb: BaseMailBox | None) -> None:
        if mb is None:
            return
        try:
            mb.client.shutdown()
        except Exception:  # noqa: BLE001 - already broken; nothing to report
            pass

    def _client(self) -> imaplib.IMAP4:
        if self._closed:
            raise MailboxError(f"IMAP source {self.name} is closed")
        if self._mb is None:
            self._mb = self._connect()
        client = self._mb.client
        # Keep only what we read later: unsolicited responses would pile up in a long session.
        for key in list(client.untagged_responses):
            if key != "EXISTS":
                del client.untagged_responses[key]
        return client

    def _reset(self) -> None:
        mb, self._mb = self._mb, None
        self._drop(mb)

    def _run(self, what: str, op: Callable[[imaplib.IMAP4], T], *, retry: bool = True) -> T:
        """Run ``op`` on a live connection; on a network error reconnect and (maybe) retry once."""
        with self._lock:
            for attempt in (1, 2):
                client = self._client()
                try:
                    return op(client)
                except NETWORK_ERRORS as exc:
                    self._reset()
                    if not retry or attempt == 2 or self._closed:
                        raise MailboxError(f"IMAP {what} on {self.name} failed: connection lost ({exc})") from exc
                except imaplib.IMAP4.error as exc:
                    raise MailboxError(f"IMAP {what} on {self.name} failed: {exc}") from exc
        raise AssertionError("unreachable")

    @staticmethod
    def _ok(what: str, result: tuple) -> list:
        typ, data = result
        if typ != "OK":
            raise MailboxError(f"IMAP {what} answered {typ}: {data!r}")
        return data

    # ---- MailSource ------------------------------------------------------------------

    def status(self) -> tuple[int, int]:
        """(UIDVALIDITY, UIDNEXT) of the folder with one STATUS command."""

        def op(client: imaplib.IMAP4) -> tuple[int, int]:
            # STATUS on the selected folder may answer from the session's stale view (Dovecot
            # does): leave the folder first.  Costs one extra round trip after a fetch, none
            # on the following idle polls.
            self._unselect(client)
            client.untagged_responses.pop("EXISTS", None)  # STATUS is fresher than any of these
            data = self._ok("STATUS", client.status(encode_folder(self.settings.folder),
                                                    "(UIDVALIDITY UIDNEXT)"))
            values = {k.decode(): int(v) for line in data if isinstance(line, bytes)
                      for k, v in _STATUS.findall(line)}
            if "UIDVALIDITY" not in values or "UIDNEXT" not in values:
                raise MailboxError(f"IMAP STATUS on {self.name} lacks UIDVALIDITY/UIDNEXT: {data!r}")
            return values["UIDVALIDITY"], values["UIDNEXT"]

        return self._run("STATUS", op)

    def fetch_after(self, uidvalidity: int | None, last_uid: int) -> Iterator[FetchedMessage]:
        """New messages (uid > last_uid) in arrival order (INTERNALDATE, ties by UID),
        ``fetch_batch`` at a time, with BODY.PEEK (no \\Seen).  A different or unknown
        ``uidvalidity`` refetches the folder.

        The arrival times come first (one ``UID FETCH n:* (UID INTERNALDATE)``), then the bodies
        in that order.  Each message's ``cursor_uid`` is the highest UID below which every new
        message has been handed out, so a crash mid-poll never skips an earlier-UID message."""
        # The selected view only learns of new mail when the server syncs it (NOOP);
        # STATUS reads the index directly and is what decides the UIDVALIDITY.
        current, _ = self.status()
        self._run("SELECT", self._select)
        after = last_uid if uidvalidity == current else 0

        def arrivals(client: imaplib.IMAP4) -> list[tuple[int, datetime]]:
            self._select(client)
            data = self._ok("UID FETCH", client.uid("FETCH", f"{after + 1}:*", "(UID INTERNALDATE)"))
            # "n:*" matches the highest UID even when it is below n: filter.
            return sorted({u: d for u, d in parse_arrivals(data) if u > after}.items())

        dated = self._run("UID FETCH", arrivals)
        order = [u for u, _ in sorted(dated, key=lambda ud: (ud[1], ud[0]))]
        by_uid = sorted(u for u, _ in dated)
        handed: set[int] = set()
        floor = 0  # index into by_uid: every UID before it has been handed out
        batch = self.settings.fetch_batch
        for i in range(0, len(order), batch):
            wanted = order[i:i + batch]

            def fetch(client: imaplib.IMAP4, wanted: list[int] = wanted) -> list[tuple[int, datetime, bytes]]:
                self._select(client)
                data = self._ok("UID FETCH", client.uid(
                    "FETCH", ",".join(map(str, wanted)), "(UID INTERNALDATE RFC822.SIZE BODY.PEEK[])"))
                return parse_fetch(data)

            got = {uid: (arrived, raw) for uid, arrived, raw in self._run("UID FETCH", fetch)}
            for uid in wanted:
                handed.add(uid)  # an expunged UID does not come back: nothing to wait for
                while floor < len(by_uid) and by_uid[floor] in handed:
                    floor += 1
                if uid not in got:
                    continue
                arrived, raw = got[uid]
                yield FetchedMessage(source=self.name, uidvalidity=current, uid=uid,
                                     key=str(uid), arrived_at=arrived, raw=raw,
                                     cursor_uid=by_uid[floor - 1] if floor else after)

    def settle(self, key: str, folder: str) -> None:
        """Move message ``key`` (a UID) into ``folder``, creating the folder when missing."""
        self.settle_many([key], folder)

    def settle_many(self, keys: list[str], folder: str) -> None:
        """Move several messages into ``folder`` with one UID MOVE (a backlog's round trips)."""
        if not keys:
            return
        uid_set = ",".join(str(self._uid(k)) for k in keys)

        def op(client: imaplib.IMAP4) -> None:
            self._select(client)
            result = self._move(client, uid_set, folder)
            if result[0] != "OK" and self._missing_folder(client, result):
                self._create(client, folder)
                result = self._move(client, uid_set, folder)
            self._ok(f"MOVE {len(keys)} message(s) to {folder!r}", result)

        self._run("MOVE", op)

    def _move(self, client: imaplib.IMAP4, uid: int | str, folder: str) -> tuple:
        target = encode_folder(folder)
        if "MOVE" in self._capabilities:
            return client.uid("MOVE", str(uid), target)
        result = client.uid("COPY", str(uid), target)
        if result[0] != "OK":
            return result
        self._ok("STORE \\Deleted", client.uid("STORE", str(uid), "+FLAGS.SILENT", "(\\Deleted)"))
        if "UIDPLUS" in self._capabilities:
            return client.uid("EXPUNGE", str(uid))
        return client.expunge()

    @staticmethod
    def _missing_folder(client: imaplib.IMAP4, result: tuple) -> bool:
        text = b" ".join(d for d in result[1] if isinstance(d, bytes)).upper()
        return bool(client.untagged_responses.pop("TRYCREATE", None)) or b"TRYCREATE" in text \
            or b"NONEXISTENT" in text or b"DOESN'T EXIST" in text

    def _create(self, client: imaplib.IMAP4, folder: str) -> None:
        typ, data = client.create(encode_folder(folder))
        if typ != "OK" and b"ALREADYEXISTS" not in b" ".join(d for d in data if isinstance(d, bytes)).upper():
            raise MailboxError(f"cannot create IMAP folder {folder!r} on {self.name}: {data!r}")
        client.subscribe(encode_folder(folder))

    def flag(self, key: str, flag: str) -> None:
        """Add ``flag`` to message ``key`` (STORE +FLAGS.SILENT; no EXPUNGE)."""
        uid = self._uid(key)
        def op(client: imaplib.IMAP4) -> None:
            self._select(client)
            self._ok(f"STORE {flag} on {uid}", client.uid("STORE", str(uid), "+FLAGS.SILENT", f"({flag})"))

        self._run("STORE", op)

    def append(self, folder: str, raw: bytes, flags: tuple[str, ...] = ("\\Seen",)) -> None:
        """APPEND ``raw`` to ``folder`` (created when missing).  Not retried: it could duplicate."""

        def op(client: imaplib.IMAP4) -> None:
            flag_arg = f"({' '.join(flags)})" if flags else None
            when = imaplib.Time2Internaldate(datetime.now(timezone.utc))
            result = client.append(encode_folder(folder), flag_arg, when, raw)
            if result[0] != "OK" and self._missing_folder(client, result):
                self._create(client, folder)
                result = client.append(encode_folder(folder), flag_arg, when, raw)
            self._ok(f"APPEND to {folder!r}", result)

        self._run("APPEND", op, retry=False)

    def wait_for_new(self, timeout: float) -> bool:
        """IDLE until the server reports new mail (True), ``timeout`` passes or ``close()``
        is called (False).  Without IDLE, poll STATUS every ``poll_interval`` seconds."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._lock:
            if self._closed:
                return False
            self._drain_wake()
            client = self._run("connect", lambda c: c)
            if "IDLE" in self._capabilities and client.state != "SELECTED":
                self._run("SELECT", self._select)
            if client.untagged_responses.pop("EXISTS", None):
                return True  # new mail was announced during an earlier command
            if "IDLE" not in self._capabilities:
                return self._poll_status(deadline)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    return False
                try:
                    if self._idle_once(client, min(remaining, MAX_IDLE_SECONDS)):
                        return True
                except NETWORK_ERRORS:
                    self._reset()
                    return True  # connection lost (e.g. server restart): let the caller poll
                except imaplib.IMAP4.error as exc:
                    self._reset()
                    raise MailboxError(f"IMAP IDLE on {self.name} failed: {exc}") from exc

    def _idle_once(self, client: imaplib.IMAP4, seconds: float) -> bool:
        """One IDLE ... DONE exchange; True when an EXISTS arrived."""
        tag = client._command("IDLE")  # noqa: SLF001 - imaplib has no public IDLE
        while True:  # wait for "+ idling"
            if client._get_response() is None:  # noqa: SLF001
                break
            if client.tagged_commands.get(tag):
                raise imaplib.IMAP4.error(f"IDLE refused: {client.tagged_commands.pop(tag)!r}")
        end = time.monotonic() + seconds
        news = False
        sock = client.socket()
        while not news and not self._closed:
            remaining = end - time.monotonic()
            if remaining <= 0:
                break
            if not self._buffered(client):
                ready, _, _ = select.select([sock, self._wake_r], [], [], remaining)
                if self._wake_r in ready:
                    break
                if sock not in ready:
                    continue
            client._get_response()  # noqa: SLF001 - one line, e.g. "* 3 EXISTS"
            if "BYE" in client.untagged_responses:
                raise imaplib.IMAP4.abort("server said BYE during IDLE")
            news = bool(client.untagged_responses.pop("EXISTS", None))
        client.send(b"DONE\r\n")
        while client.tagged_commands.get(tag) is None:
            client._get_response()  # noqa: SLF001
        typ, data = client.tagged_commands.pop(tag)
        if typ != "OK":
            raise imaplib.IMAP4.error(f"IDLE ended with {typ}: {data!r}")
        return news or bool(client.untagged_responses.pop("EXISTS", None))

    @staticmethod
    def _buffered(client: imaplib.IMAP4) -> bool:
        """True when imaplib's reader already holds bytes (select() would not see them)."""
        sock = client.socket()
        old = sock.gettimeout()
        try:
            sock.settimeout(0)
            return bool(client.file.peek(1))
        except (BlockingIOError, ssl.SSLWantReadError, socket.timeout):
            return False
        except OSError:
            return True  # let the read report the error
        finally:
            sock.settimeout(old)

    def _poll_status(self, deadline: float) -> bool:
        _, start_next = self.status()
        while not self._closed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            ready, _, _ = select.select([self._wake_r], [], [], min(remaining, self.settings.poll_interval))
            if ready or self._closed:
                return False
            if self.status()[1] != start_next:
                return True
        return False

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(64):
                pass
        except (BlockingIOError, OSError):
            pass

    def close(self) -> None:
        """Interrupt a waiting ``wait_for_new`` and log out.  Idempotent, thread-safe."""
        if self._closed:
            return
        self._closed = True
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        with self._lock:
            mb, self._mb = self._mb, None
            if mb is not None:
                try:
                    mb.client.logout()
                except Exception:  # noqa: BLE001 - logging out of a broken connection
                    self._drop(mb)
            self._wake_r.close()
            self._wake_w.close()

    def __enter__(self) -> ImapSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _select(self, client: imaplib.IMAP4) -> None:
        """Select the folder again if ``status()`` left it."""
        if client.state != "SELECTED":
            self._ok(f"SELECT {self.settings.folder!r}", client.select(encode_folder(self.settings.folder)))
            client.untagged_responses.pop("EXISTS", None)  # the count at SELECT is not news

    def _unselect(self, client: imaplib.IMAP4) -> None:
        if client.state == "SELECTED":
            if "UNSELECT" in self._capabilities:
                self._ok("UNSELECT", client.unselect())
            else:
                self._ok("CLOSE", client.close())

    def _uid(self, key: str) -> int:
        try:
            uid = int(key)
        except ValueError as exc:
            raise MailboxError(f"not an IMAP UID key: {key!r}") from exc
        if uid <= 0:
            raise MailboxError(f"not an IMAP UID key: {key!r}")
        return uid
