"""Personal data never leaks: a whole scenario against Dovecot + aiosmtpd, then every log line,
reply body and the staff digest are searched for unmasked identity numbers and mobiles; the
state files are private; ``mailbot purge`` removes what it promises and the chain verifies."""

from __future__ import annotations

import email
import io
import re
import stat
from datetime import date, timedelta
from email import policy
from pathlib import Path

import pytest
from click.testing import CliRunner

from forms_factory import make_annex3_xlsx, nominee
from intake_harness import imap_settings, open_intake, shanghai
from mail_factory import make_mail
from mailbot.cli import main
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
    assert "3301**********" in corpus["replies"] and nominee(1).name in corpus["replies"]


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
    assert result.exit_code == 0, result.output
    assert "purged 5 message(s): 5 file(s) removed" in result.output and "audit chain verified" in result.output

    verified = runner.invoke(main, ["verify"], env=env)
    assert verified.exit_code == 0, verified.output
    assert "integrity_check: ok; event chain: ok" in verified.output

    import sqlite3

    ro = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        q = lambda sql: ro.execute(sql).fetchall()  # noqa: E731
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
