"""Real faults against the real servers: SMTP 4xx/5xx/dropped connections, a crash while
sending, a locked database and a full disk.  Nothing is lost, nothing is answered twice, and
what needs a person shows up in the staff digest."""

from __future__ import annotations

import errno
import io
import json
import os
import re
import sqlite3
import time
from datetime import datetime
from pathlib import Path

import pytest

import mailbot.state.store
from forms_factory import make_annex3_xlsx, nominee
from intake_harness import imap_settings, open_intake, outcomes, parse_reply, shanghai
from mail_factory import make_mail
from mailbot.office.digest import build_digest
from mailbot.errors import StateError
from mailbot.state.outbox import SendReport

pytestmark = pytest.mark.servers

ON_TIME = shanghai(2020, 11, 2, 10, 0)
SENDER = "wang@zjxx.edu.cn"


def _good_mail(serial: int = 1, sender: str = SENDER) -> bytes:
    # one school per sender: a second address naming a school would also notify that school
    school = f"浙江{sender.split('@')[0]}职业技术学院"
    return make_mail(sender=sender, attachments=[("报名表.xlsx", make_annex3_xlsx([nominee(serial)], institution=school))])


def _open(tmp_path: Path, account, sink, **smtp):
    log = io.StringIO()
    parts = open_intake(imap_settings(tmp_path, account, sink, smtp=smtp), log)
    parts.log_text = log  # type: ignore[attr-defined]
    return parts


@pytest.fixture()
def open_parts(tmp_path: Path, dovecot, imap_account, smtp_sink):
    opened = []

    def opener(**smtp):
        parts = _open(tmp_path, imap_account, smtp_sink, **smtp)
        opened.append(parts)
        return parts

    yield opener
    for parts in opened:
        parts.close()


def _outbox(parts) -> list[tuple[str, str, int]]:
    return [(r["kind"], r["status"], r["attempts"]) for r in parts.state.db.query(
        "SELECT kind, status, attempts FROM outbox ORDER BY id")]


def _events(parts) -> list[str]:
    return [r["kind"] for r in parts.state.db.query("SELECT kind FROM events ORDER BY id")]


def _attention(parts) -> list[tuple[str, str]]:
    digest = build_digest(parts.state, parts.rules, parts.settings)
    return [(a.category, a.ref) for a in digest.attention]


def _digest_text(parts) -> str:
    return parts.intake.renderer.render_digest(build_digest(parts.state, parts.rules, parts.settings)).text


def _inbox(dovecot, account) -> list[int]:
    return [uid for uid, _, _ in dovecot.list_folder("INBOX", user=account.user)]


def _receipts(parts) -> list[str]:
    return [r["receipt"] for r in parts.state.db.query("SELECT receipt FROM messages ORDER BY id")]


# --------------------------------------------------------------------------- SMTP faults

def test_smtp_4xx_keeps_the_reply_queued_with_backoff_and_a_later_poll_sends_it_exactly_once(
        open_parts, dovecot, imap_account, smtp_sink) -> None:
    parts = open_parts(retry_base_seconds=2.0)
    dovecot.append(_good_mail(), ON_TIME, user=imap_account.user)
    smtp_sink.fail_next(1, code=451)
    failed_at = time.time()
    report = parts.intake.poll_once()
    assert (report.outcomes, report.sent) == ({"accepted": 1}, SendReport(retry=1))
    assert _outbox(parts) == [("acceptance", "queued", 1)]
    row = next(parts.state.db.query("SELECT last_error, next_attempt_at FROM outbox"))
    assert row["last_error"] == "SMTP refused message: 451 b'4.3.0 Try again later (test sink)'"
    due = datetime.fromisoformat(row["next_attempt_at"]).timestamp()
    assert due >= failed_at + 1.0, "backoff of retry_base_seconds (2 s, stored to the second)"
    assert _inbox(dovecot, imap_account) == [], "the message itself is settled; only the reply waits"

    again = parts.intake.poll_once()  # before the backoff has passed: nothing is attempted
    assert (again.fetched, again.sent.sent, smtp_sink.attempts) == (0, 0, 1)

    time.sleep(max(0.0, due - time.time()) + 1.05)
    later = parts.intake.poll_once()
    assert (later.fetched, later.sent) == (0, SendReport(sent=1))
    assert _outbox(parts) == [("acceptance", "sent", 2)]
    assert parts.intake.poll_once().sent.sent == 0
    (mail,) = smtp_sink.wait_for(1)
    assert mail.rcpt_tos == (SENDER,) and smtp_sink.attempts == 2
    assert nominee(1).name in parse_reply(mail.raw).text
    assert _events(parts).count("reply_retry") == 1 and _events(parts).count("reply_sent") == 1
    assert _attention(parts) == []


