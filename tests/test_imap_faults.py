"""IMAP faults against the real Dovecot: connections cut mid-FETCH and mid-IDLE by a TCP proxy
that sits between mailbot and the server, and a folder whose UIDVALIDITY changed with UIDs reused.

Promise: no message is lost or recorded twice, nothing is answered twice, the next poll completes.
"""

from __future__ import annotations

import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from daemon_harness import MailbotProcess, write_config
from forms_factory import make_annex3_xlsx, nominee
from intake_harness import imap_settings, open_intake, parse_reply, shanghai
from mail_factory import make_mail
from mailbot.errors import MailboxError
from mailbot.mail.imap import ImapSource
from mailbot.mail.source import ImapSettings
from mailbot.pipeline import Intake
from servers import quote_folder

pytestmark = [pytest.mark.servers, pytest.mark.timeout(120)]

ON_TIME = shanghai(2020, 11, 2, 10, 0)


# ---- a cutting proxy -------------------------------------------------------------------


class CuttingProxy:
    """TCP proxy on 127.0.0.1 to ``(host, port)``.

    ``cut_fetch(after_bytes, times, skip)``: after ``skip`` untouched ``UID FETCH`` commands, the
    connection carrying each of the next ``times`` ones is closed after ``after_bytes`` bytes of
    the server's answer.  ``cut_all()`` closes every open
    connection now.  ``commands`` records each client command line (tag stripped), per connection.
    """

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.commands: list[str] = []
        self.cuts = 0
        self._lock = threading.Lock()
        self._fetch_cut: tuple[int, int, int] | None = None  # (after_bytes, times left, skip left)
        self._open: list[tuple[socket.socket, socket.socket]] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def cut_fetch(self, after_bytes: int, times: int = 1, skip: int = 0) -> None:
        with self._lock:
            self._fetch_cut = (after_bytes, times, skip)

    def cut_all(self) -> int:
        with self._lock:
            pairs, self._open = self._open, []
            self.cuts += len(pairs)
        for pair in pairs:
            self._close(*pair)
        return len(pairs)

    def close(self) -> None:
        self._closed = True
        self.listener.close()
        self.cut_all()

    @staticmethod
    def _close(*socks: socket.socket) -> None:
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            state = {"fetch_seen": False, "budget": None}
            with self._lock:
                self._open.append((client, server))
            threading.Thread(target=self._up, args=(client, server, state), daemon=True).start()
            threading.Thread(target=self._down, args=(client, server, state), daemon=True).start()

    def _up(self, client: socket.socket, server: socket.socket, state: dict) -> None:
        pending = b""
        try:
            while data := client.recv(65536):
                pending += data
                *lines, pending = pending.split(b"\r\n")
                for line in lines:
                    words = line.split(b" ", 1)
                    command = words[1] if len(words) > 1 else words[0]
                    with self._lock:
                        self.commands.append(command.decode("ascii", "replace"))
                        if command.upper().startswith(b"UID FETCH") and self._fetch_cut:
                            after, times, skip = self._fetch_cut
                            if skip:
                                self._fetch_cut = (after, times, skip - 1)
                            elif times:
                                self._fetch_cut = (after, times - 1, 0)
                                state["budget"] = after
                server.sendall(data)
        except OSError:
            pass
        self._close(client, server)

    def _down(self, client: socket.socket, server: socket.socket, state: dict) -> None:
        try:
            while data := server.recv(65536):
                budget = state["budget"]
                if budget is not None:
                    if len(data) >= budget:
                        client.sendall(data[:budget])
                        with self._lock:
                            self.cuts += 1
                        break
                    state["budget"] = budget - len(data)
                client.sendall(data)
        except OSError:
            pass
        self._close(client, server)


@pytest.fixture()
def proxy(dovecot) -> Iterator[CuttingProxy]:
    p = CuttingProxy(dovecot.host, dovecot.port)
    yield p
    p.close()


