"""Personal data never leaks: a whole scenario against Dovecot + aiosmtpd, then every log line,
reply body and the staff digest are searched for unmasked identity numbers and mobiles; the
state files are private; ``mailbot purge`` removes what it promises and the chain verifies."""

from __future__ import annotations

import email
import io
import re
import stat
from datetime import date, datetime, timedelta, timezone
from email import policy
from pathlib import Path

import pytest
from click.testing import CliRunner

from forms_factory import make_annex3_xlsx, nominee
from intake_harness import imap_settings, open_intake, shanghai
from mail_factory import make_mail
from mailbot.cli import main
from mailbot.masking import mask_id
from mailbot.office.digest import build_digest

pytestmark = pytest.mark.servers

ID_RE = re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])")
MOBILE_RE = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")
BAD_ID = "33010619900101123"  # 17 digits: a typo the sender made


def _bodies(raw: bytes) -> str:
    """Subject plus every text/plain and text/html part that is not an attachment."""
    msg = email.message_from_bytes(raw, policy=policy.default)
    texts = [str(msg["Subject"])]
    for part in msg.walk():
        if part.get_content_maintype() == "text" and part.get_content_disposition() != "attachment":
            texts.append(part.get_content())
    return "\n".join(texts)


def _attachments(raw: bytes) -> list[str]:
    return [p.get_filename() or "" for p in email.message_from_bytes(raw, policy=policy.default).iter_attachments()]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture()
def scenario(tmp_path: Path, dovecot, imap_account, smtp_sink):
    """Five mails: a clean form, a form with errors, its correction, a mail with personal data
    in subject and body but no form, a 中职 school.  Returns (parts, log text, people)."""
    people = [nominee(1), nominee(2), nominee(3, phone="1381234", id_number=BAD_ID), nominee(4)]
    fixed = [nominee(3), nominee(4)]
    mails = [
        (make_mail(sender="a@a.edu.cn", attachments=[("甲.xlsx", make_annex3_xlsx(
            people[:2], institution="甲职业技术学院", contact_phone="13900001111"))]), shanghai(2020, 11, 2, 9, 0)),
        (make_mail(sender="b@b.edu.cn", attachments=[("乙.xlsx", make_annex3_xlsx(
            people[2:], institution="乙职业技术学院"))]), shanghai(2020, 11, 2, 10, 0)),
        (make_mail(sender="b@b.edu.cn", subject="报名表（修改）", attachments=[("乙（改）.xlsx", make_annex3_xlsx(
            fixed, institution="乙职业技术学院"))]), shanghai(2020, 11, 3, 10, 0)),
        (make_mail(sender="c@c.edu.cn", subject=f"报名 {nominee(5).name} {nominee(5).phone}",
                   body=f"身份证号{nominee(5).id_number}，手机{nominee(5).phone}，请登记。"), shanghai(2020, 11, 3, 11, 0)),
        (make_mail(sender="d@d.edu.cn", attachments=[("丁.xlsx", make_annex3_xlsx(
            [nominee(6)], institution="杭州市某某职业高级中学"))]), shanghai(2020, 11, 3, 12, 0)),
    ]
    for raw, when in mails:
        dovecot.append(raw, when, user=imap_account.user)
    log = io.StringIO()
    settings = imap_settings(tmp_path, imap_account, smtp_sink, staff_addresses=("staff@zjut.edu.cn",))
    parts = open_intake(settings, log)
    parts.intake.poll_once()
    yield parts, log, [*people, *fixed, nominee(5), nominee(6)]
    parts.close()


def test_logs_reply_bodies_and_digest_carry_no_unmasked_identity_number_or_mobile(scenario, smtp_sink) -> None:
    parts, log, people = scenario
    outcomes = [r["outcome"] for r in parts.state.db.query("SELECT outcome FROM messages ORDER BY id")]
    assert outcomes == ["accepted", "correction", "accepted", "no_form", "redirect"]
    replies = smtp_sink.wait_for(5)
    correction = next(m for m in replies if "b@b.edu.cn" in m.rcpt_tos and _attachments(m.raw))
    assert any(n.endswith(".xlsx") for n in _attachments(correction.raw)), "the sender's own workbook comes back"

    digest = build_digest(parts.state, parts.rules, parts.settings)
    rendered = parts.intake.renderer.render_digest(digest)
    events = "\n".join(r["detail"] for r in parts.state.db.query("SELECT detail FROM events"))
    reasons = "\n".join(r["reason"] for r in parts.state.db.query("SELECT reason FROM messages"))
    corpus = {
        "log": log.getvalue(),
        "replies": "\n".join(_bodies(m.raw) for m in replies),
        "digest": "\n".join([rendered.subject, rendered.text, rendered.html]),
        "events": events,
        "reasons": reasons,
    }
    assert all(corpus.values())
    secrets = {str(p.id_number) for p in people} | {str(p.phone) for p in people} | {"13900001111"}
    for where, text in corpus.items():
        assert not ID_RE.findall(text), f"unmasked identity number in {where}"
        assert not MOBILE_RE.findall(text), f"unmasked mobile in {where}"
        assert [s for s in secrets if len(s) >= 11 and s in text] == [], where
    # and the replies still tell people who they are: masked, with names
    assert f"1. {nominee(1).name}（身份证号 {mask_id(nominee(1).id_number)}，表格第4行）" in corpus["replies"].splitlines()


