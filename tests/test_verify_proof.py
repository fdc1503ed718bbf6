"""``mailbot verify`` proves the state from the event log: after a realistic intake on the real
Dovecot and SMTP sink, each way an intruder with write access could change the record is
named as the first break, and the unchanged state verifies, also against a digest's head."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from forms_factory import make_annex3_xlsx, nominee
from intake_harness import imap_settings, open_intake, rules_with_seats, shanghai
from mail_factory import make_mail
from servers import SmtpSink
from mailbot.cli import main
from mailbot.office.digest import build_digest
from mailbot.state.store import State

pytestmark = pytest.mark.servers

FORM = "附件3：高校参训教师信息汇总表.xlsx"


def _form(*serials: int, institution: str) -> bytes:
    return make_annex3_xlsx([nominee(s) for s in serials], institution=institution)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, dovecot) -> Iterator[tuple[Path, str]]:
    """A state built by the real pipeline: schools on two seats per program (seated, waiting, a
    resubmission that withdraws one and promotes another, a conflict, a late form, a mail without
    a form, one mail with too many new teachers (held), another address adding to a school's list);
    then the digest, whose chain head is returned with the state dir."""
    tmp = tmp_path_factory.mktemp("verify")
    account = dovecot.add_user()
    with SmtpSink() as sink:
        settings = imap_settings(tmp, account, sink, rules=rules_with_seats(tmp, 2))
        parts = open_intake(settings)
        mails = [
            (make_mail(sender="a@zja.edu.cn", attachments=[(FORM, _form(1, 2, 3, institution="浙江甲职业技术学院"))]),
             shanghai(2020, 11, 2, 9, 0)),
            (make_mail(sender="b@zjb.edu.cn", attachments=[(FORM, _form(4, 5, institution="浙江乙职业技术学院"))]),
             shanghai(2020, 11, 2, 10, 0)),
            (make_mail(sender="a@zja.edu.cn", subject="更正",
                       attachments=[(FORM, _form(1, 3, institution="浙江甲职业技术学院"))]),
             shanghai(2020, 11, 3, 9, 0)),
            (make_mail(sender="c@zjc.edu.cn", attachments=[(FORM, _form(4, 6, institution="浙江丙职业技术学院"))]),
             shanghai(2020, 11, 3, 10, 0)),
            (make_mail(sender="d@zjd.edu.cn", attachments=[(FORM, _form(7, institution="浙江丁职业技术学院"))]),
             shanghai(2020, 11, 25, 10, 0)),
            (make_mail(sender="f@zjf.edu.cn", attachments=[  # more new teachers than one mail may add: held
                (FORM, _form(*range(20, 51), institution="浙江戊职业技术学院"))]), shanghai(2020, 11, 4, 10, 0)),
            (make_mail(sender="x@other.edu.cn", attachments=[  # not the contact of record: may only add
                (FORM, _form(1, 8, institution="浙江甲职业技术学院"))]), shanghai(2020, 11, 4, 11, 0)),
            (make_mail(sender="e@zje.edu.cn", subject="咨询", attachments=[]), shanghai(2020, 11, 4, 12, 0)),
        ]
        for raw, when in mails:
            dovecot.append(raw, when, user=account.user)
        report = parts.intake.poll_once()
        assert report.outcomes == {"accepted": 5, "correction": 1, "late": 1, "no_form": 1}  # the conflict: correction
        digest = parts.intake.renderer.render_digest(build_digest(parts.state, parts.rules, settings)).text
        parts.state.checkpoint()
        parts.close()
    (head,) = [line.removeprefix("审计链头：") for line in digest.splitlines() if line.startswith("审计链头：")]
    yield settings.state_dir, head


@pytest.fixture
def state_dir(built: tuple[Path, str], tmp_path: Path) -> Path:
    """A private copy of the built state, for one test to tamper with."""
    copy = tmp_path / "state"
    shutil.copytree(built[0], copy)
    return copy


def verify(state_dir: Path, *args: str) -> tuple[int, list[str]]:
    result = CliRunner().invoke(main, ["verify", *args], env={"MAILBOT_STATE_DIR": str(state_dir)})
    return result.exit_code, result.output.splitlines()


def intrude(state_dir: Path, *statements: str, params: tuple = ()) -> None:
    """Write to the database as an intruder would: triggers dropped first."""
    db = sqlite3.connect(state_dir / "mailbot.db")
    db.execute("DROP TRIGGER events_no_update")
    db.execute("DROP TRIGGER events_no_delete")
    for sql in statements:
        db.execute(sql, params if "?" in sql else ())
    db.commit()
    db.close()


def one(state_dir: Path, sql: str) -> tuple:
    db = sqlite3.connect(f"file:{state_dir / 'mailbot.db'}?mode=ro", uri=True)
    row = db.execute(sql).fetchone()
    db.close()
    return row


def test_the_state_built_by_intake_verifies_and_contains_the_digests_head(state_dir: Path, built) -> None:
    head = built[1]
    assert len(head) == 71 and head.count(" ") == 7  # grouped by 8, so masking cannot touch it
    code, lines = verify(state_dir, "--head", head)
    events, messages, nominees, replies, files = (one(state_dir, f"SELECT count(*) FROM {t}")[0] for t in (
        "events", "messages", "nominees", "outbox WHERE status = 'sent'",
        "(SELECT raw_path FROM messages UNION SELECT path FROM attachments WHERE path IS NOT NULL)"))
    flat = head.replace(" ", "")
    assert (code, lines) == (0, [
        f"integrity_check: ok; event chain: ok ({events} events)",
        f"head {flat}: in the log (event {events} of {events})",
        f"messages: {messages} explained by the event log",
        f"nominees: {nominees} recomputed from the event log",
        f"replies: {replies} delivery results explained by the event log",
        f"stored files: {files} match their SHA-256",
        f"验证通过：事件日志能解释全部数据；审计链头 {flat}",
    ])
    statuses = {s for (s,) in sqlite3.connect(state_dir / "mailbot.db").execute("SELECT status FROM nominees")}
    assert statuses == {"seated", "waiting", "withdrawn", "held"}  # a conflict is a finding, not a nominee


def test_an_event_altered_with_the_triggers_dropped_is_named(state_dir: Path) -> None:
    (eid,) = one(state_dir, "SELECT min(id) FROM events WHERE kind = 'nominee_waiting'")
    intrude(state_dir, f"UPDATE events SET detail = replace(detail, 'waiting', 'seated') WHERE id = {eid}")
    code, lines = verify(state_dir)
    assert (code, lines[-1]) == (1, f"第一处问题：event chain: event {eid} (nominee_waiting): "
                                    "hash does not match its contents (the event was altered)")


def _delete_last_message(state_dir: Path) -> int:
    """Remove the last message (the late form: one poll decides by arrival time) with everything
    about it, rows and events alike: the chain and the state stay consistent; only a head written
    down earlier can tell."""
    mid, outcome = one(state_dir, "SELECT id, outcome FROM messages ORDER BY id DESC LIMIT 1")
    assert outcome == "late"
    (first,) = one(state_dir, f"SELECT min(id) FROM events WHERE message = {mid}")
    intrude(state_dir, f"DELETE FROM events WHERE id >= {first}", f"DELETE FROM outbox WHERE message = {mid}",
            f"DELETE FROM staff_items WHERE message = {mid}",
            f"DELETE FROM attachments WHERE message = {mid}",
            f"DELETE FROM form_rows WHERE form IN (SELECT id FROM forms WHERE message = {mid})",
            f"DELETE FROM forms WHERE message = {mid}", f"DELETE FROM messages WHERE id = {mid}")
    return first


def test_the_last_events_deleted_are_caught_by_the_digests_head(state_dir: Path, built) -> None:
    _delete_last_message(state_dir)
    assert verify(state_dir)[0] == 0  # without an outside witness the shorter log explains itself
    code, lines = verify(state_dir, "--head", built[1])
    (n,) = one(state_dir, "SELECT count(*) FROM events")
    assert (code, lines[-1]) == (1, f"第一处问题：head: {built[1].replace(' ', '')}: not in the log ({n} events): "
                                    "the log was cut or rewritten after that head was written down")


def test_a_log_rewritten_and_rehashed_is_caught_by_the_digests_head(state_dir: Path, built) -> None:
    """The intruder changes an event's time and recomputes every later hash: the chain holds."""
    db = sqlite3.connect(state_dir / "mailbot.db")
    db.execute("DROP TRIGGER events_no_update")
    rows = db.execute("SELECT id, at, actor, rules_version, message, nominee, kind, detail FROM events ORDER BY id").fetchall()
    prev = ""
    for i, (eid, at, *rest) in enumerate(rows):
        at = "2020-11-01T00:00:00+00:00" if i == 3 else at
        digest = hashlib.sha256("\x1f".join([prev, at, *map(str, rest)]).encode()).hexdigest()
        db.execute("UPDATE events SET at = ?, prev_hash = ?, hash = ? WHERE id = ?", [at, prev, digest, eid])
        prev = digest
    db.commit()
    db.close()
    assert verify(state_dir)[0] == 0
    code, lines = verify(state_dir, "--head", built[1])
    assert (code, lines[-1]) == (1, f"第一处问题：head: {built[1].replace(' ', '')}: not in the log ({len(rows)} events): "
                                    "the log was cut or rewritten after that head was written down")


def test_a_nominees_status_edited_is_named(state_dir: Path) -> None:
    nid, masked, program = one(state_dir, "SELECT id, id_masked, program FROM nominees WHERE status = 'waiting' "
                                          "ORDER BY id LIMIT 1")
    sqlite3.connect(state_dir / "mailbot.db").execute(
        f"UPDATE nominees SET status = 'seated' WHERE id = {nid}").connection.commit()
    code, lines = verify(state_dir)
    assert (code, lines[-1]) == (1, f"第一处问题：nominees: nominee {nid} ({masked}, {program}): "
                                    "status is 'seated' in nominees, the event log says 'waiting'")


def test_a_messages_outcome_edited_is_named(state_dir: Path) -> None:
    mid, receipt = one(state_dir, "SELECT id, receipt FROM messages WHERE outcome = 'late'")
    sqlite3.connect(state_dir / "mailbot.db").execute(
        f"UPDATE messages SET outcome = 'accepted' WHERE id = {mid}").connection.commit()
    code, lines = verify(state_dir)
    assert (code, lines[-1]) == (1, f"第一处问题：messages: message {mid} ({receipt}): "
                                    "outcome is 'accepted' in messages, the log says 'late'")


def test_a_raw_mail_file_altered_is_named(state_dir: Path) -> None:
    mid, receipt, rel = one(state_dir, "SELECT id, receipt, raw_path FROM messages ORDER BY id LIMIT 1")
    path = state_dir / rel
    path.write_bytes(path.read_bytes().replace(b"Subject:", b"Subject: X", 1))
    code, lines = verify(state_dir)
    assert (code, lines[-1]) == (1, f"第一处问题：stored files: message {mid} ({receipt}): "
                                    f"{rel} does not match its SHA-256 (altered)")


def test_a_head_never_in_the_log_is_refused(state_dir: Path) -> None:
    code, lines = verify(state_dir, "--head", "0" * 64)
    (n,) = one(state_dir, "SELECT count(*) FROM events")
    assert (code, lines[-1]) == (1, f"第一处问题：head: {'0' * 64}: not in the log ({n} events): "
                                    "the log was cut or rewritten after that head was written down")