@dataclass(frozen=True)
class Via:
    """An account reached through the proxy (same user and password)."""

    host: str
    port: int
    user: str
    password: str


def _via(proxy: CuttingProxy, account) -> Via:
    return Via("127.0.0.1", proxy.port, account.user, account.password)


def _mail(serial: int, sender: str = "wang@zjxx.edu.cn") -> bytes:
    # one school per sender: a second address naming a school would also notify that school
    school = f"浙江{sender.split('@')[0]}职业技术学院"
    return make_mail(sender=sender, message_id=f"<fault-{serial}-{time.time_ns()}@zjxx.edu.cn>",
                     attachments=[("报名表.xlsx", make_annex3_xlsx([nominee(serial)], institution=school))])


def _intake(tmp_path: Path, account, sink, *, fetch_batch: int = 20, **overrides) -> Intake:
    """An Intake whose IMAP source fetches ``fetch_batch`` messages per UID FETCH."""
    parts = open_intake(imap_settings(tmp_path, account, sink, **overrides), io.StringIO())
    s = parts.settings.imap
    source = ImapSource(ImapSettings(host=s.host, port=s.port, tls=s.tls, user=s.user, password=s.secret(),
                                     folder=s.folder, timeout=5, fetch_batch=fetch_batch))
    parts.source.close()
    intake = Intake(parts.settings, parts.rules, parts.state, source, parts.transport, log=parts.intake.log)
    intake.parts = parts  # type: ignore[attr-defined]  # closed by _close
    return intake


def _close(intake: Intake) -> None:
    intake.source.close()
    intake.parts.close()  # type: ignore[attr-defined]


def _recorded(intake: Intake) -> list[tuple[str, str]]:
    return [(r["message_id"], r["outcome"]) for r in intake.state.db.query(
        "SELECT message_id, outcome FROM messages ORDER BY id")]


def _message_id(raw: bytes) -> str:
    for line in raw.split(b"\r\n"):
        if line.lower().startswith(b"message-id:"):
            return line.split(b":", 1)[1].strip().decode().strip("<>")
    raise AssertionError("no Message-ID")


# ---- cut mid-FETCH ---------------------------------------------------------------------