def test_database_and_stored_mail_are_private_to_the_service_user(scenario) -> None:
    parts, _, _ = scenario
    state_dir = parts.state.dir
    raw_files = [p for p in (state_dir / "raw").rglob("*") if p.is_file()]
    assert len(raw_files) == 5
    assert _mode(state_dir) == 0o700
    assert {p.name: _mode(p) for p in state_dir.iterdir() if p.name.startswith("mailbot.db")} == {
        name: 0o600 for name in ("mailbot.db", "mailbot.db-wal", "mailbot.db-shm")
        if (state_dir / name).exists()}
    assert {_mode(p) for p in raw_files} == {0o600}
    assert {_mode(p) for p in (state_dir / "raw").rglob("*") if p.is_dir()} | {_mode(state_dir / "raw")} == {0o700}


def test_purge_removes_raw_mail_and_identity_numbers_and_the_event_chain_still_verifies(
        scenario, monkeypatch, tmp_path) -> None:
    parts, _, people = scenario
    state_dir = parts.state.dir
    db_path = parts.state.path
    parts.close()
    files = b"".join(p.read_bytes() for p in state_dir.iterdir() if p.name.startswith("mailbot.db"))
    assert str(nominee(1).id_number).encode() in files, "the leftover check below can see plain numbers"
    monkeypatch.chdir(tmp_path)  # no stray mailbot.toml
    env = {"MAILBOT_STATE_DIR": str(state_dir)}
    runner = CliRunner()
    before = (date.today() + timedelta(days=2)).isoformat()
    result = runner.invoke(main, ["purge", "--before", before, "--staff", "王老师"], env=env)
    verified = runner.invoke(main, ["verify"], env=env)

    import sqlite3

    ro = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        q = lambda sql: ro.execute(sql).fetchall()  # noqa: E731
        events = q("SELECT count(*) FROM events")[0][0]
        assert (result.exit_code, result.output) == (0, "已清除5封邮件：删除文件5个，清除报名行7行、参训人员4人；"
                                                        f"审计链验证通过（{events}条事件）。\n")
        lines = verified.output.splitlines()
        assert (verified.exit_code, lines[0], lines[-1].rsplit(" ", 1)[0]) == (
            0, f"数据库完整性：正常；审计链：完好（{events}条事件）", "验证通过：事件日志能解释全部数据；审计链头")
        assert q("SELECT count(*) FROM messages WHERE raw_path IS NOT NULL") == [(0,)]
        assert q("SELECT count(*) FROM form_rows WHERE id_number IS NOT NULL OR phone IS NOT NULL "
                 "OR name IS NOT NULL") == [(0,)]
        assert q("SELECT count(*) FROM nominees WHERE id_number IS NOT NULL OR name IS NOT NULL") == [(0,)]
        assert q("SELECT count(*) FROM forms WHERE contact_phone IS NOT NULL") == [(0,)]
        assert q("SELECT count(*) FROM outbox WHERE length(raw) > 0 AND kind != 'digest'") == [(0,)]
        assert q("SELECT count(*) FROM nominees WHERE id_masked = '' OR id_hash = ''") == [(0,)]
        assert q("SELECT kind FROM events ORDER BY id DESC LIMIT 1") == [("purge",)]
        assert q("SELECT actor FROM events WHERE kind = 'purge'") == [("staff:王老师",)]
    finally:
        ro.close()
    assert [p for p in (state_dir / "raw").rglob("*") if p.is_file()] == []
    # nothing left in the database files themselves (free pages, WAL frames)
    leftovers = b"".join(p.read_bytes() for p in state_dir.iterdir() if p.name.startswith("mailbot.db"))
    found = sorted({str(p.id_number) for p in people if str(p.id_number).encode() in leftovers})
    assert found == [], f"purged identity numbers still readable in the database files: {found}"