def test_smtp_5xx_marks_the_reply_failed_with_an_event_shows_it_to_staff_and_never_retries(
        open_parts, dovecot, imap_account, smtp_sink) -> None:
    parts = open_parts()
    dovecot.append(_good_mail(), ON_TIME, user=imap_account.user)
    smtp_sink.reject_next(1, code=550)
    report = parts.intake.poll_once()
    assert (report.outcomes, report.sent) == ({"accepted": 1}, SendReport(failed=1))
    for _ in range(3):
        time.sleep(0.02)
        assert parts.intake.poll_once().sent == SendReport()
    assert _outbox(parts) == [("acceptance", "failed", 1)]
    assert smtp_sink.attempts == 1 and smtp_sink.messages == []
    assert "reply_failed" in _events(parts) and "reply_sent" not in _events(parts)
    (receipt,) = _receipts(parts)
    assert _attention(parts) == [("reply_failed", receipt)]
    lines = _digest_text(parts).splitlines()
    at = lines.index("1. 【回复发送失败】回复#1（报名成功）：对方邮件服务器拒收（代码550，5.7.1），请核对收件地址或改用其他方式联系")
    assert re.fullmatch(rf"   学校：浙江wang职业技术学院；发件人：wang@zjxx\.edu\.cn；回执：{receipt}；"
                        rf"已等待不到1小时（自\d{{4}}年\d+月\d+日 \d\d:\d\d起）", lines[at + 1]), lines[at + 1]


def test_connection_dropped_after_data_marks_the_reply_unknown_never_resent_and_shown_to_staff(
        open_parts, dovecot, imap_account, smtp_sink) -> None:
    parts = open_parts()
    dovecot.append(_good_mail(1), ON_TIME, user=imap_account.user)
    smtp_sink.drop_next(1)
    report = parts.intake.poll_once()
    assert (report.outcomes, report.sent) == ({"accepted": 1}, SendReport(unknown=1))
    assert _outbox(parts) == [("acceptance", "unknown", 1)]
    # the transport reconnects: the next message's reply goes out, the unknown one never again
    dovecot.append(_good_mail(2, sender="li@zjyy.edu.cn"), ON_TIME, user=imap_account.user)
    assert parts.intake.poll_once().outcomes == {"accepted": 1}
    for _ in range(2):
        assert parts.intake.poll_once().sent.sent == 0
    assert _outbox(parts) == [("acceptance", "unknown", 1), ("acceptance", "sent", 1)]
    assert [m.rcpt_tos for m in smtp_sink.messages] == [("li@zjyy.edu.cn",)]
    assert smtp_sink.attempts == 2
    assert "reply_unknown" in _events(parts)
    first_receipt = _receipts(parts)[0]
    assert _attention(parts) == [("reply_unknown", first_receipt)]
    lines = _digest_text(parts).splitlines()
    at = lines.index("1. 【回复投递情况不明】回复#1（报名成功）：发送时连接中断，无法确认对方是否收到，请核实后再决定是否重发")
    assert lines[at + 1].startswith(f"   学校：浙江wang职业技术学院；发件人：wang@zjxx.edu.cn；回执：{first_receipt}；已等待")