def test_connection_cut_mid_fetch_is_retried_and_every_message_recorded_and_answered_once(
        tmp_path, dovecot, imap_account, smtp_sink, proxy) -> None:
    raws = [_mail(i, sender=f"t{i}@zjxx.edu.cn") for i in range(1, 6)]
    for raw in raws:
        dovecot.append(raw, ON_TIME, user=imap_account.user)
    intake = _intake(tmp_path, _via(proxy, imap_account), smtp_sink, fetch_batch=2)
    try:
        proxy.cut_fetch(after_bytes=len(raws[0]) // 2, skip=1)  # inside the first message's literal
        report = intake.poll_once()
        assert proxy.cuts == 1
        assert (report.fetched, report.recorded, report.outcomes) == (5, 5, {"accepted": 5})
        assert _recorded(intake) == [(_message_id(r), "accepted") for r in raws]
        assert sorted(m.rcpt_tos[0] for m in smtp_sink.wait_for(5)) == [f"t{i}@zjxx.edu.cn" for i in range(1, 6)]
        assert intake.poll_once().fetched == 0
    finally:
        _close(intake)
    assert len(smtp_sink.messages) == 5
    assert dovecot.list_folder("INBOX", user=imap_account.user) == []


def test_fetch_cut_twice_fails_the_poll_after_recording_what_arrived_and_the_next_poll_completes(
        tmp_path, dovecot, imap_account, smtp_sink, proxy) -> None:
    raws = [_mail(i, sender=f"t{i}@zjxx.edu.cn") for i in range(1, 6)]
    for raw in raws:
        dovecot.append(raw, ON_TIME, user=imap_account.user)
    intake = _intake(tmp_path, _via(proxy, imap_account), smtp_sink, fetch_batch=2)
    try:
        # skip the arrival times' FETCH and the 1st batch: cut the 2nd batch, and its retry
        proxy.cut_fetch(after_bytes=len(raws[2]) // 2, times=2, skip=2)
        with pytest.raises(MailboxError, match="connection lost"):
            intake.poll_once()
        assert proxy.cuts == 2
        assert [o for _, o in _recorded(intake)] == ["accepted", "accepted"]
        report = intake.poll_once()
        assert (report.fetched, report.recorded) == (3, 3)
        assert _recorded(intake) == [(_message_id(r), "accepted") for r in raws]
        assert sorted(m.rcpt_tos[0] for m in smtp_sink.wait_for(5)) == [f"t{i}@zjxx.edu.cn" for i in range(1, 6)]
        assert intake.poll_once().fetched == 0
    finally:
        _close(intake)
    assert len(smtp_sink.messages) == 5
    assert dovecot.list_folder("INBOX", user=imap_account.user) == []


def test_an_idle_poll_costs_one_status_round_trip(tmp_path, dovecot, imap_account, smtp_sink, proxy) -> None:
    dovecot.append(_mail(1), ON_TIME, user=imap_account.user)
    intake = _intake(tmp_path, _via(proxy, imap_account), smtp_sink)
    try:
        intake.poll_once()
        intake.poll_once()  # the first poll after a fetch also leaves the selected folder
        before = len(proxy.commands)
        for _ in range(3):
            assert intake.poll_once().fetched == 0
        assert [c.split(" ", 1)[0].upper() for c in proxy.commands[before:]] == ["STATUS"] * 3
    finally:
        _close(intake)


# ---- cut mid-IDLE ----------------------------------------------------------------------


def test_connection_cut_mid_idle_wakes_the_watcher_which_reconnects(
        dovecot, imap_account, proxy) -> None:
    via = _via(proxy, imap_account)
    source = ImapSource(ImapSettings(host=via.host, port=via.port, tls="plain", user=via.user,
                                     password=via.password, timeout=5))
    try:
        source.status()
        threading.Timer(0.5, proxy.cut_all).start()
        started = time.monotonic()
        assert source.wait_for_new(timeout=20) is True  # "something happened: poll"
        assert time.monotonic() - started < 3
        assert source.wait_for_new(timeout=0.5) is False  # a fresh connection, idling quietly again
        assert source.status()[1] == 1
    finally:
        source.close()


def test_daemon_whose_connections_are_cut_mid_idle_still_answers_mail_at_once(
        tmp_path, dovecot, imap_account, smtp_sink, proxy) -> None:
    config = write_config(tmp_path, _via(proxy, imap_account), smtp_sink)
    daemon = MailbotProcess("run", config)
    try:
        daemon.wait_for("daemon_started", timeout=20)
        time.sleep(1.5)
        for i in (1, 2, 3):
            assert proxy.cut_all() >= 1  # the IDLE connection (and the poll connection)
            before = time.monotonic()
            dovecot.append(_mail(i), ON_TIME, user=imap_account.user)
            smtp_sink.wait_for(i, timeout=10)
            assert time.monotonic() - before < 5
            time.sleep(0.5)
        assert len(smtp_sink.messages) == 3
        assert daemon.named("poll_failed") == []
        assert daemon.stop() == 0
    finally:
        if daemon.proc.poll() is None:
            daemon.kill()


# ---- UIDVALIDITY -----------------------------------------------------------------------


def test_recreated_folder_with_reused_uids_old_mail_is_a_duplicate_and_only_new_mail_is_answered(
        tmp_path, dovecot, imap_account, smtp_sink) -> None:
    conn = dovecot.connect(imap_account.user)
    conn.create(quote_folder("Intake"))
    conn.logout()
    old = [_mail(1, sender="a@a.edu.cn"), _mail(2, sender="b@b.edu.cn")]
    old_uids = [dovecot.append(r, ON_TIME, folder="Intake", user=imap_account.user) for r in old]
    log = io.StringIO()
    parts = open_intake(imap_settings(tmp_path, imap_account, smtp_sink, imap={"folder": "Intake"}), log)
    try:
        assert parts.intake.poll_once().outcomes == {"accepted": 2}
        smtp_sink.wait_for(2)
        parts.source.close()  # a server migration: the folder is recreated and the mail copied back
        dovecot.delete_folder("Intake", user=imap_account.user)
        conn = dovecot.connect(imap_account.user)
        conn.create(quote_folder("Intake"))
        conn.logout()
        new = _mail(3, sender="c@c.edu.cn")
        uids = [dovecot.append(r, ON_TIME, folder="Intake", user=imap_account.user) for r in (*old, new)]
        assert uids[:2] == old_uids  # the same UIDs now name the same old mail... or another one
        parts2 = open_intake(imap_settings(tmp_path, imap_account, smtp_sink, imap={"folder": "Intake"}), log)
        try:
            report = parts2.intake.poll_once()
            assert report.outcomes == {"duplicate": 2, "accepted": 1}
            rows = list(parts2.state.db.query(
                "SELECT sender, outcome, duplicate_of FROM messages ORDER BY id"))
            assert [(r["sender"], r["outcome"], r["duplicate_of"]) for r in rows] == [
                ("a@a.edu.cn", "accepted", None), ("b@b.edu.cn", "accepted", None),
                ("a@a.edu.cn", "duplicate", 1), ("b@b.edu.cn", "duplicate", 2), ("c@c.edu.cn", "accepted", None)]
            got = smtp_sink.wait_for(3)
            time.sleep(0.3)
            assert [m.rcpt_tos[0] for m in smtp_sink.messages] == ["a@a.edu.cn", "b@b.edu.cn", "c@c.edu.cn"]
            assert parse_reply(got[2].raw).headers["In-Reply-To"] == f"<{_message_id(new)}>"
            assert dovecot.list_folder("Intake", user=imap_account.user) == []
            assert parts2.intake.poll_once().fetched == 0
        finally:
            parts2.close()
    finally:
        parts.close()
    warnings = [json.loads(line) for line in log.getvalue().splitlines() if "uidvalidity_changed" in line]
    assert len(warnings) == 1 and warnings[0]["level"] == "warning"


def test_changed_uidvalidity_with_mail_left_in_the_inbox_refetches_and_answers_nothing_twice(
        tmp_path, dovecot, imap_account, smtp_sink) -> None:
    for i in (1, 2):
        dovecot.append(_mail(i, sender=f"t{i}@zjxx.edu.cn"), ON_TIME, user=imap_account.user)
    log = io.StringIO()
    parts = open_intake(imap_settings(tmp_path, imap_account, smtp_sink, mailbox={"settle": "flag"}), log)
    try:
        assert parts.intake.poll_once().outcomes == {"accepted": 2}
        validity, _ = parts.source.status()
        dovecot.set_uidvalidity("INBOX", validity + 1000, user=imap_account.user)
        dovecot.append(_mail(3, sender="t3@zjxx.edu.cn"), ON_TIME, user=imap_account.user)
        assert parts.intake.poll_once().outcomes == {"duplicate": 2, "accepted": 1}
        assert parts.intake.poll_once().fetched == 0
    finally:
        parts.close()
    smtp_sink.wait_for(3)
    time.sleep(0.3)
    assert sorted(m.rcpt_tos[0] for m in smtp_sink.messages) == ["t1@zjxx.edu.cn", "t2@zjxx.edu.cn", "t3@zjxx.edu.cn"]
    assert [flags for _, _, flags in dovecot.list_folder("INBOX", user=imap_account.user)] == [("\\Flagged",)] * 3