def test_purge_while_the_daemon_holds_the_database_open_leaves_no_identity_number_in_its_files(
        scenario, monkeypatch, tmp_path) -> None:
    parts, _, people = scenario
    state_dir = parts.state.dir
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["purge", "--before", (date.today() + timedelta(days=2)).isoformat(),
                                       "--staff", "王老师"], env={"MAILBOT_STATE_DIR": str(state_dir)})
    assert result.exit_code == 0, result.output
    leftovers = b"".join(p.read_bytes() for p in state_dir.iterdir() if p.name.startswith("mailbot.db"))
    found = sorted({str(p.id_number) for p in people if str(p.id_number).encode() in leftovers})
    assert found == [], f"purged identity numbers still readable in the database files: {found}"


def test_purge_with_a_cut_off_between_two_records_removes_the_older_and_keeps_the_newer(
        scenario, monkeypatch, tmp_path) -> None:
    parts, _, people = scenario
    state_dir, db_path = parts.state.dir, parts.state.path
    month_ago = (datetime.now(timezone.utc) - timedelta(days=30)).isoformat(timespec="seconds")
    with parts.state.transaction():  # 甲's form and 乙's first form, as if recorded a month ago
        parts.state.db.execute("UPDATE messages SET recorded_at = ? WHERE id IN (1, 2)", [month_ago])
        parts.state.db.execute("UPDATE outbox SET created_at = ? WHERE message IN (1, 2)", [month_ago])
    parts.close()
    monkeypatch.chdir(tmp_path)  # no stray mailbot.toml
    env = {"MAILBOT_STATE_DIR": str(state_dir)}
    runner = CliRunner()
    before = (date.today() - timedelta(days=10)).isoformat()
    result = runner.invoke(main, ["purge", "--before", before, "--staff", "王老师"], env=env)
    verified = runner.invoke(main, ["verify"], env=env)

    import sqlite3

    ro = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        q = lambda sql: ro.execute(sql).fetchall()  # noqa: E731
        events = q("SELECT count(*) FROM events")[0][0]
        assert (result.exit_code, result.output) == (0, "已清除2封邮件：删除文件2个，清除报名行4行、参训人员3人；"
                                                        f"审计链验证通过（{events}条事件）。\n")
        lines = verified.output.splitlines()
        assert (verified.exit_code, lines[0], lines[-1].rsplit(" ", 1)[0]) == (
            0, f"数据库完整性：正常；审计链：完好（{events}条事件）", "验证通过：事件日志能解释全部数据；审计链头")
        assert q("SELECT id, raw_path IS NOT NULL, sender FROM messages ORDER BY id") == [
            (1, 0, ""), (2, 0, ""), (3, 1, "b@b.edu.cn"), (4, 1, "c@c.edu.cn"), (5, 1, "d@d.edu.cn")]
        assert q("SELECT f.message, count(*) FROM form_rows r JOIN forms f ON f.id = r.form "
                 "WHERE r.id_number IS NOT NULL GROUP BY f.message ORDER BY f.message") == [(3, 2), (5, 1)]
        assert q("SELECT message, kind, length(raw) > 0 FROM outbox ORDER BY id") == [
            (1, "acceptance", 0), (2, "correction", 0), (3, "acceptance", 1), (4, "no_form", 1), (5, "redirect", 1)]
        assert q("SELECT message, name IS NOT NULL, id_number IS NOT NULL FROM nominees ORDER BY id") == [
            (1, 0, 0), (1, 0, 0), (2, 0, 0), (3, 1, 1)]
        assert q("SELECT kind, actor FROM events ORDER BY id DESC LIMIT 1") == [("purge", "staff:王老师")]
    finally:
        ro.close()
    assert len([p for p in (state_dir / "raw").rglob("*") if p.is_file()]) == 3
    leftovers = b"".join(p.read_bytes() for p in state_dir.iterdir() if p.name.startswith("mailbot.db"))
    readable = {n: n.encode() in leftovers for n in (
        str(nominee(1).id_number), str(nominee(2).id_number), BAD_ID,  # only in the purged mail
        str(nominee(3).id_number), str(nominee(4).id_number), str(nominee(6).id_number))}  # in newer mail
    assert readable == {str(nominee(1).id_number): False, str(nominee(2).id_number): False, BAD_ID: False,
                        str(nominee(3).id_number): True, str(nominee(4).id_number): True,
                        str(nominee(6).id_number): True}
