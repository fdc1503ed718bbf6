"""Hostile mail cannot stop or flood the intake (real Dovecot + SMTP sink, ``mailbot poll`` as a
subprocess): each hostile class is followed by a good form that is answered in the same poll,
the poll exits 0, and the daemon and its reader workers together stay under the memory bound
of docs/RELIABILITY.md.  A message that kills the whole process is set aside at the third start.

The hostile files are built here (never committed), and only ever read by a ``mailbot poll``
subprocess: with a protection removed they abort or exhaust that subprocess, not the test.
"""

from __future__ import annotations

import email
import os
import sqlite3
import subprocess
import sys
import threading
import time
from email.header import decode_header, make_header
from pathlib import Path

from daemon_harness import MailbotProcess, write_config
from forms_factory import make_annex3_xlsx, nominee
from intake_harness import shanghai
from mail_factory import make_mail
from test_contained_readers import sheets_each_at_the_bound, worksheet_outside_worksheets_folder, \
    xls_claiming_the_whole_grid

ON_TIME = shanghai(2020, 11, 2, 10, 0)
PEAK_RSS_BOUND = 400 * 1024 * 1024
"""docs/RELIABILITY.md: the poll and its workers together, well under the unit's MemoryMax=1G."""
MB = 1024 * 1024


def _crlf(raw: bytes) -> bytes:
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")  # as the server stores it


def _good(i: int) -> bytes:
    return _crlf(make_mail(sender=f"good{i}@zjxx{i}.edu.cn", message_id=f"<good-{i}@zjxx{i}.edu.cn>",
                           attachments=[("报名表.xlsx", make_annex3_xlsx(
                               [nominee(100 + i)], institution=f"浙江第{i}职业技术学院"))]))


def _hostile_form(name: str, filename: str, data: bytes) -> bytes:
    return _crlf(make_mail(sender=f"{name}@evil.example.cn", message_id=f"<{name}@evil.example.cn>",
                           attachments=[(filename, data)]))