def test_a_reply_left_sending_by_a_crash_becomes_unknown_at_start_and_is_not_resent(
        open_parts, dovecot, imap_account, smtp_sink) -> None:
    parts = open_parts(retry_base_seconds=0.01)
    dovecot.append(_good_mail(), ON_TIME, user=imap_account.user)
    smtp_sink.fail_next(1)
    smtp_sink.fail_next(1)  # the in-cycle retry fails too: the reply is still queued
    parts.intake.poll_once()
    assert [s for _, s, _ in _outbox(parts)] == ["queued"]
    # the crash: the row was marked sending (committed), then the process died
    with parts.state.transaction():
        parts.state.db.execute("UPDATE outbox SET status = 'sending'")
    parts.close()
    smtp_sink.clear()

    restarted = open_parts(retry_base_seconds=0.01)
    time.sleep(1.05)  # well past the reply's next attempt time
    for _ in range(2):
        assert restarted.intake.poll_once().sent == SendReport()
    assert _outbox(restarted)[0][:2] == ("acceptance", "unknown")
    assert "replies_delivery_unknown" in restarted.log_text.getvalue()  # type: ignore[attr-defined]
    assert smtp_sink.attempts == 0
    assert _events(restarted)[-1] == "reply_unknown"
    detail = json.loads(next(restarted.state.db.query(
        "SELECT detail FROM events WHERE kind = 'reply_unknown'"))["detail"])
    assert detail["why"] == "found sending at start"
    assert _attention(restarted) == [("reply_unknown", _receipts(restarted)[0])]


# --------------------------------------------------------------------------- a locked database

def test_an_auditors_long_read_transaction_does_not_block_intake(
        open_parts, dovecot, imap_account, smtp_sink) -> None:
    parts = open_parts()
    auditor = sqlite3.connect(f"file:{parts.state.path}?mode=ro", uri=True, isolation_level=None)
    try:
        auditor.execute("BEGIN")
        assert auditor.execute("SELECT count(*) FROM messages").fetchone() == (0,)
        dovecot.append(_good_mail(), ON_TIME, user=imap_account.user)
        started = time.monotonic()
        assert parts.intake.poll_once().outcomes == {"accepted": 1}
        assert time.monotonic() - started < 3.0
        assert _outbox(parts) == [("acceptance", "sent", 1)]
        # the auditor still reads their consistent snapshot
        assert auditor.execute("SELECT count(*) FROM messages").fetchone() == (0,)
        auditor.execute("COMMIT")
        assert auditor.execute("SELECT outcome FROM messages").fetchall() == [("accepted",)]
    finally:
        auditor.close()
    assert _inbox(dovecot, imap_account) == []


def test_another_writer_holding_the_lock_past_the_busy_timeout_fails_the_poll_then_the_message_is_processed_once(
        monkeypatch, open_parts, dovecot, imap_account, smtp_sink) -> None:
    monkeypatch.setattr(mailbot.state.store, "BUSY_TIMEOUT_MS", 200)
    parts = open_parts()
    dovecot.append(_good_mail(), ON_TIME, user=imap_account.user)
    writer = sqlite3.connect(parts.state.path, isolation_level=None, timeout=0.1)
    try:
        writer.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        with pytest.raises(StateError, match="busy|locked"):
            parts.intake.poll_once()
        assert time.monotonic() - started < 3.0
        writer.execute("ROLLBACK")
    finally:
        writer.close()
    assert outcomes(parts) == []
    assert smtp_sink.attempts == 0
    assert len(_inbox(dovecot, imap_account)) == 1, "not settled: still in INBOX"

    assert parts.intake.poll_once().outcomes == {"accepted": 1}
    assert parts.intake.poll_once().fetched == 0
    assert outcomes(parts) == [(SENDER, "accepted")]
    assert len(smtp_sink.wait_for(1)) == 1 and smtp_sink.attempts == 1
    assert _inbox(dovecot, imap_account) == []