def _header_flood(size: int = 25 * MB) -> bytes:
    head = (b"Return-Path: <flood@evil.example.cn>\r\n"
            b"Authentication-Results: mx.zjut.edu.cn; spf=pass smtp.mailfrom=flood@evil.example.cn\r\nFrom: <flood@evil.example.cn>\r\nTo: <shengpei@zjut.edu.cn>\r\n"
            b"Subject: headers\r\nMessage-ID: <headers@evil.example.cn>\r\nDate: Mon, 2 Nov 2020 09:30:00 +0800\r\n")
    line = b"X-Flood: aaaaaaaaaaaaaaaaaaaaaa\r\n"
    return head + line * (size // len(line)) + b"\r\nbody\r\n"


def _part_flood(size: int = 25 * MB) -> bytes:
    head = (b"Return-Path: <parts@evil.example.cn>\r\n"
            b"Authentication-Results: mx.zjut.edu.cn; spf=pass smtp.mailfrom=parts@evil.example.cn\r\nFrom: <parts@evil.example.cn>\r\nTo: <shengpei@zjut.edu.cn>\r\n"
            b"Subject: parts\r\nMessage-ID: <parts@evil.example.cn>\r\nDate: Mon, 2 Nov 2020 09:30:00 +0800\r\n"
            b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n')
    part = b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n"
    return head + part * (size // len(part)) + b"--b--\r\n"


def _tree_rss(root: int) -> int:
    """Resident memory of ``root`` and every descendant, summed (bytes)."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            parents[int(entry)] = int(fields[1])
            rss[int(entry)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        for child, parent in parents.items():
            if parent == pid and child not in tree:
                tree.add(child)
                frontier.append(child)
    return sum(rss.get(pid, 0) for pid in tree)


def _poll_measured(config: Path) -> tuple[int, int, MailbotProcess]:
    """Run one ``mailbot poll``; its exit code and the peak RSS of it and its workers."""
    poll = MailbotProcess("poll", config)
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _tree_rss(poll.pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        rc = poll.wait(timeout=240)
    finally:
        done.set()
        sampler.join(5)
    return rc, peak[0], poll


def _outcomes(tmp_path: Path) -> dict[str, tuple[str, str]]:
    with sqlite3.connect(tmp_path / "state" / "mailbot.db") as db:
        return {row[0]: (row[1], row[2]) for row in db.execute("SELECT message_id, outcome, reason FROM messages")}


def _replied_to(sink) -> list[str]:
    return sorted(m.rcpt_tos[0] for m in sink.messages)


def _first_finding_code(tmp_path: Path, sender: str) -> str:
    with sqlite3.connect(tmp_path / "state" / "mailbot.db") as db:
        rows = db.execute("SELECT m.reason FROM messages m WHERE m.sender = ?", [sender]).fetchall()
    return rows[0][0]


def test_each_hostile_class_is_answered_as_unreadable_and_the_good_form_behind_it_in_the_same_poll(
        tmp_path, dovecot, imap_account, smtp_sink) -> None:
    hostile = [
        _hostile_form("outside", "报名表.xlsx", worksheet_outside_worksheets_folder()),
        _hostile_form("dimensions", "报名表.xls", xls_claiming_the_whole_grid()),
        _hostile_form("sheets", "报名表.xlsx", sheets_each_at_the_bound(8, 4_000_000)),
        _header_flood(),
        _part_flood(),
    ]
    for i, raw in enumerate(hostile, start=1):
        dovecot.append(raw, ON_TIME, user=imap_account.user)
        dovecot.append(_good(i), ON_TIME, user=imap_account.user)
    config = write_config(tmp_path, imap_account, smtp_sink)

    rc, peak, poll = _poll_measured(config)

    assert rc == 0, poll.log_text()
    assert {mid: outcome for mid, (outcome, _) in _outcomes(tmp_path).items()} == {
        "outside@evil.example.cn": "unreadable", "dimensions@evil.example.cn": "unreadable",
        "sheets@evil.example.cn": "unreadable", "headers@evil.example.cn": "unreadable",
        "parts@evil.example.cn": "unreadable",
        **{f"good-{i}@zjxx{i}.edu.cn": "accepted" for i in range(1, 6)}}
    assert {mid: reason for mid, (_, reason) in _outcomes(tmp_path).items() if "evil" in mid} == {
        "outside@evil.example.cn": "报名表.xlsx: sheet_too_large",
        "dimensions@evil.example.cn": "报名表.xls: sheet_too_large",
        "sheets@evil.example.cn": "报名表.xlsx: sheet_too_large",
        "headers@evil.example.cn": "message_too_complex", "parts@evil.example.cn": "message_too_complex"}
    assert _replied_to(smtp_sink) == sorted(
        [f"{n}@evil.example.cn" for n in ("outside", "dimensions", "sheets", "flood", "parts")]
        + [f"good{i}@zjxx{i}.edu.cn" for i in range(1, 6)])
    assert dovecot.list_folder("INBOX", user=imap_account.user) == []
    assert peak < PEAK_RSS_BOUND, f"peak RSS {peak / MB:.0f} MB"


def test_a_worker_killed_mid_read_makes_that_file_unreadable_and_the_poll_goes_on(
        tmp_path, dovecot, imap_account, smtp_sink) -> None:
    # a 3.9M-cell sheet is within the cell budget, but not within a 160 MiB worker: its reader
    # dies mid-read (the allocation fails inside the native reader, which aborts)
    dovecot.append(_hostile_form("killed", "报名表.xlsx", sheets_each_at_the_bound(1, 3_900_000)), ON_TIME,
                   user=imap_account.user)
    dovecot.append(_good(1), ON_TIME, user=imap_account.user)
    config = write_config(tmp_path, imap_account, smtp_sink, limits={"reader_memory_bytes": 160 * MB})

    rc, peak, poll = _poll_measured(config)

    assert rc == 0, poll.log_text()
    assert _outcomes(tmp_path) == {"killed@evil.example.cn": ("unreadable", "报名表.xlsx: reader_failed"),
                                   "good-1@zjxx1.edu.cn": ("accepted", "1 row(s)")}
    assert [e["file"] for e in poll.named("reader_contained_failed")] == ["报名表.xlsx"]
    replies = {m.rcpt_tos[0]: email.message_from_bytes(m.raw) for m in smtp_sink.messages}
    assert sorted(replies) == ["good1@zjxx1.edu.cn", "killed@evil.example.cn"]
    text = next(p for p in replies["killed@evil.example.cn"].walk() if p.get_content_type() == "text/plain")
    assert "附件过大或已损坏，无法读取（处理时超出资源限制）" in text.get_payload(decode=True).decode("utf-8")
    assert peak < PEAK_RSS_BOUND, f"peak RSS {peak / MB:.0f} MB"
    digest = subprocess.run([sys.executable, "-m", "mailbot.cli", "digest", "--config", str(config)],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert digest.returncode == 0, digest.stderr
    assert "【附件读取失败（资源限制）】待办事项#1：附件读取进程异常终止或超出资源限制，已按“无法读取”答复发件人：报名表.xlsx" \
        in digest.stdout, digest.stdout


def _poll_with_crash_hook(config: Path, subject: str) -> tuple[int, MailbotProcess]:
    poll = MailbotProcess("poll", config, env={"MAILBOT_TEST_CRASH_ON_SUBJECT": subject})
    return poll.wait(timeout=120), poll


def test_a_message_that_kills_the_process_is_set_aside_at_the_third_start_and_the_mail_behind_it_is_answered(
        tmp_path, dovecot, imap_account, smtp_sink) -> None:
    poison = _crlf(make_mail(sender="poison@zjxx.edu.cn", message_id="poison@zjxx.edu.cn", subject="毒丸 报名表",
                             attachments=[("报名表.xlsx", make_annex3_xlsx([nominee(1)]))]))
    dovecot.append(poison, ON_TIME, user=imap_account.user)
    dovecot.append(_good(1), ON_TIME, user=imap_account.user)
    config = write_config(tmp_path, imap_account, smtp_sink)

    runs = [_poll_with_crash_hook(config, "毒丸") for _ in range(3)]

    assert [rc for rc, _ in runs] == [-6, -6, 0], runs[2][1].log_text()
    outcomes = _outcomes(tmp_path)
    assert outcomes == {
        "poison@zjxx.edu.cn": ("quarantined", "poison: processing did not finish 2 times (crash, abort or kill); "
                                                "set aside for staff"),
        "good-1@zjxx1.edu.cn": ("accepted", "1 row(s)")}
    with sqlite3.connect(tmp_path / "state" / "mailbot.db") as db:
        assert db.execute("SELECT kind, to_address, status FROM outbox ORDER BY id").fetchall() == [
            ("held", "poison@zjxx.edu.cn", "sent"), ("acceptance", "good1@zjxx1.edu.cn", "sent")]
        assert db.execute("SELECT count(*) FROM attempts").fetchone() == (0,)
    held = next(m for m in smtp_sink.messages if m.rcpt_tos == ("poison@zjxx.edu.cn",))
    body = next(p for p in email.message_from_bytes(held.raw).walk() if p.get_content_type() == "text/plain")
    assert "已转交培训中心工作人员，由工作人员人工查看后处理" in body.get_payload(decode=True).decode("utf-8")
    assert [raw for _, raw, _ in dovecot.list_folder("Quarantine", user=imap_account.user)] == [poison]
    digest = subprocess.run([sys.executable, "-m", "mailbot.cli", "digest", "--config", str(config)],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert digest.returncode == 0, digest.stderr
    assert ("1. 【已隔离】待办事项#1：邮件已隔离：系统处理该邮件时2次未能完成（进程崩溃或被终止），已暂停自动处理，未登记，请人工查看"
            in digest.stdout.splitlines()), digest.stdout