# --------------------------------------------------------------------------- a full disk

def _no_space(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_disk_full_while_storing_the_raw_mail_fails_the_poll_and_the_message_is_processed_once_later(
        monkeypatch, open_parts, dovecot, imap_account, smtp_sink) -> None:
    parts = open_parts()
    dovecot.append(_good_mail(), ON_TIME, user=imap_account.user)
    with monkeypatch.context() as m:
        m.setattr(mailbot.state.store.os, "fsync", _no_space)
        with pytest.raises(StateError, match="No space left on device"):
            parts.intake.poll_once()
    assert outcomes(parts) == [] and smtp_sink.attempts == 0
    assert len(_inbox(dovecot, imap_account)) == 1
    assert list((parts.state.dir / "raw").rglob(".tmp-*")) == [], "no half-written file left"

    assert parts.intake.poll_once().outcomes == {"accepted": 1}
    assert outcomes(parts) == [(SENDER, "accepted")]
    assert len(smtp_sink.wait_for(1)) == 1 and smtp_sink.attempts == 1
    assert _inbox(dovecot, imap_account) == []


def test_disk_full_in_the_middle_of_a_cycle_keeps_what_was_done_and_the_rest_comes_next_poll(
        monkeypatch, open_parts, dovecot, imap_account, smtp_sink) -> None:
    parts = open_parts()
    dovecot.append(_good_mail(1, sender="a@a.edu.cn"), ON_TIME, user=imap_account.user)
    dovecot.append(_good_mail(2, sender="b@b.edu.cn"), ON_TIME, user=imap_account.user)
    real_fsync = os.fsync
    calls = {"n": 0}

    def fsync_until_full(fd):
        calls["n"] += 1
        if calls["n"] > 2:  # the first message's raw file and its directory fit
            _no_space()
        return real_fsync(fd)

    with monkeypatch.context() as m:
        m.setattr(mailbot.state.store.os, "fsync", fsync_until_full)
        with pytest.raises(StateError):
            parts.intake.poll_once()
    assert outcomes(parts) == [("a@a.edu.cn", "accepted")]
    assert [m.rcpt_tos for m in smtp_sink.wait_for(1)] == [("a@a.edu.cn",)]
    assert len(_inbox(dovecot, imap_account)) == 1

    assert parts.intake.poll_once().outcomes == {"accepted": 1}
    assert outcomes(parts) == [("a@a.edu.cn", "accepted"), ("b@b.edu.cn", "accepted")]
    assert sorted(m.rcpt_tos[0] for m in smtp_sink.wait_for(2)) == ["a@a.edu.cn", "b@b.edu.cn"]
    assert smtp_sink.attempts == 2 and _inbox(dovecot, imap_account) == []


def test_database_full_while_recording_fails_the_poll_instead_of_filing_the_message_as_failed(
        open_parts, dovecot, imap_account, smtp_sink) -> None:
    parts = open_parts()
    dovecot.append(_good_mail(), ON_TIME, user=imap_account.user)
    pages = next(parts.state.db.query("PRAGMA page_count"))["page_count"]
    parts.state.db.execute(f"PRAGMA max_page_count = {pages}")  # SQLITE_FULL on the next growth
    with pytest.raises(StateError, match="full"):
        parts.intake.poll_once()
    assert outcomes(parts) == [] and smtp_sink.attempts == 0
    assert len(_inbox(dovecot, imap_account)) == 1
    assert dovecot.list_folder("Failed", user=imap_account.user) == []

    parts.state.db.execute("PRAGMA max_page_count = 1073741823")
    assert parts.intake.poll_once().outcomes == {"accepted": 1}
    assert outcomes(parts) == [(SENDER, "accepted")]
    assert len(smtp_sink.wait_for(1)) == 1 and smtp_sink.attempts == 1
    ok = next(parts.state.db.query("PRAGMA integrity_check"))["integrity_check"]
    assert ok == "ok" and parts.state.verify_event_chain()[0]
